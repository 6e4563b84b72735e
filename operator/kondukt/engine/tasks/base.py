"""The one interface every task family implements: schedule a WorkflowTask the flow reached.

A ``Scheduler`` (Conductor's TaskMapper, one per task type) receives the ``Evaluation`` and a ``Reached``
(which WorkflowTask, under which reference, in which loop iteration and fork) and appends the attempt(s)
it creates, returning the attempt that stands for the WorkflowTask (None when it ended the workflow
instead, as a Conductor mapper that throws TerminateWorkflowException). Engine-run types (SWITCH, INLINE,
JSON_JQ_TRANSFORM, ...) are evaluated on the spot and appended already final with ``append_result``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import Task, TaskDef, TaskStatus, WorkflowTask
from kondukt.engine.payloads import oversize


class Reached(NamedTuple):
    """A WorkflowTask the flow reached, and where: what a scheduler needs to create its attempt.

    A NamedTuple rather than a frozen dataclass: one is made per scheduled task (10,000 for a wide fork),
    and a tuple is the cheapest immutable record to build.
    """

    wt: WorkflowTask
    ref: str  # the attempt's reference (``ref__N`` inside a DO_WHILE)
    iteration: int
    loop_ref: str | None  # the enclosing DO_WHILE's reference
    parent_ref: str | None  # the dynamic fork that created it
    input_override: Mapping[str, Any] | None  # the input to use as is (a rerun's, a dynamic task's)
    overlay: Mapping[str, Any] | None  # laid over the resolved input (a dynamic fork branch's input)
    dynamic: bool  # not in the definition: the attempt keeps its WorkflowTask

    def input(self, run: Evaluation, task_def: TaskDef | None = None) -> dict[str, Any]:
        return run.input_for(self.wt, task_def, self.input_override, self.overlay)


class Scheduler(Protocol):
    """Create the attempt(s) for a reached WorkflowTask of one task family; return the one that stands for it."""

    def __call__(self, run: Evaluation, at: Reached) -> Task | None: ...


def append_result(run: Evaluation, at: Reached, task_type: str, input_data: dict[str, Any],
                  output: dict[str, Any] | None, error: str | None = None, status: TaskStatus | None = None,
                  **extra: Any) -> Task:
    """Append an engine-run attempt already evaluated: COMPLETED, FAILED with ``error``, or ``status``."""
    final = status or (TaskStatus.FAILED if error else TaskStatus.COMPLETED)
    return run.append(run.new_task(
        at.wt, at.ref, task_type=task_type, task_def_name=at.wt.name, input_data=input_data,
        iteration=at.iteration, loop_ref=at.loop_ref, parent_ref=at.parent_ref, status=final,
        keep_workflow_task=at.dynamic, outputData=output or {}, reasonForIncompletion=error, **extra))


def oversized_input(run: Evaluation, at: Reached, task_type: str, input_data: dict[str, Any]) -> Task | None:
    """A FAILED_WITH_TERMINAL_ERROR attempt when ``input_data`` is too large to keep (see PayloadLimits)."""
    problem = oversize("its input is", input_data, run.blueprint.payloadLimits)
    if problem is None:
        return None
    return append_result(run, at, task_type, {}, None, f"task {at.wt.taskReferenceName!r}: {problem}",
                         status=TaskStatus.FAILED_WITH_TERMINAL_ERROR)


def oversized_output(run: Evaluation, at: Reached, task_type: str, input_data: dict[str, Any],
                     output: dict[str, Any]) -> Task | None:
    """A FAILED_WITH_TERMINAL_ERROR attempt when an evaluated ``output`` is too large to keep."""
    problem = oversize("its output is", output, run.blueprint.payloadLimits)
    if problem is None:
        return None
    return append_result(run, at, task_type, input_data, None, f"task {at.wt.taskReferenceName!r}: {problem}",
                         status=TaskStatus.FAILED_WITH_TERMINAL_ERROR)


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__
