"""The workflow's life: its timeout, the task timers that fire, completion, and the end (failure workflow).

``end`` is the one way a workflow stops: it cancels what still runs (in task-list order, so that the same
state gives the same actions), computes the output and, for FAILED / TIMED_OUT, asks the driver to start
the ``failureWorkflow`` once per failure.
"""

from __future__ import annotations

import heapq
from typing import Any

from kondukt.engine.decision import CancelTask, StartWorkflow
from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import (
    CONTAINER_TASK_TYPES,
    FAILED_TASK_STATUSES,
    Task,
    TaskStatus,
    WorkflowStatus,
    WorkflowTimeoutPolicy,
)
from kondukt.engine.policies import DeadlineKind


def check_workflow_timeout(run: Evaluation) -> None:
    seconds = run.definition.timeoutSeconds
    if not seconds:
        return
    base = run.timeout_base()
    deadline = base + seconds * 1000
    if run.now < deadline:
        run.wake_candidates.append(deadline)
        return
    if run.definition.timeoutPolicy is WorkflowTimeoutPolicy.TIME_OUT_WF:
        end(
            run,
            WorkflowStatus.TIMED_OUT,
            f"Workflow timed out after {(run.now - base) // 1000} seconds. "
            f"Timeout configured as {seconds} seconds. Timeout policy configured to TIME_OUT_WF",
        )
    elif not run.field("timeoutAlerted"):
        run.set(timeoutAlerted=True)
        run.messages.append(f"workflow exceeded its timeout of {seconds} seconds (ALERT_ONLY)")


def fire_deadlines(run: Evaluation) -> None:
    """Every task timer due by ``now``: a WAIT completes, a timeout / poll / response deadline times out."""
    heap = run.idx.deadlines
    while heap and heap[0][0] <= run.now and not run.status.terminal:
        at, _, task_id, kind = heapq.heappop(heap)
        task = run.get(task_id)
        if task is None or task.status.terminal or not run.deadline_valid(task, at, kind):
            continue
        if kind is DeadlineKind.WAIT:
            run.replace(task, status=TaskStatus.COMPLETED, endTime=run.now)
            continue
        task_def = run.def_for(task)
        if kind is DeadlineKind.TIMEOUT:
            reason = (f"Task timed out after {(run.now - task.startTime) // 1000} seconds. Timeout "
                      f"configured as {task_def.timeoutSeconds} seconds. Timeout policy configured to "
                      f"{task_def.timeoutPolicy.value}")
        elif kind is DeadlineKind.POLL:
            reason = (f"Task was not started within pollTimeoutSeconds ({task_def.pollTimeoutSeconds} s): "
                      "its pod did not start running")
        else:
            reason = f"No heartbeat within responseTimeoutSeconds ({task_def.responseTimeoutSeconds} s)"
        cancel_driver_work(run, task, reason)
        run.timeout_kinds[task_id] = kind
        run.replace(task, status=TaskStatus.TIMED_OUT, endTime=run.now, reasonForIncompletion=reason)


def check_completion(run: Evaluation) -> None:
    """Nothing active and nothing left to execute: COMPLETED, or FAILED by a failed task that was not absorbed."""
    if run.status is not WorkflowStatus.RUNNING or run.idx.active or run.idx.unexecuted:
        return
    if not run.tasks and run.plan.first is not None:
        return
    failed = [t for t in run.tasks if t.status in FAILED_TASK_STATUSES and t.executed and not t.retried]
    if failed:
        first = failed[0]
        end(run, WorkflowStatus.FAILED, task_failure_reason(first), failed_task=first)
        return
    run.set_status(WorkflowStatus.COMPLETED)
    run.set(endTime=run.now, output=workflow_output(run))


def task_failure_reason(task: Task) -> str:
    """Why a task failed its workflow, in Conductor's words (DeciderService), which users match on."""
    reason = "null" if task.reasonForIncompletion is None else task.reasonForIncompletion  # as Java prints it
    return f"Task {task.taskId} failed with status: {task.status.value} and reason: '{reason}'"


def workflow_output(run: Evaluation, failed_task: Task | None = None) -> dict[str, Any]:
    """outputParameters resolved, else the output of the task that failed the workflow or of the last task."""
    if run.definition.outputParameters:
        resolved = run.resolve(run.definition.outputParameters)
        return resolved if isinstance(resolved, dict) else {"output": resolved}
    last = failed_task if failed_task is not None else run.tasks[-1] if run.tasks else None
    return dict(last.outputData) if last is not None else {}


def end(
    run: Evaluation,
    status: WorkflowStatus,
    reason: str | None,
    *,
    failed_task: Task | None = None,
    output: dict[str, Any] | None = None,
) -> None:
    """End the workflow: cancel what still runs, compute the output, start the failureWorkflow."""
    run.set_status(status)
    run.set(endTime=run.now, reasonForIncompletion=reason)
    # In task-list order: a set's order depends on its history, and a decision must not (the same state
    # read back from storage must give the same actions in the same order).
    for task_id in sorted(run.idx.active, key=run.idx.pos.__getitem__):
        task = run.get(task_id)
        if task is None:
            continue
        cancel_driver_work(run, task, f"workflow {status.value}")
        run.replace(task, status=TaskStatus.CANCELED, endTime=run.now, executed=True,
                    reasonForIncompletion=f"workflow {status.value}: {reason}" if reason else None)
    run.idx.unexecuted.clear()
    if failed_task is not None:
        run.set(failedReferenceTaskNames=[failed_task.referenceTaskName], failedTaskId=failed_task.taskId)
    run.set(output=output if output is not None else workflow_output(run, failed_task))
    if status in (WorkflowStatus.FAILED, WorkflowStatus.TIMED_OUT):
        _start_failure_workflow(run, status, reason, failed_task)


def cancel_driver_work(run: Evaluation, task: Task, reason: str) -> None:
    """Ask the driver to stop ``task``'s attempt if it handed one out (a Job, a process, a child workflow)."""
    if task.dispatched and not task.status.terminal and task.taskType not in CONTAINER_TASK_TYPES:
        run.actions.append(CancelTask(taskId=task.taskId, referenceTaskName=task.referenceTaskName,
                                      taskType=task.taskType, subWorkflowId=task.subWorkflowId, reason=reason))


def failure_workflow_name(run: Evaluation) -> str | None:
    """The failureWorkflow to start: a name, or an expression resolved from the workflow's input.

    Conductor accepts ``$workflow.input.x`` (its own older form) and ``${workflow.input.x}``.
    """
    name = run.definition.failureWorkflow
    if not name or not name.startswith("$"):
        return name or None
    expression = name if name.startswith("${") else "${" + name[1:] + "}"
    resolved = run.resolve(expression)
    return resolved if isinstance(resolved, str) and resolved else None


def record_failure_workflow(run: Evaluation, workflow_id: str) -> None:
    """The failureWorkflow started: its id goes into the output, as Conductor records it."""
    if not run.field("failureWorkflowStarted"):
        run.messages.append(f"ignored the start of failure workflow {workflow_id}: none was requested")
        return
    output = run.field("output") or {}
    if output.get(FAILURE_WORKFLOW_OUTPUT) != workflow_id:
        run.set(output={**output, FAILURE_WORKFLOW_OUTPUT: workflow_id})


#: The output key of the failure workflow's id (Conductor's name, dot included).
FAILURE_WORKFLOW_OUTPUT = "conductor.failure_workflow"


def _start_failure_workflow(run: Evaluation, status: WorkflowStatus, reason: str | None,
                            failed_task: Task | None) -> None:
    if not run.definition.failureWorkflow or run.field("failureWorkflowStarted"):
        return
    name = failure_workflow_name(run)
    if name is None:
        run.messages.append(f"failureWorkflow {run.definition.failureWorkflow!r} resolved to no workflow name: "
                            "none started")
        return
    run.set(failureWorkflowStarted=True)
    original = run.original
    failed_summary = {
        "workflowId": original.workflowId,
        "workflowName": original.workflowName,
        "workflowVersion": original.workflowVersion,
        "status": status.value,
        "reasonForIncompletion": reason,
        "input": run.field("input"),
        "output": run.field("output"),
        "correlationId": original.correlationId,
        "tasks": [
            {"referenceTaskName": t.referenceTaskName, "taskType": t.taskType, "status": t.status.value,
             "taskId": t.taskId, "reasonForIncompletion": t.reasonForIncompletion}
            for t in run.tasks if not t.status.successful
        ],
    }
    workflow_input = {
        **run.field("input"),
        "workflowId": original.workflowId,
        "reason": reason,
        "failureStatus": status.value,
        "failureTaskId": failed_task.taskId if failed_task else None,
        "failedWorkflow": failed_summary,
    }
    applied = run.field("appliedOperations")
    latest_nonce = applied[-1] if applied else ""
    run.actions.append(StartWorkflow(
        # One failure workflow per failure, named from the state (a replayed decision names the same one).
        # Failing again takes an operation (retry, rerun, restart), whose nonce is then the latest applied.
        requestId=f"{original.workflowId}/failure/{run.next_seq}/{latest_nonce}",
        name=name,
        input=workflow_input,
        correlationId=original.correlationId,
        purpose="failureWorkflow",
    ))
