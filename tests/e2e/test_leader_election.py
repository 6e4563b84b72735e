"""The leader election (kondukt.kube.leader) against the real API server: electors in this process, each with
its own client, competing for one Lease in the test's namespace.

A watchdog samples every elector's ``is_leader()`` all along (every few milliseconds) and fails the test if
two ever lead at once — the property the whole design rests on — while the leader is made to stop in each
way it can: a clean stop (release), a crash (it stops renewing) and an API server it can no longer reach.
Timings are short (lease 3 s, renew deadline 2 s, retry 0.5 s); every wait is bounded, nothing asserts on speed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from kondukt.kube.kubeapi import KubeClient, load_configuration
from kondukt.kube.leader import LeaderElector, LeaseRecord, LeaseTiming
from kondukt.kube.metrics import Metrics
from tests.e2e.controlplane import ControlPlane, free_port

pytestmark = pytest.mark.e2e

TIMING = LeaseTiming(lease_duration=3, renew_deadline=2.0, retry_period=0.5)
WAIT_SECONDS = 60.0


class Watchdog:
    """Samples who leads, all the time; remembers every instant two led at once."""

    def __init__(self, electors: list[LeaderElector]) -> None:
        self.electors = electors
        self.samples = 0
        self.overlaps: list[list[str]] = []
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            leading = [e.identity for e in self.electors if e.is_leader()]
            self.samples += 1
            if len(leading) > 1:
                self.overlaps.append(leading)
            await asyncio.sleep(0.002)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def until(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def electors(control_plane: ControlPlane, namespace: str) -> AsyncIterator[list[LeaderElector]]:
    made: list[LeaderElector] = []
    configuration = await load_configuration(str(control_plane.kubeconfig))
    for name in ("a", "b"):
        made.append(LeaderElector(KubeClient(configuration, timeout=TIMING.request_timeout), namespace=namespace,
                                  name="ops", identity=f"{name}_{namespace}", timing=TIMING, metrics=Metrics()))
    try:
        yield made
    finally:
        for elector in made:
            await elector.stop()
            await elector.api.close()


async def read_lease(elector: LeaderElector) -> LeaseRecord:
    lease = await elector.api.get(elector.path, "lease")
    assert lease is not None
    return LeaseRecord.from_spec(lease.get("spec"))


async def one_leads(electors: list[LeaderElector]) -> tuple[LeaderElector, LeaderElector]:
    await until(lambda: any(e.is_leader() for e in electors), "a leader")
    leader = next(e for e in electors if e.is_leader())
    other = next(e for e in electors if e is not leader)
    await until(lambda: other.leader() == leader.identity, "the other to see the leader")
    return leader, other


async def test_a_released_lease_is_taken_over_at_the_next_try(electors: list[LeaderElector]) -> None:
    watchdog = Watchdog(electors)
    watchdog.start()
    for elector in electors:
        elector.start()
    leader, other = await one_leads(electors)
    assert (await read_lease(leader)).transitions == 0  # created by the leader
    await leader.stop()
    assert not leader.is_leader()
    assert await leader.release()
    await until(other.is_leader, "the other to take the released lease", timeout=TIMING.retry_period * 2.2 + 10)
    record = await read_lease(other)
    assert (record.holder, record.lease_duration_seconds, record.transitions) == (other.identity, 3, 1)
    await watchdog.stop()
    assert watchdog.overlaps == [] and watchdog.samples > 100


async def test_a_crashed_leader_is_replaced_only_after_it_stopped_leading(electors: list[LeaderElector]) -> None:
    watchdog = Watchdog(electors)
    watchdog.start()
    for elector in electors:
        elector.start()
    leader, other = await one_leads(electors)
    # A crash: the renewals stop, nothing is released; the leader's own deadline ends its leadership.
    assert leader._task is not None
    leader._task.cancel()
    await until(other.is_leader, "the other to take the expired lease")
    assert not leader.is_leader()
    assert (await read_lease(other)).holder == other.identity
    await watchdog.stop()
    assert watchdog.overlaps == [] and watchdog.samples > 100


async def test_a_leader_cut_off_from_the_api_server_stops_before_it_can_be_replaced(
    electors: list[LeaderElector],
) -> None:
    watchdog = Watchdog(electors)
    watchdog.start()
    for elector in electors:
        elector.start()
    leader, other = await one_leads(electors)
    stopped: list[bool] = []
    leader.on_stopped = lambda: stopped.append(other.is_leader())
    leader.api.server = f"http://127.0.0.1:{free_port()}"  # nothing listens there: every renewal fails
    await until(lambda: bool(stopped), "the cut-off leader to stop leading")
    assert stopped == [False]  # it stopped while the other could not lead yet
    await until(other.is_leader, "the other to take the lease over")
    assert not leader.is_leader()
    for elector, value in ((leader, 0.0), (other, 1.0)):
        assert elector.metrics is not None
        labels = {"lease": elector.lease, "identity": elector.identity}
        assert elector.metrics.registry.get_sample_value("kondukt_leader", labels) == value
    await watchdog.stop()
    assert watchdog.overlaps == [] and watchdog.samples > 100


async def test_of_candidates_racing_for_a_free_lease_exactly_one_wins(electors: list[LeaderElector],
                                                                     control_plane: ControlPlane) -> None:
    a, b = electors
    configuration = await load_configuration(str(control_plane.kubeconfig))
    more = [LeaderElector(KubeClient(configuration), namespace=a.namespace, name=a.name, identity=f"{n}_x",
                          timing=TIMING) for n in ("c", "d")]
    racers = [a, b, *more]
    try:
        for _round in range(5):
            results = await asyncio.gather(*(e.try_acquire_or_renew() for e in racers))
            assert results.count(True) == 1, results  # create, or resourceVersion-guarded update: one wins
            winner = racers[results.index(True)]
            assert (await read_lease(winner)).holder == winner.identity
            await winner.stop()
            assert await winner.release()
            for elector in racers:
                elector.observed = None  # everyone reads the released lease afresh
    finally:
        for elector in more:
            await elector.stop()
            await elector.api.close()
