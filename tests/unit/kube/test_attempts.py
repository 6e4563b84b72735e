"""What a Job, its pod or a child Workflow says about an attempt (the worker protocol's Kubernetes side)."""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine.models import Task, TaskStatus
from kondukt.kube import attempts
from kondukt.kube.cache import ChildRecord, JobRecord, PodRecord


def pod(**overrides: Any) -> PodRecord:
    values: dict[str, Any] = dict(name="p", namespace="ns", job_name="j", workflow_name="wf", workflow_uid="u",
                                  task_id="t1", phase="Succeeded", started=True, terminated=True, exit_code=0,
                                  termination_reason="Completed", message=None)
    values.update(overrides)
    return PodRecord(**values)


def job(**overrides: Any) -> JobRecord:
    values: dict[str, Any] = dict(name="j", namespace="ns", workflow_name="wf", workflow_uid="u", task_id="t1",
                                  task_def="echo", dispatched_at_ms=1000)
    values.update(overrides)
    return JobRecord(**values)


def task(**overrides: Any) -> Task:
    values: dict[str, Any] = dict(taskId="t1", taskType="echo", referenceTaskName="r", taskDefName="echo",
                                  status=TaskStatus.SCHEDULED, dispatched=True, scheduledTime=1000, updateTime=1000)
    values.update(overrides)
    return Task(**values)


@pytest.mark.parametrize(
    ("exit_code", "message", "status", "output", "reason_part"),
    [
        pytest.param(0, None, TaskStatus.COMPLETED, {}, None, id="exit-0-nothing-written"),
        pytest.param(0, '{"outputData": {"a": 1}}', TaskStatus.COMPLETED, {"a": 1}, None, id="exit-0-output"),
        pytest.param(0, '{"status": "FAILED", "reasonForIncompletion": "bad"}', TaskStatus.FAILED, {}, "bad",
                     id="worker-reports-failed"),
        pytest.param(0, '{"status": "FAILED_WITH_TERMINAL_ERROR", "reasonForIncompletion": "not an image"}',
                     TaskStatus.FAILED_WITH_TERMINAL_ERROR, {}, "not an image", id="terminal-error"),
        pytest.param(3, "Traceback...\nValueError: boom", TaskStatus.FAILED, None, "code 3", id="crash-log-tail"),
        pytest.param(1, '{"outputData": {"partial": true}}', TaskStatus.FAILED, {"partial": True}, "code 1",
                     id="nonzero-exit-overrides-completed"),
        pytest.param(1, '{"status": "FAILED_WITH_TERMINAL_ERROR", "reasonForIncompletion": "r"}',
                     TaskStatus.FAILED_WITH_TERMINAL_ERROR, {}, "r", id="nonzero-exit-keeps-terminal"),
        pytest.param(0, "hello world", TaskStatus.FAILED_WITH_TERMINAL_ERROR, None, "not a JSON object",
                     id="exit-0-not-json"),
        pytest.param(0, '{"status": "DONE"}', TaskStatus.FAILED_WITH_TERMINAL_ERROR, None, "'DONE'",
                     id="unknown-status"),
        pytest.param(0, '{"outputData": [1, 2]}', TaskStatus.FAILED_WITH_TERMINAL_ERROR, None, "list",
                     id="output-not-an-object"),
    ],
)
def test_termination_messages(exit_code: int, message: str | None, status: TaskStatus,
                              output: dict[str, Any] | None, reason_part: str | None) -> None:
    result = attempts.parse_termination("t1", pod(exit_code=exit_code, message=message))
    assert result.update.status is status
    if output is not None:
        assert result.update.outputData == output
    if reason_part is None:
        assert result.update.reasonForIncompletion is None
    else:
        assert reason_part in (result.update.reasonForIncompletion or "")


def test_offloaded_result_is_returned_for_fetching() -> None:
    result = attempts.parse_termination(
        "t1", pod(message='{"externalOutputPayloadStoragePath": "s3://b/out.json", "status": "COMPLETED"}'))
    assert result.external_output == "s3://b/out.json"
    assert result.update.status is TaskStatus.COMPLETED


def test_long_crash_logs_keep_their_end() -> None:
    result = attempts.parse_termination("t1", pod(exit_code=1, message="x" * 5000 + "THE END"))
    reason = result.update.reasonForIncompletion or ""
    assert reason.endswith("THE END") and len(reason) <= attempts.MAX_REASON


def test_deadline_exceeded_is_a_timeout() -> None:
    update = attempts.job_failure("t1", job(failed=True, failure_reason="DeadlineExceeded"), 30)
    assert update.status is TaskStatus.TIMED_OUT and "30 s" in (update.reasonForIncompletion or "")
    other = attempts.job_failure("t1", job(failed=True, failure_reason="PodFailurePolicy", failure_message="m"))
    assert other.status is TaskStatus.FAILED and "PodFailurePolicy" in (other.reasonForIncompletion or "")


def test_running_pod_starts_a_scheduled_attempt_once() -> None:
    running = pod(phase="Running", terminated=False, exit_code=None)
    seen = attempts.observe_job_attempt(task(), job(), [running], now_ms=2000)
    assert seen.result is not None and seen.result.update.started
    again = attempts.observe_job_attempt(task(status=TaskStatus.IN_PROGRESS), job(), [running], now_ms=2000)
    assert again.result is None


def test_a_pending_pod_says_nothing() -> None:
    pending = pod(phase="Pending", started=False, terminated=False, exit_code=None, waiting_reason="ImagePullBackOff")
    assert attempts.observe_job_attempt(task(), job(), [pending], now_ms=2000) == attempts.JobObservation()


def test_terminated_pod_wins_over_the_job_condition() -> None:
    seen = attempts.observe_job_attempt(task(), job(failed=True, failure_reason="DeadlineExceeded"),
                                        [pod(message='{"outputData": {"x": 1}}')], now_ms=2000)
    assert seen.result is not None and seen.result.update.status is TaskStatus.COMPLETED


def test_a_missing_job_is_only_suspicious_after_the_grace_period() -> None:
    assert not attempts.observe_job_attempt(task(), None, [], now_ms=1000 + 5_000, grace_ms=30_000).missing
    assert attempts.observe_job_attempt(task(), None, [], now_ms=1000 + 31_000, grace_ms=30_000).missing
    assert "disappeared" in (attempts.job_missing(task(), "j").reasonForIncompletion or "")


def test_a_succeeded_job_without_its_pod_never_invents_an_output() -> None:
    seen = attempts.observe_job_attempt(task(status=TaskStatus.IN_PROGRESS), job(succeeded=True), [],
                                        now_ms=1000 + 60_000, grace_ms=30_000)
    assert seen.result is not None and seen.result.update.status is TaskStatus.FAILED


def child(phase: str | None, **overrides: Any) -> ChildRecord:
    values: dict[str, Any] = dict(name="c", namespace="ns", uid="child-uid", parent_uid="u", parent_name="wf",
                                  parent_task_id="t1", phase=phase, output={"o": 1}, reason="why")
    values.update(overrides)
    return ChildRecord(**values)


@pytest.mark.parametrize(
    ("phase", "status"),
    [("COMPLETED", TaskStatus.COMPLETED), ("FAILED", TaskStatus.FAILED), ("TIMED_OUT", TaskStatus.TIMED_OUT),
     ("TERMINATED", TaskStatus.CANCELED)],
)
def test_child_workflow_outcomes_map_like_conductors_sub_workflow(phase: str, status: TaskStatus) -> None:
    update = attempts.observe_child(task(taskType="SUB_WORKFLOW", status=TaskStatus.IN_PROGRESS), child(phase))
    assert update is not None and update.status is status
    assert update.outputData == {"subWorkflowId": "child-uid", "o": 1}
    assert (update.reasonForIncompletion is None) == status.successful


def test_running_child_reports_its_id_once() -> None:
    running = task(taskType="SUB_WORKFLOW", status=TaskStatus.IN_PROGRESS)
    first = attempts.observe_child(running, child("RUNNING"))
    assert first is not None and first.subWorkflowId == "child-uid" and first.status is None
    assert attempts.observe_child(running.model_copy(update={"subWorkflowId": "child-uid"}), child("RUNNING")) is None


@pytest.mark.parametrize(
    ("task_type", "is_job"),
    [("image_convert_resize", True), ("SIMPLE", True), ("HTTP", False), ("SUB_WORKFLOW", False), ("FORK", False),
     ("JOIN", False), ("START_WORKFLOW", False)],
)
def test_which_attempts_are_jobs(task_type: str, is_job: bool) -> None:
    assert attempts.runs_as_job(task(taskType=task_type)) is is_job
