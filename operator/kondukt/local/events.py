"""What a local run reports (events for the progress view, statistics, the result) and the few types
its modules share (where definitions come from, the clock in ms). Kept apart from the runner so that
the progress view and the workflow driver use them without importing the whole run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kondukt.engine import Blueprint, TaskStatus, Workflow, WorkflowDef, WorkflowStatus


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class DefinitionSource(Protocol):
    """Where sub-workflow and started-workflow definitions come from (a manifests Bundle)."""

    def find_workflow_def(self, name: str, version: int | None = None) -> WorkflowDef | None: ...

    def blueprint_for(self, workflow_def: WorkflowDef) -> Blueprint: ...


class DefinitionNotFound(LookupError):
    pass


# --------------------------------------------------------------------------------------------------
# Events (for the progress view) and statistics
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskEvent:
    """A task attempt changed status (from the engine's transitions)."""

    at_ms: int
    workflow_path: str
    workflow_id: str
    task_id: str
    reference_task_name: str
    task_type: str
    status: TaskStatus
    reason: str | None = None


@dataclass(frozen=True)
class WorkflowEvent:
    """A workflow started or ended."""

    at_ms: int
    workflow_path: str
    workflow_id: str
    workflow_name: str
    status: WorkflowStatus
    reason: str | None = None


@dataclass(frozen=True)
class MessageEvent:
    """A note for the user (an engine message, a workflow that could not start)."""

    at_ms: int
    workflow_path: str
    text: str


RunEvent = TaskEvent | WorkflowEvent | MessageEvent
EventSink = Callable[[RunEvent], None]


@dataclass
class RunnerStats:
    """The runner's own overhead: from a task process's exit to the next process's start."""

    step_gaps_ms: list[float] = field(default_factory=list)
    dispatches: list[tuple[str, int]] = field(default_factory=list)
    """(TaskDef name, ms) of every process attempt handed to the runner, in order."""
    decisions: int = 0
    processes_started: int = 0
    _unconsumed_exit: float | None = None

    def process_exited(self, at: float) -> None:
        self._unconsumed_exit = at

    def process_started(self, at: float) -> None:
        self.processes_started += 1
        if self._unconsumed_exit is not None:
            self.step_gaps_ms.append((at - self._unconsumed_exit) * 1000.0)
            self._unconsumed_exit = None


@dataclass(frozen=True)
class WorkflowRun:
    """One workflow of the run, as it ended."""

    path: str
    workflow: Workflow
    purpose: str  # "main" | "sub_workflow" | "START_WORKFLOW" | "failureWorkflow"


@dataclass(frozen=True)
class RunResult:
    workflow: Workflow
    workflows: tuple[WorkflowRun, ...]
    stats: RunnerStats
    interrupted: bool
    attempt_dir: Path

    @property
    def status(self) -> WorkflowStatus:
        return self.workflow.status


