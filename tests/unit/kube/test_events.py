"""Which task transitions become Events (docs/operations.md, "Events"): trouble and retries, not routine."""

from __future__ import annotations

import pytest

from kondukt.engine.decision import TaskTransition
from kondukt.engine.models import TaskStatus
from kondukt.kube.events import describe_transition


def transition(before: TaskStatus | None, after: TaskStatus, reason: str | None = None) -> TaskTransition:
    return TaskTransition(taskId="t1", referenceTaskName="resize", taskType="image_convert_resize",
                          fromStatus=before, toStatus=after, reason=reason)


@pytest.mark.parametrize(("before", "after", "retry_count"), [
    pytest.param(None, TaskStatus.SCHEDULED, 0, id="first-attempt-scheduled"),
    pytest.param(TaskStatus.SCHEDULED, TaskStatus.IN_PROGRESS, 0, id="started"),
    pytest.param(TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED, 0, id="completed"),
    pytest.param(TaskStatus.SCHEDULED, TaskStatus.COMPLETED, 2, id="a-retry-completed"),
    pytest.param(None, TaskStatus.IN_PROGRESS, 0, id="a-system-task-started"),
])
def test_routine_progress_posts_no_event(before: TaskStatus | None, after: TaskStatus, retry_count: int) -> None:
    assert describe_transition(transition(before, after), retry_count) is None


@pytest.mark.parametrize(("before", "after", "retry_count", "expected"), [
    pytest.param(TaskStatus.IN_PROGRESS, TaskStatus.FAILED, 0, ("Warning", "TaskFailed"), id="failed"),
    pytest.param(TaskStatus.IN_PROGRESS, TaskStatus.FAILED_WITH_TERMINAL_ERROR, 0,
                 ("Warning", "TaskFailedWithTerminalError"), id="terminal-error"),
    pytest.param(TaskStatus.SCHEDULED, TaskStatus.TIMED_OUT, 0, ("Warning", "TaskTimedOut"), id="timed-out"),
    pytest.param(None, TaskStatus.SCHEDULED, 1, ("Normal", "TaskRetried"), id="retry-scheduled"),
    pytest.param(TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED_WITH_ERRORS, 0, ("Normal", "TaskCompletedWithErrors"),
                 id="optional-task-failed"),
    pytest.param(TaskStatus.IN_PROGRESS, TaskStatus.CANCELED, 0, ("Normal", "TaskCanceled"), id="canceled"),
    pytest.param(TaskStatus.SCHEDULED, TaskStatus.SKIPPED, 0, ("Normal", "TaskSkipped"), id="skipped"),
])
def test_trouble_and_retries_post_an_event(before: TaskStatus | None, after: TaskStatus, retry_count: int,
                                           expected: tuple[str, str]) -> None:
    described = describe_transition(transition(before, after, reason="exit code 2: boom"), retry_count)
    assert described is not None and described[:2] == expected
    assert described[2].startswith("resize (image_convert_resize): ")


def test_a_failure_event_says_why_and_a_retry_which_attempt() -> None:
    failed = describe_transition(transition(TaskStatus.IN_PROGRESS, TaskStatus.FAILED, reason="exit code 2: boom"))
    assert failed == ("Warning", "TaskFailed", "resize (image_convert_resize): IN_PROGRESS -> FAILED: exit code 2: boom")
    retried = describe_transition(transition(None, TaskStatus.SCHEDULED), 3)
    assert retried == ("Normal", "TaskRetried", "resize (image_convert_resize): retry 3 scheduled")
