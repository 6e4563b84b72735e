"""INLINE and LAMBDA: a script evaluated on the spot (JavaScript, or another of ``scripting``'s evaluators).

LAMBDA is Conductor's older form: ``scriptExpression`` is the body of a JavaScript function (``return``
gives the result), with ``$`` bound to the task's input; the result is ``output.result`` as for INLINE.
"""

from __future__ import annotations

from kondukt.engine import scripting
from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import Task, TaskType
from kondukt.engine.tasks.base import Reached, append_result, oversized_input, oversized_output


def schedule(run: Evaluation, at: Reached) -> Task:
    wt = at.wt
    input_data = at.input(run)
    refused = oversized_input(run, at, wt.type, input_data)
    if refused is not None:
        return refused
    try:
        if wt.type == TaskType.LAMBDA.value:
            script = wt.scriptExpression or input_data.get("scriptExpression") or ""
            # As Conductor's Lambda: the expression is a function body (it may ``return``), called at once.
            result = scripting.evaluate_expression("javascript", f"function scriptFun(){{{script}\n}} scriptFun();",
                                                   input_data, now_ms=run.now)
        else:
            evaluator = str(input_data.get("evaluatorType") or wt.evaluatorType or "javascript")
            expression = str(input_data.get("expression") or wt.expression or "")
            result = scripting.evaluate_expression(evaluator, expression, input_data, now_ms=run.now)
    except scripting.ScriptError as error:
        return append_result(run, at, wt.type, input_data, {"error": str(error)},
                             f"task {wt.taskReferenceName!r}: {error}")
    output = {"result": result}
    return oversized_output(run, at, wt.type, input_data, output) or append_result(run, at, wt.type, input_data,
                                                                                      output)
