"""User operations (Conductor's workflow API): pause, resume, terminate, retry, restart, rerun, skip, complete.

Each operation is applied once (its nonce is remembered in ``appliedOperations``) by one ``_op_<kind>``
function, registered in ``_OPERATIONS``; a function returns None when applied, else the reason it was
refused (reported in the Decision's messages, the workflow unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from kondukt.engine import lifecycle, progression
from kondukt.engine.decision import Operation, OperationKind
from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import (
    FAILED_TASK_STATUSES,
    FORK_TASK_TYPE,
    FORK_TASK_TYPES,
    JOIN_TASK_TYPES,
    Task,
    TaskStatus,
    TaskType,
    WorkflowStatus,
    WorkflowTask,
)
from kondukt.engine.plan import base_ref, iteration_ref
from kondukt.engine.tasks import do_while, join

_APPLIED_OPERATIONS_KEPT = 50


def apply_operation(run: Evaluation, op: Operation) -> None:
    applied: list[str] = list(run.field("appliedOperations"))
    if op.nonce in applied:
        return
    applied.append(op.nonce)
    run.set(appliedOperations=applied[-_APPLIED_OPERATIONS_KEPT:])
    handler = _OPERATIONS.get(op.op)
    if handler is None:  # pragma: no cover - the enum is closed
        return
    refusal = handler(run, op)
    if refusal:
        run.messages.append(f"operation {op.op.value} ({op.nonce}) not applied: {refusal}")


def _op_pause(run: Evaluation, op: Operation) -> str | None:
    if run.status is not WorkflowStatus.RUNNING:
        return f"the workflow is {run.status.value}"
    run.set_status(WorkflowStatus.PAUSED)
    return None


def _op_resume(run: Evaluation, op: Operation) -> str | None:
    if run.status is not WorkflowStatus.PAUSED:
        return f"the workflow is {run.status.value}"
    run.set_status(WorkflowStatus.RUNNING)
    return None


def _op_terminate(run: Evaluation, op: Operation) -> str | None:
    if run.status.terminal:
        return f"the workflow is already {run.status.value}"
    lifecycle.end(run, WorkflowStatus.TERMINATED, op.reason or "terminated by user")
    return None


def _op_retry(run: Evaluation, op: Operation) -> str | None:
    """Retry from the failed tasks (Conductor's retry): each failed or canceled latest attempt runs again.

    A JOIN, or a DO_WHILE that was canceled around a failed task, is reopened rather than run again; a
    DO_WHILE or fork that failed by itself (its condition, its dynamic input) is evaluated again.
    """
    if run.status not in (WorkflowStatus.FAILED, WorkflowStatus.TIMED_OUT, WorkflowStatus.TERMINATED):
        return f"only a FAILED, TIMED_OUT or TERMINATED workflow can be retried (it is {run.status.value})"
    candidates = [run.tasks[position] for position in sorted(set(run.idx.latest.values()))
                  if run.tasks[position].status in FAILED_TASK_STATUSES
                  or run.tasks[position].status is TaskStatus.CANCELED]
    if not candidates:
        return "no failed task to retry"
    # RUNNING first: what is scheduled below must see a running workflow.
    run.set_status(WorkflowStatus.RUNNING)
    run.set(reasonForIncompletion=None, endTime=0, lastRetriedTime=run.now, failedReferenceTaskNames=[],
            failedTaskId=None, failureWorkflowStarted=False)
    reopened_joins: list[str] = []
    for task in candidates:
        task = run.tasks[run.idx.pos[task.taskId]]
        reopen = task.taskType in JOIN_TASK_TYPES or (task.taskType == TaskType.DO_WHILE.value
                                                      and task.status is TaskStatus.CANCELED)
        if reopen:
            run.replace(task, status=TaskStatus.IN_PROGRESS, endTime=0, executed=False, reasonForIncompletion=None)
            if task.taskType in JOIN_TASK_TYPES:
                reopened_joins.append(task.taskId)
        else:
            run.replace(task, retried=True, executed=True)
            progression.new_attempt(run, task, delay_seconds=0, reuse_input=False)
    run.rebuild_index()
    join.settle_reopened(run, reopened_joins)
    return None


def _op_restart(run: Evaluation, op: Operation) -> str | None:
    if not run.status.terminal:
        return f"only a finished workflow can be restarted (it is {run.status.value})"
    definition = run.definition
    run.set_status(WorkflowStatus.RUNNING)
    new_input = op.workflowInput if op.workflowInput is not None else run.field("input")
    run.set(input=new_input, output={}, variables=dict(definition.variables or {}), reasonForIncompletion=None,
            startTime=run.now, endTime=0, lastRetriedTime=0, failedReferenceTaskNames=[], failedTaskId=None,
            failureWorkflowStarted=False, timeoutAlerted=False)
    run.replace_tasks([])
    return None


def _op_rerun(run: Evaluation, op: Operation) -> str | None:
    target = run.get(op.taskId) if op.taskId else None
    if target is None and op.taskReferenceName:
        target = run.latest(op.taskReferenceName)
    if target is None:
        return f"no task {op.taskId or op.taskReferenceName!r} in this workflow"
    dynamic = target.parentTaskRef is not None
    workflow_task = run.workflow_task(target)
    if workflow_task is None and dynamic:
        definition_ref = base_ref(target.referenceTaskName) if target.loopTaskRef else target.referenceTaskName
        workflow_task = WorkflowTask(name=target.taskDefName, taskReferenceName=definition_ref)
    if workflow_task is None:
        return f"task {target.referenceTaskName!r} is not in the definition"
    # Reopened rather than run again: the containers enclosing the target, and the target itself when it
    # is a JOIN (its joinOn was fixed when its fork ran).
    reopened = _ancestor_containers(run, target)
    if target.taskType in JOIN_TASK_TYPES:
        reopened.add(target.taskId)
    target_path = _branch_path(run, target)
    kept: list[Task] = []
    for task in run.tasks:
        if task.taskId in reopened:
            kept.append(task.model_copy(update=_reopened(task, target)))
        elif task.seq < target.seq or (task.taskId != target.taskId
                                       and _parallel(target_path, _branch_path(run, task))):
            kept.append(task)  # before the target, or in a parallel branch: unaffected by the rerun
        else:
            lifecycle.cancel_driver_work(run, task, f"rerun from {target.referenceTaskName!r}")
    if op.workflowInput is not None:
        run.set(input=op.workflowInput)
    run.set_status(WorkflowStatus.RUNNING)
    run.set(reasonForIncompletion=None, endTime=0, failedReferenceTaskNames=[], failedTaskId=None,
            failureWorkflowStarted=False)
    run.replace_tasks(kept)
    join.settle_reopened(run, [t.taskId for t in kept if t.taskId in reopened and t.taskType in JOIN_TASK_TYPES])
    if target.taskId not in reopened:
        # A dynamically forked task's input came from its fork: it is kept unless the user gives a new one.
        task_input = op.taskInput if op.taskInput is not None or not dynamic else target.inputData
        progression.schedule(run, workflow_task, target.iteration, target.loopTaskRef, target.parentTaskRef,
                             input_override=task_input, dynamic=dynamic)
    return None


def _reopened(container: Task, target: Task) -> dict[str, Any]:
    """The changes that put a JOIN / DO_WHILE back to work for a rerun of ``target``."""
    changes: dict[str, Any] = dict(status=TaskStatus.IN_PROGRESS, endTime=0, executed=False,
                                   reasonForIncompletion=None)
    if container.taskType == TaskType.DO_WHILE.value:
        changes["outputData"] = do_while.rewound_output(container, target)
        if not container.loopTaskRef:
            changes["iteration"] = changes["outputData"]["iteration"]
    else:
        changes["outputData"] = {}
    return changes


def _branch_path(run: Evaluation, task: Task) -> list[tuple[str, str]]:
    """The fork branches ``task`` runs in, innermost first (dynamic fork branches included)."""
    path: list[tuple[str, str]] = []
    ref = base_ref(task.referenceTaskName) if task.loopTaskRef else task.referenceTaskName
    if task.parentTaskRef is not None:
        path.append((task.parentTaskRef, task.referenceTaskName))
        ref = base_ref(task.parentTaskRef)
    return path + run.plan.branch_path(ref, task.iteration)


def _ancestor_containers(run: Evaluation, target: Task) -> set[str]:
    """The JOIN / DO_WHILE attempts that enclose ``target`` (they reopen on a rerun)."""
    found: set[str] = set()
    ref: str | None = base_ref(target.referenceTaskName) if target.loopTaskRef else target.referenceTaskName
    fork_ref = target.parentTaskRef
    while ref is not None or fork_ref is not None:
        owner_ref: str | None
        if fork_ref is not None:
            owner_ref, fork_is_owner = fork_ref, True
            fork_ref = None
        else:
            assert ref is not None
            slot = run.plan.slot(ref)
            if slot is None or slot.owner_ref is None:
                break
            owner_ref, fork_is_owner = slot.owner_ref, slot.owner.value == "fork"
        owner = run.plan.task(owner_ref)
        if owner is None:
            break
        if owner.type == TaskType.DO_WHILE:
            loop = run.latest(owner_ref)
            if loop is not None:
                found.add(loop.taskId)
        elif fork_is_owner:
            successor = run.plan.successor(owner_ref)
            if successor.task is not None:
                found_join = run.latest(iteration_ref(successor.task.taskReferenceName, target.iteration)
                                        if target.loopTaskRef else successor.task.taskReferenceName)
                if found_join is not None:
                    found.add(found_join.taskId)
        ref = owner_ref
    return found


def _parallel(path: Sequence[tuple[str, str]], other: Sequence[tuple[str, str]]) -> bool:
    """Whether two tasks run in different branches of one fork (neither comes after the other)."""
    for (fork, branch), (other_fork, other_branch) in zip(reversed(path), reversed(other), strict=False):
        if fork != other_fork:
            return False
        if branch != other_branch:
            return True
    return False


def _op_skip(run: Evaluation, op: Operation) -> str | None:
    if run.status.terminal:
        return f"the workflow is {run.status.value}"
    ref = op.taskReferenceName
    if not ref:
        return "skip needs a task reference"
    task = run.latest(ref)
    if task is not None and not task.status.terminal:
        lifecycle.cancel_driver_work(run, task, "skipped by user")
        run.replace(task, status=TaskStatus.SKIPPED, endTime=run.now, outputData=op.outputData or {})
        return None
    if task is not None:
        return f"task {ref!r} already ran ({task.status.value})"
    workflow_task = run.plan.task(ref)
    if workflow_task is None:
        return f"no task {ref!r} in the definition"
    # Not reached yet: record it SKIPPED (and executed) so that the flow passes over it when it gets there.
    # Inside a DO_WHILE, ``ref__N`` names iteration N of the loop.
    slot = run.plan.slot(ref)
    loop_ref = slot.loop_ref if slot is not None and base_ref(ref) != ref else None
    iteration = int(ref.rsplit("__", 1)[1]) if loop_ref else 0
    run.append(run.new_task(workflow_task, ref, task_type=_execution_type(workflow_task),
                            task_def_name=workflow_task.name, input_data={}, iteration=iteration,
                            loop_ref=loop_ref, parent_ref=None, status=TaskStatus.SKIPPED,
                            outputData=op.outputData or {}, executed=True))
    return None


def _op_complete(run: Evaluation, op: Operation) -> str | None:
    task = run.get(op.taskId) if op.taskId else None
    if task is None and op.taskReferenceName:
        task = run.latest(op.taskReferenceName)
    if task is None:
        return f"no task {op.taskId or op.taskReferenceName!r} in this workflow"
    if task.status.terminal:
        return f"task {task.referenceTaskName!r} is already {task.status.value}"
    status = op.status or TaskStatus.COMPLETED
    if not status.terminal:
        return f"{status.value} is not a terminal task status"
    lifecycle.cancel_driver_work(run, task, f"completed by user as {status.value}")
    output = {**task.outputData, **(op.outputData or {})}
    run.replace(task, status=status, endTime=run.now, startTime=task.startTime or run.now,
                outputData=output, reasonForIncompletion=op.reason)
    return None


def _execution_type(workflow_task: WorkflowTask) -> str:
    """The ``taskType`` an attempt of ``workflow_task`` records (a TaskDef name for SIMPLE, FORK for forks)."""
    if workflow_task.type == TaskType.SIMPLE.value:
        return workflow_task.name
    if workflow_task.type in FORK_TASK_TYPES:
        return FORK_TASK_TYPE
    return workflow_task.type


_OPERATIONS: Final[dict[OperationKind, Callable[[Evaluation, Operation], str | None]]] = {
    OperationKind.PAUSE: _op_pause,
    OperationKind.RESUME: _op_resume,
    OperationKind.TERMINATE: _op_terminate,
    OperationKind.RETRY: _op_retry,
    OperationKind.RESTART: _op_restart,
    OperationKind.RERUN: _op_rerun,
    OperationKind.SKIP: _op_skip,
    OperationKind.COMPLETE: _op_complete,
}
