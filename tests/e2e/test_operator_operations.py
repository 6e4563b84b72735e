"""Operations on running workflows: pause and resume (spec.suspend), terminate (spec.terminate), and the
requests the CLI writes as ``ops.kondukt.io/<op>`` annotations (retry, complete), each applied once.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.test_operator_support import (  # noqa: F401 (fixtures)
    ECHO,
    Cluster,
    cluster_fixture,
    operator_fixture,
    taskdef,
    workflow,
)

pytestmark = pytest.mark.e2e


def chain(name: str, steps: int) -> dict[str, Any]:
    return {"name": "chain", "tasks": [{"name": name, "taskReferenceName": f"step_{i}", "inputParameters": {"i": i}}
                                       for i in range(steps)]}


def running_pods(cluster: Cluster) -> list[dict[str, Any]]:
    return [p for p in cluster.list("pods", "v1") if p.get("status", {}).get("phase") == "Running"]


def test_pause_lets_running_attempts_finish_and_starts_nothing_new(cluster: Cluster) -> None:
    cluster.apply(taskdef("step", annotations={**ECHO, "kwok.kondukt.io/duration": "2s"}))
    cluster.apply(workflow("paused", definition=chain("step", 3)))
    cluster.wait_until(lambda: cluster.jobs(), "the first Job")
    cluster.patch_workflow("paused", {"spec": {"suspend": True}})
    status = cluster.wait_phase("paused", {"PAUSED"}, timeout=30)
    assert {c["type"]: c["status"] for c in status["conditions"]}["Suspended"] == "True"
    cluster.wait_until(lambda: cluster.tasks("paused")[0]["status"] == "COMPLETED", "the running attempt to finish")
    time.sleep(3)  # a paused workflow must not start the next step; give it the chance to do it wrongly
    assert len(cluster.jobs()) == 1 and cluster.status("paused")["phase"] == "PAUSED"
    cluster.patch_workflow("paused", {"spec": {"suspend": False}})
    status = cluster.wait_phase("paused", timeout=60)
    assert status["phase"] == "COMPLETED"
    assert [t["status"] for t in cluster.tasks("paused")] == ["COMPLETED"] * 3
    reasons = [e["reason"] for e in cluster.events("paused")]
    assert "WorkflowPaused" in reasons


def test_terminate_deletes_running_jobs(cluster: Cluster) -> None:
    cluster.apply(taskdef("long", annotations={"kwok.kondukt.io/duration": "120s"}))
    parallel = {"name": "par", "tasks": [
        {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN",
         "forkTasks": [[{"name": "long", "taskReferenceName": "a"}], [{"name": "long", "taskReferenceName": "b"}]]},
        {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": ["a", "b"]}]}
    cluster.apply(workflow("terminated", definition=parallel))
    cluster.wait_until(lambda: len(running_pods(cluster)) == 2, "both attempts running")
    cluster.patch_workflow("terminated", {"spec": {"terminate": {"reason": "no longer needed"}}})
    status = cluster.wait_phase("terminated", timeout=30)
    assert status["phase"] == "TERMINATED" and status["reasonForIncompletion"] == "no longer needed"
    cluster.wait_until(lambda: not cluster.jobs(), "the running Jobs to be deleted", timeout=30)
    statuses = {t["referenceTaskName"]: t["status"] for t in cluster.tasks("terminated")}
    assert statuses["a"] == statuses["b"] == "CANCELED"


def test_retry_after_a_failure_runs_the_failed_task_again(cluster: Cluster) -> None:
    cluster.apply(taskdef("echo"), taskdef("fragile", annotations={"kwok.kondukt.io/fail": "true"}))
    definition = {"name": "retryable", "tasks": [
        {"name": "echo", "taskReferenceName": "before", "inputParameters": {"v": 1}},
        {"name": "fragile", "taskReferenceName": "fragile", "inputParameters": {"v": "${before.output.v}"}}]}
    cluster.apply(workflow("retried", definition=definition))
    assert cluster.wait_phase("retried")["phase"] == "FAILED"
    cluster.apply(taskdef("fragile"))  # the cause is fixed: attempts of this TaskDef now succeed
    nonce = cluster.request_operation("retried", "retry")
    status = cluster.wait_phase("retried", {"COMPLETED"}, timeout=60)
    assert nonce in status["appliedOperations"]
    tasks = cluster.tasks("retried")
    assert [(t["referenceTaskName"], t["status"]) for t in tasks] == [
        ("before", "COMPLETED"), ("fragile", "FAILED"), ("fragile", "COMPLETED")]
    assert tasks[2]["outputData"] == {"v": 1}
    time.sleep(2)  # the annotation stays; it must not apply a second time
    assert len(cluster.tasks("retried")) == 3 and len(cluster.jobs()) == 3


def test_complete_a_human_task(cluster: Cluster) -> None:
    definition = {"name": "approval", "tasks": [{"name": "approve", "taskReferenceName": "approve", "type": "HUMAN"}],
                  "outputParameters": {"approved": "${approve.output.approved}"}}
    cluster.apply(workflow("human", definition=definition))
    cluster.wait_until(lambda: cluster.status("human").get("tasks"), "the HUMAN task to be scheduled")
    assert cluster.status("human")["phase"] == "RUNNING"
    cluster.request_operation("human", "complete", taskReferenceName="approve", status="COMPLETED",
                              outputData={"approved": True})
    status = cluster.wait_phase("human", timeout=30)
    assert status["phase"] == "COMPLETED" and status["output"] == {"approved": True}
