"""SIMPLE, HTTP, SUB_WORKFLOW, START_WORKFLOW: attempts the driver runs.

They are scheduled here (SCHEDULED, queued behind their start delay) and handed to the driver as actions by
``dispatch`` when the concurrency and rate gates allow. A SIMPLE attempt's ``taskType`` is its TaskDef's
name, as in Conductor; a SIMPLE task without a TaskDef fails at once.
"""

from __future__ import annotations

from typing import Any

from kondukt.engine import dispatch
from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import Task, TaskStatus, TaskType, WorkflowTask
from kondukt.engine.tasks.base import Reached, oversized_input


def schedule(run: Evaluation, at: Reached) -> Task:
    wt = at.wt
    name = wt.name
    task_type = wt.type
    if task_type == TaskType.SIMPLE.value:
        task_def = run.task_def(name, wt)
        if task_def is None:
            return run.append(run.new_task(
                wt, at.ref, task_type=name, task_def_name=name, input_data={}, iteration=at.iteration,
                loop_ref=at.loop_ref, parent_ref=at.parent_ref, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
                keep_workflow_task=at.dynamic and non_trivial(wt),
                reasonForIncompletion=f"task {wt.taskReferenceName!r}: no TaskDef named {name!r}"))
        task_type = name
    else:
        task_def = run.task_def(name, wt)
    input_data = at.input(run, task_def)
    if wt.type == TaskType.SUB_WORKFLOW.value:
        input_data = with_sub_workflow_params(run, wt, input_data)
    refused = oversized_input(run, at, task_type, input_data)
    if refused is not None:
        return refused
    task = run.append(run.new_task(
        wt, at.ref, task_type=task_type, task_def_name=name, input_data=input_data, iteration=at.iteration,
        loop_ref=at.loop_ref, parent_ref=at.parent_ref, keep_workflow_task=at.dynamic and non_trivial(wt),
        startDelayInSeconds=wt.startDelay, callbackAfterSeconds=wt.startDelay))
    dispatch.enqueue(run, task, wt.startDelay)
    return task


def with_sub_workflow_params(run: Evaluation, wt: WorkflowTask, input_data: dict[str, Any]) -> dict[str, Any]:
    """A SUB_WORKFLOW attempt records which workflow it starts (name and version may be expressions).

    An inline ``workflowDefinition`` (a definition, or an expression that yields one) is resolved now and
    recorded as ``subWorkflowDefinition``, as Conductor's SubWorkflowTaskMapper does.
    """
    params = wt.subWorkflowParam
    recorded = {**input_data,
                "subWorkflowName": run.resolve(params.name) if params else None,
                "subWorkflowVersion": run.resolve(params.version) if params else None}
    inline = params.workflowDefinition if params is not None else None
    if inline is not None:
        # Only an expression is resolved: a definition's own expressions belong to the child.
        recorded["subWorkflowDefinition"] = run.resolve(inline) if isinstance(inline, str) else inline
    return recorded


def non_trivial(workflow_task: WorkflowTask) -> bool:
    """A dynamic task's WorkflowTask is kept on the attempt only when it says more than name + type."""
    dumped = workflow_task.model_dump(exclude_defaults=True, exclude={"name", "taskReferenceName", "type",
                                                                      "inputParameters"})
    return bool(dumped) or workflow_task.type != TaskType.SIMPLE.value
