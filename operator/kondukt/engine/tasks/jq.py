"""JSON_JQ_TRANSFORM: the ``queryExpression`` jq program run on the task's input, on the spot."""

from __future__ import annotations

from kondukt.engine import scripting
from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import Task
from kondukt.engine.tasks.base import Reached, append_result


def schedule(run: Evaluation, at: Reached) -> Task:
    wt = at.wt
    input_data = at.input(run)
    query = input_data.get("queryExpression")
    if not isinstance(query, str):
        return append_result(run, at, wt.type, input_data, None,
                             f"task {wt.taskReferenceName!r}: input queryExpression must be a jq program")
    try:
        output = scripting.jq_transform_output(query, input_data, now_ms=run.now)
    except scripting.ScriptError as error:
        return append_result(run, at, wt.type, input_data, {"error": str(error)},
                             f"task {wt.taskReferenceName!r}: {error}")
    return append_result(run, at, wt.type, input_data, output)
