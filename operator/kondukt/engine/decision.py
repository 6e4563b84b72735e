"""The engine's inputs and outputs besides the state: what a driver observed, and what it must do.

A driver (the Kubernetes operator, or the local runner) observes the world, turns what changed into
``Observation`` values, calls ``decide`` and carries out the ``Action`` values of the returned ``Decision``
before it persists ``Decision.workflow``. Every action is idempotent by construction: it names the task
attempt (``taskId``, deterministic per workflow and seq) it belongs to, so carrying one out twice after a
crash is harmless (AlreadyExists means done).

Times are integers: milliseconds since the epoch, as in Conductor's execution JSON.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kondukt.engine.models import Task, TaskDef, TaskStatus, TaskType, Workflow, WorkflowTask


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)


# --------------------------------------------------------------------------------------------------
# Observations
# --------------------------------------------------------------------------------------------------


class TaskUpdate(_Value):
    """News about one task attempt the driver runs (a Job, a process, a child workflow, an HTTP call).

    ``status`` None means "still running": it reports the start (``started``), a heartbeat, or the child
    workflow's id. A terminal ``status`` reports the result (Conductor's TaskResult).
    """

    kind: Literal["task"] = "task"
    taskId: str
    status: TaskStatus | None = None
    outputData: dict[str, Any] | None = None
    reasonForIncompletion: str | None = None
    started: bool = False
    heartbeat: bool = False
    subWorkflowId: str | None = None
    workerId: str | None = None
    at: int | None = Field(None, description="When it happened (ms); defaults to the decide call's now.")


class TaskLoad(_Value):
    """How busy one TaskDef is across the namespace (every workflow), for concurrency and rate limits."""

    running: int = Field(0, description="Attempts dispatched and not yet finished.")
    recentStarts: tuple[int, ...] = Field((), description="Dispatch times (ms) inside the rate window.")


class Load(_Value):
    kind: Literal["load"] = "load"
    byTaskDef: dict[str, TaskLoad] = Field(default_factory=dict)


class OperationKind(enum.StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    TERMINATE = "terminate"
    RETRY = "retry"
    RESTART = "restart"
    RERUN = "rerun"
    SKIP = "skip"
    COMPLETE = "complete"  # complete (or fail) a HUMAN / WAIT / any in-progress task


class Operation(_Value):
    """A user's request (spec change or CLI annotation). ``nonce`` makes it apply exactly once."""

    kind: Literal["operation"] = "operation"
    op: OperationKind
    nonce: str
    reason: str | None = None
    taskReferenceName: str | None = Field(None, description="rerun / skip / complete: the task.")
    taskId: str | None = None
    status: TaskStatus | None = Field(None, description="complete: the task's new status (COMPLETED).")
    outputData: dict[str, Any] | None = None
    taskInput: dict[str, Any] | None = Field(None, description="rerun: new input of the rerun task.")
    workflowInput: dict[str, Any] | None = Field(None, description="restart / rerun: new workflow input.")


class FailureWorkflowStarted(_Value):
    """The driver started the failureWorkflow a ``StartWorkflow(purpose="failureWorkflow")`` asked for.

    ``decide`` records its id in the failed workflow's output under ``conductor.failure_workflow``, as
    Conductor does (the workflow is already terminal: this is the one observation that changes it).
    """

    kind: Literal["failure_workflow_started"] = "failure_workflow_started"
    workflowId: str


Observation = TaskUpdate | Load | Operation | FailureWorkflowStarted


# --------------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------------


class StartTask(_Value):
    """Run one attempt: a SIMPLE task (a Job / a process), or a driver-run system task (HTTP).

    The driver reports its progress and result with ``TaskUpdate(taskId=...)``.
    """

    kind: Literal["start_task"] = "start_task"
    taskId: str
    referenceTaskName: str
    taskDefName: str
    taskType: str
    inputData: dict[str, Any]
    retryCount: int = 0
    iteration: int = 0
    timeoutSeconds: int | None = Field(None, description="Hard deadline for the attempt, None = none.")
    taskDef: TaskDef | None = None


class StartSubWorkflow(_Value):
    """Start a child workflow for a SUB_WORKFLOW task; report its progress with TaskUpdate(taskId)."""

    kind: Literal["start_sub_workflow"] = "start_sub_workflow"
    taskId: str
    referenceTaskName: str
    name: str
    version: int | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    definition: dict[str, Any] | None = Field(None, description="An inline WorkflowDef.")
    correlationId: str | None = None
    taskToDomain: dict[str, str] | None = None


class StartWorkflow(_Value):
    """Start an independent workflow (START_WORKFLOW, or the failureWorkflow).

    For START_WORKFLOW the driver reports ``TaskUpdate(taskId, COMPLETED, {"workflowId": ...})``.
    ``requestId`` is deterministic, for idempotent naming.
    """

    kind: Literal["start_workflow"] = "start_workflow"
    requestId: str
    name: str
    version: int | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    correlationId: str | None = None
    definition: dict[str, Any] | None = None
    taskId: str | None = None
    purpose: Literal["START_WORKFLOW", "failureWorkflow"] = "START_WORKFLOW"


class CallHttp(_Value):
    """Perform an HTTP task's request; report ``TaskUpdate(taskId, COMPLETED|FAILED, {"response": ...})``."""

    kind: Literal["call_http"] = "call_http"
    taskId: str
    referenceTaskName: str
    request: dict[str, Any]
    timeoutSeconds: int | None = None


class EvaluateScript(_Value):
    """Evaluate a script that has no hard limit of its own (JSON_JQ_TRANSFORM's jq program) outside the engine.

    libjq can loop for ever and holds the interpreter while it runs, so neither the engine nor a driver's own
    process may run it: the driver evaluates ``expression`` over ``input`` in a separate process under a time
    and a memory limit, and reports ``TaskUpdate(taskId, COMPLETED|FAILED, ...)`` (the same result
    :func:`kondukt.engine.tasks.jq.evaluate` gives). The evaluation is pure — ``nowMs`` is its clock
    — so a driver that lost it (a restart) evaluates it again from the task: :meth:`for_task`.
    """

    kind: Literal["evaluate_script"] = "evaluate_script"
    taskId: str
    referenceTaskName: str
    language: Literal["jq"] = "jq"
    expression: str
    input: dict[str, Any]
    nowMs: int

    @classmethod
    def for_task(cls, task: Task) -> EvaluateScript | None:
        """The evaluation a dispatched JSON_JQ_TRANSFORM attempt waits for; None for any other attempt."""
        query = task.inputData.get("queryExpression")
        if task.taskType != TaskType.JSON_JQ_TRANSFORM.value or not isinstance(query, str):
            return None
        return cls(taskId=task.taskId, referenceTaskName=task.referenceTaskName, expression=query,
                   input=task.inputData, nowMs=task.startTime or task.scheduledTime)


class CancelTask(_Value):
    """Stop an attempt that is running: delete its Job / kill its process / terminate its child workflow /
    abandon its script evaluation."""

    kind: Literal["cancel_task"] = "cancel_task"
    taskId: str
    referenceTaskName: str
    taskType: str
    subWorkflowId: str | None = None
    reason: str = ""


Action = StartTask | StartSubWorkflow | StartWorkflow | CallHttp | EvaluateScript | CancelTask


class TaskTransition(_Value):
    """A task attempt changed status (for Kubernetes Events, progress views and metrics)."""

    taskId: str
    referenceTaskName: str
    taskType: str
    fromStatus: TaskStatus | None
    toStatus: TaskStatus
    reason: str | None = None


class Decision(_Value):
    workflow: Workflow
    actions: tuple[Action, ...] = ()
    transitions: tuple[TaskTransition, ...] = ()
    wakeAt: int | None = Field(None, description="Call decide again at this instant (ms) if nothing else happens.")
    changed: bool = Field(False, description="The workflow state differs from the input state.")
    messages: tuple[str, ...] = Field((), description="Notes for the log (an ALERT_ONLY timeout, an ignored op).")
    waitingOn: tuple[str, ...] = Field(
        (),
        description="TaskDef names whose concurrentExecLimit holds attempts back: decide again when one of "
        "their attempts (in any workflow) finishes.",
    )


__all__ = [
    "Action",
    "CallHttp",
    "CancelTask",
    "Decision",
    "EvaluateScript",
    "FailureWorkflowStarted",
    "Load",
    "Observation",
    "Operation",
    "OperationKind",
    "StartSubWorkflow",
    "StartTask",
    "StartWorkflow",
    "TaskLoad",
    "TaskTransition",
    "TaskUpdate",
    "WorkflowTask",
]
