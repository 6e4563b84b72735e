"""TERMINATE: validated and recorded when reached; once executed it ends the workflow with its status."""

from __future__ import annotations

from kondukt.engine import lifecycle
from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import Task, TaskStatus, WorkflowStatus
from kondukt.engine.tasks.base import Reached, append_result

_TERMINATION_STATUSES = {"COMPLETED": WorkflowStatus.COMPLETED, "FAILED": WorkflowStatus.FAILED,
                         "TERMINATED": WorkflowStatus.TERMINATED}


def schedule(run: Evaluation, at: Reached) -> Task:
    wt = at.wt
    input_data = at.input(run)
    status = input_data.get("terminationStatus")
    if status is not None and str(status).upper() not in _TERMINATION_STATUSES:
        return append_result(run, at, wt.type, input_data, None,
                             f"task {wt.taskReferenceName!r}: terminationStatus {status!r} is not valid "
                             "(COMPLETED, FAILED or TERMINATED)", status=TaskStatus.FAILED_WITH_TERMINAL_ERROR)
    # Conductor's TERMINATE outputs the workflowOutput map itself; any other value is wrapped.
    value = input_data.get("workflowOutput")
    output = {} if value is None else dict(value) if isinstance(value, dict) else {"output": value}
    return append_result(run, at, wt.type, input_data, output)


def terminate_workflow(run: Evaluation, task: Task) -> None:
    """The executed TERMINATE ``task`` ends the workflow (its successor step)."""
    status_name = str(task.inputData.get("terminationStatus") or "COMPLETED").upper()
    status = _TERMINATION_STATUSES.get(status_name, WorkflowStatus.FAILED)
    reason = task.inputData.get("terminationReason") or \
        f"Workflow is {status.value} by TERMINATE task: {task.taskId}"  # Conductor's default reason
    # As in Conductor, a TERMINATE's output (its workflowOutput) replaces the workflow's output.
    lifecycle.end(run, status, str(reason), output=dict(task.outputData),
                  failed_task=task if status is WorkflowStatus.FAILED else None)
