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

import contextlib
import http.client
import json
import logging
import math
import ssl
import threading
import time
import urllib.parse
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


class RunningPods(threading.Thread):
    """Watches one TaskDef's attempt pods and keeps the most that ever existed unfinished at once.

    A pod counts from its ADDED event until an event shows its container terminated (or it is deleted). One watch
    stream delivers the events in resourceVersion order, the order the API server stored the changes in: a Job
    the operator created because a slot freed up gets its pod after the freeing termination was stored, so the
    count is exact and involves no clock (the kwok pods' timestamps have 1 s resolution, and the tasks' endTime
    is when a replica saw the end — late for a replica killed meanwhile)."""

    def __init__(self, cp: ControlPlane, namespace: str, task_def: str) -> None:
        super().__init__(daemon=True)
        self.cp, self.path = cp, f"/api/v1/namespaces/{namespace}/pods"
        self.selector = f"{r.LABEL_TASK_DEF}={task_def}"
        self.running: set[str] = set()
        self.most = 0
        self.seen = 0
        self.ready = threading.Event()
        self.stopped = False
        self.connection: http.client.HTTPSConnection | None = None

    def on_event(self, event: dict[str, object]) -> None:
        pod = event.get("object")
        if not isinstance(pod, dict) or event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
            return
        name = pod["metadata"]["name"]
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        if event["type"] == "DELETED" or any("terminated" in (c.get("state") or {}) for c in statuses):
            self.running.discard(name)
        elif event["type"] == "ADDED":
            self.running.add(name)
            self.seen += 1
        self.most = max(self.most, len(self.running))

    def run(self) -> None:
        url = urllib.parse.urlparse(self.cp.server)
        context = ssl.create_default_context(cafile=str(self.cp.ca_file))
        self.connection = http.client.HTTPSConnection(url.hostname or "127.0.0.1", url.port, context=context,
                                                      timeout=600)
        query = urllib.parse.urlencode({"watch": "1", "labelSelector": self.selector})
        self.connection.request("GET", f"{self.path}?{query}", headers={"Authorization": f"Bearer {self.cp.token}"})
        response = self.connection.getresponse()
        self.ready.set()
        pending = b""
        with contextlib.suppress(OSError, http.client.HTTPException):
            while not self.stopped:
                chunk = response.read1(1 << 16)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        self.on_event(json.loads(line))

    def stop(self) -> None:
        self.stopped = True
        if self.connection is not None and self.connection.sock is not None:
            with contextlib.suppress(OSError):
                self.connection.sock.shutdown(2)


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

        limited_pods = RunningPods(control_plane, namespace, "limited")  # from before any pod exists
        limited_pods.start()
        assert limited_pods.ready.wait(30), "the pod watch did not start"
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

        cluster.wait_until(lambda: limited_pods.seen == WORKFLOWS and not limited_pods.running,
                           "the watch to see every limited pod end")
        assert limited_pods.most <= CONCURRENCY, f"{limited_pods.most} limited attempts ran at once"
        def_of = {j["metadata"]["annotations"][r.ANNOTATION_TASK_ID]: j["metadata"]["labels"][r.LABEL_TASK_DEF]
                  for j in jobs}
        dispatched = {j["metadata"]["annotations"][r.ANNOTATION_TASK_ID]:
                      int(j["metadata"]["annotations"][r.ANNOTATION_DISPATCHED_AT]) for j in jobs}
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
        if "limited_pods" in locals():
            limited_pods.stop()
        for replica in replicas:
            replica.stop()
