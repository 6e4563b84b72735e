"""``Evaluation``: the state of one ``decide`` call, and the one place that changes tasks.

Every other engine module is a set of functions over an ``Evaluation``: they read the workflow through it
(fields, the latest attempt of a reference, resolved expressions, definitions) and change it only through
its methods: ``append`` / ``replace`` / ``replace_tasks`` for the task list (which keep the ``Index``, the
transitions and the ``changed`` flag true), ``set`` / ``set_status`` for the workflow's own fields.
What the call produces accumulates here too (actions, transitions, messages, wake-up candidates) until
``decide`` turns it into a ``Decision``.

A task module schedules a WorkflowTask it contains (a fork's branches, a loop's body) through
``schedule``, the ``Schedule`` the entry point installs (``progression.schedule``): the task modules sit
below the progression in the layers, so they receive it rather than import it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from kondukt.engine.decision import Action, TaskLoad, TaskTransition
from kondukt.engine.expressions import resolve, task_view
from kondukt.engine.index import Index, build_index, join_refs
from kondukt.engine.models import (
    CONTAINER_TASK_TYPES,
    Blueprint,
    Task,
    TaskDef,
    TaskStatus,
    TaskType,
    Workflow,
    WorkflowDef,
    WorkflowStatus,
    WorkflowTask,
)
from kondukt.engine.plan import Plan, base_ref, plan_for
from kondukt.engine.policies import SYSTEM_TASK_DEF, DeadlineKind, deadlines_of
from kondukt.engine.waits import wait_deadline

_TASK_ID_NAMESPACE = uuid.UUID("6f1c2a4e-3b7d-4c55-9d0e-6b1f8a2c7e01")
#: DO_WHILE iterations evaluated in one call before yielding (a loop of engine-only tasks never ends a call).
LOOP_BUDGET = 200


def task_id_for(workflow_id: str, seq: int) -> str:
    """The deterministic id of the attempt with this seq (a UUID, like Conductor's)."""
    return str(uuid.uuid5(_TASK_ID_NAMESPACE, f"{workflow_id}/{seq}"))


class Schedule(Protocol):
    """Create the attempt(s) for one WorkflowTask reached by the flow (``progression.schedule``)."""

    def __call__(
        self,
        run: Evaluation,
        workflow_task: WorkflowTask,
        iteration: int,
        loop_ref: str | None,
        parent_ref: str | None,
        *,
        input_override: Mapping[str, Any] | None = None,
        overlay: Mapping[str, Any] | None = None,
        dynamic: bool = False,
    ) -> Task | None: ...


class Evaluation:
    """One evaluation of a workflow at instant ``now``: its state as it changes, and what it produces."""

    def __init__(self, blueprint: Blueprint, workflow: Workflow, now: int, schedule: Schedule) -> None:
        self.blueprint = blueprint
        self.definition: WorkflowDef = blueprint.workflow
        self.plan: Plan = plan_for(self.definition)
        self.now = now
        self.schedule = schedule
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
        self.loop_budget = LOOP_BUDGET
        self.timeout_kinds: dict[str, DeadlineKind] = {}
        self.next_seq = workflow.nextSeq
        self._wf_view: dict[str, Any] | None = None
        index = workflow._index
        if isinstance(index, Index) and index.tasks_ref is workflow.tasks:
            # Carry the index over. It is updated in place to describe the new task list, so the old
            # Workflow value no longer matches it (tasks_ref) and rebuilds if it is decided again. It is
            # detached at once: should this run fail half-way, the input state rebuilds rather than trust it.
            index.tasks_ref = None
            self.idx = index
        else:
            self.idx = self._build_index()

    # ----------------------------------------------------------------------------------- state access

    def field(self, name: str) -> Any:
        return self.fields[name] if name in self.fields else getattr(self.original, name)

    def set(self, **values: Any) -> None:
        self.fields.update(values)
        self.changed = True
        self._wf_view = None

    def set_status(self, status: WorkflowStatus) -> None:
        if status is not self.status:
            self.status = status
            self.changed = True
            self._wf_view = None

    def get(self, task_id: str) -> Task | None:
        position = self.idx.pos.get(task_id)
        return self.tasks[position] if position is not None else None

    def latest(self, ref: str) -> Task | None:
        position = self.idx.latest.get(ref)
        return self.tasks[position] if position is not None else None

    def is_final(self, ref: str) -> bool:
        return self.idx.is_final(self.tasks, ref)

    def workflow_view(self) -> dict[str, Any]:
        if self._wf_view is None:
            self._wf_view = {
                "input": self.field("input"),
                "output": self.field("output"),
                "variables": self.field("variables"),
                "status": self.status.value,
                "workflowId": self.original.workflowId,
                "parentWorkflowId": self.original.parentWorkflowId,
                "parentWorkflowTaskId": self.original.parentWorkflowTaskId,
                "workflowType": self.original.workflowName,
                "version": self.original.workflowVersion,
                "correlationId": self.original.correlationId,
                "reasonForIncompletion": self.field("reasonForIncompletion"),
                "schemaVersion": 2,
                "startTime": self.field("startTime"),
            }
        return self._wf_view

    def _lookup(self, ref: str) -> Mapping[str, Any] | None:
        task = self.latest(ref)
        return task_view(task, self.original.workflowId) if task is not None else None

    def resolve(self, template: Any, task_id: str | None = None) -> Any:
        return resolve(template, self.workflow_view(), self._lookup, task_id=task_id)

    def task_input(self, workflow_task: WorkflowTask, task_def: TaskDef | None,
                   overlay: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A task's input: its inputParameters resolved, over its TaskDef's inputTemplate, under ``overlay``.

        Resolved just before the attempt is created, so ``${CPEWF_TASK_ID}`` is the id that attempt gets
        (the next seq's): a new one per attempt, as in Conductor.
        """
        task_id = task_id_for(self.original.workflowId, self.next_seq)
        resolved = self.resolve(workflow_task.inputParameters, task_id)
        data: dict[str, Any] = resolved if isinstance(resolved, dict) else {}
        if task_def is not None and task_def.inputTemplate:
            template = self.resolve(task_def.inputTemplate, task_id)
            if isinstance(template, dict):
                data = {**template, **data}
        if overlay:
            data = {**data, **overlay}
        return data

    def input_for(self, workflow_task: WorkflowTask, task_def: TaskDef | None,
                  input_override: Mapping[str, Any] | None, overlay: Mapping[str, Any] | None) -> dict[str, Any]:
        if input_override is not None:
            return dict(input_override)
        return self.task_input(workflow_task, task_def, overlay)

    def workflow_task(self, task: Task) -> WorkflowTask | None:
        if task.workflowTask is not None:
            return task.workflowTask
        if task.parentTaskRef is not None:
            return None  # a plain dynamically forked task: never in the definition (its reference may not be)
        return self.plan.task(base_ref(task.referenceTaskName) if task.loopTaskRef else task.referenceTaskName)

    def task_def(self, name: str, workflow_task: WorkflowTask | None = None) -> TaskDef | None:
        if workflow_task is not None and workflow_task.taskDefinition is not None:
            return workflow_task.taskDefinition
        return self.blueprint.taskDefs.get(name)

    def def_for(self, task: Task) -> TaskDef:
        found = self.task_def(task.taskDefName, self.workflow_task(task))
        return found if found is not None else SYSTEM_TASK_DEF

    def wait_until(self, task: Task) -> int | None:
        if task.taskType != TaskType.WAIT.value or task.status is not TaskStatus.IN_PROGRESS:
            return None
        return wait_deadline(task.inputData, task.startTime)

    def deadline_valid(self, task: Task, at: int, kind: DeadlineKind) -> bool:
        """Whether a deadline popped from the heap still holds (the attempt may have moved on since)."""
        return any(d.at == at and d.kind == kind
                   for d in deadlines_of(task, self.def_for(task), self.wait_until(task)))

    def timeout_base(self) -> int:
        """The workflow timeout counts from the last retry, else from the start (as in Conductor)."""
        return int(self.field("lastRetriedTime") or self.field("startTime"))

    # ------------------------------------------------------------------------------------ index upkeep

    def _build_index(self) -> Index:
        return build_index(self.tasks, self.now, self.def_for, self.wait_until, self.workflow_task)

    def rebuild_index(self) -> None:
        """Derive the index again after the task list was rewritten (operations, keepLastN).

        The exact dispatch times this run remembers for rate limits are kept (the rebuilt ones are estimates).
        """
        recent_starts = self.idx.recent_starts
        self.idx = self._build_index()
        self.idx.recent_starts = recent_starts

    def register_join(self, join: Task) -> None:
        self.idx.register_join(self.tasks, join, self.join_refs(join))

    def join_refs(self, join: Task) -> list[str]:
        return join_refs(join, self.workflow_task(join))

    # ------------------------------------------------------------------------------- changing tasks

    def replace_tasks(self, tasks: list[Task]) -> None:
        """Rewrite the task list (restart, rerun, keepLastN) and derive the index again."""
        self.tasks = tasks
        self.changed = True
        self.rebuild_index()

    def replace(self, old: Task, **changes: Any) -> Task:
        new = old.model_copy(update=changes)
        self.tasks[self.idx.pos[old.taskId]] = new
        self.changed = True
        index = self.idx
        task_id = new.taskId
        was_active, is_active = not old.status.terminal, not new.status.terminal
        if was_active and not is_active:
            index.active.discard(task_id)
            if old.dispatched and old.taskType not in CONTAINER_TASK_TYPES:
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
            index.push_deadlines(new, self.def_for(new), self.wait_until(new))
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

    def append(self, task: Task) -> Task:
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
            index.push_deadlines(task, self.def_for(task), self.wait_until(task))
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

    def new_task(
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
        """A new attempt with the next seq (not yet in the list: ``append`` it)."""
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
