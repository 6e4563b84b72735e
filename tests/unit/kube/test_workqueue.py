"""The work queue: one reconcile at a time per key, coalescing, exact timers, backoff."""

from __future__ import annotations

import asyncio

from kondukt.kube.workqueue import WorkQueue


async def drain(queue: WorkQueue[str], condition: asyncio.Event, timeout: float = 60.0) -> None:
    await asyncio.wait_for(condition.wait(), timeout)


async def test_one_at_a_time_per_key_and_bursts_coalesce() -> None:
    running: set[str] = set()
    overlaps: list[str] = []
    calls: list[str] = []
    release = asyncio.Event()
    done = asyncio.Event()

    async def handler(key: str) -> None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        calls.append(key)
        if len(calls) == 1:
            await release.wait()
        running.discard(key)
        if len(calls) == 2:
            done.set()

    queue: WorkQueue[str] = WorkQueue(handler, workers=4)
    queue.start()
    queue.add("a")
    await asyncio.sleep(0.01)
    for _ in range(50):  # a burst while "a" is being processed
        queue.add("a")
    release.set()
    await drain(queue, done)
    await asyncio.sleep(0.05)
    await queue.stop()
    assert calls == ["a", "a"], "the burst ran exactly once more, after the first run"
    assert overlaps == []


async def test_different_keys_run_in_parallel() -> None:
    started: set[str] = set()
    both = asyncio.Event()

    async def handler(key: str) -> None:
        started.add(key)
        if len(started) == 2:
            both.set()
        await both.wait()

    queue: WorkQueue[str] = WorkQueue(handler, workers=2)
    queue.start()
    queue.add("a")
    queue.add("b")
    await asyncio.wait_for(both.wait(), 60)
    await queue.stop()


async def test_timers_fire_at_their_instant_and_the_latest_replaces_earlier_ones() -> None:
    fired: list[tuple[str, float]] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def handler(key: str) -> None:
        fired.append((key, loop.time()))
        done.set()

    queue: WorkQueue[str] = WorkQueue(handler)
    queue.start()
    begin = loop.time()
    queue.add_at("a", begin + 10)  # replaced by the next call
    queue.add_at("a", begin + 0.05)
    await asyncio.wait_for(done.wait(), 60)
    await asyncio.sleep(0.1)
    await queue.stop()
    assert len(fired) == 1 and fired[0][1] >= begin + 0.05
    assert queue.pending_timers() == 0


async def test_failures_back_off_and_crashing_handlers_do_not_kill_workers() -> None:
    # The delays are read from what the queue scheduled, not from the wall clock: a loaded machine
    # stretches sleeps, never the backoff the queue asked for.
    attempts: list[str] = []
    delays: list[float] = []
    done = asyncio.Event()

    async def handler(key: str) -> None:
        attempts.append(key)
        if len(attempts) < 3:
            raise RuntimeError("boom")
        done.set()

    queue: WorkQueue[str] = WorkQueue(handler, workers=1, base_backoff=0.02)
    schedule = queue.add_rate_limited

    def recording(key: str) -> float:
        delay = schedule(key)
        delays.append(delay)
        return delay

    queue.add_rate_limited = recording  # type: ignore[method-assign]
    queue.start()
    queue.add("a")
    await asyncio.wait_for(done.wait(), 60)
    await queue.stop()
    assert attempts == ["a", "a", "a"], "the worker survived both crashes and ran the key again"
    assert delays == [0.02, 0.04], "each failure doubles the backoff"


async def test_wait_time_is_reported_once() -> None:
    seen: list[float | None] = []
    done = asyncio.Event()
    queue: WorkQueue[str] = WorkQueue(lambda key: _record(queue, key, seen, done))
    queue.start()
    queue.add("a")
    await asyncio.wait_for(done.wait(), 60)
    await queue.stop()
    assert seen[0] is not None and seen[0] >= 0
    assert queue.last_wait("a") is None


async def _record(queue: WorkQueue[str], key: str, seen: list[float | None], done: asyncio.Event) -> None:
    seen.append(queue.last_wait(key))
    done.set()


async def test_add_soon_debounces_without_touching_the_exact_timer() -> None:
    fired: list[float] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def handler(key: str) -> None:
        fired.append(loop.time())
        if len(fired) == 2:
            done.set()

    queue: WorkQueue[str] = WorkQueue(handler)
    queue.start()
    begin = loop.time()
    queue.add_at("a", begin + 2.0)  # the decision's timer, far enough that a loaded machine keeps the order
    for _ in range(10):
        queue.add_soon("a", 0.05)  # a burst of minor news: one run, soon
    await asyncio.wait_for(done.wait(), 60)
    await queue.stop()
    assert len(fired) == 2, "the burst ran once, the timer once"
    assert fired[0] - begin >= 0.05, "the debounced run waited its delay"
    assert fired[0] - begin < 2.0, "the debounced run came before the exact timer"
    assert fired[1] - begin >= 2.0, "the exact timer still fires"


async def test_add_makes_a_pending_debounce_unnecessary() -> None:
    calls: list[str] = []
    loop = asyncio.get_running_loop()

    async def handler(key: str) -> None:
        calls.append(key)

    queue: WorkQueue[str] = WorkQueue(handler)
    queue.start()
    queue.add_soon("a", 0.1)
    queue.add("a")
    await asyncio.sleep(0.3)
    await queue.stop()
    assert calls == ["a"]
    assert loop.time() > 0


async def test_nothing_is_processed_before_the_caches_are_ready() -> None:
    calls: list[str] = []
    ready = asyncio.Event()

    async def handler(key: str) -> None:
        calls.append(key)

    queue: WorkQueue[str] = WorkQueue(handler, ready=ready)
    queue.start()
    queue.add("a")
    await asyncio.sleep(0.05)
    assert calls == []
    ready.set()
    for _ in range(6000):  # until the handler ran (bounded: 60 s); a loaded machine only makes it later
        if calls:
            break
        await asyncio.sleep(0.01)
    await queue.stop()
    assert calls == ["a"]


async def test_a_retry_waits_at_least_what_the_server_asked() -> None:
    async def handler(key: str) -> None:
        pass

    queue: WorkQueue[str] = WorkQueue(handler, workers=1, base_backoff=0.02)
    assert queue.add_rate_limited("a", at_least=3.0) == 3.0, "Retry-After beats a shorter backoff"
    assert queue.add_rate_limited("a") == 0.04
    assert queue.add_rate_limited("a", at_least=0.01) == 0.08, "a longer backoff beats a shorter Retry-After"
    queue.cancel_timer("a")


async def test_idle_means_nothing_waiting_running_or_debounced() -> None:
    release = asyncio.Event()
    finished = asyncio.Event()

    async def handler(key: str) -> None:
        await release.wait()
        finished.set()

    queue: WorkQueue[str] = WorkQueue(handler, workers=1)
    assert queue.idle()
    queue.add("waiting")
    assert not queue.idle(), "a key waits"
    queue.start()
    await asyncio.sleep(0.01)
    assert not queue.idle(), "a key is being processed"
    release.set()
    await asyncio.wait_for(finished.wait(), 60)
    await asyncio.sleep(0.01)
    assert queue.idle()
    queue.add_after("timer", 3600)
    assert queue.idle() and queue.pending_timers() == 1, "an exact timer is not work in hand"
    queue.add_soon("debounced", 3600)
    assert not queue.idle(), "a key is due within a debounce"
    await queue.stop()
