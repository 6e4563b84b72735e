"""What the cluster says about a workflow's running attempts, as the engine's ``TaskUpdate`` observations.

For every attempt the engine has handed out and not yet seen finish, the reconcile asks this module
what its Job, its pod or its child Workflow says. The mapping (docs/architecture.md, docs/worker-protocol.md):

- pod container running (or already terminated)  -> ``started`` (SCHEDULED -> IN_PROGRESS);
- pod terminated: the termination message is the worker protocol's result JSON. Exit code 0 and no
  ``status`` -> COMPLETED; a non-zero exit -> FAILED (or the FAILED_WITH_TERMINAL_ERROR the worker
  wrote), with the message — which Kubernetes fills with the log tail when the worker wrote nothing
  (``FallbackToLogsOnError``) — as the reason; ``externalOutputPayloadStoragePath`` is returned for the
  caller to fetch (I/O is not done here);
- Job ``Failed`` without a pod result: ``DeadlineExceeded`` -> TIMED_OUT, anything else -> FAILED with
  the Job's reason and message;
- Job gone while the attempt was still running, after a grace period -> FAILED "job disappeared";
- child Workflow terminal -> COMPLETED / FAILED / TIMED_OUT / CANCELED (TERMINATED), as Conductor's
  SubWorkflow task maps them, with the child's output.

Pure functions of records: no API calls, no clock (``now_ms`` is an argument).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from kondukt.engine.decision import TaskUpdate
from kondukt.engine.models import FORK_TASK_TYPE, Task, TaskStatus, TaskType
from kondukt.kube.cache import ChildRecord, JobRecord, PodRecord
from kondukt.limits import is_sub_workflow_depth_reason

#: An attempt whose Job cannot be found this long after it was dispatched has disappeared (someone
#: deleted it, or it was garbage-collected before its result was recorded).
JOB_MISSING_GRACE_MS: Final = 30_000
MAX_REASON: Final = 1000

OUTPUT_POINTER: Final = "externalOutputPayloadStoragePath"
_WORKER_STATUSES = {s.value: s for s in (TaskStatus.COMPLETED, TaskStatus.FAILED,
                                         TaskStatus.FAILED_WITH_TERMINAL_ERROR)}

#: Task types the engine runs itself; every other driver-run type is a Job (SIMPLE: taskType = def name).
_ENGINE_OR_SPECIAL = frozenset({t.value for t in TaskType} - {TaskType.SIMPLE.value}) | {FORK_TASK_TYPE}


def runs_as_job(task: Task) -> bool:
    """Whether the attempt is a Job (a SIMPLE task; its taskType is its TaskDef's name)."""
    return task.taskType == TaskType.SIMPLE.value or task.taskType not in _ENGINE_OR_SPECIAL


def _short(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_REASON else "…" + text[-(MAX_REASON - 1):]


@dataclass(frozen=True)
class AttemptResult:
    """A finished attempt's result; ``external_output`` names a payload the caller must fetch."""

    update: TaskUpdate
    external_output: str | None = None


def parse_termination(task_id: str, pod: PodRecord, at_ms: int | None = None) -> AttemptResult:
    """The result of a terminated pod under the worker protocol (docs/worker-protocol.md)."""
    code = pod.exit_code or 0
    text = (pod.message or "").strip()
    document: Mapping[str, Any] | None = None
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, Mapping):
            document = parsed
    if document is None:
        if code == 0 and not text:
            return AttemptResult(TaskUpdate(taskId=task_id, status=TaskStatus.COMPLETED, outputData={}, at=at_ms))
        if code == 0:
            return AttemptResult(TaskUpdate(
                taskId=task_id, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR, at=at_ms,
                reasonForIncompletion=_short(
                    f"the worker exited 0 but its result file (KONDUKT_OUTPUT_FILE) is not a JSON object: {text}"
                ),
            ))
        why = pod.termination_reason or "Error"
        detail = f": {text}" if text else ""
        return AttemptResult(TaskUpdate(
            taskId=task_id, status=TaskStatus.FAILED, at=at_ms,
            reasonForIncompletion=_short(f"the worker exited with code {code} ({why}){detail}"),
        ))
    raw_status = document.get("status")
    status = _WORKER_STATUSES.get(str(raw_status)) if raw_status is not None else None
    reason = document.get("reasonForIncompletion")
    output = document.get("outputData")
    if raw_status is not None and status is None:
        return AttemptResult(TaskUpdate(
            taskId=task_id, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR, at=at_ms,
            reasonForIncompletion=f"the worker reported status {raw_status!r}; the worker protocol allows "
            "COMPLETED, FAILED and FAILED_WITH_TERMINAL_ERROR",
        ))
    if output is not None and not isinstance(output, Mapping):
        return AttemptResult(TaskUpdate(
            taskId=task_id, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR, at=at_ms,
            reasonForIncompletion=f"the worker's outputData is a {type(output).__name__}, not a JSON object",
        ))
    if code != 0 and (status is None or status is TaskStatus.COMPLETED):
        status = TaskStatus.FAILED
        reason = reason or f"the worker exited with code {code} ({pod.termination_reason or 'Error'})"
    final = status or TaskStatus.COMPLETED
    pointer = document.get(OUTPUT_POINTER)
    update = TaskUpdate(
        taskId=task_id,
        status=final,
        outputData=dict(output) if isinstance(output, Mapping) else {},
        reasonForIncompletion=_short(str(reason)) if reason and not final.successful else None,
        at=at_ms,
    )
    return AttemptResult(update, external_output=str(pointer) if isinstance(pointer, str) and pointer else None)


def job_failure(task_id: str, job: JobRecord, timeout_seconds: int | None = None) -> TaskUpdate:
    """A Job that failed without a pod result (deadline, deleted pod, admission problems...)."""
    if job.failure_reason == "DeadlineExceeded":
        limit = f" ({timeout_seconds} s)" if timeout_seconds else ""
        return TaskUpdate(
            taskId=task_id, status=TaskStatus.TIMED_OUT,
            reasonForIncompletion=f"the attempt's Job {job.name} exceeded its activeDeadlineSeconds{limit}",
        )
    why = job.failure_reason or "Failed"
    detail = f": {job.failure_message}" if job.failure_message else ""
    return TaskUpdate(taskId=task_id, status=TaskStatus.FAILED,
                      reasonForIncompletion=_short(f"the attempt's Job {job.name} failed ({why}){detail}"))


@dataclass(frozen=True)
class JobObservation:
    """What the reconcile learned about one Job-backed attempt."""

    result: AttemptResult | None = None
    missing: bool = False  # no Job for longer than the grace period: confirm with the API, then fail


def observe_job_attempt(
    task: Task,
    job: JobRecord | None,
    pods: Iterable[PodRecord],
    now_ms: int,
    timeout_seconds: int | None = None,
    grace_ms: int = JOB_MISSING_GRACE_MS,
) -> JobObservation:
    """News about one dispatched, unfinished SIMPLE attempt, from its Job and pods."""
    pod_list = sorted(pods, key=lambda p: (p.terminated, p.started), reverse=True)
    finished = next((p for p in pod_list if p.terminated), None)
    if finished is not None:
        return JobObservation(parse_termination(task.taskId, finished))
    if job is not None and job.failed:
        return JobObservation(AttemptResult(job_failure(task.taskId, job, timeout_seconds)))
    if job is None:
        dispatched = task.updateTime or task.scheduledTime
        if now_ms - dispatched > grace_ms:
            return JobObservation(missing=True)
        return JobObservation()
    if task.status is TaskStatus.SCHEDULED and any(p.started for p in pod_list):
        return JobObservation(AttemptResult(TaskUpdate(taskId=task.taskId, started=True)))
    if job.succeeded and not pod_list:
        # The Job says Complete but its pod (and with it the result) is gone: never invent an output.
        dispatched = task.updateTime or task.scheduledTime
        if now_ms - dispatched > grace_ms:
            return JobObservation(AttemptResult(TaskUpdate(
                taskId=task.taskId, status=TaskStatus.FAILED,
                reasonForIncompletion=f"the attempt's Job {job.name} succeeded but its pod is gone, and with it "
                "the result (termination message)",
            )))
    return JobObservation()


def job_missing(task: Task, job_name: str) -> TaskUpdate:
    return TaskUpdate(
        taskId=task.taskId, status=TaskStatus.FAILED,
        reasonForIncompletion=f"the attempt's Job {job_name} disappeared before it finished (deleted?)",
    )


_CHILD_TO_TASK: Final = {
    "COMPLETED": TaskStatus.COMPLETED,
    "FAILED": TaskStatus.FAILED,
    "TIMED_OUT": TaskStatus.TIMED_OUT,
    "TERMINATED": TaskStatus.CANCELED,
}


def observe_child(task: Task, child: ChildRecord) -> TaskUpdate | None:
    """News about a SUB_WORKFLOW attempt from its child Workflow (Conductor's SubWorkflow mapping)."""
    status = _CHILD_TO_TASK.get(child.phase or "")
    if status is None:
        if task.subWorkflowId != child.uid:
            return TaskUpdate(taskId=task.taskId, subWorkflowId=child.uid, started=True)
        return None
    output = {"subWorkflowId": child.uid, **dict(child.output)}
    reason = None
    if status is TaskStatus.FAILED and is_sub_workflow_depth_reason(child.reason):
        status = TaskStatus.FAILED_WITH_TERMINAL_ERROR  # a retry would hit the same limit, with more children
    if not status.successful:
        reason = _short(f"Sub workflow {child.name} ({child.uid}) failure reason: {child.reason or child.phase}")
    return TaskUpdate(taskId=task.taskId, status=status, outputData=output, reasonForIncompletion=reason,
                      subWorkflowId=child.uid)
