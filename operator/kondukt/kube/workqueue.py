"""A work queue of workflow keys, in the manner of client-go's workqueue, for asyncio.

Guarantees the reconcile loop rests on:

- one reconcile at a time per key (a key being processed is never handed to a second worker);
- bursts coalesce: adding a key that is already waiting does nothing; adding a key while it is being
  processed makes it run once more afterwards (so no event is ever lost, and none costs a run each);
- many keys in parallel (``workers`` asyncio tasks);
- exact timers: :meth:`add_at` schedules a key at an instant (``loop.call_at``); a later call for the
  same key replaces the earlier timer (the latest decision knows best);
- failures back off per key (exponential, capped), and :meth:`forget` resets that after a success;
- nothing is processed before ``ready`` is set (keys added meanwhile wait): the caches a handler reads
  must be complete first.

It knows nothing about workflows: keys are opaque hashables, the handler is a coroutine function.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

logger = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        handler: Callable[[K], Awaitable[None]],
        *,
        workers: int = 16,
        base_backoff: float = 0.05,
        max_backoff: float = 60.0,
        on_depth: Callable[[int], None] | None = None,
        ready: asyncio.Event | None = None,
    ) -> None:
        self._handler = handler
        self._workers = workers
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._soon: dict[K, asyncio.TimerHandle] = {}
        self._hold: dict[K, float] = {}
        self._failures: dict[K, int] = {}
        self._base_backoff = base_backoff
        self._max_backoff = max_backoff
        self._tasks: list[asyncio.Task[None]] = []
        self._on_depth = on_depth
        self._closed = False
        self._added_at: dict[K, float] = {}
        self._ready = ready  # workers wait for it before their first item (caches complete)
        self._last_wait: dict[K, float] = {}

    # ----------------------------------------------------------------------------------------- adding
    def add(self, key: K) -> None:
        """Process ``key`` soon (now, or right after its current processing ends)."""
        if self._closed or key in self._dirty:
            return
        hold = self._hold.get(key)
        if hold is not None:
            remaining = hold - asyncio.get_running_loop().time()
            if remaining > 0:
                self.add_soon(key, remaining)
                return
            del self._hold[key]
        soon = self._soon.pop(key, None)
        if soon is not None:
            soon.cancel()
        self._dirty.add(key)
        self._added_at.setdefault(key, time.monotonic())
        if key not in self._processing:
            self._queue.put_nowait(key)
        self._report_depth()

    def add_at(self, key: K, when_monotonic: float) -> None:
        """Process ``key`` at loop time ``when_monotonic`` (replacing an earlier timer for the key)."""
        loop = asyncio.get_running_loop()
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        if when_monotonic <= loop.time():
            self.add(key)
            return
        self._timers[key] = loop.call_at(when_monotonic, self._fire, key)

    def add_soon(self, key: K, delay: float) -> None:
        """Process ``key`` within ``delay`` seconds, sooner if anything else adds it (a debounce that,
        unlike :meth:`add_at`, leaves the key's exact timer alone)."""
        if self._closed or key in self._dirty or key in self._soon:
            return
        loop = asyncio.get_running_loop()
        self._soon[key] = loop.call_later(delay, self._fire_soon, key)

    def _fire_soon(self, key: K) -> None:
        self._soon.pop(key, None)
        self._hold.pop(key, None)
        self.add(key)

    def hold(self, key: K, seconds: float) -> None:
        """Process ``key`` again no sooner than ``seconds`` from now: news meanwhile is gathered into one
        run (for a workflow whose every status write is costly, fewer and larger batches)."""
        if seconds > 0:
            self._hold[key] = asyncio.get_running_loop().time() + seconds

    def add_after(self, key: K, delay: float) -> None:
        self.add_at(key, asyncio.get_running_loop().time() + max(0.0, delay))

    def cancel_timer(self, key: K) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()

    def add_rate_limited(self, key: K, at_least: float = 0.0) -> float:
        """Retry ``key`` after a failure, backing off exponentially but no sooner than ``at_least`` seconds
        (what the server asked for, e.g. its ``Retry-After``); returns the delay chosen."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = max(float(at_least), float(min(self._max_backoff, self._base_backoff * (2.0**failures))))
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    # ------------------------------------------------------------------------------------- processing
    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def pending_timers(self) -> int:
        return len(self._timers)

    def idle(self) -> bool:
        """Nothing waiting, being processed or due within a debounce: only exact timers (:meth:`add_at`)
        may add a key from here on."""
        return not self._queue.qsize() and not self._processing and not self._dirty and not self._soon

    def last_wait(self, key: K) -> float | None:
        """How long ``key`` waited in the queue before its current processing began (seconds)."""
        return self._last_wait.pop(key, None)

    def _report_depth(self) -> None:
        if self._on_depth is not None:
            self._on_depth(self._queue.qsize())

    async def _next(self) -> K:
        key = await self._queue.get()
        self._dirty.discard(key)
        self._processing.add(key)
        self._report_depth()
        return key

    def _done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.put_nowait(key)
        else:
            self._added_at.pop(key, None)
        self._report_depth()

    async def _work(self) -> None:
        if self._ready is not None:
            await self._ready.wait()
        while True:
            key = await self._next()
            added = self._added_at.pop(key, None)
            if added is not None:
                self._last_wait[key] = time.monotonic() - added
            try:
                await self._handler(key)
            except asyncio.CancelledError:
                self._processing.discard(key)
                raise
            except Exception:  # the handler decides about retries; a crash must not kill the worker
                logger.exception("reconcile of %s failed unexpectedly", key)
                self.add_rate_limited(key)
            finally:
                self._done(key)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for index in range(self._workers):
            self._tasks.append(loop.create_task(self._work(), name=f"kondukt-worker-{index}"))

    async def stop(self) -> None:
        self._closed = True
        for timer in [*self._timers.values(), *self._soon.values()]:
            timer.cancel()
        self._timers.clear()
        self._soon.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
