"""DYNAMIC: a SIMPLE task whose name comes from an input (``dynamicTaskNameParam``, else ``taskToExecute``)."""

from __future__ import annotations

from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import Task, TaskStatus, TaskType
from kondukt.engine.tasks import driver
from kondukt.engine.tasks.base import Reached


def schedule(run: Evaluation, at: Reached) -> Task:
    wt = at.wt
    input_data = at.input(run)
    name = input_data.get(wt.dynamicTaskNameParam or "taskToExecute")
    if not isinstance(name, str) or not name:
        return run.append(run.new_task(
            wt, at.ref, task_type=TaskType.DYNAMIC.value, task_def_name=wt.name, input_data=input_data,
            iteration=at.iteration, loop_ref=at.loop_ref, parent_ref=at.parent_ref,
            status=TaskStatus.FAILED_WITH_TERMINAL_ERROR, keep_workflow_task=at.dynamic,
            reasonForIncompletion=f"task {wt.taskReferenceName!r}: input {wt.dynamicTaskNameParam!r} does not "
            f"name a task (got {name!r})"))
    resolved = wt.model_copy(update={"name": name, "type": TaskType.SIMPLE.value})
    return driver.schedule(run, at._replace(wt=resolved, input_override=input_data, overlay=None))
