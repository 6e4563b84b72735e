"""The compiled shape of a WorkflowDef: where every task reference sits and what follows it.

Conductor's ``WorkflowDef.getNextTask`` walks the definition tree on every call; we compile the tree
once per definition object (cached on it) into a table ``ref -> Slot`` so that "what comes after this
task" is a dictionary lookup, whatever the workflow's size.

What follows the end of a list depends on the list's owner:
- the workflow's top-level list: the end of the workflow;
- a fork branch: nothing (the JOIN created with the fork waits for it);
- a SWITCH / DECISION case: whatever follows the SWITCH;
- a DO_WHILE body: the DO_WHILE itself, which evaluates its loop condition.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from kondukt.engine.models import TaskType, WorkflowDef, WorkflowTask

#: DO_WHILE iterations suffix their tasks' references: ``resize__2`` is ``resize`` in iteration 2.
_ITERATION_SUFFIX = re.compile(r"^(?P<base>.+)__(?P<n>\d+)$")


def iteration_ref(ref: str, iteration: int) -> str:
    return f"{ref}__{iteration}" if iteration > 0 else ref


def base_ref(ref: str) -> str:
    match = _ITERATION_SUFFIX.match(ref)
    return match.group("base") if match else ref


class Owner(enum.StrEnum):
    WORKFLOW = "workflow"
    FORK = "fork"
    CASE = "case"
    LOOP = "loop"


@dataclass(frozen=True, slots=True)
class Slot:
    task: WorkflowTask
    siblings: tuple[WorkflowTask, ...]
    index: int
    owner: Owner
    owner_ref: str | None  # the FORK / SWITCH / DO_WHILE owning the list, None at top level
    loop_ref: str | None  # the innermost enclosing DO_WHILE, if any
    branch: int | None = None  # the fork branch the list is, when the owner is a FORK


class Next(enum.Enum):
    TASK = "task"  # schedule `task`
    BRANCH_END = "branch_end"  # a fork branch ended: its JOIN notices
    LOOP = "loop"  # a DO_WHILE body ended: evaluate the loop `ref`
    END = "end"  # the workflow's task list ended


@dataclass(frozen=True, slots=True)
class Successor:
    kind: Next
    task: WorkflowTask | None = None
    ref: str | None = None


class Plan:
    """Lookup tables over one WorkflowDef (immutable once built)."""

    def __init__(self, definition: WorkflowDef) -> None:
        self.slots: dict[str, Slot] = {}
        self.first: WorkflowTask | None = definition.tasks[0] if definition.tasks else None
        self._add(definition.tasks, Owner.WORKFLOW, None, None)

    def _add(self, tasks: list[WorkflowTask], owner: Owner, owner_ref: str | None, loop_ref: str | None,
             branch: int | None = None) -> None:
        siblings = tuple(tasks)
        for index, task in enumerate(siblings):
            self.slots.setdefault(task.taskReferenceName,
                                  Slot(task, siblings, index, owner, owner_ref, loop_ref, branch))
            ttype = task.type
            if ttype == TaskType.FORK_JOIN:
                for number, fork_branch in enumerate(task.forkTasks):
                    self._add(fork_branch, Owner.FORK, task.taskReferenceName, loop_ref, number)
            elif ttype in (TaskType.SWITCH, TaskType.DECISION):
                for case in task.decisionCases.values():
                    self._add(case, Owner.CASE, task.taskReferenceName, loop_ref)
                self._add(task.defaultCase, Owner.CASE, task.taskReferenceName, loop_ref)
            elif ttype == TaskType.DO_WHILE:
                self._add(task.loopOver, Owner.LOOP, task.taskReferenceName, task.taskReferenceName)

    def task(self, ref: str) -> WorkflowTask | None:
        slot = self.slots.get(ref) or self.slots.get(base_ref(ref))
        return slot.task if slot else None

    def slot(self, ref: str) -> Slot | None:
        return self.slots.get(ref) or self.slots.get(base_ref(ref))

    def successor(self, ref: str) -> Successor:
        """What follows the task ``ref`` (a definition reference, without iteration suffix)."""
        slot = self.slots.get(ref)
        if slot is None:
            # Not in the definition: a dynamically forked task; its branch ends with it.
            return Successor(Next.BRANCH_END)
        if slot.index + 1 < len(slot.siblings):
            return Successor(Next.TASK, task=slot.siblings[slot.index + 1])
        if slot.owner is Owner.WORKFLOW:
            return Successor(Next.END)
        if slot.owner is Owner.FORK:
            return Successor(Next.BRANCH_END, ref=slot.owner_ref)
        if slot.owner is Owner.LOOP:
            return Successor(Next.LOOP, ref=slot.owner_ref)
        assert slot.owner_ref is not None
        return self.successor(slot.owner_ref)

    def branch_path(self, ref: str, iteration: int) -> list[tuple[str, str]]:
        """The static fork branches enclosing ``ref``, innermost first: (fork reference, branch number).

        A fork inside a DO_WHILE is named with the iteration suffix, so that two iterations' forks differ.
        """
        path: list[tuple[str, str]] = []
        slot = self.slots.get(ref)
        while slot is not None and slot.owner_ref is not None:
            if slot.owner is Owner.FORK:
                fork = iteration_ref(slot.owner_ref, iteration) if slot.loop_ref else slot.owner_ref
                path.append((fork, str(slot.branch)))
            slot = self.slots.get(slot.owner_ref)
        return path

    def fork_branch_ends(self, fork: WorkflowTask) -> list[str]:
        """The last reference of every non-empty branch of a FORK_JOIN."""
        return [branch[-1].taskReferenceName for branch in fork.forkTasks if branch]


def plan_for(definition: WorkflowDef) -> Plan:
    """The Plan of ``definition``, compiled once and cached on the (treated as immutable) definition."""
    plan = definition._plan
    if not isinstance(plan, Plan):
        plan = Plan(definition)
        definition._plan = plan
    return plan
