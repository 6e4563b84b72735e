"""``decide``: one evaluation of a workflow, Conductor's DeciderService as a pure function.

    decide(blueprint, workflow, observations, now) -> Decision

It applies what the driver observed (task results, starts, heartbeats, user operations, namespace load),
fires the timers that are due (timeouts, retry delays, WAIT), moves the workflow along its definition
(scheduling successors, forks, joins, switches, loops), hands driver-run attempts out as actions while the
concurrency and rate gates allow, and says when it wants to be called again (``wakeAt``).

Where things are (the layers, top to bottom; import-linter keeps them):
- ``decide`` (here): the entry point, the order of the phases, task updates, the never-raise guard;
- ``operations``: user operations (pause, retry, rerun, skip, ...);
- ``progression``: scheduling what the flow reaches, retry / optional / permissive, the successor;
- ``tasks/``: one module per task family behind one ``Scheduler`` interface, in one table;
- ``lifecycle`` (workflow timeout, task timers, completion, the end and failure workflow) and ``dispatch``
  (ready queues, concurrency and rate gates, actions, the next wake-up);
- ``evaluation``: the state of one call, and the one place that changes tasks;
- ``index``: the derived lookups carried from one state to the next.

Design notes
- Never raises: bad data becomes a FAILED task or workflow with a reason; an unexpected error inside the
  engine fails the workflow with "internal error" rather than crash a driver's loop.
- Cost per event does not grow with the number of finished tasks (see ``index``).
- Task ids are deterministic (workflow id + seq), so a driver that replays a decision after a crash
  names the same Jobs and child workflows again.
- Successful terminal tasks are "executed" (their successors scheduled) in the same call, in order; a
  workflow's tasks only ever go SCHEDULED -> IN_PROGRESS -> terminal; a retry is a new attempt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kondukt.engine import dispatch, lifecycle, operations, progression
from kondukt.engine.decision import (
    Action,
    CancelTask,
    Decision,
    FailureWorkflowStarted,
    Load,
    Observation,
    Operation,
    TaskUpdate,
)
from kondukt.engine.evaluation import Evaluation, task_id_for
from kondukt.engine.models import Blueprint, Task, TaskStatus, Workflow, WorkflowStatus
from kondukt.engine.payloads import oversize

__all__ = ["decide", "new_workflow", "task_id_for"]

#: Rounds of (fire due timers, move the flow on) per call, for timers that fall due as tasks are scheduled.
_SETTLE_ROUNDS = 4
_MAX_RESULT_REASON = 2000


def new_workflow(
    blueprint: Blueprint,
    workflow_id: str,
    input: Mapping[str, Any] | None,
    now: int,
    *,
    correlation_id: str | None = None,
    parent_workflow_id: str | None = None,
    parent_workflow_task_id: str | None = None,
) -> Workflow:
    """The initial state of a run: RUNNING with no tasks yet (the first ``decide`` schedules them).

    The definition's ``inputTemplate`` supplies defaults under the given input, as in Conductor.
    """
    definition = blueprint.workflow
    merged = {**(definition.inputTemplate or {}), **(input or {})}
    return Workflow(
        workflowId=workflow_id,
        workflowName=definition.name,
        workflowVersion=definition.version,
        correlationId=correlation_id,
        input=merged,
        variables=dict(definition.variables or {}),
        startTime=now,
        updateTime=now,
        parentWorkflowId=parent_workflow_id,
        parentWorkflowTaskId=parent_workflow_task_id,
    )


def decide(
    blueprint: Blueprint, workflow: Workflow, observations: Sequence[Observation], now: int
) -> Decision:
    """Evaluate ``workflow`` at instant ``now`` (ms) after ``observations``. Never raises."""
    try:
        return _evaluate(Evaluation(blueprint, workflow, now, progression.schedule), observations)
    except Exception as error:  # the contract: bad data or an engine bug fails the workflow, never the driver
        return _internal_error(workflow, now, error)


def _evaluate(run: Evaluation, observations: Sequence[Observation]) -> Decision:
    if not run.tasks and run.status is WorkflowStatus.RUNNING:
        # A new run starts before any operation applies: a skip or complete observed together with the
        # creation then finds its task (and a pause holds the first attempt back).
        progression.start(run)
    for observation in observations:
        if isinstance(observation, Operation):
            operations.apply_operation(run, observation)
    for observation in observations:
        if isinstance(observation, Load):
            run.load = dict(observation.byTaskDef)
        elif isinstance(observation, TaskUpdate):
            _apply_update(run, observation)
        elif isinstance(observation, FailureWorkflowStarted):
            lifecycle.record_failure_workflow(run, observation.workflowId)
    if not run.status.terminal:
        if not run.tasks and run.status is WorkflowStatus.RUNNING:
            progression.start(run)
        lifecycle.check_workflow_timeout(run)
        for _ in range(_SETTLE_ROUNDS):
            if run.status is not WorkflowStatus.RUNNING:
                break  # task timers are not evaluated while PAUSED (as in Conductor): they fire on resume
            lifecycle.fire_deadlines(run)
            progression.execute_pending(run)
            # A task scheduled just now may already be due (a WAIT until a past instant): settle it in this
            # call rather than ask the driver to come back at once.
            heap = run.idx.deadlines
            if not heap or heap[0][0] > run.now or run.loop_budget <= 0:
                break
        for _ in range(_SETTLE_ROUNDS):
            if run.status is not WorkflowStatus.RUNNING:
                break
            dispatch.dispatch(run)
            if not run.idx.unexecuted:
                break
            # An attempt failed as it was handed out (an unreadable START_WORKFLOW request): retry or end now.
            progression.execute_pending(run)
        else:
            run.wake_candidates.append(run.now)
        if run.status is WorkflowStatus.RUNNING:
            lifecycle.check_completion(run)
    return _decision(run)


def _decision(run: Evaluation) -> Decision:
    workflow = run.original
    if run.changed:
        update: dict[str, Any] = dict(run.fields)
        update["tasks"] = run.tasks
        update["status"] = run.status
        update["nextSeq"] = run.next_seq
        update["updateTime"] = run.now
        workflow = run.original.model_copy(update=update)
    run.idx.tasks_ref = workflow.tasks
    workflow._index = run.idx
    wake = dispatch.next_wakeup(run) if not run.status.terminal else None
    return Decision(
        workflow=workflow,
        actions=tuple(run.actions),
        transitions=tuple(run.transitions),
        wakeAt=wake,
        changed=run.changed,
        messages=tuple(run.messages),
        waitingOn=tuple(sorted(run.waiting_on)),
    )


def _apply_update(run: Evaluation, update: TaskUpdate) -> None:
    """A driver's news about an attempt: started, heartbeat, output, its end. Late news is ignored."""
    task = run.get(update.taskId)
    if task is None:
        run.messages.append(f"ignored an update for unknown task {update.taskId}")
        return
    if task.status.terminal:
        return  # late news about a finished (or canceled) attempt: idempotent
    at = update.at if update.at is not None else run.now
    changes: dict[str, Any] = {}
    if update.subWorkflowId and update.subWorkflowId != task.subWorkflowId:
        changes["subWorkflowId"] = update.subWorkflowId
    if update.workerId and update.workerId != task.workerId:
        changes["workerId"] = update.workerId
    starting = update.started or update.heartbeat or update.status is TaskStatus.IN_PROGRESS
    if starting and task.status is TaskStatus.SCHEDULED:
        changes.update(status=TaskStatus.IN_PROGRESS, startTime=at, updateTime=at)
    if update.heartbeat:
        changes.update(heartbeat=True, updateTime=at)
    status = update.status
    reason = update.reasonForIncompletion
    if update.outputData is not None:
        problem = oversize("its output is", update.outputData, run.blueprint.payloadLimits)
        if problem is None:
            changes["outputData"] = update.outputData
        elif status is not None and status.terminal:
            # Kept, the value would make the state too large to store: the task fails and the output is dropped.
            status, reason = TaskStatus.FAILED_WITH_TERMINAL_ERROR, f"task {task.referenceTaskName!r}: {problem}"
            changes["outputData"] = {}
    if status is not None and status.terminal:
        changes.update(
            status=status,
            endTime=at,
            startTime=task.startTime or changes.get("startTime") or at,
            reasonForIncompletion=_shortened(reason) if reason else None,
        )
    if changes:
        run.replace(task, **changes)


def _shortened(reason: str) -> str:
    """A reason within the limit, its start and its end kept: a failure passed up through nested
    sub-workflows is quoted in Conductor's words at every level, and its cause is at the end."""
    if len(reason) <= _MAX_RESULT_REASON:
        return reason
    half = (_MAX_RESULT_REASON - 3) // 2
    return f"{reason[:half]} … {reason[-half:]}"


def _internal_error(workflow: Workflow, now: int, error: Exception) -> Decision:
    """The never-raise guard: the workflow FAILED with the error named, every handed-out attempt canceled."""
    if workflow.status.terminal:
        return Decision(workflow=workflow, messages=(f"internal error ignored: {error!r}",))
    actions: list[Action] = []
    tasks: list[Task] = []
    for task in workflow.tasks:
        if not task.status.terminal:
            if task.dispatched:
                actions.append(CancelTask(taskId=task.taskId, referenceTaskName=task.referenceTaskName,
                                          taskType=task.taskType, subWorkflowId=task.subWorkflowId,
                                          reason="internal error"))
            task = task.model_copy(update={"status": TaskStatus.CANCELED, "endTime": now, "executed": True})
        tasks.append(task)
    reason = f"internal error in the engine: {type(error).__name__}: {error}"
    failed = workflow.model_copy(update={"status": WorkflowStatus.FAILED, "reasonForIncompletion": reason,
                                         "endTime": now, "tasks": tasks, "updateTime": now})
    return Decision(workflow=failed, actions=tuple(actions), changed=True, messages=(reason,))
