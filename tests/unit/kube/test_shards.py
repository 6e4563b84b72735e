"""Sharding (kondukt.kube.shards): the shard of a workflow, the fair share, and whole replicas' rounds on a fake
clock against an in-memory API holding Leases with the API server's resourceVersion rules — checking after
every step that no shard is ever held (is_leader) by two replicas at once. The real API server and real
processes are in tests/e2e/test_operator_shards.py."""

from __future__ import annotations

import copy
import itertools
import uuid
from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kondukt.kube.kubeapi import AlreadyExists, ApiError, Conflict, KubeClient, NotFound
from kondukt.kube.leader import LeaseRecord, LeaseTiming, Observed
from kondukt.kube.shards import (
    MEMBER_LABEL,
    ShardManager,
    acting_shard,
    alive_members,
    fair_share,
    may_take_more,
    member_lease_name,
    shard_lease_names,
    shard_of,
    surplus,
)
from tests.profiles import examples

TIMING = LeaseTiming()


# --------------------------------------------------------------------------------------------- pure
@given(st.uuids(), st.integers(min_value=1, max_value=64))
@examples(200)
def test_a_workflow_has_one_stable_shard(uid: uuid.UUID, shards: int) -> None:
    shard = shard_of(str(uid), shards)
    assert 0 <= shard < shards and shard == shard_of(str(uid), shards)


def test_shards_spread_workflows_evenly() -> None:
    counts = Counter(shard_of(str(uuid.UUID(int=i * 7919 + 13)), 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3} and all(800 < n < 1200 for n in counts.values()), counts


def test_the_lease_names() -> None:
    assert shard_lease_names("kondukt", 1) == ["kondukt"]  # one shard: the one-leader Lease
    assert shard_lease_names("kondukt", 3) == ["kondukt-shard-0-of-3", "kondukt-shard-1-of-3", "kondukt-shard-2-of-3"]
    assert member_lease_name("kondukt", "pod-a_1") != member_lease_name("kondukt", "pod-b_1")


def test_the_fair_share_and_the_surplus() -> None:
    assert [fair_share(4, n) for n in (0, 1, 2, 3, 4, 5)] == [4, 4, 2, 2, 1, 1]
    assert surplus([0, 1, 2], 2) == 2 and surplus([0, 1], 2) is None
    assert surplus([0, 1], 2, fewest_other=0) == 1 and surplus([0, 1], 2, fewest_other=1) is None
    assert may_take_more(0, 2, None) and may_take_more(1, 2, 1) and not may_take_more(1, 2, 0)
    assert not may_take_more(2, 2, 5)


def test_a_member_counts_as_alive_until_its_lease_duration_passes_unchanged() -> None:
    def member(holder: str, since: float) -> Observed:
        return Observed(LeaseRecord(holder=holder, lease_duration_seconds=15), "1", since)

    seen = {"own": member("me", 0), "a": member("a", 100), "b": member("b", 80), "gone": member("", 100)}
    assert alive_members(seen, "own", 90) == 3  # own always; b until 95; a nameless record never
    assert alive_members(seen, "own", 96) == 2
    assert alive_members(seen, "own", 116) == 1


# ------------------------------------------------------------------------------------ a fake API
class Leases(KubeClient):
    """Leases in memory, with the API server's rules: POST of an existing name is AlreadyExists, PUT and a DELETE
    precondition need the current resourceVersion; lists filter on one ``label=value`` selector."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.versions = itertools.count(1)

    async def request(self, method: str, path: str, *, what: str, body: Any = None, params: Any = None,
                      content_type: str = "application/json", on_conflict: type[ApiError] = Conflict) -> Any:
        if path.endswith("/events"):
            return body
        name = path.rsplit("/leases", 1)[1].lstrip("/")
        if method == "GET" and not name:
            key, _, value = (params or {}).get("labelSelector", "=").partition("=")
            return {"items": [copy.deepcopy(lease) for lease in self.leases.values()
                              if not key or (lease["metadata"].get("labels") or {}).get(key) == value]}
        if method == "GET":
            if name not in self.leases:
                raise NotFound(404, "NotFound", name, what)
            return copy.deepcopy(self.leases[name])
        if method == "POST":
            name = body["metadata"]["name"]
            if name in self.leases:
                raise AlreadyExists(409, "AlreadyExists", name, what)
        elif method == "PUT":
            if name not in self.leases or body["metadata"]["resourceVersion"] != \
                    self.leases[name]["metadata"]["resourceVersion"]:
                raise Conflict(409, "Conflict", "modified", what)
        elif method == "DELETE":
            if name not in self.leases:
                raise NotFound(404, "NotFound", name, what)
            wanted = ((body or {}).get("preconditions") or {}).get("resourceVersion")
            if wanted is not None and wanted != self.leases[name]["metadata"]["resourceVersion"]:
                raise Conflict(409, "Conflict", "modified", what)
            del self.leases[name]
            return {}
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self.versions))
        self.leases[name] = stored
        return copy.deepcopy(stored)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def replica(api: Leases, clock: FakeClock, identity: str, calls: list[str] | None = None) -> ShardManager:
    log = calls if calls is not None else []
    return ShardManager(api, namespace="ops", base="kondukt", shards=4, identity=identity, timing=TIMING,
                        clock=clock, on_started=lambda shard: log.append(f"{identity} +{shard}"),
                        on_stopped=lambda shard: log.append(f"{identity} -{shard}"))


def assert_never_shared(*replicas: ShardManager) -> None:
    held = [shard for r in replicas for shard in r.held()]
    assert len(held) == len(set(held)), {r.identity: r.held() for r in replicas}


async def rounds(clock: FakeClock, *replicas: ShardManager, times: int = 1, step: float = 2.0) -> None:
    for _ in range(times):
        for r in replicas:
            await r.renew_once()
            await r.round()
            assert_never_shared(*replicas)
        clock.now += step
        assert_never_shared(*replicas)


# ------------------------------------------------------------------------------------------ rounds
async def test_two_replicas_split_the_shards_evenly() -> None:
    api, clock = Leases(), FakeClock()
    a, b = replica(api, clock, "a_1"), replica(api, clock, "b_1")
    await rounds(clock, a, b, times=4)
    assert sorted(a.held() + b.held()) == [0, 1, 2, 3]
    assert len(a.held()) == 2 and len(b.held()) == 2
    labels = {lease["metadata"]["name"]: (lease["metadata"].get("labels") or {}).get(MEMBER_LABEL)
              for lease in api.leases.values()}
    assert sorted(n for n, label in labels.items() if label == "kondukt") == sorted(
        [member_lease_name("kondukt", "a_1"), member_lease_name("kondukt", "b_1")])


async def test_a_first_replica_takes_everything_and_hands_over_to_a_newcomer() -> None:
    api, clock, calls = Leases(), FakeClock(), []
    a = replica(api, clock, "a_1", calls)
    await rounds(clock, a, times=2)
    assert a.held() == [0, 1, 2, 3]
    b = replica(api, clock, "b_1", calls)
    await rounds(clock, a, b, times=5)
    assert len(a.held()) == 2 and len(b.held()) == 2
    assert any(call.startswith("a_1 -") for call in calls)  # handed over, never taken away


async def test_three_replicas_on_four_shards_all_get_work() -> None:
    api, clock = Leases(), FakeClock()
    trio = [replica(api, clock, f"{name}_1") for name in "abc"]
    await rounds(clock, *trio, times=8)
    assert sorted(len(r.held()) for r in trio) == [1, 1, 2]
    assert sorted(shard for r in trio for shard in r.held()) == [0, 1, 2, 3]


async def test_a_dead_replicas_shards_go_to_the_survivor_only_after_they_expire() -> None:
    api, clock = Leases(), FakeClock()
    a, b = replica(api, clock, "a_1"), replica(api, clock, "b_1")
    await rounds(clock, a, b, times=4)
    lost = a.held()
    await a.stop()  # a crash, for b: no more renewals, nothing released (stop() only ends a's own acting)
    waited = 0.0
    while sorted(b.held()) != [0, 1, 2, 3]:
        await rounds(clock, b, step=1.0)
        waited += 1
        assert waited < 60, b.held()
    assert waited >= TIMING.lease_duration - 2, "taken before the dead holder's Lease expired"
    assert set(lost) <= set(b.held())


async def test_a_graceful_stop_hands_every_shard_over_at_the_next_round() -> None:
    api, clock = Leases(), FakeClock()
    a, b = replica(api, clock, "a_1"), replica(api, clock, "b_1")
    await rounds(clock, a, b, times=4)
    await a.stop()
    await a.release()
    assert member_lease_name("kondukt", "a_1") not in api.leases
    await rounds(clock, b, times=2)
    assert sorted(b.held()) == [0, 1, 2, 3]


async def test_the_fence_follows_the_shard_of_the_workflow_being_reconciled() -> None:
    api, clock = Leases(), FakeClock()
    a = replica(api, clock, "a_1")
    await rounds(clock, a, times=2)
    await a.electors[3].hand_over("test")
    assert a.may_act()  # no workflow: some shard is held
    token = acting_shard.set(3)
    try:
        assert not a.may_act()
        acting_shard.set(1)
        assert a.may_act()
    finally:
        acting_shard.reset(token)


async def test_while_replicas_with_another_shard_count_are_alive_nobody_takes_a_shard() -> None:
    """A rollout changing --shards: the old replica keeps its shards, the new one takes none until it is gone."""
    api, clock = Leases(), FakeClock()
    old = replica(api, clock, "old_1")
    await rounds(clock, old, times=2)
    assert old.held() == [0, 1, 2, 3]
    new = ShardManager(api, namespace="ops", base="kondukt", shards=6, identity="new_1", timing=TIMING, clock=clock)
    await rounds(clock, old, new, times=3)
    assert new.mixed and old.mixed and new.held() == [] and old.held() == [0, 1, 2, 3]
    await old.stop()
    await old.release()
    await rounds(clock, new, times=3)
    assert not new.mixed and new.held() == [0, 1, 2, 3, 4, 5]
    assert {f"kondukt-shard-{i}-of-6" for i in range(6)} <= set(api.leases)
