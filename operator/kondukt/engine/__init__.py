"""Kondukt's engine: Conductor's semantics as one pure function.

``decide(blueprint, workflow, observations, now) -> Decision`` is the single entry point both drivers
(the Kubernetes operator and the local runner) call. It never raises on bad data, reads no clock, file,
cluster or network: time comes in as ``now`` (ms since the epoch), the world comes in as observations.
"""

from kondukt.engine.decision import (
    Action,
    CallHttp,
    CancelTask,
    Decision,
    EvaluateScript,
    FailureWorkflowStarted,
    Load,
    Observation,
    Operation,
    OperationKind,
    StartSubWorkflow,
    StartTask,
    StartWorkflow,
    TaskLoad,
    TaskTransition,
    TaskUpdate,
)
from kondukt.engine.models import (
    Blueprint,
    ContainerTemplate,
    Task,
    TaskDef,
    TaskStatus,
    TaskType,
    Workflow,
    WorkflowDef,
    WorkflowStatus,
    WorkflowTask,
)

__all__ = [
    "Action",
    "Blueprint",
    "CallHttp",
    "CancelTask",
    "ContainerTemplate",
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
    "Task",
    "TaskDef",
    "TaskLoad",
    "TaskStatus",
    "TaskTransition",
    "TaskType",
    "TaskUpdate",
    "Workflow",
    "WorkflowDef",
    "WorkflowStatus",
    "WorkflowTask",
]

from kondukt.engine.decide import decide, new_workflow, task_id_for

__all__ += ["decide", "new_workflow", "task_id_for"]
