"""Sharding: operator replicas share the Workflows through one Lease per shard (``--shards``), and survive being
killed under load without two replicas ever acting on one workflow, and with limits held across shards.

Three real ``kondukt operator --lease kondukt --shards 4`` processes on the session's control plane (kwok's fake
pods as workers). First every shard is held and none of the replicas holds more than its fair share
(ceil(4/3) = 2). Then workflows run — plain steps, a TaskDef limited to 2 attempts at once and one limited to 2
starts per 3 s, both shared by every workflow (so by every shard) — while one replica is SIGKILLed (its shards
go to the others once their Leases expire) and another is stopped with SIGTERM (it releases its shards). Every
workflow completes, every attempt has exactly one Job and no retry, and neither limit was ever exceeded, though
the limited attempts were dispatched by different replicas. Handover times are logged, never asserted.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from pathlib import Path

import pytest

from kondukt.kube import resources as r
from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_ha import CRASH_TIMING, Replica
from tests.e2e.test_operator_support import ECHO, Cluster, taskdef, workflow

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

logger = logging.getLogger(__name__)

LEASE = "kondukt"
SHARDS = 4
WORKFLOWS = 10
CONCURRENCY = 2
RATE, WINDOW_S = 2, 3


def shard_holders(cluster: Cluster) -> dict[str, str]:
    """Shard Lease name -> holder identity ('' when free)."""
    leases = cluster.cp.kubectl_json("-n", cluster.namespace, "get", "leases")["items"]
    wanted = {f"{LEASE}-shard-{i}-of-{SHARDS}" for i in range(SHARDS)}
    return {lease["metadata"]["name"]: str((lease.get("spec") or {}).get("holderIdentity") or "")
            for lease in leases if lease["metadata"]["name"] in wanted}


def held_by(cluster: Cluster, replica: Replica) -> int:
    return sum(1 for holder in shard_holders(cluster).values() if holder.startswith(replica.pod_id + "_"))


def all_held_by(cluster: Cluster, replicas: list[Replica]) -> bool:
    holders = shard_holders(cluster)
    prefixes = tuple(rep.pod_id + "_" for rep in replicas)
    return len(holders) == SHARDS and all(h.startswith(prefixes) for h in holders.values())


def max_overlap(intervals: list[tuple[int, int]]) -> int:
    """The most intervals [start, end) open at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, step in edges:  # at equal instants an end (-1) sorts before a start (+1)
        current += step
        most = max(most, current)
    return most


def test_replicas_share_shards_and_survive_kills_under_load(control_plane: ControlPlane, namespace: str,
                                                            tmp_path: Path) -> None:
    replicas = [Replica(control_plane, namespace, tmp_path, name, "--shards", str(SHARDS), *CRASH_TIMING)
                for name in ("alpha", "beta", "gamma")]
    cluster = Cluster(control_plane, namespace, replicas[0])
    try:
        for replica in replicas:
            replica.start()
        share = math.ceil(SHARDS / len(replicas))
        cluster.wait_until(lambda: all_held_by(cluster, replicas)
                           and all(1 <= held_by(cluster, rep) <= share for rep in replicas),
                           "every shard held, each replica holding its fair share", timeout=120)

        cluster.apply(taskdef("step", annotations={**ECHO, "kwok.kondukt.io/duration": "1s"}))
        cluster.apply(taskdef("limited", annotations={**ECHO, "kwok.kondukt.io/duration": "1s"},
                              concurrentExecLimit=CONCURRENCY))
        cluster.apply(taskdef("metered", rateLimitPerFrequency=RATE, rateLimitFrequencyInSeconds=WINDOW_S))
        tasks = [{"name": "step", "taskReferenceName": "first", "inputParameters": {"i": 0}},
                 {"name": "limited", "taskReferenceName": "limited", "inputParameters": {"i": 1}},
                 {"name": "metered", "taskReferenceName": "metered", "inputParameters": {"i": 2}},
                 {"name": "step", "taskReferenceName": "last", "inputParameters": {"i": 3}}]
        names = [f"wf{i}" for i in range(WORKFLOWS)]
        cluster.apply(*(workflow(name, definition={"name": "sharded", "tasks": tasks}) for name in names))

        victim = max(replicas, key=lambda rep: held_by(cluster, rep))
        cluster.wait_until(lambda: len(cluster.jobs()) >= WORKFLOWS, "the first steps to run", timeout=120)
        killed = time.monotonic()
        victim.kill()  # SIGKILL: nothing released; its shards expire after the lease duration
        survivors = [rep for rep in replicas if rep is not victim]
        cluster.operator = survivors[0]
        cluster.wait_until(lambda: all_held_by(cluster, survivors), "the killed replica's shards to be taken over",
                           timeout=120)
        logger.warning("shard handover after a SIGKILL (lease duration 6s): %.1fs", time.monotonic() - killed)

        leaving, last = survivors
        stopped = time.monotonic()
        leaving.stop()  # SIGTERM: it stops acting, then releases its shards
        assert leaving.proc is not None and leaving.proc.returncode == 0, leaving.logs()[-3000:]
        cluster.operator = last
        cluster.wait_until(lambda: all_held_by(cluster, [last]), "the survivor to hold every shard", timeout=120)
        logger.warning("shard handover after a SIGTERM: %.1fs", time.monotonic() - stopped)

        for name in names:
            status = cluster.wait_phase(name, timeout=240)
            assert status["phase"] == "COMPLETED", (name, status.get("reasonForIncompletion"))

        attempts = [t for name in names for t in cluster.tasks(name)]
        assert len(attempts) == WORKFLOWS * len(tasks) and all(t["retryCount"] == 0 for t in attempts)
        jobs = cluster.jobs()
        per_attempt = Counter(j["metadata"]["annotations"][r.ANNOTATION_TASK_ID] for j in jobs)
        assert set(per_attempt) == {t["taskId"] for t in attempts}
        assert set(per_attempt.values()) == {1}, "an attempt had more than one Job"

        ended = {t["taskId"]: int(t["endTime"]) for t in attempts}
        def_of = {j["metadata"]["annotations"][r.ANNOTATION_TASK_ID]: j["metadata"]["labels"][r.LABEL_TASK_DEF]
                  for j in jobs}
        dispatched = {j["metadata"]["annotations"][r.ANNOTATION_TASK_ID]:
                      int(j["metadata"]["annotations"][r.ANNOTATION_DISPATCHED_AT]) for j in jobs}
        limited = [(dispatched[task], ended[task]) for task, name in def_of.items() if name == "limited"]
        assert len(limited) == WORKFLOWS and max_overlap(limited) <= CONCURRENCY, sorted(limited)
        metered = sorted(dispatched[task] for task, name in def_of.items() if name == "metered")
        assert len(metered) == WORKFLOWS
        for earlier, later in zip(metered, metered[RATE:], strict=False):
            assert later - earlier >= WINDOW_S * 1000, f"{RATE + 1} starts within one {WINDOW_S}s window: {metered}"

        claimed = {lease["metadata"]["labels"].get("kondukt.io/limit-claims-for")
                   for lease in cluster.cp.kubectl_json("-n", namespace, "get", "leases")["items"]
                   if lease["metadata"]["name"].startswith("kondukt-limit-")}
        assert claimed == {"limited", "metered"}, "the limited TaskDefs' Jobs were claimed across shards"
        assert last.total("kondukt_shards_held") == SHARDS
    finally:
        for replica in replicas:
            replica.stop()
