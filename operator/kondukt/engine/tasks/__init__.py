"""The task families: one module per family, each a ``Scheduler`` (see ``base``), registered in one table.

Adding a task type means a module here (or a function in its family's module), one line in
``SCHEDULERS`` and its facts on ``TaskType``. What a family does after its attempt ended lives in its
module too (``join.notify_final``, ``do_while.evaluate``, ``switch.chosen_case``,
``terminate.terminate_workflow``); ``progression`` calls them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import Task, TaskStatus, TaskType
from kondukt.engine.tasks import (
    do_while,
    driver,
    dynamic,
    fork,
    inline,
    join,
    jq,
    noop,
    set_variable,
    switch,
    terminate,
    wait,
)
from kondukt.engine.tasks.base import Reached, Scheduler


def _unknown(run: Evaluation, at: Reached) -> Task:
    wt = at.wt
    return run.append(run.new_task(
        wt, at.ref, task_type=wt.type, task_def_name=wt.name, input_data={}, iteration=at.iteration,
        loop_ref=at.loop_ref, parent_ref=at.parent_ref, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
        keep_workflow_task=at.dynamic, reasonForIncompletion=f"task {wt.taskReferenceName!r}: unknown task type "
        f"{wt.type!r}"))


#: One scheduler per task type (keys are the WorkflowTask ``type`` strings).
SCHEDULERS: Final[Mapping[str, Scheduler]] = {
    TaskType.SIMPLE: driver.schedule,
    TaskType.HTTP: driver.schedule,
    TaskType.SUB_WORKFLOW: driver.schedule,
    TaskType.START_WORKFLOW: driver.schedule,
    TaskType.DYNAMIC: dynamic.schedule,
    TaskType.FORK_JOIN: fork.schedule,
    TaskType.FORK_JOIN_DYNAMIC: fork.schedule_dynamic,
    TaskType.JOIN: join.schedule,
    TaskType.EXCLUSIVE_JOIN: join.schedule,
    TaskType.SWITCH: switch.schedule,
    TaskType.DECISION: switch.schedule,
    TaskType.DO_WHILE: do_while.schedule,
    TaskType.INLINE: inline.schedule,
    TaskType.LAMBDA: inline.schedule,
    TaskType.JSON_JQ_TRANSFORM: jq.schedule,
    TaskType.SET_VARIABLE: set_variable.schedule,
    TaskType.NOOP: noop.schedule,
    TaskType.TERMINATE: terminate.schedule,
    TaskType.WAIT: wait.schedule,
    TaskType.HUMAN: wait.schedule,
}


def scheduler_for(task_type: str) -> Scheduler:
    """The scheduler of a WorkflowTask ``type``; an unknown type's attempt fails with a clear reason."""
    return SCHEDULERS.get(task_type, _unknown)


__all__ = [
    "SCHEDULERS",
    "Reached",
    "Scheduler",
    "do_while",
    "driver",
    "dynamic",
    "fork",
    "inline",
    "join",
    "jq",
    "noop",
    "scheduler_for",
    "set_variable",
    "switch",
    "terminate",
    "wait",
]
