"""SET_VARIABLE: its input is merged into the workflow's variables; it completes at once."""

from __future__ import annotations

from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import Task, TaskStatus
from kondukt.engine.payloads import DEFAULT_INLINE_VALUE_BYTES, oversize
from kondukt.engine.tasks.base import Reached, append_result


def schedule(run: Evaluation, at: Reached) -> Task:
    input_data = at.input(run)
    variables = {**run.field("variables"), **input_data}
    problem = oversize("the workflow's variables would be", variables, run.blueprint.payloadLimits,
                       cap=DEFAULT_INLINE_VALUE_BYTES)
    if problem is not None:  # as Conductor's variables size limit: the task fails, the variables stay as they were
        return append_result(run, at, at.wt.type, {}, None, f"task {at.wt.taskReferenceName!r}: {problem}",
                             status=TaskStatus.FAILED_WITH_TERMINAL_ERROR)
    run.set(variables=variables)
    return append_result(run, at, at.wt.type, input_data, {})
