"""Moving the flow on: schedule what the flow reaches, and after each attempt ends, retry or go on.

``schedule`` is the one entry to the task families (``tasks.SCHEDULERS``); ``execute_pending`` takes the
attempts that ended and are not yet "executed", in order, and applies Conductor's rules to each
(``on_terminal``): a successful one schedules its successor (the next task, a SWITCH's chosen branch, the
loop's next evaluation, a TERMINATE's end), a failed one is retried (``should_retry``, a new attempt after
the TaskDef's delay), absorbed (optional: COMPLETED_WITH_ERRORS; permissive: recorded, the flow goes on)
or ends the workflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kondukt.engine import dispatch, lifecycle
from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import (
    CONTAINER_TASK_TYPES,
    DRIVER_TASK_TYPES,
    NEVER_RETRIED_TASK_TYPES,
    SWITCH_TASK_TYPES,
    SYSTEM_TASK_TYPE_NAMES,
    Task,
    TaskDef,
    TaskStatus,
    TaskType,
    TimeoutPolicy,
    WorkflowStatus,
    WorkflowTask,
)
from kondukt.engine.plan import Next, base_ref, iteration_ref
from kondukt.engine.policies import DeadlineKind, allowed_retries, retry_delay_seconds
from kondukt.engine.tasks import Reached, do_while, driver, join, scheduler_for, switch, terminate


def start(run: Evaluation) -> None:
    """A new run: schedule the definition's first task (no tasks: ``check_completion`` completes it)."""
    first = run.plan.first
    if first is None:
        return
    schedule(run, first, 0, None, None)


def schedule(
    run: Evaluation,
    workflow_task: WorkflowTask,
    iteration: int,
    loop_ref: str | None,
    parent_ref: str | None,
    *,
    input_override: Mapping[str, Any] | None = None,
    overlay: Mapping[str, Any] | None = None,
    dynamic: bool = False,
) -> Task | None:
    """Create the attempt(s) for one WorkflowTask reached by the flow."""
    ref = iteration_ref(workflow_task.taskReferenceName, iteration) if loop_ref else \
        workflow_task.taskReferenceName
    existing = run.latest(ref)
    if existing is not None and existing.status is TaskStatus.SKIPPED and existing.executed \
            and not dynamic and existing.iteration == iteration:
        # Skipped by a user before the flow got here: pass over it.
        join.notify_final(run, existing)
        _schedule_next(run, existing, workflow_task)
        return existing
    scheduler = scheduler_for(workflow_task.type)
    return scheduler(run, Reached(workflow_task, ref, iteration, loop_ref, parent_ref, input_override, overlay,
                                  dynamic))


def execute_pending(run: Evaluation) -> None:
    """Apply ``on_terminal`` to every ended attempt not yet executed, oldest first, within the loop budget."""
    while run.idx.unexecuted and run.status is WorkflowStatus.RUNNING:
        # Read the index afresh each time: a DO_WHILE's keepLastN rebuilds it in the middle of this loop.
        pending = run.idx.unexecuted
        if run.loop_budget <= 0:
            run.wake_candidates.append(run.now)
            return
        task_id = next(iter(pending))
        task = run.get(task_id)
        if task is None or not task.status.terminal or task.executed:
            pending.pop(task_id, None)
            continue
        _on_terminal(run, task)


def new_attempt(run: Evaluation, failed: Task, *, delay_seconds: int, reuse_input: bool) -> None:
    """Schedule the next attempt of ``failed``: inputs are resolved again, as Conductor does."""
    workflow_task = run.workflow_task(failed)
    if not _is_driver_task(failed) and workflow_task is not None:
        # An engine-run task (INLINE, JSON_JQ_TRANSFORM, ...) is evaluated again at once.
        scheduled = schedule(run, workflow_task, failed.iteration, failed.loopTaskRef, failed.parentTaskRef,
                             dynamic=failed.workflowTask is not None)
        # Read it back: scheduling may already have moved it on (a fork that failed, a finished INLINE).
        attempt = run.get(scheduled.taskId) if scheduled is not None else None
        if attempt is not None and attempt.taskId != failed.taskId:
            run.replace(attempt, retryCount=failed.retryCount + 1, retriedTaskId=failed.taskId)
        return
    input_data = failed.inputData
    if not reuse_input and workflow_task is not None and failed.parentTaskRef is None \
            and failed.taskType not in CONTAINER_TASK_TYPES:
        input_data = run.task_input(workflow_task, run.task_def(failed.taskDefName, workflow_task))
        if failed.taskType == TaskType.SUB_WORKFLOW.value:
            input_data = driver.with_sub_workflow_params(run, workflow_task, input_data)
    attempt = run.new_task(
        workflow_task or WorkflowTask(name=failed.taskDefName, taskReferenceName=failed.referenceTaskName),
        failed.referenceTaskName,
        task_type=failed.taskType,
        task_def_name=failed.taskDefName,
        input_data=input_data,
        iteration=failed.iteration,
        loop_ref=failed.loopTaskRef,
        parent_ref=failed.parentTaskRef,
        retry_count=failed.retryCount + 1,
        keep_workflow_task=failed.workflowTask is not None,
        retriedTaskId=failed.taskId,
        callbackAfterSeconds=delay_seconds,
    )
    run.append(attempt)
    dispatch.enqueue(run, attempt, delay_seconds)


def _on_terminal(run: Evaluation, task: Task) -> None:
    workflow_task = run.workflow_task(task)
    if task.status.successful or task.status is TaskStatus.CANCELED:
        task = run.replace(task, executed=True)
        join.notify_final(run, task)
        if task.status is not TaskStatus.CANCELED:
            _schedule_next(run, task, workflow_task)
        return
    task_def = run.def_for(task)
    if task.status is TaskStatus.TIMED_OUT and run.timeout_kinds.get(task.taskId) is not DeadlineKind.RESPONSE \
            and task_def.timeoutPolicy is TimeoutPolicy.TIME_OUT_WF:
        # TIME_OUT_WF times the workflow out at once: no retry, and it wins over optional (as in Conductor).
        task = run.replace(task, executed=True)
        lifecycle.end(run, WorkflowStatus.TIMED_OUT, task.reasonForIncompletion
                      or f"task {task.referenceTaskName!r} timed out", failed_task=task)
        return
    if _should_retry(run, task, workflow_task, task_def):
        run.replace(task, retried=True, executed=True)
        new_attempt(run, task, delay_seconds=retry_delay_seconds(task_def, task.retryCount), reuse_input=False)
        return
    if workflow_task is not None and workflow_task.optional:
        task = run.replace(task, status=TaskStatus.COMPLETED_WITH_ERRORS, executed=True)
        join.notify_final(run, task)
        _schedule_next(run, task, workflow_task)
        return
    task = run.replace(task, executed=True)
    if workflow_task is not None and workflow_task.permissive:
        failed = list(run.field("failedReferenceTaskNames"))
        run.set(failedReferenceTaskNames=[*failed, task.referenceTaskName])
        join.notify_final(run, task)
        _schedule_next(run, task, workflow_task)
        return
    end_status = WorkflowStatus.TIMED_OUT if task.status is TaskStatus.TIMED_OUT else WorkflowStatus.FAILED
    lifecycle.end(run, end_status, lifecycle.task_failure_reason(task), failed_task=task)


def _should_retry(run: Evaluation, task: Task, workflow_task: WorkflowTask | None, task_def: TaskDef) -> bool:
    if not task.status.retriable or task.status is TaskStatus.COMPLETED or task.taskType in NEVER_RETRIED_TASK_TYPES:
        return False
    if task.retryCount >= allowed_retries(task_def, workflow_task):
        return False
    if task.status is TaskStatus.TIMED_OUT and run.timeout_kinds.get(task.taskId) is not DeadlineKind.RESPONSE \
            and task_def.timeoutPolicy is not TimeoutPolicy.RETRY:
        return False
    if task_def.totalTimeoutSeconds:
        first = _first_attempt(run, task)
        if run.now - first.scheduledTime >= task_def.totalTimeoutSeconds * 1000:
            return False
    return True


def _first_attempt(run: Evaluation, task: Task) -> Task:
    current = task
    for _ in range(task.retryCount + 1):
        previous = run.get(current.retriedTaskId) if current.retriedTaskId else None
        if previous is None:
            break
        current = previous
    return current


def _schedule_next(run: Evaluation, task: Task, workflow_task: WorkflowTask | None) -> None:
    ttype = task.taskType
    if ttype in SWITCH_TASK_TYPES and workflow_task is not None:
        chosen = switch.chosen_case(workflow_task, task.outputData)
        if chosen:
            schedule(run, chosen[0], task.iteration, task.loopTaskRef, None)
            return
    elif ttype == TaskType.TERMINATE.value:
        terminate.terminate_workflow(run, task)
        return
    if task.parentTaskRef is not None:
        return  # a dynamically forked task: its branch ends with it
    ref = base_ref(task.referenceTaskName) if task.loopTaskRef else task.referenceTaskName
    successor = run.plan.successor(ref)
    if successor.kind is Next.TASK:
        assert successor.task is not None
        slot = run.plan.slot(ref)
        loop_ref = slot.loop_ref if slot is not None else None  # the loop enclosing both
        schedule(run, successor.task, task.iteration if loop_ref else 0, loop_ref, None)
    elif successor.kind is Next.LOOP:
        assert successor.ref is not None
        loop = run.latest(successor.ref) if task.loopTaskRef is None else \
            run.latest(task.loopTaskRef)
        if loop is not None and not loop.status.terminal:
            do_while.evaluate(run, loop)


def _is_driver_task(task: Task) -> bool:
    """SIMPLE attempts (taskType = their TaskDef's name) and the driver-run system tasks."""
    return task.taskType in DRIVER_TASK_TYPES or task.taskType not in SYSTEM_TASK_TYPE_NAMES
