"""Conductor's policies on Kubernetes: retries with delays, every timeout policy, and concurrency and
rate limits that hold across workflows of a namespace. kwok's fake pods fail or run long on request.

Times are read from what the operator recorded (task times in status, the ``dispatched-at-ms``
annotation of each Job): assertions are about order and lower bounds, never about speed.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from kondukt.kube import resources as r
from tests.e2e.test_operator_support import (  # noqa: F401 (fixtures)
    Cluster,
    cluster_fixture,
    operator_fixture,
    taskdef,
    workflow,
)

pytestmark = pytest.mark.e2e


def chain(*names: str, **definition: Any) -> dict[str, Any]:
    return {"name": "chain", "tasks": [{"name": n, "taskReferenceName": f"{n}_{i}", "inputParameters": {"i": i}}
                                       for i, n in enumerate(names)], **definition}


def fork(name: str, branches: int) -> dict[str, Any]:
    refs = [f"{name}_b{i}" for i in range(branches)]
    return {"name": "fan", "tasks": [
        {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN",
         "forkTasks": [[{"name": name, "taskReferenceName": ref, "inputParameters": {"ref": ref}}] for ref in refs]},
        {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": refs},
    ]}


def dispatches(cluster: Cluster) -> list[tuple[int, str]]:
    """(dispatch time in ms, task id) of every Job, in dispatch order."""
    return sorted((int(j["metadata"]["annotations"][r.ANNOTATION_DISPATCHED_AT]),
                   j["metadata"]["annotations"][r.ANNOTATION_TASK_ID]) for j in cluster.jobs())


def test_failed_attempts_are_retried_after_their_delay(cluster: Cluster) -> None:
    failing = {"kwok.kondukt.io/fail": "true", "kwok.kondukt.io/exit-code": "3",
               "kwok.kondukt.io/termination-message": "disk full"}
    cluster.apply(taskdef("flaky", annotations=failing, retryCount=2, retryDelaySeconds=2))
    cluster.apply(workflow("retries", definition=chain("flaky")))
    status = cluster.wait_phase("retries")
    assert status["phase"] == "FAILED"
    tasks = cluster.tasks("retries")
    assert [t["retryCount"] for t in tasks] == [0, 1, 2]
    assert all(t["status"] == "FAILED" for t in tasks)
    assert "code 3" in tasks[0]["reasonForIncompletion"] and "disk full" in tasks[0]["reasonForIncompletion"]
    by_id = {task_id: at for at, task_id in dispatches(cluster)}
    for failed, retry in itertools.pairwise(tasks):
        assert by_id[retry["taskId"]] - failed["endTime"] >= 2000, "a retry starts only after retryDelaySeconds"
    assert len(cluster.jobs()) == 3, "one Job per attempt"


def test_exponential_backoff_doubles_the_delay(cluster: Cluster) -> None:
    cluster.apply(taskdef("flaky", annotations={"kwok.kondukt.io/fail": "true"}, retryCount=2, retryDelaySeconds=1,
                          retryLogic="EXPONENTIAL_BACKOFF"))
    cluster.apply(workflow("backoff", definition=chain("flaky")))
    cluster.wait_phase("backoff")
    tasks = cluster.tasks("backoff")
    by_id = {task_id: at for at, task_id in dispatches(cluster)}
    assert by_id[tasks[1]["taskId"]] - tasks[0]["endTime"] >= 1000
    assert by_id[tasks[2]["taskId"]] - tasks[1]["endTime"] >= 2000


def test_time_out_wf_times_the_workflow_out_and_stops_the_job(cluster: Cluster) -> None:
    cluster.apply(taskdef("slow", annotations={"kwok.kondukt.io/duration": "60s"}, timeoutSeconds=2,
                          responseTimeoutSeconds=2, timeoutPolicy="TIME_OUT_WF"))
    cluster.apply(workflow("timeout-wf", definition=chain("slow")))
    status = cluster.wait_phase("timeout-wf")
    assert status["phase"] == "TIMED_OUT"
    task = cluster.tasks("timeout-wf")[0]
    assert task["status"] == "TIMED_OUT" and task["reasonForIncompletion"]
    job = cluster.jobs()
    assert not job or job[0]["spec"]["activeDeadlineSeconds"] == 2


def test_retry_policy_retries_timeouts_then_times_the_workflow_out(cluster: Cluster) -> None:
    cluster.apply(taskdef("slow", annotations={"kwok.kondukt.io/duration": "60s"}, timeoutSeconds=2,
                          responseTimeoutSeconds=2, timeoutPolicy="RETRY", retryCount=1))
    cluster.apply(workflow("timeout-retry", definition=chain("slow")))
    status = cluster.wait_phase("timeout-retry")
    assert status["phase"] == "TIMED_OUT"
    assert [(t["status"], t["retryCount"]) for t in cluster.tasks("timeout-retry")] == [("TIMED_OUT", 0),
                                                                                         ("TIMED_OUT", 1)]


def test_alert_only_lets_the_attempt_finish(cluster: Cluster) -> None:
    cluster.apply(taskdef("slow", annotations={"kwok.kondukt.io/duration": "3s", "kwok.kondukt.io/echo-input": "true"},
                          timeoutSeconds=1, responseTimeoutSeconds=1, timeoutPolicy="ALERT_ONLY"))
    cluster.apply(workflow("timeout-alert", definition=chain("slow")))
    status = cluster.wait_phase("timeout-alert")
    assert status["phase"] == "COMPLETED"
    assert "activeDeadlineSeconds" not in cluster.jobs()[0]["spec"]
    task = cluster.tasks("timeout-alert")[0]
    assert task["status"] == "COMPLETED" and task["endTime"] - task["startTime"] >= 1000


def test_workflow_timeout_cancels_running_jobs(cluster: Cluster) -> None:
    cluster.apply(taskdef("slow", annotations={"kwok.kondukt.io/duration": "60s"}))
    cluster.apply(workflow("wf-timeout", definition=chain("slow", timeoutSeconds=2, timeoutPolicy="TIME_OUT_WF")))
    status = cluster.wait_phase("wf-timeout")
    assert status["phase"] == "TIMED_OUT"
    assert cluster.tasks("wf-timeout")[0]["status"] == "CANCELED"
    cluster.wait_until(lambda: not cluster.jobs(), "the canceled attempt's Job to be deleted")


def test_poll_timeout_catches_pods_that_never_start(cluster: Cluster) -> None:
    unschedulable = taskdef("stuck", pollTimeoutSeconds=2, timeoutPolicy="TIME_OUT_WF")
    unschedulable["spec"]["template"]["nodeSelector"] = {"kondukt.test/no-such-node": "true"}
    cluster.apply(unschedulable)
    cluster.apply(workflow("poll-timeout", definition=chain("stuck")))
    status = cluster.wait_phase("poll-timeout")
    assert status["phase"] == "TIMED_OUT"
    assert "pollTimeoutSeconds" in cluster.tasks("poll-timeout")[0]["reasonForIncompletion"]


def test_concurrency_limit_holds_across_two_workflows(cluster: Cluster) -> None:
    cluster.apply(taskdef("limited", annotations={"kwok.kondukt.io/duration": "1s"}, concurrentExecLimit=1))
    cluster.apply(workflow("first", definition=fork("limited", 2)), workflow("second", definition=fork("limited", 2)))
    for name in ("first", "second"):
        assert cluster.wait_phase(name, timeout=120)["phase"] == "COMPLETED"
    ended = {t["taskId"]: t["endTime"] for name in ("first", "second") for t in cluster.tasks(name)}
    order = dispatches(cluster)
    assert len(order) == 4
    for (_, previous), (started, _) in itertools.pairwise(order):
        assert started >= ended[previous], "an attempt started while another one was still running"


def test_rate_limit_holds_across_two_workflows(cluster: Cluster) -> None:
    cluster.apply(taskdef("metered", rateLimitPerFrequency=2, rateLimitFrequencyInSeconds=3))
    cluster.apply(workflow("first", definition=fork("metered", 3)), workflow("second", definition=fork("metered", 3)))
    for name in ("first", "second"):
        assert cluster.wait_phase(name, timeout=120)["phase"] == "COMPLETED"
    times = [at for at, _ in dispatches(cluster)]
    assert len(times) == 6
    for index in range(len(times) - 2):
        assert times[index + 2] - times[index] >= 3000, f"3 starts within one 3 s window: {times}"
