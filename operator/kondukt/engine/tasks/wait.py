"""WAIT and HUMAN: IN_PROGRESS until their time comes (a WAIT's deadline, see ``waits``) or a user completes them."""

from __future__ import annotations

from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import Task, TaskStatus, TaskType
from kondukt.engine.tasks.base import Reached, append_result
from kondukt.engine.waits import wait_problem


def schedule(run: Evaluation, at: Reached) -> Task:
    wt = at.wt
    input_data = at.input(run)
    if wt.type == TaskType.WAIT.value:
        problem = wait_problem(input_data)
        if problem:
            return append_result(run, at, wt.type, input_data, None, f"task {wt.taskReferenceName!r}: {problem}",
                                 status=TaskStatus.FAILED_WITH_TERMINAL_ERROR)
    return append_result(run, at, wt.type, input_data, {}, status=TaskStatus.IN_PROGRESS)
