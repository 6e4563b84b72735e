"""The derived lookups over a workflow's task list, carried from one ``decide`` to the next.

Cost per event must not grow with the number of finished tasks, so ``decide`` never scans the task list:
it reads an ``Index`` (positions, latest attempt per reference, active attempts, timer heaps, join
bookkeeping, gate counters). The index is derived once from the task list, then updated in place by
``Evaluation`` (the one place that changes tasks) and handed on with the Workflow value ``decide`` returns
(the old value gives it up). A driver that re-reads the state from storage pays one O(n) rebuild.

The join bookkeeping (which references a JOIN still waits for) lives here rather than in ``tasks/join.py``
because the index is rebuilt from a bare task list, before any task module runs.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable

from kondukt.engine.models import (
    CONTAINER_TASK_TYPES,
    JOIN_TASK_TYPES,
    Task,
    TaskDef,
    TaskStatus,
    TaskType,
    WorkflowTask,
)
from kondukt.engine.plan import base_ref, iteration_ref
from kondukt.engine.policies import DeadlineKind, deadlines_of


class Index:
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
        self.deadlines: list[tuple[int, int, str, DeadlineKind]] = []  # (at, seq, taskId, kind)
        self.join_wait: dict[str, set[str]] = {}  # join taskId -> references not yet final
        self.waiters: dict[str, list[str]] = {}  # reference -> join taskIds waiting for it
        self.running: dict[str, int] = {}  # taskDefName -> this workflow's dispatched, unfinished attempts
        self.recent_starts: dict[str, deque[int]] = {}  # taskDefName -> this workflow's dispatch times

    def push_deadlines(self, task: Task, task_def: TaskDef, wait_until: int | None) -> None:
        for deadline in deadlines_of(task, task_def, wait_until):
            heapq.heappush(self.deadlines, (deadline.at, task.seq, task.taskId, deadline.kind))

    def is_final(self, tasks: list[Task], ref: str) -> bool:
        """The latest attempt of ``ref`` ended and will not run again (a JOIN may count it)."""
        position = self.latest.get(ref)
        if position is None:
            return False
        task = tasks[position]
        return task.status.terminal and task.executed and not task.retried

    def register_join(self, tasks: list[Task], join: Task, refs: list[str]) -> None:
        """Record which of ``refs`` the join still waits for (``notify`` is told when each becomes final)."""
        pending = {r for r in refs if not self.is_final(tasks, r)}
        self.join_wait[join.taskId] = pending
        for ref in pending:
            self.waiters.setdefault(ref, []).append(join.taskId)


def join_refs(join: Task, workflow_task: WorkflowTask | None) -> list[str]:
    """The references a JOIN waits for: its joinOn; an EXCLUSIVE_JOIN's defaultExclusiveJoinTask too."""
    refs = join.inputData.get("joinOn")
    if join.taskType == TaskType.EXCLUSIVE_JOIN.value:
        defaults = list(workflow_task.defaultExclusiveJoinTask) if workflow_task else []
        base = list(refs) if isinstance(refs, list) else []
        suffix = join.iteration if join.loopTaskRef else 0
        return base + [iteration_ref(r, suffix) if suffix else r for r in defaults]
    return [r for r in refs if isinstance(r, str)] if isinstance(refs, list) else []


def build_index(
    tasks: list[Task],
    now: int,
    def_for: Callable[[Task], TaskDef],
    wait_until: Callable[[Task], int | None],
    workflow_task: Callable[[Task], WorkflowTask | None],
) -> Index:
    """Derive the index of ``tasks`` (O(n)): after a read from storage or a rewrite of the list."""
    index = Index()
    joins: list[Task] = []
    windows: dict[str, int | None] = {}
    starts: dict[str, list[int]] = {}
    for position, task in enumerate(tasks):
        index.pos[task.taskId] = position
        index.latest[task.referenceTaskName] = position
        if task.loopTaskRef:
            index.latest[base_ref(task.referenceTaskName)] = position
        if task.dispatched:
            _remember_start(task, now, def_for, windows, starts)
        if not task.status.terminal:
            index.active.add(task.taskId)
            if task.dispatched and task.taskType not in CONTAINER_TASK_TYPES:
                index.running[task.taskDefName] = index.running.get(task.taskDefName, 0) + 1
            if task.status is TaskStatus.SCHEDULED and not task.dispatched:
                ready_at = task.scheduledTime + task.callbackAfterSeconds * 1000
                heapq.heappush(index.delayed, (ready_at, task.seq, task.taskId))
            index.push_deadlines(task, def_for(task), wait_until(task))
            if task.taskType in JOIN_TASK_TYPES:
                joins.append(task)
        elif not task.executed:
            index.unexecuted[task.taskId] = None
    for join in joins:
        index.register_join(tasks, join, join_refs(join, workflow_task(join)))
    index.recent_starts = {name: deque(sorted(times)) for name, times in starts.items()}
    return index


def _remember_start(task: Task, now: int, def_for: Callable[[Task], TaskDef], windows: dict[str, int | None],
                    starts: dict[str, list[int]]) -> None:
    """Rate limits without a Load count this workflow's own recent dispatches, taken from the state.

    The state keeps no dispatch instant once an attempt has started: its start time stands in (never
    earlier than the dispatch, so a driver that re-reads the state never starts more than the limit).
    """
    name = task.taskDefName
    if name not in windows:
        task_def = def_for(task)
        per, seconds = task_def.rateLimitPerFrequency, task_def.rateLimitFrequencyInSeconds
        windows[name] = seconds * 1000 if per and seconds else None
    window = windows[name]
    if window is None:
        return
    at = task.startTime or task.updateTime
    if at > now - window:
        starts.setdefault(name, []).append(at)
