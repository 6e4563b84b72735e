"""``decide``: one evaluation of a workflow, Conductor's DeciderService as a pure function.

    decide(blueprint, workflow, observations, now) -> Decision

It applies what the driver observed (task results, starts, heartbeats, user operations, namespace load),
fires the timers that are due (timeouts, retry delays, WAIT), moves the workflow along its definition
(scheduling successors, forks, joins, switches, loops), hands driver-run attempts out as actions while the
concurrency and rate gates allow, and says when it wants to be called again (``wakeAt``).

Design notes
- Never raises: bad data becomes a FAILED task or workflow with a reason; an unexpected error inside the
  engine fails the workflow with "internal error" rather than crash a driver's loop.
- Cost per event does not grow with the number of finished tasks: an ``_Index`` (positions, latest
  attempt per reference, active attempts, timer heaps, join bookkeeping) is derived once from the task list
  and then carried from each Workflow value to the next one ``decide`` returns (the old value gives it up).
  A driver that re-reads the state from storage pays one O(n) rebuild.
- Task ids are deterministic (workflow id + seq), so a driver that replays a decision after a crash
  names the same Jobs and child workflows again.
- Successful terminal tasks are "executed" (their successors scheduled) in the same call, in order; a
  workflow's tasks only ever go SCHEDULED -> IN_PROGRESS -> terminal; a retry is a new attempt.
"""

from __future__ import annotations

import heapq
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kondukt.engine import scripting
from kondukt.engine.decision import (
    Action,
    CallHttp,
    CancelTask,
    Decision,
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
from kondukt.engine.expressions import resolve, task_view
from kondukt.engine.models import (
    FORK_TASK_TYPE,
    Blueprint,
    Task,
    TaskDef,
    TaskStatus,
    TaskType,
    TimeoutPolicy,
    Workflow,
    WorkflowDef,
    WorkflowStatus,
    WorkflowTask,
    WorkflowTimeoutPolicy,
)
from kondukt.engine.plan import Next, Plan, base_ref, iteration_ref, plan_for
from kondukt.engine.policies import SYSTEM_TASK_DEF, allowed_retries, deadlines_of, retry_delay_seconds
from kondukt.engine.waits import parse_wait_duration, parse_wait_until

_TASK_ID_NAMESPACE = uuid.UUID("6f1c2a4e-3b7d-4c55-9d0e-6b1f8a2c7e01")

#: Task types the driver runs (the engine hands them out as actions); everything else runs in the engine.
DRIVER_TYPES = frozenset({TaskType.SIMPLE.value, TaskType.HTTP.value, TaskType.SUB_WORKFLOW.value,
                          TaskType.START_WORKFLOW.value})
_JOIN_TYPES = frozenset({TaskType.JOIN.value, TaskType.EXCLUSIVE_JOIN.value})
_CONTAINER_TYPES = frozenset({TaskType.JOIN.value, TaskType.EXCLUSIVE_JOIN.value, TaskType.DO_WHILE.value})
_FAILED_STATUSES = frozenset({TaskStatus.FAILED, TaskStatus.FAILED_WITH_TERMINAL_ERROR, TaskStatus.TIMED_OUT})
#: DO_WHILE iterations evaluated in one call before yielding (a loop of engine-only tasks never ends a call).
_LOOP_BUDGET = 200
#: Rounds of (fire due timers, move the flow on) per call, for timers that fall due as tasks are scheduled.
_SETTLE_ROUNDS = 4
_APPLIED_OPERATIONS_KEPT = 50
_TERMINATION_STATUSES = {"COMPLETED": WorkflowStatus.COMPLETED, "FAILED": WorkflowStatus.FAILED,
                         "TERMINATED": WorkflowStatus.TERMINATED}
#: Conductor never retries its flow-control tasks (TaskType.isBuiltIn), whatever their retryCount says.
_NEVER_RETRIED = frozenset({TaskType.DECISION.value, TaskType.SWITCH.value, FORK_TASK_TYPE, TaskType.JOIN.value,
                            TaskType.EXCLUSIVE_JOIN.value, TaskType.DO_WHILE.value})
_MAX_RESULT_REASON = 2000


def task_id_for(workflow_id: str, seq: int) -> str:
    """The deterministic id of the attempt with this seq (a UUID, like Conductor's)."""
    return str(uuid.uuid5(_TASK_ID_NAMESPACE, f"{workflow_id}/{seq}"))


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
        return _Run(blueprint, workflow, now).decide(observations)
    except Exception as error:  # the contract: bad data or an engine bug fails the workflow, never the driver
        return _internal_error(workflow, now, error)


# --------------------------------------------------------------------------------------------------
# The index carried between states
# --------------------------------------------------------------------------------------------------


class _Index:
    """Derived lookups over a workflow's task list; rebuilt from the list whenever it is missing."""

    __slots__ = ("active", "deadlines", "delayed", "join_wait", "latest", "pos", "ready", "recent_starts",
                 "running", "tasks_ref", "unexecuted", "waiters")

    def __init__(self) -> None:
        self.tasks_ref: list[Task] | None = None  # the task list this index describes
        self.pos: dict[str, int] = {}
        self.latest: dict[str, int] = {}
        self.active: set[str] = set()
        self.unexecuted: dict[str, None] = {}  # ordered set: terminal attempts whose successors are due
        self.delayed: list[tuple[int, int, str]] = []  # (ready_at, seq, taskId): not yet handed out
        self.ready: dict[str, deque[str]] = {}  # taskDefName -> attempts waiting for their gate
        self.deadlines: list[tuple[int, int, str, str]] = []  # (at, seq, taskId, kind)
        self.join_wait: dict[str, set[str]] = {}  # join taskId -> references not yet final
        self.waiters: dict[str, list[str]] = {}  # reference -> join taskIds waiting for it
        self.running: dict[str, int] = {}  # taskDefName -> this workflow's dispatched, unfinished attempts
        self.recent_starts: dict[str, deque[int]] = {}  # taskDefName -> this workflow's dispatch times


# --------------------------------------------------------------------------------------------------
# One evaluation
# --------------------------------------------------------------------------------------------------


class _Run:
    def __init__(self, blueprint: Blueprint, workflow: Workflow, now: int) -> None:
        self.blueprint = blueprint
        self.definition: WorkflowDef = blueprint.workflow
        self.plan: Plan = plan_for(self.definition)
        self.now = now
        self.original = workflow
        self.tasks: list[Task] = list(workflow.tasks)
        self.fields: dict[str, Any] = {}
        self.status = workflow.status
        self.actions: list[Action] = []
        self.transitions: list[TaskTransition] = []
        self.messages: list[str] = []
        self.changed = False
        self.load: dict[str, TaskLoad] = {}
        self.dispatched_now: dict[str, list[int]] = {}
        self.waiting_on: set[str] = set()
        self.wake_candidates: list[int] = []
        self.loop_budget = _LOOP_BUDGET
        self.timeout_kinds: dict[str, str] = {}
        self.next_seq = workflow.nextSeq
        self._wf_view: dict[str, Any] | None = None
        index = workflow._index
        if isinstance(index, _Index) and index.tasks_ref is workflow.tasks:
            # Carry the index over. It is updated in place to describe the new task list, so the old
            # Workflow value no longer matches it (tasks_ref) and rebuilds if it is decided again. It is
            # detached at once: should this run fail half-way, the input state rebuilds rather than trust it.
            index.tasks_ref = None
            self.idx = index
        else:
            self.idx = self._build_index()

    # ---------------------------------------------------------------------------------------- driver

    def decide(self, observations: Sequence[Observation]) -> Decision:
        if not self.tasks and self.status is WorkflowStatus.RUNNING:
            # A new run starts before any operation applies: a skip or complete observed together with the
            # creation then finds its task (and a pause holds the first attempt back).
            self._start()
        for observation in observations:
            if isinstance(observation, Operation):
                self._apply_operation(observation)
        for observation in observations:
            if isinstance(observation, Load):
                self.load = dict(observation.byTaskDef)
            elif isinstance(observation, TaskUpdate):
                self._apply_update(observation)
        if not self.status.terminal:
            if not self.tasks and self.status is WorkflowStatus.RUNNING:
                self._start()
            self._check_workflow_timeout()
            for _ in range(_SETTLE_ROUNDS):
                if self.status is not WorkflowStatus.RUNNING:
                    break  # task timers are not evaluated while PAUSED (as in Conductor): they fire on resume
                self._fire_deadlines()
                self._execute_pending()
                # A task scheduled just now may already be due (a WAIT until a past instant): settle it in this
                # call rather than ask the driver to come back at once.
                heap = self.idx.deadlines
                if not heap or heap[0][0] > self.now or self.loop_budget <= 0:
                    break
            if self.status is WorkflowStatus.RUNNING:
                self._dispatch()
                self._check_completion()
        return self._decision()

    def _decision(self) -> Decision:
        workflow = self.original
        if self.changed:
            update: dict[str, Any] = dict(self.fields)
            update["tasks"] = self.tasks
            update["status"] = self.status
            update["nextSeq"] = self.next_seq
            update["updateTime"] = self.now
            workflow = self.original.model_copy(update=update)
        self.idx.tasks_ref = workflow.tasks
        workflow._index = self.idx
        wake = self._next_wakeup() if not self.status.terminal else None
        return Decision(
            workflow=workflow,
            actions=tuple(self.actions),
            transitions=tuple(self.transitions),
            wakeAt=wake,
            changed=self.changed,
            messages=tuple(self.messages),
            waitingOn=tuple(sorted(self.waiting_on)),
        )

    # ----------------------------------------------------------------------------------- state access

    def _field(self, name: str) -> Any:
        return self.fields[name] if name in self.fields else getattr(self.original, name)

    def _set(self, **values: Any) -> None:
        self.fields.update(values)
        self.changed = True
        self._wf_view = None

    def _set_status(self, status: WorkflowStatus) -> None:
        if status is not self.status:
            self.status = status
            self.changed = True
            self._wf_view = None

    def _get(self, task_id: str) -> Task | None:
        position = self.idx.pos.get(task_id)
        return self.tasks[position] if position is not None else None

    def _latest(self, ref: str) -> Task | None:
        position = self.idx.latest.get(ref)
        return self.tasks[position] if position is not None else None

    def _workflow_view(self) -> dict[str, Any]:
        if self._wf_view is None:
            self._wf_view = {
                "input": self._field("input"),
                "output": self._field("output"),
                "variables": self._field("variables"),
                "status": self.status.value,
                "workflowId": self.original.workflowId,
                "parentWorkflowId": self.original.parentWorkflowId,
                "parentWorkflowTaskId": self.original.parentWorkflowTaskId,
                "workflowType": self.original.workflowName,
                "version": self.original.workflowVersion,
                "correlationId": self.original.correlationId,
                "reasonForIncompletion": self._field("reasonForIncompletion"),
                "schemaVersion": 2,
                "startTime": self._field("startTime"),
            }
        return self._wf_view

    def _lookup(self, ref: str) -> Mapping[str, Any] | None:
        task = self._latest(ref)
        return task_view(task, self.original.workflowId) if task is not None else None

    def _resolve(self, template: Any, task_id: str | None = None) -> Any:
        return resolve(template, self._workflow_view(), self._lookup, task_id=task_id)

    def _workflow_task(self, task: Task) -> WorkflowTask | None:
        if task.workflowTask is not None:
            return task.workflowTask
        if task.parentTaskRef is not None:
            return None  # a plain dynamically forked task: never in the definition (its reference may not be)
        return self.plan.task(base_ref(task.referenceTaskName) if task.loopTaskRef else task.referenceTaskName)

    def _task_def(self, name: str, workflow_task: WorkflowTask | None = None) -> TaskDef | None:
        if workflow_task is not None and workflow_task.taskDefinition is not None:
            return workflow_task.taskDefinition
        return self.blueprint.taskDefs.get(name)

    def _def_for(self, task: Task) -> TaskDef:
        found = self._task_def(task.taskDefName, self._workflow_task(task))
        return found if found is not None else SYSTEM_TASK_DEF

    # ------------------------------------------------------------------------------------ index upkeep

    def _build_index(self) -> _Index:
        index = _Index()
        self.idx = index
        joins: list[Task] = []
        windows: dict[str, int | None] = {}
        starts: dict[str, list[int]] = {}
        for position, task in enumerate(self.tasks):
            index.pos[task.taskId] = position
            index.latest[task.referenceTaskName] = position
            if task.loopTaskRef:
                index.latest[base_ref(task.referenceTaskName)] = position
            if task.dispatched:
                self._remember_start(task, windows, starts)
            if not task.status.terminal:
                index.active.add(task.taskId)
                if task.dispatched and task.taskType not in _CONTAINER_TYPES:
                    index.running[task.taskDefName] = index.running.get(task.taskDefName, 0) + 1
                if task.status is TaskStatus.SCHEDULED and not task.dispatched:
                    ready_at = task.scheduledTime + task.callbackAfterSeconds * 1000
                    heapq.heappush(index.delayed, (ready_at, task.seq, task.taskId))
                self._push_deadlines(task)
                if task.taskType in _JOIN_TYPES:
                    joins.append(task)
            elif not task.executed:
                index.unexecuted[task.taskId] = None
        for join in joins:
            self._register_join(join)
        index.recent_starts = {name: deque(sorted(times)) for name, times in starts.items()}
        return index

    def _remember_start(self, task: Task, windows: dict[str, int | None], starts: dict[str, list[int]]) -> None:
        """Rate limits without a Load count this workflow's own recent dispatches, taken from the state.

        The state keeps no dispatch instant once an attempt has started: its start time stands in (never
        earlier than the dispatch, so a driver that re-reads the state never starts more than the limit).
        """
        name = task.taskDefName
        if name not in windows:
            task_def = self._def_for(task)
            per, seconds = task_def.rateLimitPerFrequency, task_def.rateLimitFrequencyInSeconds
            windows[name] = seconds * 1000 if per and seconds else None
        window = windows[name]
        if window is None:
            return
        at = task.startTime or task.updateTime
        if at > self.now - window:
            starts.setdefault(name, []).append(at)

    def _rebuild_index(self) -> None:
        """Derive the index again after the task list was rewritten (operations, keepLastN).

        The exact dispatch times this run remembers for rate limits are kept (the rebuilt ones are estimates).
        """
        recent_starts = self.idx.recent_starts
        self.idx = self._build_index()
        self.idx.recent_starts = recent_starts

    def _push_deadlines(self, task: Task) -> None:
        for deadline in deadlines_of(task, self._def_for(task), self._wait_until(task)):
            heapq.heappush(self.idx.deadlines, (deadline.at, task.seq, task.taskId, deadline.kind))

    def _wait_until(self, task: Task) -> int | None:
        if task.taskType != TaskType.WAIT.value or task.status is not TaskStatus.IN_PROGRESS:
            return None
        return _wait_deadline(task.inputData, task.startTime)

    def _replace(self, old: Task, **changes: Any) -> Task:
        new = old.model_copy(update=changes)
        self.tasks[self.idx.pos[old.taskId]] = new
        self.changed = True
        index = self.idx
        task_id = new.taskId
        was_active, is_active = not old.status.terminal, not new.status.terminal
        if was_active and not is_active:
            index.active.discard(task_id)
            if old.dispatched and old.taskType not in _CONTAINER_TYPES:
                index.running[old.taskDefName] = max(0, index.running.get(old.taskDefName, 0) - 1)
        elif is_active and not was_active:
            index.active.add(task_id)
        if new.dispatched and not old.dispatched and is_active:
            index.running[new.taskDefName] = index.running.get(new.taskDefName, 0) + 1
        if new.status.terminal and not new.executed:
            index.unexecuted[task_id] = None
        else:
            index.unexecuted.pop(task_id, None)
        if is_active and (
            new.status is not old.status or new.updateTime != old.updateTime or new.dispatched != old.dispatched
        ):
            self._push_deadlines(new)
        if new.status is not old.status:
            self.transitions.append(
                TaskTransition(
                    taskId=task_id,
                    referenceTaskName=new.referenceTaskName,
                    taskType=new.taskType,
                    fromStatus=old.status,
                    toStatus=new.status,
                    reason=new.reasonForIncompletion,
                )
            )
        return new

    def _append(self, task: Task) -> Task:
        index = self.idx
        position = len(self.tasks)
        self.tasks.append(task)
        self.changed = True
        index.pos[task.taskId] = position
        index.latest[task.referenceTaskName] = position
        if task.loopTaskRef:
            index.latest[base_ref(task.referenceTaskName)] = position
        if task.status.terminal:
            if not task.executed:
                index.unexecuted[task.taskId] = None
        else:
            index.active.add(task.taskId)
            self._push_deadlines(task)
        self.transitions.append(
            TaskTransition(
                taskId=task.taskId,
                referenceTaskName=task.referenceTaskName,
                taskType=task.taskType,
                fromStatus=None,
                toStatus=task.status,
                reason=task.reasonForIncompletion,
            )
        )
        return task

    def _new_task(
        self,
        workflow_task: WorkflowTask,
        ref: str,
        *,
        task_type: str,
        task_def_name: str,
        input_data: dict[str, Any],
        iteration: int,
        loop_ref: str | None,
        parent_ref: str | None,
        status: TaskStatus = TaskStatus.SCHEDULED,
        retry_count: int = 0,
        keep_workflow_task: bool = False,
        **extra: Any,
    ) -> Task:
        seq = self.next_seq
        self.next_seq += 1
        self.changed = True
        now = self.now
        terminal = status.terminal
        return Task(
            taskId=task_id_for(self.original.workflowId, seq),
            taskType=task_type,
            referenceTaskName=ref,
            taskDefName=task_def_name,
            status=status,
            seq=seq,
            retryCount=retry_count,
            iteration=iteration,
            inputData=input_data,
            scheduledTime=now,
            startTime=now if status is not TaskStatus.SCHEDULED else 0,
            endTime=now if terminal else 0,
            updateTime=now,
            loopTaskRef=loop_ref,
            parentTaskRef=parent_ref,
            workflowTask=workflow_task if keep_workflow_task else None,
            **extra,
        )

    # ------------------------------------------------------------------------------------ observations

    def _apply_update(self, update: TaskUpdate) -> None:
        task = self._get(update.taskId)
        if task is None:
            self.messages.append(f"ignored an update for unknown task {update.taskId}")
            return
        if task.status.terminal:
            return  # late news about a finished (or canceled) attempt: idempotent
        at = update.at if update.at is not None else self.now
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
        if update.outputData is not None:
            changes["outputData"] = update.outputData
        if update.status is not None and update.status.terminal:
            reason = update.reasonForIncompletion
            changes.update(
                status=update.status,
                endTime=at,
                startTime=task.startTime or changes.get("startTime") or at,
                reasonForIncompletion=reason[:_MAX_RESULT_REASON] if reason else None,
            )
        if changes:
            self._replace(task, **changes)

    def _apply_operation(self, op: Operation) -> None:
        applied: list[str] = list(self._field("appliedOperations"))
        if op.nonce in applied:
            return
        applied.append(op.nonce)
        self._set(appliedOperations=applied[-_APPLIED_OPERATIONS_KEPT:])
        handler = _OPERATIONS.get(op.op)
        if handler is None:  # pragma: no cover - the enum is closed
            return
        refusal = handler(self, op)
        if refusal:
            self.messages.append(f"operation {op.op.value} ({op.nonce}) not applied: {refusal}")

    # --------------------------------------------------------------------------------------- operations

    def _op_pause(self, op: Operation) -> str | None:
        if self.status is not WorkflowStatus.RUNNING:
            return f"the workflow is {self.status.value}"
        self._set_status(WorkflowStatus.PAUSED)
        return None

    def _op_resume(self, op: Operation) -> str | None:
        if self.status is not WorkflowStatus.PAUSED:
            return f"the workflow is {self.status.value}"
        self._set_status(WorkflowStatus.RUNNING)
        return None

    def _op_terminate(self, op: Operation) -> str | None:
        if self.status.terminal:
            return f"the workflow is already {self.status.value}"
        self._end(WorkflowStatus.TERMINATED, op.reason or "terminated by user")
        return None

    def _op_retry(self, op: Operation) -> str | None:
        """Retry from the failed tasks (Conductor's retry): each failed or canceled latest attempt runs again.

        A JOIN, or a DO_WHILE that was canceled around a failed task, is reopened rather than run again; a
        DO_WHILE or fork that failed by itself (its condition, its dynamic input) is evaluated again.
        """
        if self.status not in (WorkflowStatus.FAILED, WorkflowStatus.TIMED_OUT, WorkflowStatus.TERMINATED):
            return f"only a FAILED, TIMED_OUT or TERMINATED workflow can be retried (it is {self.status.value})"
        candidates = [self.tasks[position] for position in sorted(set(self.idx.latest.values()))
                      if self.tasks[position].status in _FAILED_STATUSES
                      or self.tasks[position].status is TaskStatus.CANCELED]
        if not candidates:
            return "no failed task to retry"
        # RUNNING first: what is scheduled below must see a running workflow.
        self._set_status(WorkflowStatus.RUNNING)
        self._set(reasonForIncompletion=None, endTime=0, lastRetriedTime=self.now, failedReferenceTaskNames=[],
                  failedTaskId=None, failureWorkflowStarted=False)
        reopened_joins: list[str] = []
        for task in candidates:
            task = self.tasks[self.idx.pos[task.taskId]]
            reopen = task.taskType in _JOIN_TYPES or (task.taskType == TaskType.DO_WHILE.value
                                                      and task.status is TaskStatus.CANCELED)
            if reopen:
                self._replace(task, status=TaskStatus.IN_PROGRESS, endTime=0, executed=False,
                              reasonForIncompletion=None)
                if task.taskType in _JOIN_TYPES:
                    reopened_joins.append(task.taskId)
            else:
                self._replace(task, retried=True, executed=True)
                self._new_attempt(task, delay_seconds=0, reuse_input=False)
        self._rebuild_index()
        self._settle_reopened_joins(reopened_joins)
        return None

    def _settle_reopened_joins(self, join_ids: Sequence[str]) -> None:
        """A reopened JOIN whose joined tasks are all final already completes now (nothing else would wake it)."""
        for join_id in join_ids:
            join = self._get(join_id)
            if join is not None and not join.status.terminal and not self.idx.join_wait.get(join_id):
                self._evaluate_join(join)

    def _op_restart(self, op: Operation) -> str | None:
        if not self.status.terminal:
            return f"only a finished workflow can be restarted (it is {self.status.value})"
        definition = self.definition
        self.tasks = []
        self._set_status(WorkflowStatus.RUNNING)
        new_input = op.workflowInput if op.workflowInput is not None else self._field("input")
        self._set(input=new_input, output={}, variables=dict(definition.variables or {}), reasonForIncompletion=None,
                  startTime=self.now, endTime=0, lastRetriedTime=0, failedReferenceTaskNames=[], failedTaskId=None,
                  failureWorkflowStarted=False, timeoutAlerted=False)
        self._rebuild_index()
        return None

    def _op_rerun(self, op: Operation) -> str | None:
        target = self._get(op.taskId) if op.taskId else None
        if target is None and op.taskReferenceName:
            target = self._latest(op.taskReferenceName)
        if target is None:
            return f"no task {op.taskId or op.taskReferenceName!r} in this workflow"
        dynamic = target.parentTaskRef is not None
        workflow_task = self._workflow_task(target)
        if workflow_task is None and dynamic:
            definition_ref = base_ref(target.referenceTaskName) if target.loopTaskRef else target.referenceTaskName
            workflow_task = WorkflowTask(name=target.taskDefName, taskReferenceName=definition_ref)
        if workflow_task is None:
            return f"task {target.referenceTaskName!r} is not in the definition"
        # Reopened rather than run again: the containers enclosing the target, and the target itself when it
        # is a JOIN (its joinOn was fixed when its fork ran).
        reopened = self._ancestor_containers(target)
        if target.taskType in _JOIN_TYPES:
            reopened.add(target.taskId)
        target_path = self._branch_path(target)
        kept: list[Task] = []
        for task in self.tasks:
            if task.taskId in reopened:
                kept.append(task.model_copy(update=self._reopened(task, target)))
            elif task.seq < target.seq or (task.taskId != target.taskId
                                           and _parallel(target_path, self._branch_path(task))):
                kept.append(task)  # before the target, or in a parallel branch: unaffected by the rerun
            else:
                self._cancel_driver_work(task, f"rerun from {target.referenceTaskName!r}")
        self.tasks = kept
        self.changed = True
        if op.workflowInput is not None:
            self._set(input=op.workflowInput)
        self._set_status(WorkflowStatus.RUNNING)
        self._set(reasonForIncompletion=None, endTime=0, failedReferenceTaskNames=[], failedTaskId=None,
                  failureWorkflowStarted=False)
        self._rebuild_index()
        self._settle_reopened_joins([t.taskId for t in kept if t.taskId in reopened and t.taskType in _JOIN_TYPES])
        if target.taskId not in reopened:
            # A dynamically forked task's input came from its fork: it is kept unless the user gives a new one.
            task_input = op.taskInput if op.taskInput is not None or not dynamic else target.inputData
            self._schedule(workflow_task, target.iteration, target.loopTaskRef, target.parentTaskRef,
                           input_override=task_input, dynamic=dynamic)
        return None

    def _reopened(self, container: Task, target: Task) -> dict[str, Any]:
        """The changes that put a JOIN / DO_WHILE back to work for a rerun of ``target``."""
        changes: dict[str, Any] = dict(status=TaskStatus.IN_PROGRESS, endTime=0, executed=False,
                                       reasonForIncompletion=None)
        if container.taskType == TaskType.DO_WHILE.value:
            # The loop goes back to the target's iteration; later iterations' outputs are gone.
            iteration = max(1, target.iteration)
            output = {k: v for k, v in container.outputData.items() if not (k.isdigit() and int(k) >= iteration)}
            output["iteration"] = iteration
            items = container.inputData.get("items")
            if isinstance(items, list) and iteration <= len(items):
                output.update(_loop_item(items, iteration))
            changes["outputData"] = output
        else:
            changes["outputData"] = {}
        return changes

    def _branch_path(self, task: Task) -> list[tuple[str, str]]:
        """The fork branches ``task`` runs in, innermost first (dynamic fork branches included)."""
        path: list[tuple[str, str]] = []
        ref = base_ref(task.referenceTaskName) if task.loopTaskRef else task.referenceTaskName
        if task.parentTaskRef is not None:
            path.append((task.parentTaskRef, task.referenceTaskName))
            ref = base_ref(task.parentTaskRef)
        return path + self.plan.branch_path(ref, task.iteration)

    def _ancestor_containers(self, target: Task) -> set[str]:
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
                slot = self.plan.slot(ref)
                if slot is None or slot.owner_ref is None:
                    break
                owner_ref, fork_is_owner = slot.owner_ref, slot.owner.value == "fork"
            owner = self.plan.task(owner_ref)
            if owner is None:
                break
            if owner.type == TaskType.DO_WHILE:
                loop = self._latest(owner_ref)
                if loop is not None:
                    found.add(loop.taskId)
            elif fork_is_owner:
                successor = self.plan.successor(owner_ref)
                if successor.task is not None:
                    join = self._latest(iteration_ref(successor.task.taskReferenceName, target.iteration)
                                        if target.loopTaskRef else successor.task.taskReferenceName)
                    if join is not None:
                        found.add(join.taskId)
            ref = owner_ref
        return found

    def _op_skip(self, op: Operation) -> str | None:
        if self.status.terminal:
            return f"the workflow is {self.status.value}"
        ref = op.taskReferenceName
        if not ref:
            return "skip needs a task reference"
        task = self._latest(ref)
        if task is not None and not task.status.terminal:
            self._cancel_driver_work(task, "skipped by user")
            self._replace(task, status=TaskStatus.SKIPPED, endTime=self.now, outputData=op.outputData or {})
            return None
        if task is not None:
            return f"task {ref!r} already ran ({task.status.value})"
        workflow_task = self.plan.task(ref)
        if workflow_task is None:
            return f"no task {ref!r} in the definition"
        # Not reached yet: record it SKIPPED (and executed) so that the flow passes over it when it gets there.
        # Inside a DO_WHILE, ``ref__N`` names iteration N of the loop.
        slot = self.plan.slot(ref)
        loop_ref = slot.loop_ref if slot is not None and base_ref(ref) != ref else None
        iteration = int(ref.rsplit("__", 1)[1]) if loop_ref else 0
        self._append(self._new_task(workflow_task, ref, task_type=_execution_type(workflow_task),
                                    task_def_name=workflow_task.name, input_data={}, iteration=iteration,
                                    loop_ref=loop_ref, parent_ref=None, status=TaskStatus.SKIPPED,
                                    outputData=op.outputData or {}, executed=True))
        return None

    def _op_complete(self, op: Operation) -> str | None:
        task = self._get(op.taskId) if op.taskId else None
        if task is None and op.taskReferenceName:
            task = self._latest(op.taskReferenceName)
        if task is None:
            return f"no task {op.taskId or op.taskReferenceName!r} in this workflow"
        if task.status.terminal:
            return f"task {task.referenceTaskName!r} is already {task.status.value}"
        status = op.status or TaskStatus.COMPLETED
        if not status.terminal:
            return f"{status.value} is not a terminal task status"
        self._cancel_driver_work(task, f"completed by user as {status.value}")
        output = {**task.outputData, **(op.outputData or {})}
        self._replace(task, status=status, endTime=self.now, startTime=task.startTime or self.now,
                      outputData=output, reasonForIncompletion=op.reason)
        return None

    # --------------------------------------------------------------------------------------- lifecycle

    def _start(self) -> None:
        first = self.plan.first
        if first is None:
            return  # no tasks: _check_completion completes it
        self._schedule(first, 0, None, None)

    def _check_workflow_timeout(self) -> None:
        seconds = self.definition.timeoutSeconds
        if not seconds:
            return
        base = self._timeout_base()
        deadline = base + seconds * 1000
        if self.now < deadline:
            self.wake_candidates.append(deadline)
            return
        if self.definition.timeoutPolicy is WorkflowTimeoutPolicy.TIME_OUT_WF:
            self._end(
                WorkflowStatus.TIMED_OUT,
                f"Workflow timed out after {(self.now - base) // 1000} seconds. "
                f"Timeout configured as {seconds} seconds. Timeout policy configured to TIME_OUT_WF",
            )
        elif not self._field("timeoutAlerted"):
            self._set(timeoutAlerted=True)
            self.messages.append(f"workflow exceeded its timeout of {seconds} seconds (ALERT_ONLY)")

    def _timeout_base(self) -> int:
        """The workflow timeout counts from the last retry, else from the start (as in Conductor)."""
        return int(self._field("lastRetriedTime") or self._field("startTime"))

    def _fire_deadlines(self) -> None:
        heap = self.idx.deadlines
        while heap and heap[0][0] <= self.now and not self.status.terminal:
            at, _, task_id, kind = heapq.heappop(heap)
            task = self._get(task_id)
            if task is None or task.status.terminal or not self._deadline_valid(task, at, kind):
                continue
            if kind == "wait":
                self._replace(task, status=TaskStatus.COMPLETED, endTime=self.now)
                continue
            task_def = self._def_for(task)
            reason = {
                "timeout": f"Task timed out after {(self.now - task.startTime) // 1000} seconds. Timeout "
                f"configured as {task_def.timeoutSeconds} seconds. Timeout policy configured to "
                f"{task_def.timeoutPolicy.value}",
                "poll": f"Task was not started within pollTimeoutSeconds ({task_def.pollTimeoutSeconds} s): "
                "its pod did not start running",
                "response": f"No heartbeat within responseTimeoutSeconds ({task_def.responseTimeoutSeconds} s)",
            }[kind]
            self._cancel_driver_work(task, reason)
            self.timeout_kinds[task_id] = kind
            self._replace(task, status=TaskStatus.TIMED_OUT, endTime=self.now, reasonForIncompletion=reason)

    def _deadline_valid(self, task: Task, at: int, kind: str) -> bool:
        return any(d.at == at and d.kind == kind
                   for d in deadlines_of(task, self._def_for(task), self._wait_until(task)))

    def _check_completion(self) -> None:
        if self.status is not WorkflowStatus.RUNNING or self.idx.active or self.idx.unexecuted:
            return
        if not self.tasks and self.plan.first is not None:
            return
        failed = [t for t in self.tasks if t.status in _FAILED_STATUSES and t.executed and not t.retried]
        if failed:
            first = failed[0]
            self._end(WorkflowStatus.FAILED, first.reasonForIncompletion
                      or f"task {first.referenceTaskName!r} {first.status.value}", failed_task=first)
            return
        self._set_status(WorkflowStatus.COMPLETED)
        self._set(endTime=self.now, output=self._workflow_output())

    def _workflow_output(self, failed_task: Task | None = None) -> dict[str, Any]:
        """outputParameters resolved, else the output of the task that failed the workflow or of the last task."""
        if self.definition.outputParameters:
            resolved = self._resolve(self.definition.outputParameters)
            return resolved if isinstance(resolved, dict) else {"output": resolved}
        last = failed_task if failed_task is not None else self.tasks[-1] if self.tasks else None
        return dict(last.outputData) if last is not None else {}

    def _end(
        self,
        status: WorkflowStatus,
        reason: str | None,
        *,
        failed_task: Task | None = None,
        output: dict[str, Any] | None = None,
    ) -> None:
        """End the workflow: cancel what still runs, compute the output, start the failureWorkflow."""
        self._set_status(status)
        self._set(endTime=self.now, reasonForIncompletion=reason)
        # In task-list order: a set's order depends on its history, and a decision must not (the same state
        # read back from storage must give the same actions in the same order).
        for task_id in sorted(self.idx.active, key=self.idx.pos.__getitem__):
            task = self._get(task_id)
            if task is None:
                continue
            self._cancel_driver_work(task, f"workflow {status.value}")
            self._replace(task, status=TaskStatus.CANCELED, endTime=self.now, executed=True,
                          reasonForIncompletion=f"workflow {status.value}: {reason}" if reason else None)
        self.idx.unexecuted.clear()
        if failed_task is not None:
            self._set(failedReferenceTaskNames=[failed_task.referenceTaskName], failedTaskId=failed_task.taskId)
        self._set(output=output if output is not None else self._workflow_output(failed_task))
        if status in (WorkflowStatus.FAILED, WorkflowStatus.TIMED_OUT):
            self._start_failure_workflow(status, reason, failed_task)

    def _start_failure_workflow(self, status: WorkflowStatus, reason: str | None, failed_task: Task | None) -> None:
        name = self.definition.failureWorkflow
        if not name or self._field("failureWorkflowStarted"):
            return
        self._set(failureWorkflowStarted=True)
        failed_summary = {
            "workflowId": self.original.workflowId,
            "workflowName": self.original.workflowName,
            "workflowVersion": self.original.workflowVersion,
            "status": status.value,
            "reasonForIncompletion": reason,
            "input": self._field("input"),
            "output": self._field("output"),
            "correlationId": self.original.correlationId,
            "tasks": [
                {"referenceTaskName": t.referenceTaskName, "taskType": t.taskType, "status": t.status.value,
                 "taskId": t.taskId, "reasonForIncompletion": t.reasonForIncompletion}
                for t in self.tasks if not t.status.successful
            ],
        }
        workflow_input = {
            **self._field("input"),
            "workflowId": self.original.workflowId,
            "reason": reason,
            "failureStatus": status.value,
            "failureTaskId": failed_task.taskId if failed_task else None,
            "failedWorkflow": failed_summary,
        }
        applied = self._field("appliedOperations")
        latest_nonce = applied[-1] if applied else ""
        self.actions.append(StartWorkflow(
            # One failure workflow per failure, named from the state (a replayed decision names the same one).
            # Failing again takes an operation (retry, rerun, restart), whose nonce is then the latest applied.
            requestId=f"{self.original.workflowId}/failure/{self.next_seq}/{latest_nonce}",
            name=name,
            input=workflow_input,
            correlationId=self.original.correlationId,
            purpose="failureWorkflow",
        ))

    def _cancel_driver_work(self, task: Task, reason: str) -> None:
        if task.dispatched and not task.status.terminal and task.taskType not in _CONTAINER_TYPES:
            self.actions.append(CancelTask(taskId=task.taskId, referenceTaskName=task.referenceTaskName,
                                           taskType=task.taskType, subWorkflowId=task.subWorkflowId,
                                           reason=reason))

    # ------------------------------------------------------------------------------ moving the flow on

    def _execute_pending(self) -> None:
        while self.idx.unexecuted and self.status is WorkflowStatus.RUNNING:
            # Read the index afresh each time: a DO_WHILE's keepLastN rebuilds it in the middle of this loop.
            pending = self.idx.unexecuted
            if self.loop_budget <= 0:
                self.wake_candidates.append(self.now)
                return
            task_id = next(iter(pending))
            task = self._get(task_id)
            if task is None or not task.status.terminal or task.executed:
                pending.pop(task_id, None)
                continue
            self._on_terminal(task)

    def _on_terminal(self, task: Task) -> None:
        workflow_task = self._workflow_task(task)
        if task.status.successful or task.status is TaskStatus.CANCELED:
            task = self._replace(task, executed=True)
            self._notify_final(task)
            if task.status is not TaskStatus.CANCELED:
                self._schedule_next(task, workflow_task)
            return
        task_def = self._def_for(task)
        if task.status is TaskStatus.TIMED_OUT and self.timeout_kinds.get(task.taskId) != "response" \
                and task_def.timeoutPolicy is TimeoutPolicy.TIME_OUT_WF:
            # TIME_OUT_WF times the workflow out at once: no retry, and it wins over optional (as in Conductor).
            task = self._replace(task, executed=True)
            self._end(WorkflowStatus.TIMED_OUT, task.reasonForIncompletion
                      or f"task {task.referenceTaskName!r} timed out", failed_task=task)
            return
        if self._should_retry(task, workflow_task, task_def):
            self._replace(task, retried=True, executed=True)
            self._new_attempt(task, delay_seconds=retry_delay_seconds(task_def, task.retryCount), reuse_input=False)
            return
        if workflow_task is not None and workflow_task.optional:
            task = self._replace(task, status=TaskStatus.COMPLETED_WITH_ERRORS, executed=True)
            self._notify_final(task)
            self._schedule_next(task, workflow_task)
            return
        task = self._replace(task, executed=True)
        if workflow_task is not None and workflow_task.permissive:
            failed = list(self._field("failedReferenceTaskNames"))
            self._set(failedReferenceTaskNames=[*failed, task.referenceTaskName])
            self._notify_final(task)
            self._schedule_next(task, workflow_task)
            return
        end_status = WorkflowStatus.TIMED_OUT if task.status is TaskStatus.TIMED_OUT else WorkflowStatus.FAILED
        reason = task.reasonForIncompletion or f"task {task.referenceTaskName!r} ended {task.status.value}"
        self._end(end_status, reason, failed_task=task)

    def _should_retry(self, task: Task, workflow_task: WorkflowTask | None, task_def: TaskDef) -> bool:
        if not task.status.retriable or task.status is TaskStatus.COMPLETED or task.taskType in _NEVER_RETRIED:
            return False
        if task.retryCount >= allowed_retries(task_def, workflow_task):
            return False
        if task.status is TaskStatus.TIMED_OUT and self.timeout_kinds.get(task.taskId) != "response" \
                and task_def.timeoutPolicy is not TimeoutPolicy.RETRY:
            return False
        if task_def.totalTimeoutSeconds:
            first = self._first_attempt(task)
            if self.now - first.scheduledTime >= task_def.totalTimeoutSeconds * 1000:
                return False
        return True

    def _first_attempt(self, task: Task) -> Task:
        current = task
        for _ in range(task.retryCount + 1):
            previous = self._get(current.retriedTaskId) if current.retriedTaskId else None
            if previous is None:
                break
            current = previous
        return current

    def _new_attempt(self, failed: Task, *, delay_seconds: int, reuse_input: bool) -> None:
        """Schedule the next attempt of ``failed``: inputs are resolved again, as Conductor does."""
        workflow_task = self._workflow_task(failed)
        if not _is_driver_task(failed) and workflow_task is not None:
            # An engine-run task (INLINE, JSON_JQ_TRANSFORM, ...) is evaluated again at once.
            scheduled = self._schedule(workflow_task, failed.iteration, failed.loopTaskRef, failed.parentTaskRef,
                                       dynamic=failed.workflowTask is not None)
            # Read it back: scheduling may already have moved it on (a fork that failed, a finished INLINE).
            attempt = self._get(scheduled.taskId) if scheduled is not None else None
            if attempt is not None and attempt.taskId != failed.taskId:
                self._replace(attempt, retryCount=failed.retryCount + 1, retriedTaskId=failed.taskId)
            return
        input_data = failed.inputData
        if not reuse_input and workflow_task is not None and failed.parentTaskRef is None \
                and failed.taskType not in _CONTAINER_TYPES:
            input_data = self._task_input(workflow_task, self._task_def(failed.taskDefName, workflow_task))
            if failed.taskType == TaskType.SUB_WORKFLOW.value:
                input_data = self._with_sub_workflow_params(workflow_task, input_data)
        attempt = self._new_task(
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
        self._append(attempt)
        self._enqueue(attempt, delay_seconds)

    def _notify_final(self, task: Task) -> None:
        """``task`` will not run again: the joins waiting for its reference may now complete."""
        for join_id in self.idx.waiters.pop(task.referenceTaskName, []):
            remaining = self.idx.join_wait.get(join_id)
            if remaining is None:
                continue
            remaining.discard(task.referenceTaskName)
            join = self._get(join_id)
            if join is None or join.status.terminal:
                continue
            if join.taskType == TaskType.EXCLUSIVE_JOIN.value or not remaining:
                self._evaluate_join(join)

    def _schedule_next(self, task: Task, workflow_task: WorkflowTask | None) -> None:
        ttype = task.taskType
        if ttype in (TaskType.SWITCH.value, TaskType.DECISION.value) and workflow_task is not None:
            chosen = _chosen_case(workflow_task, task.outputData)
            if chosen:
                self._schedule(chosen[0], task.iteration, task.loopTaskRef, None)
                return
        elif ttype == TaskType.TERMINATE.value:
            self._terminate_from_task(task)
            return
        if task.parentTaskRef is not None:
            return  # a dynamically forked task: its branch ends with it
        ref = base_ref(task.referenceTaskName) if task.loopTaskRef else task.referenceTaskName
        successor = self.plan.successor(ref)
        if successor.kind is Next.TASK:
            assert successor.task is not None
            slot = self.plan.slot(ref)
            loop_ref = slot.loop_ref if slot is not None else None  # the loop enclosing both
            self._schedule(successor.task, task.iteration if loop_ref else 0, loop_ref, None)
        elif successor.kind is Next.LOOP:
            assert successor.ref is not None
            loop = self._latest(successor.ref) if task.loopTaskRef is None else self._loop_task(task)
            if loop is not None and not loop.status.terminal:
                self._evaluate_loop(loop)

    def _loop_task(self, task: Task) -> Task | None:
        return self._latest(task.loopTaskRef) if task.loopTaskRef else None

    def _terminate_from_task(self, task: Task) -> None:
        status_name = str(task.inputData.get("terminationStatus") or "COMPLETED").upper()
        status = _TERMINATION_STATUSES.get(status_name, WorkflowStatus.FAILED)
        reason = task.inputData.get("terminationReason") or \
            f"Workflow is {status.value} by TERMINATE task: {task.taskId}"  # Conductor's default reason
        # As in Conductor, a TERMINATE's output (its workflowOutput) replaces the workflow's output.
        self._end(status, str(reason), output=dict(task.outputData),
                  failed_task=task if status is WorkflowStatus.FAILED else None)

    # ------------------------------------------------------------------------------------- scheduling

    def _task_input(self, workflow_task: WorkflowTask, task_def: TaskDef | None,
                    overlay: Mapping[str, Any] | None = None) -> dict[str, Any]:
        resolved = self._resolve(workflow_task.inputParameters)
        data: dict[str, Any] = resolved if isinstance(resolved, dict) else {}
        if task_def is not None and task_def.inputTemplate:
            template = self._resolve(task_def.inputTemplate)
            if isinstance(template, dict):
                data = {**template, **data}
        if overlay:
            data = {**data, **overlay}
        return data

    def _schedule(
        self,
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
        existing = self._latest(ref)
        if existing is not None and existing.status is TaskStatus.SKIPPED and existing.executed \
                and not dynamic and existing.iteration == iteration:
            # Skipped by a user before the flow got here: pass over it.
            self._notify_final(existing)
            self._schedule_next(existing, workflow_task)
            return existing
        scheduler = _SCHEDULERS.get(workflow_task.type, _Run._schedule_unknown)
        created: Task | None = scheduler(self, workflow_task, ref, iteration, loop_ref, parent_ref, input_override, overlay,
                                         dynamic)
        return created

    def _input_for(self, workflow_task: WorkflowTask, task_def: TaskDef | None,
                   input_override: Mapping[str, Any] | None, overlay: Mapping[str, Any] | None) -> dict[str, Any]:
        if input_override is not None:
            return dict(input_override)
        return self._task_input(workflow_task, task_def, overlay)

    def _schedule_unknown(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None,
                          parent_ref: str | None, input_override: Mapping[str, Any] | None,
                          overlay: Mapping[str, Any] | None, dynamic: bool) -> Task:
        return self._append(self._new_task(
            wt, ref, task_type=wt.type, task_def_name=wt.name, input_data={}, iteration=iteration,
            loop_ref=loop_ref, parent_ref=parent_ref, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
            keep_workflow_task=dynamic, reasonForIncompletion=f"task {wt.taskReferenceName!r}: unknown task type "
            f"{wt.type!r}"))

    def _schedule_driver_task(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None,
                              parent_ref: str | None, input_override: Mapping[str, Any] | None,
                              overlay: Mapping[str, Any] | None, dynamic: bool) -> Task:
        """SIMPLE, HTTP, SUB_WORKFLOW, START_WORKFLOW: scheduled here, handed to the driver by _dispatch."""
        name = wt.name
        task_type = wt.type
        if task_type == TaskType.SIMPLE.value:
            task_def = self._task_def(name, wt)
            if task_def is None:
                return self._append(self._new_task(
                    wt, ref, task_type=name, task_def_name=name, input_data={}, iteration=iteration,
                    loop_ref=loop_ref, parent_ref=parent_ref, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
                    keep_workflow_task=dynamic and _non_trivial(wt),
                    reasonForIncompletion=f"task {wt.taskReferenceName!r}: no TaskDef named {name!r}"))
            task_type = name
        else:
            task_def = self._task_def(name, wt)
        input_data = self._input_for(wt, task_def, input_override, overlay)
        if wt.type == TaskType.SUB_WORKFLOW.value:
            input_data = self._with_sub_workflow_params(wt, input_data)
        task = self._append(self._new_task(
            wt, ref, task_type=task_type, task_def_name=name, input_data=input_data, iteration=iteration,
            loop_ref=loop_ref, parent_ref=parent_ref, keep_workflow_task=dynamic and _non_trivial(wt),
            startDelayInSeconds=wt.startDelay, callbackAfterSeconds=wt.startDelay))
        self._enqueue(task, wt.startDelay)
        return task

    def _with_sub_workflow_params(self, wt: WorkflowTask, input_data: dict[str, Any]) -> dict[str, Any]:
        """A SUB_WORKFLOW attempt records which workflow it starts (name and version may be expressions)."""
        params = wt.subWorkflowParam
        return {**input_data,
                "subWorkflowName": self._resolve(params.name) if params else None,
                "subWorkflowVersion": self._resolve(params.version) if params else None}

    def _schedule_dynamic(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None,
                          parent_ref: str | None, input_override: Mapping[str, Any] | None,
                          overlay: Mapping[str, Any] | None, dynamic: bool) -> Task:
        input_data = self._input_for(wt, None, input_override, overlay)
        name = input_data.get(wt.dynamicTaskNameParam or "taskToExecute")
        if not isinstance(name, str) or not name:
            return self._append(self._new_task(
                wt, ref, task_type=TaskType.DYNAMIC.value, task_def_name=wt.name, input_data=input_data,
                iteration=iteration, loop_ref=loop_ref, parent_ref=parent_ref,
                status=TaskStatus.FAILED_WITH_TERMINAL_ERROR, keep_workflow_task=dynamic,
                reasonForIncompletion=f"task {wt.taskReferenceName!r}: input {wt.dynamicTaskNameParam!r} does not "
                f"name a task (got {name!r})"))
        resolved = wt.model_copy(update={"name": name, "type": TaskType.SIMPLE.value})
        return self._schedule_driver_task(resolved, ref, iteration, loop_ref, parent_ref, input_data, None,
                                          dynamic)

    def _enqueue(self, task: Task, delay_seconds: int) -> None:
        if delay_seconds > 0:
            heapq.heappush(self.idx.delayed, (self.now + delay_seconds * 1000, task.seq, task.taskId))
        else:
            self.idx.ready.setdefault(task.taskDefName, deque()).append(task.taskId)

    # ----------------------------------------------------------------------------- engine-run tasks

    def _completed(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None, parent_ref: str | None,
                   dynamic: bool, task_type: str, input_data: dict[str, Any], output: dict[str, Any] | None,
                   error: str | None = None, status: TaskStatus | None = None, **extra: Any) -> Task:
        final = status or (TaskStatus.FAILED if error else TaskStatus.COMPLETED)
        return self._append(self._new_task(
            wt, ref, task_type=task_type, task_def_name=wt.name, input_data=input_data, iteration=iteration,
            loop_ref=loop_ref, parent_ref=parent_ref, status=final, keep_workflow_task=dynamic,
            outputData=output or {}, reasonForIncompletion=error, **extra))

    def _schedule_switch(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None,
                         parent_ref: str | None, input_override: Mapping[str, Any] | None,
                         overlay: Mapping[str, Any] | None, dynamic: bool) -> Task:
        input_data = self._input_for(wt, None, input_override, overlay)
        try:
            if wt.type == TaskType.DECISION.value:
                if wt.caseExpression:
                    value = scripting.evaluate_expression("javascript", wt.caseExpression, input_data,
                                                          now_ms=self.now)
                else:
                    value = input_data.get(wt.caseValueParam or "")
            else:
                evaluator = wt.evaluatorType or "value-param"
                value = scripting.evaluate_expression(evaluator, wt.expression or "", input_data, now_ms=self.now)
        except scripting.ScriptError as error:
            return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data, None,
                                   f"task {wt.taskReferenceName!r}: {error}")
        case = _case_key(value)
        input_data = {**input_data, "case": case}
        # Conductor's output names: DECISION reports caseOutput, SWITCH evaluationResult.
        output = {"caseOutput": [case]} if wt.type == TaskType.DECISION.value else \
            {"evaluationResult": [case], "selectedCase": case}
        return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data, output)

    def _schedule_inline(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None,
                         parent_ref: str | None, input_override: Mapping[str, Any] | None,
                         overlay: Mapping[str, Any] | None, dynamic: bool) -> Task:
        input_data = self._input_for(wt, None, input_override, overlay)
        try:
            if wt.type == TaskType.LAMBDA.value:
                script = wt.scriptExpression or input_data.get("scriptExpression") or ""
                result = scripting.evaluate_expression("javascript", str(script), input_data, now_ms=self.now)
            else:
                evaluator = str(input_data.get("evaluatorType") or wt.evaluatorType or "javascript")
                expression = str(input_data.get("expression") or wt.expression or "")
                result = scripting.evaluate_expression(evaluator, expression, input_data, now_ms=self.now)
        except scripting.ScriptError as error:
            return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data,
                                   {"error": str(error)}, f"task {wt.taskReferenceName!r}: {error}")
        return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data,
                               {"result": result})

    def _schedule_jq(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None,
                     parent_ref: str | None, input_override: Mapping[str, Any] | None,
                     overlay: Mapping[str, Any] | None, dynamic: bool) -> Task:
        input_data = self._input_for(wt, None, input_override, overlay)
        query = input_data.get("queryExpression")
        if not isinstance(query, str):
            return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data, None,
                                   f"task {wt.taskReferenceName!r}: input queryExpression must be a jq program")
        try:
            output = scripting.jq_transform_output(query, input_data, now_ms=self.now)
        except scripting.ScriptError as error:
            return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data,
                                   {"error": str(error)}, f"task {wt.taskReferenceName!r}: {error}")
        return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data, output)

    def _schedule_set_variable(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None,
                               parent_ref: str | None, input_override: Mapping[str, Any] | None,
                               overlay: Mapping[str, Any] | None, dynamic: bool) -> Task:
        input_data = self._input_for(wt, None, input_override, overlay)
        self._set(variables={**self._field("variables"), **input_data})
        return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data, {})

    def _schedule_noop(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None,
                       parent_ref: str | None, input_override: Mapping[str, Any] | None,
                       overlay: Mapping[str, Any] | None, dynamic: bool) -> Task:
        input_data = self._input_for(wt, None, input_override, overlay)
        return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data, {})

    def _schedule_terminate(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None,
                            parent_ref: str | None, input_override: Mapping[str, Any] | None,
                            overlay: Mapping[str, Any] | None, dynamic: bool) -> Task:
        input_data = self._input_for(wt, None, input_override, overlay)
        status = input_data.get("terminationStatus")
        if status is not None and str(status).upper() not in _TERMINATION_STATUSES:
            return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data, None,
                                   f"task {wt.taskReferenceName!r}: terminationStatus {status!r} is not valid "
                                   "(COMPLETED, FAILED or TERMINATED)", status=TaskStatus.FAILED_WITH_TERMINAL_ERROR)
        # Conductor's TERMINATE outputs the workflowOutput map itself; any other value is wrapped.
        value = input_data.get("workflowOutput")
        output = {} if value is None else dict(value) if isinstance(value, dict) else {"output": value}
        return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data, output)

    def _schedule_waiting(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None,
                          parent_ref: str | None, input_override: Mapping[str, Any] | None,
                          overlay: Mapping[str, Any] | None, dynamic: bool) -> Task:
        """WAIT and HUMAN: IN_PROGRESS until their time comes or a user completes them."""
        input_data = self._input_for(wt, None, input_override, overlay)
        if wt.type == TaskType.WAIT.value:
            problem = _wait_problem(input_data)
            if problem:
                return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data,
                                       None, f"task {wt.taskReferenceName!r}: {problem}",
                                       status=TaskStatus.FAILED_WITH_TERMINAL_ERROR)
        return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data, {},
                               status=TaskStatus.IN_PROGRESS)

    # ------------------------------------------------------------------------------------ forks & joins

    def _schedule_fork(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None,
                       parent_ref: str | None, input_override: Mapping[str, Any] | None,
                       overlay: Mapping[str, Any] | None, dynamic: bool) -> Task:
        fork = self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, FORK_TASK_TYPE,
                               self._input_for(wt, None, input_override, overlay), {}, executed=True)
        join_wt = self._join_after(wt)
        if join_wt is None:
            return self._fail_fork(fork, f"task {wt.taskReferenceName!r}: a FORK_JOIN must be followed by a JOIN")
        join_on = [iteration_ref(r, iteration) if loop_ref else r for r in (join_wt.joinOn or [])] or [
            iteration_ref(r, iteration) if loop_ref else r for r in self.plan.fork_branch_ends(wt)]
        branch_firsts = [branch[0] for branch in wt.forkTasks if branch]
        for first in branch_firsts:
            self._schedule(first, iteration, loop_ref, None)
            if self.status.terminal:
                return fork
        self._create_join(join_wt, iteration, loop_ref, parent_ref, join_on)
        return fork

    def _join_after(self, wt: WorkflowTask) -> WorkflowTask | None:
        successor = self.plan.successor(wt.taskReferenceName)
        if successor.kind is Next.TASK and successor.task is not None and successor.task.type == TaskType.JOIN.value:
            return successor.task
        return None

    def _fail_fork(self, fork: Task, reason: str) -> Task:
        return self._replace(fork, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR, executed=False,
                             reasonForIncompletion=reason)

    def _schedule_dynamic_fork(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None,
                               parent_ref: str | None, input_override: Mapping[str, Any] | None,
                               overlay: Mapping[str, Any] | None, dynamic: bool) -> Task:
        input_data = self._input_for(wt, None, input_override, overlay)
        branches, problem = _dynamic_branches(wt, input_data)
        join_wt = self._join_after(wt)
        if problem is None and join_wt is None:
            problem = f"task {wt.taskReferenceName!r}: a FORK_JOIN_DYNAMIC must be followed by a JOIN"
        refs = [branch.taskReferenceName for branch, _ in branches]
        # Inside a DO_WHILE the forked tasks carry the iteration suffix like every other task there.
        run_refs = [iteration_ref(r, iteration) if loop_ref else r for r in refs]
        if problem is None and len(set(refs)) != len(refs):
            problem = f"task {wt.taskReferenceName!r}: the dynamic tasks repeat a taskReferenceName"
        if problem is None:
            clashes = [r for r, run_ref in zip(refs, run_refs, strict=True)
                       if run_ref in self.idx.latest or self.plan.slot(r) is not None]
            if clashes:
                problem = f"task {wt.taskReferenceName!r}: dynamic task reference {clashes[0]!r} is already used"
        # Conductor keeps the forked references on the FORK task; the definitions are on each task.
        fork_input = {k: v for k, v in input_data.items()
                      if k not in (wt.dynamicForkTasksParam, wt.dynamicForkTasksInputParamName)}
        fork_input["forkedTasks"] = refs
        fork = self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, FORK_TASK_TYPE, fork_input, {},
                               executed=problem is None)
        if problem is not None:
            return self._fail_fork(fork, problem)
        assert join_wt is not None
        for branch, branch_input in branches:
            self._schedule(branch, iteration, loop_ref, ref, overlay=branch_input, dynamic=True)
            if self.status.terminal:
                return fork
        self._create_join(join_wt, iteration, loop_ref, parent_ref, run_refs)
        return fork

    def _create_join(self, join_wt: WorkflowTask, iteration: int, loop_ref: str | None, parent_ref: str | None,
                     join_on: list[str]) -> Task:
        ref = iteration_ref(join_wt.taskReferenceName, iteration) if loop_ref else join_wt.taskReferenceName
        join = self._append(self._new_task(
            join_wt, ref, task_type=TaskType.JOIN.value, task_def_name=TaskType.JOIN.value,
            input_data={"joinOn": join_on}, iteration=iteration, loop_ref=loop_ref, parent_ref=parent_ref,
            status=TaskStatus.IN_PROGRESS))
        self._register_join(join)
        if not self.idx.join_wait.get(join.taskId):
            self._evaluate_join(join)
        return join

    def _join_refs(self, join: Task) -> list[str]:
        refs = join.inputData.get("joinOn")
        if join.taskType == TaskType.EXCLUSIVE_JOIN.value:
            workflow_task = self._workflow_task(join)
            defaults = list(workflow_task.defaultExclusiveJoinTask) if workflow_task else []
            base = list(refs) if isinstance(refs, list) else []
            suffix = join.iteration if join.loopTaskRef else 0
            return base + [iteration_ref(r, suffix) if suffix else r for r in defaults]
        return [r for r in refs if isinstance(r, str)] if isinstance(refs, list) else []

    def _is_final(self, ref: str) -> bool:
        task = self._latest(ref)
        return task is not None and task.status.terminal and task.executed and not task.retried

    def _register_join(self, join: Task) -> None:
        pending = {r for r in self._join_refs(join) if not self._is_final(r)}
        self.idx.join_wait[join.taskId] = pending
        for ref in pending:
            self.idx.waiters.setdefault(ref, []).append(join.taskId)

    def _evaluate_join(self, join: Task) -> None:
        refs = self._join_refs(join)
        if join.taskType == TaskType.EXCLUSIVE_JOIN.value:
            for ref in refs:
                if self._is_final(ref):
                    done = self._latest(ref)
                    assert done is not None
                    self._finish_join(join, dict(done.outputData),
                                      None if done.status.successful else
                                      f"task {ref!r} ended {done.status.value}")
                    return
            return
        if any(not self._is_final(r) for r in refs):
            return
        output: dict[str, Any] = {}
        failure: str | None = None
        for ref in refs:
            done = self._latest(ref)
            if done is None:
                continue
            if done.outputData:
                output[ref] = done.outputData
            if failure is None and done.status in _FAILED_STATUSES:
                failure = f"task {ref!r} ended {done.status.value}" + (
                    f": {done.reasonForIncompletion}" if done.reasonForIncompletion else "")
        self._finish_join(join, output, failure)

    def _finish_join(self, join: Task, output: dict[str, Any], failure: str | None) -> None:
        self.idx.join_wait.pop(join.taskId, None)
        self._replace(join, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR if failure else TaskStatus.COMPLETED,
                      outputData=output, endTime=self.now, reasonForIncompletion=failure)

    def _schedule_join(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None,
                       parent_ref: str | None, input_override: Mapping[str, Any] | None,
                       overlay: Mapping[str, Any] | None, dynamic: bool) -> Task:
        """A JOIN reached by the flow (not created with its fork) or an EXCLUSIVE_JOIN."""
        existing = self._latest(ref)
        if wt.type == TaskType.JOIN.value and existing is not None and existing.taskType == TaskType.JOIN.value \
                and not existing.executed:
            return existing  # created with its fork
        join_on = [iteration_ref(r, iteration) if loop_ref else r for r in wt.joinOn]
        join = self._append(self._new_task(
            wt, ref, task_type=wt.type, task_def_name=wt.type, input_data={"joinOn": join_on},
            iteration=iteration, loop_ref=loop_ref, parent_ref=parent_ref, status=TaskStatus.IN_PROGRESS,
            keep_workflow_task=dynamic))
        self._register_join(join)
        self._evaluate_join(join)
        return join

    # --------------------------------------------------------------------------------------- DO_WHILE

    def _schedule_loop(self, wt: WorkflowTask, ref: str, iteration: int, loop_ref: str | None,
                       parent_ref: str | None, input_override: Mapping[str, Any] | None,
                       overlay: Mapping[str, Any] | None, dynamic: bool) -> Task:
        input_data = self._input_for(wt, None, input_override, overlay)
        top_level_items = (wt.model_extra or {}).get("items")
        if "items" not in input_data and top_level_items is not None:
            # conductor-oss names the list at the task's top level (an expression); Orkes in inputParameters.
            input_data = {**input_data, "items": self._resolve(top_level_items)}
        items = input_data.get("items")
        if items is not None and not isinstance(items, list):
            return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data, None,
                                   f"task {wt.taskReferenceName!r}: input items must be a list, got "
                                   f"{_type_name(items)}", status=TaskStatus.FAILED_WITH_TERMINAL_ERROR)
        if (isinstance(items, list) and not items) or not wt.loopOver:
            return self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data,
                                   {"iteration": 0})
        output: dict[str, Any] = {"iteration": 1}
        if isinstance(items, list):
            output.update(_loop_item(items, 1))
        loop = self._completed(wt, ref, iteration, loop_ref, parent_ref, dynamic, wt.type, input_data, output,
                               status=TaskStatus.IN_PROGRESS)
        self._schedule(wt.loopOver[0], 1, wt.taskReferenceName, None)
        return loop

    def _evaluate_loop(self, loop: Task) -> None:
        """An iteration of ``loop`` ended: record its outputs, then start the next one or complete the loop."""
        self.loop_budget -= 1
        workflow_task = self._workflow_task(loop)
        if workflow_task is None:
            return
        current = int(loop.outputData.get("iteration", 1))
        body_outputs: dict[str, Any] = {}
        for slot_ref, slot in self.plan.slots.items():
            if slot.loop_ref == workflow_task.taskReferenceName:
                done = self._latest(iteration_ref(slot_ref, current))
                if done is not None:
                    body_outputs[slot_ref] = done.outputData
        output = {**loop.outputData, str(current): body_outputs}
        items = loop.inputData.get("items")
        go_on = True
        if isinstance(items, list):
            go_on = current < len(items)
        if go_on and workflow_task.loopCondition:
            # As in Conductor, the loop's inputParameters are resolved again for every evaluation.
            fresh_input = self._resolve(workflow_task.inputParameters)
            bindings = {**(fresh_input if isinstance(fresh_input, dict) else {}), **body_outputs,
                        loop.referenceTaskName: output}
            try:
                value = scripting.evaluate_expression("javascript", workflow_task.loopCondition, bindings,
                                                      now_ms=self.now)
            except scripting.ScriptError as error:
                self._replace(loop, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR, endTime=self.now,
                              outputData=output,
                              reasonForIncompletion=f"task {loop.referenceTaskName!r}: loopCondition: {error}")
                return
            go_on = scripting.conductor_truthy(value)
        elif not isinstance(items, list):
            go_on = False
        if not go_on:
            self._replace(loop, status=TaskStatus.COMPLETED, endTime=self.now, outputData=output)
            return
        following = current + 1
        output["iteration"] = following
        if isinstance(items, list):
            output.update(_loop_item(items, following))
        keep_last = loop.inputData.get("keepLastN")
        oldest_kept = 1
        if isinstance(keep_last, int) and not isinstance(keep_last, bool) and keep_last > 0:
            # keepLastN iterations stay, the one starting now included: in the task list and in the output.
            oldest_kept = following - keep_last + 1
            output = {k: v for k, v in output.items() if not (k.isdigit() and int(k) < oldest_kept)}
        self._replace(loop, outputData=output)
        self._drop_old_iterations(loop, oldest_kept)
        self._schedule(workflow_task.loopOver[0], following, workflow_task.taskReferenceName, None)

    def _drop_old_iterations(self, loop: Task, oldest_kept: int) -> None:
        if oldest_kept <= 1:
            return
        name = base_ref(loop.referenceTaskName) if loop.loopTaskRef else loop.referenceTaskName
        before = len(self.tasks)
        self.tasks = [t for t in self.tasks
                      if not (t.loopTaskRef == name and t.iteration < oldest_kept and t.status.terminal)]
        if len(self.tasks) != before:
            self.changed = True
            self._rebuild_index()

    # --------------------------------------------------------------------------------------- dispatch

    def _dispatch(self) -> None:
        index = self.idx
        while index.delayed and index.delayed[0][0] <= self.now:
            _, _, task_id = heapq.heappop(index.delayed)
            task = self._get(task_id)
            if task is not None and task.status is TaskStatus.SCHEDULED and not task.dispatched:
                index.ready.setdefault(task.taskDefName, deque()).append(task_id)
        # Task definitions in the order their first waiting attempt became ready: the queues' own order
        # depends on the index's history, and the same state must hand attempts out in the same order.
        for def_name in sorted(index.ready, key=self._queue_key):
            queue = index.ready[def_name]
            while queue:
                task = self._get(queue[0])
                if task is None or task.status is not TaskStatus.SCHEDULED or task.dispatched:
                    queue.popleft()
                    continue
                reopen = self._gate(task)
                if reopen is not None:
                    if reopen > 0:
                        self.wake_candidates.append(reopen)
                    else:
                        self.waiting_on.add(def_name)
                    break
                queue.popleft()
                self._hand_out(task)
            if not queue:
                del index.ready[def_name]

    def _queue_key(self, def_name: str) -> tuple[int, int]:
        queue = self.idx.ready[def_name]
        head = self._get(queue[0]) if queue else None
        if head is None:
            return (0, 0)
        return (head.scheduledTime + head.callbackAfterSeconds * 1000, head.seq)

    def _gate(self, task: Task) -> int | None:
        """None if ``task`` may start now; else when the rate window reopens (ms), or 0 for "a slot frees"."""
        task_def = self._task_def(task.taskDefName, self._workflow_task(task))
        if task_def is None:
            return None
        load = self.load.get(task.taskDefName)
        started_now = self.dispatched_now.get(task.taskDefName, [])
        limit = task_def.concurrentExecLimit
        if limit:
            own = self.idx.running.get(task.taskDefName, 0)
            running = max(load.running + len(started_now), own) if load is not None else own
            if running >= limit:
                return 0
        per, window_s = task_def.rateLimitPerFrequency, task_def.rateLimitFrequencyInSeconds
        if per and window_s:
            window = window_s * 1000
            horizon = self.now - window
            recent = self.idx.recent_starts.setdefault(task.taskDefName, deque())
            while recent and recent[0] <= horizon:
                recent.popleft()
            starts = sorted(
                [s for s in load.recentStarts if s > horizon] + started_now if load is not None else list(recent)
            )
            if len(starts) >= per:
                return starts[len(starts) - per] + window
        return None

    def _hand_out(self, task: Task) -> None:
        now = self.now
        self.dispatched_now.setdefault(task.taskDefName, []).append(now)
        self.idx.recent_starts.setdefault(task.taskDefName, deque()).append(now)
        workflow_task = self._workflow_task(task)
        task_def = self._def_for(task)
        ttype = task.taskType
        if ttype == TaskType.HTTP.value:
            task = self._replace(task, dispatched=True, status=TaskStatus.IN_PROGRESS, startTime=now, updateTime=now)
            request = task.inputData.get("http_request")
            self.actions.append(CallHttp(taskId=task.taskId, referenceTaskName=task.referenceTaskName,
                                         request=request if isinstance(request, dict) else {},
                                         timeoutSeconds=task_def.timeoutSeconds or None))
        elif ttype == TaskType.SUB_WORKFLOW.value:
            task = self._replace(task, dispatched=True, status=TaskStatus.IN_PROGRESS, startTime=now, updateTime=now)
            params = workflow_task.subWorkflowParam if workflow_task is not None else None
            definition = params.workflowDefinition if params is not None else None
            name = task.inputData.get("subWorkflowName") or (definition or {}).get("name") or ""
            version = task.inputData.get("subWorkflowVersion")
            input_data = {k: v for k, v in task.inputData.items() if k not in ("subWorkflowName", "subWorkflowVersion")}
            self.actions.append(StartSubWorkflow(
                taskId=task.taskId, referenceTaskName=task.referenceTaskName, name=str(name),
                version=version if isinstance(version, int) else None, input=input_data, definition=definition,
                correlationId=self.original.correlationId,
                taskToDomain=params.taskToDomain if params is not None else None))
        elif ttype == TaskType.START_WORKFLOW.value:
            task = self._replace(task, dispatched=True, status=TaskStatus.IN_PROGRESS, startTime=now, updateTime=now)
            request = task.inputData.get("startWorkflow")
            request = request if isinstance(request, dict) else {}
            version = request.get("version")
            self.actions.append(StartWorkflow(
                requestId=task.taskId, name=str(request.get("name") or ""),
                version=version if isinstance(version, int) else None,
                input=request.get("input") if isinstance(request.get("input"), dict) else {},
                correlationId=request.get("correlationId"), taskId=task.taskId, purpose="START_WORKFLOW"))
        else:
            task = self._replace(task, dispatched=True, updateTime=now)
            deadline = task_def.timeoutSeconds if task_def.timeoutPolicy is not TimeoutPolicy.ALERT_ONLY else 0
            self.actions.append(StartTask(
                taskId=task.taskId, referenceTaskName=task.referenceTaskName, taskDefName=task.taskDefName,
                taskType=task.taskType, inputData=task.inputData, retryCount=task.retryCount,
                iteration=task.iteration, timeoutSeconds=deadline or None,
                taskDef=self._task_def(task.taskDefName, workflow_task)))

    # ---------------------------------------------------------------------------------------- wake-up

    def _next_wakeup(self) -> int | None:
        index = self.idx
        candidates = list(self.wake_candidates)
        if self.status is not WorkflowStatus.RUNNING:
            # PAUSED: task timers and retry delays wait for the resume (only the workflow timeout runs).
            return max(min(candidates), self.now) if candidates else None
        heap = index.deadlines
        while heap:
            at, _, task_id, kind = heap[0]
            task = self._get(task_id)
            if task is None or task.status.terminal or not self._deadline_valid(task, at, kind):
                heapq.heappop(heap)
                continue
            candidates.append(at)
            break
        delayed = index.delayed
        while delayed:
            at, _, task_id = delayed[0]
            task = self._get(task_id)
            if task is None or task.status is not TaskStatus.SCHEDULED or task.dispatched:
                heapq.heappop(delayed)
                continue
            candidates.append(at)
            break
        if self.definition.timeoutSeconds and not self._field("timeoutAlerted"):
            candidates.append(self._timeout_base() + self.definition.timeoutSeconds * 1000)
        return max(min(candidates), self.now) if candidates else None


# --------------------------------------------------------------------------------------------------
# Tables and helpers
# --------------------------------------------------------------------------------------------------

#: One scheduler per task type: adding a task type touches its function and one line here.
_SCHEDULERS: dict[str, Any] = {
    TaskType.SIMPLE.value: _Run._schedule_driver_task,
    TaskType.HTTP.value: _Run._schedule_driver_task,
    TaskType.SUB_WORKFLOW.value: _Run._schedule_driver_task,
    TaskType.START_WORKFLOW.value: _Run._schedule_driver_task,
    TaskType.DYNAMIC.value: _Run._schedule_dynamic,
    TaskType.FORK_JOIN.value: _Run._schedule_fork,
    TaskType.FORK_JOIN_DYNAMIC.value: _Run._schedule_dynamic_fork,
    TaskType.JOIN.value: _Run._schedule_join,
    TaskType.EXCLUSIVE_JOIN.value: _Run._schedule_join,
    TaskType.SWITCH.value: _Run._schedule_switch,
    TaskType.DECISION.value: _Run._schedule_switch,
    TaskType.DO_WHILE.value: _Run._schedule_loop,
    TaskType.INLINE.value: _Run._schedule_inline,
    TaskType.LAMBDA.value: _Run._schedule_inline,
    TaskType.JSON_JQ_TRANSFORM.value: _Run._schedule_jq,
    TaskType.SET_VARIABLE.value: _Run._schedule_set_variable,
    TaskType.NOOP.value: _Run._schedule_noop,
    TaskType.TERMINATE.value: _Run._schedule_terminate,
    TaskType.WAIT.value: _Run._schedule_waiting,
    TaskType.HUMAN.value: _Run._schedule_waiting,
}

_OPERATIONS: dict[OperationKind, Callable[[_Run, Operation], str | None]] = {
    OperationKind.PAUSE: _Run._op_pause,
    OperationKind.RESUME: _Run._op_resume,
    OperationKind.TERMINATE: _Run._op_terminate,
    OperationKind.RETRY: _Run._op_retry,
    OperationKind.RESTART: _Run._op_restart,
    OperationKind.RERUN: _Run._op_rerun,
    OperationKind.SKIP: _Run._op_skip,
    OperationKind.COMPLETE: _Run._op_complete,
}


_SYSTEM_TYPE_NAMES = frozenset(t.value for t in TaskType) | {FORK_TASK_TYPE}


def _is_driver_task(task: Task) -> bool:
    """SIMPLE attempts (taskType = their TaskDef's name) and the driver-run system tasks."""
    return task.taskType in DRIVER_TYPES or task.taskType not in _SYSTEM_TYPE_NAMES


def _execution_type(workflow_task: WorkflowTask) -> str:
    if workflow_task.type == TaskType.SIMPLE.value:
        return workflow_task.name
    if workflow_task.type in (TaskType.FORK_JOIN.value, TaskType.FORK_JOIN_DYNAMIC.value):
        return FORK_TASK_TYPE
    return workflow_task.type


def _non_trivial(workflow_task: WorkflowTask) -> bool:
    """A dynamic task's WorkflowTask is kept on the attempt only when it says more than name + type."""
    dumped = workflow_task.model_dump(exclude_defaults=True, exclude={"name", "taskReferenceName", "type",
                                                                      "inputParameters"})
    return bool(dumped) or workflow_task.type != TaskType.SIMPLE.value


def _parallel(path: Sequence[tuple[str, str]], other: Sequence[tuple[str, str]]) -> bool:
    """Whether two tasks run in different branches of one fork (neither comes after the other)."""
    for (fork, branch), (other_fork, other_branch) in zip(reversed(path), reversed(other), strict=False):
        if fork != other_fork:
            return False
        if branch != other_branch:
            return True
    return False


def _case_key(value: Any) -> str:
    """Conductor compares case values as strings (Java's String.valueOf)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _chosen_case(workflow_task: WorkflowTask, output: Mapping[str, Any]) -> list[WorkflowTask]:
    result = output.get("evaluationResult", output.get("caseOutput"))
    case = result[0] if isinstance(result, list) and result else None
    if isinstance(case, str) and workflow_task.decisionCases.get(case):
        return workflow_task.decisionCases[case]
    return workflow_task.defaultCase  # no such case, or an empty one: the default case (as in Conductor)


def _dynamic_branches(
    wt: WorkflowTask, input_data: Mapping[str, Any]
) -> tuple[list[tuple[WorkflowTask, dict[str, Any]]], str | None]:
    """The dynamic fork's branches and their inputs, from either of Conductor's two forms."""
    where = f"task {wt.taskReferenceName!r}"
    fork_inputs = input_data.get("forkTaskInputs")
    fork_name = input_data.get("forkTaskName")
    fork_workflow = input_data.get("forkTaskWorkflow")
    if (fork_name is not None or fork_workflow is not None) and isinstance(fork_inputs, list):
        task_type = str(input_data.get("forkTaskType") or TaskType.SIMPLE.value)
        if fork_name is None and task_type in _SYSTEM_TYPE_NAMES and task_type != TaskType.SIMPLE.value:
            fork_name = task_type  # Conductor names a system fork task after its type
        name = str(fork_name or wt.taskReferenceName)
        branches: list[tuple[WorkflowTask, dict[str, Any]]] = []
        for i, item in enumerate(fork_inputs):
            item_input = dict(item) if isinstance(item, dict) else {"input": item}
            item_input["__index"] = i
            spec: dict[str, Any] = {"name": name, "taskReferenceName": f"_{name}_{i}", "type": task_type,
                                    "optional": wt.optional}
            if fork_workflow is not None:
                version = input_data.get("forkTaskWorkflowVersion")
                spec.update(name=str(fork_workflow), type=TaskType.SUB_WORKFLOW.value, subWorkflowParam={
                    "name": str(fork_workflow),
                    "version": int(version) if isinstance(version, (int, str)) and str(version).isdigit() else None,
                })
            branches.append((WorkflowTask.model_validate(spec), item_input))
        return branches, None
    tasks_param = wt.dynamicForkTasksParam
    inputs_param = wt.dynamicForkTasksInputParamName
    if not tasks_param:
        return [], f"{where}: dynamicForkTasksParam is not set (nor forkTaskName/forkTaskInputs inputs)"
    raw_tasks = input_data.get(tasks_param)
    if not isinstance(raw_tasks, list):
        return [], f"{where}: input {tasks_param!r} must be a list of tasks, got {_type_name(raw_tasks)}"
    raw_inputs = input_data.get(inputs_param or "") if inputs_param else {}
    if not isinstance(raw_inputs, dict):
        return [], (f"{where}: input {inputs_param!r} must be a map of task reference to input map, got "
                    f"{_type_name(raw_inputs)}")
    branches = []
    for i, raw in enumerate(raw_tasks):
        if not isinstance(raw, dict) or not raw.get("taskReferenceName") or not raw.get("name"):
            return [], f"{where}: dynamic task #{i} must be an object with name and taskReferenceName"
        try:
            branch = WorkflowTask.model_validate(raw)
        except ValueError as error:
            return [], f"{where}: dynamic task #{i} is not a valid task: {_first_line(error)}"
        branch_input = raw_inputs.get(branch.taskReferenceName, {})
        if not isinstance(branch_input, dict):
            return [], (f"{where}: input {inputs_param!r}[{branch.taskReferenceName!r}] must be a map, got "
                        f"{_type_name(branch_input)}")
        if wt.optional and not branch.optional:
            branch = branch.model_copy(update={"optional": True})
        branches.append((branch, branch_input))
    return branches, None


def _loop_item(items: Sequence[Any], iteration: int) -> dict[str, Any]:
    """The current element of a DO_WHILE over ``items`` (Orkes' and conductor-oss' output names)."""
    index = iteration - 1
    return {"item": items[index], "index": index, "loopItem": items[index], "loopIndex": index}


def _wait_deadline(input_data: Mapping[str, Any], start: int) -> int | None:
    duration = input_data.get("duration")
    if isinstance(duration, str) and duration.strip():
        seconds = parse_wait_duration(duration)
        return start + seconds * 1000 if seconds is not None else None
    until = input_data.get("until")
    if isinstance(until, str) and until.strip():
        return parse_wait_until(until)
    return None


def _wait_problem(input_data: Mapping[str, Any]) -> str | None:
    duration, until = input_data.get("duration"), input_data.get("until")
    if isinstance(duration, str) and duration.strip():
        return None if parse_wait_duration(duration) is not None else f"cannot read duration {duration!r}"
    if isinstance(until, str) and until.strip():
        return None if parse_wait_until(until) is not None else f"cannot read until {until!r}"
    return None


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _internal_error(workflow: Workflow, now: int, error: Exception) -> Decision:
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
