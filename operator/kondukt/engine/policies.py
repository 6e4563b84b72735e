"""Conductor's retry and timeout policies as small pure functions of a TaskDef and an attempt.

Retry delays (n = the failed attempt's retryCount):
- FIXED: retryDelaySeconds
- LINEAR_BACKOFF: retryDelaySeconds x backoffScaleFactor x (n + 1)
- EXPONENTIAL_BACKOFF: retryDelaySeconds x 2^n
Linear and exponential delays are capped by maxRetryDelaySeconds when it is set (> 0).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kondukt.engine.models import RetryLogic, Task, TaskDef, TaskStatus, TimeoutPolicy, WorkflowTask

#: What a system task without a TaskDef gets: no retries, no timeouts (Conductor's defaults for them).
SYSTEM_TASK_DEF = TaskDef(name="__system__", retryCount=0, retryDelaySeconds=0, responseTimeoutSeconds=0)

_MAX_EXPONENT = 32


def retry_delay_seconds(task_def: TaskDef, failed_retry_count: int) -> int:
    n = max(0, failed_retry_count)
    base = task_def.retryDelaySeconds
    if task_def.retryLogic is RetryLogic.FIXED:
        return base
    if task_def.retryLogic is RetryLogic.LINEAR_BACKOFF:
        delay = base * task_def.backoffScaleFactor * (n + 1)
    else:
        delay = base * (2 ** min(n, _MAX_EXPONENT))
    cap = task_def.maxRetryDelaySeconds
    return min(delay, cap) if cap else delay


def allowed_retries(task_def: TaskDef, workflow_task: WorkflowTask | None) -> int:
    """A task-level ``retryCount`` overrides the TaskDef's."""
    if workflow_task is not None and workflow_task.retryCount is not None:
        return workflow_task.retryCount
    return task_def.retryCount


class DeadlineKind(enum.StrEnum):
    """Why an attempt has a deadline: what happens to it then."""

    TIMEOUT = "timeout"  # timeoutSeconds since it started: TIMED_OUT
    POLL = "poll"  # pollTimeoutSeconds since it was handed out without starting: TIMED_OUT
    RESPONSE = "response"  # responseTimeoutSeconds since its last heartbeat: TIMED_OUT (retried whatever the policy)
    WAIT = "wait"  # a WAIT's duration / until: COMPLETED


@dataclass(frozen=True, slots=True)
class Deadline:
    at: int  # ms
    kind: DeadlineKind


def deadlines_of(task: Task, task_def: TaskDef, wait_until: int | None = None) -> list[Deadline]:
    """Every instant at which something must happen to this attempt if nothing else does first."""
    out: list[Deadline] = []
    if task.status is TaskStatus.IN_PROGRESS:
        if wait_until is not None:
            out.append(Deadline(wait_until, DeadlineKind.WAIT))
        if task_def.timeoutSeconds > 0 and task_def.timeoutPolicy is not TimeoutPolicy.ALERT_ONLY and task.startTime:
            out.append(Deadline(task.startTime + task_def.timeoutSeconds * 1000, DeadlineKind.TIMEOUT))
        if task.heartbeat and task_def.responseTimeoutSeconds > 0:
            out.append(Deadline(task.updateTime + task_def.responseTimeoutSeconds * 1000, DeadlineKind.RESPONSE))
    elif task.status is TaskStatus.SCHEDULED and task.dispatched and task_def.pollTimeoutSeconds \
            and task_def.timeoutPolicy is not TimeoutPolicy.ALERT_ONLY:
        # Conductor's poll timeout follows the timeout policy: ALERT_ONLY only alerts.
        out.append(Deadline(task.updateTime + task_def.pollTimeoutSeconds * 1000, DeadlineKind.POLL))
    return out
