"""High availability: operator replicas elect a leader through a Lease; only the leader acts, a standby takes
over when the leader stops (released at once) or crashes (after the lease duration), and no attempt ever
runs twice.

Each replica is a real ``kondukt operator --lease ...`` process on the session's control plane, with kwok's
fake pods as workers. What each replica did is read from its own ``/metrics`` (every replica uses the same
credentials, so the API server cannot tell them apart): a standby reconciles nothing and creates no Job.
Every wait is bounded; nothing asserts on speed (the takeover times are logged for the closing note).
"""

from __future__ import annotations

import logging
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kondukt.kube import resources as r
from tests.e2e.controlplane import ControlPlane, free_port
from tests.e2e.test_operator_support import ECHO, Cluster, OperatorProcess, taskdef, workflow

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

logger = logging.getLogger(__name__)

LEASE = "kondukt"
#: Short enough to keep the crash test quick, long enough for a loaded 2-core machine (renew deadline
#: < duration, > 1.2 x retry: the operator refuses anything else).
CRASH_TIMING = ("--lease-duration", "6", "--lease-renew-deadline", "4", "--lease-retry-period", "1")


class Replica(OperatorProcess):
    """An operator process that elects through the test's Lease and serves /metrics on 127.0.0.1."""

    def __init__(self, control_plane: ControlPlane, namespace: str, log_dir: Path, name: str, *extra: str) -> None:
        self.metrics_port = free_port()
        super().__init__(control_plane, namespace, log_dir, "--metrics-port", str(self.metrics_port),
                         "--metrics-address", "127.0.0.1", *extra, lease=LEASE, name=name)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text) for sample in family.samples}

    def total(self, name: str, **labels: str) -> float:
        wanted = set(labels.items())
        return sum(value for (sample, sample_labels), value in self.metrics().items()
                   if sample == name and wanted <= set(sample_labels))


def lease(control_plane: ControlPlane, namespace: str) -> dict[str, Any]:
    found = control_plane.kubectl_json("-n", namespace, "get", "lease", LEASE)
    return dict(found.get("spec") or {})


def holder(control_plane: ControlPlane, namespace: str) -> str:
    proc = control_plane.kubectl("-n", namespace, "get", "lease", LEASE, "-o", "jsonpath={.spec.holderIdentity}",
                                 check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def wait_leader(cluster: Cluster, replica: OperatorProcess, timeout: float = 60) -> str:
    """Wait until ``replica`` holds the Lease; returns its identity there."""
    return str(cluster.wait_until(
        lambda: (h := holder(cluster.cp, cluster.namespace)).startswith(replica.pod_id + "_") and h,
        f"{replica.name} to hold the lease", timeout=timeout))


def steps_workflow(cluster: Cluster, name: str, steps: int) -> None:
    cluster.apply(taskdef("step", annotations={**ECHO, "kwok.kondukt.io/duration": "1s"}))
    tasks = [{"name": "step", "taskReferenceName": f"s{i}", "inputParameters": {"i": i}} for i in range(steps)]
    cluster.apply(workflow(name, definition={"name": name, "tasks": tasks}))


def assert_one_job_per_attempt(cluster: Cluster, name: str, attempts: int) -> None:
    tasks = cluster.tasks(name)
    assert len(tasks) == attempts and all(t["retryCount"] == 0 for t in tasks), tasks
    per_attempt = Counter(j["metadata"]["annotations"][r.ANNOTATION_TASK_ID] for j in cluster.jobs())
    assert len(per_attempt) == attempts and set(per_attempt.values()) == {1}, "no attempt ran twice"
    assert set(per_attempt) == {t["taskId"] for t in tasks}


def test_the_standby_takes_over_when_the_leader_stops(control_plane: ControlPlane, namespace: str,
                                                      tmp_path: Path) -> None:
    first = Replica(control_plane, namespace, tmp_path, "first")
    second = Replica(control_plane, namespace, tmp_path, "second")
    cluster = Cluster(control_plane, namespace, first)
    try:
        first.start()
        first_id = wait_leader(cluster, first)
        second.start()
        cluster.wait_until(lambda: f"stands by, {first_id} leads" in second.logs(), "the second replica to stand by")
        steps = 8
        steps_workflow(cluster, "ha", steps)
        cluster.wait_until(lambda: len(cluster.jobs()) >= 3, "the leader to run 3 steps", timeout=120)
        assert second.total("kondukt_job_creates_total") == 0, "a standby created a Job"
        assert second.total("kondukt_reconcile_duration_seconds_count") == 0, "a standby reconciled"

        stopped = time.monotonic()
        first.stop()  # SIGTERM (a rollout, a drain): it stops acting, then releases the Lease
        assert first.proc is not None and first.proc.returncode == 0, first.logs()[-3000:]
        assert "released lease" in first.logs()
        cluster.operator = second
        second_id = wait_leader(cluster, second)
        logger.warning("takeover after a clean stop: %.1fs", time.monotonic() - stopped)
        status = cluster.wait_phase("ha", timeout=180)
        assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
        assert_one_job_per_attempt(cluster, "ha", steps)

        spec = lease(control_plane, namespace)
        assert spec["holderIdentity"] == second_id and spec["leaseTransitions"] == 1  # created 0, taken once
        assert f"{second_id} leads now" in second.logs()
        assert second.total("kondukt_leader", identity=second_id) == 1
        events = [e for e in control_plane.kubectl_json("-n", namespace, "get", "events")["items"]
                  if e["involvedObject"].get("kind") == "Lease" and e["reason"] == "LeaderElection"]
        assert {e["message"] for e in events} >= {f"{first_id} became leader", f"{second_id} became leader"}
    finally:
        first.stop()
        second.stop()


def test_the_standby_takes_over_a_crashed_leader(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    first = Replica(control_plane, namespace, tmp_path, "first", *CRASH_TIMING)
    second = Replica(control_plane, namespace, tmp_path, "second", *CRASH_TIMING)
    cluster = Cluster(control_plane, namespace, first)
    try:
        first.start()
        first_id = wait_leader(cluster, first)
        second.start()
        cluster.wait_until(lambda: f"stands by, {first_id} leads" in second.logs(), "the second replica to stand by")
        steps = 6
        steps_workflow(cluster, "crash", steps)
        cluster.wait_until(lambda: len(cluster.jobs()) >= 2, "the leader to run 2 steps", timeout=120)

        killed = time.monotonic()
        first.kill()  # SIGKILL: no release; the Lease expires after its duration by the standby's clock
        assert holder(control_plane, namespace) == first_id, "a killed leader released nothing"
        cluster.operator = second
        wait_leader(cluster, second, timeout=120)
        logger.warning("takeover after a crash (lease duration 6s): %.1fs", time.monotonic() - killed)
        status = cluster.wait_phase("crash", timeout=180)
        assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
        assert_one_job_per_attempt(cluster, "crash", steps)
    finally:
        first.kill()
        second.stop()


def test_with_two_replicas_no_attempt_runs_twice(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    """Both replicas start together (they race to create the Lease) and a wide workflow runs: one replica did
    all the work — every Job, every reconcile — the other nothing, and every attempt has exactly one Job."""
    replicas = [Replica(control_plane, namespace, tmp_path, name) for name in ("left", "right")]
    cluster = Cluster(control_plane, namespace, replicas[0])
    try:
        for replica in replicas:
            replica.start()
        cluster.wait_until(lambda: holder(control_plane, namespace), "a leader")
        branches = 12
        cluster.apply(taskdef("leaf", annotations={**ECHO, "kwok.kondukt.io/duration": "1s"}))
        fork = {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN",
                "forkTasks": [[{"name": "leaf", "taskReferenceName": f"b{i}", "inputParameters": {"i": i}}]
                              for i in range(branches)]}
        join = {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": [f"b{i}" for i in range(branches)]}
        tail = {"name": "leaf", "taskReferenceName": "after", "inputParameters": {"i": -1}}
        cluster.apply(workflow("wide", definition={"name": "wide", "tasks": [fork, join, tail]}))
        status = cluster.wait_phase("wide", timeout=180)
        assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")

        leader_id = holder(control_plane, namespace)
        leader = next(rep for rep in replicas if leader_id.startswith(rep.pod_id + "_"))
        standby = next(rep for rep in replicas if rep is not leader)
        jobs = cluster.jobs()
        per_attempt = Counter(j["metadata"]["annotations"][r.ANNOTATION_TASK_ID] for j in jobs)
        simple = [t for t in cluster.tasks("wide") if t["taskType"] == "leaf"]
        assert len(simple) == branches + 1 and all(t["retryCount"] == 0 for t in simple)
        assert set(per_attempt) == {t["taskId"] for t in simple} and set(per_attempt.values()) == {1}
        assert leader.total("kondukt_job_creates_total", result="created") == len(jobs)
        assert standby.total("kondukt_job_creates_total") == 0, "the standby created (or tried) a Job"
        assert standby.total("kondukt_reconcile_duration_seconds_count") == 0, "the standby reconciled"
        assert leader.total("kondukt_leader") == 1 and standby.total("kondukt_leader") == 0
        assert leader.total("kondukt_leaderships_total") == 1 and standby.total("kondukt_leaderships_total") == 0
    finally:
        for replica in replicas:
            replica.stop()
