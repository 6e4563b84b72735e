"""SET_VARIABLE: its input is merged into the workflow's variables; it completes at once."""

from __future__ import annotations

from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import Task
from kondukt.engine.tasks.base import Reached, append_result


def schedule(run: Evaluation, at: Reached) -> Task:
    input_data = at.input(run)
    run.set(variables={**run.field("variables"), **input_data})
    return append_result(run, at, at.wt.type, input_data, {})
