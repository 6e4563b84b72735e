"""SWITCH and DECISION: evaluate the case on the spot; the chosen branch is scheduled as the successor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kondukt.engine import scripting
from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import Task, TaskType, WorkflowTask
from kondukt.engine.tasks.base import Reached, append_result


def schedule(run: Evaluation, at: Reached) -> Task:
    wt = at.wt
    input_data = at.input(run)
    try:
        if wt.type == TaskType.DECISION.value:
            if wt.caseExpression:
                value = scripting.evaluate_expression("javascript", wt.caseExpression, input_data, now_ms=run.now)
            else:
                value = input_data.get(wt.caseValueParam or "")
        else:
            evaluator = wt.evaluatorType or "value-param"
            value = scripting.evaluate_expression(evaluator, wt.expression or "", input_data, now_ms=run.now)
    except scripting.ScriptError as error:
        return append_result(run, at, wt.type, input_data, None, f"task {wt.taskReferenceName!r}: {error}")
    case = case_key(value)
    input_data = {**input_data, "case": case}
    # Conductor's output names: DECISION reports caseOutput, SWITCH evaluationResult.
    output = {"caseOutput": [case]} if wt.type == TaskType.DECISION.value else \
        {"evaluationResult": [case], "selectedCase": case}
    return append_result(run, at, wt.type, input_data, output)


def case_key(value: Any) -> str:
    """Conductor compares case values as strings (Java's String.valueOf)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def chosen_case(workflow_task: WorkflowTask, output: Mapping[str, Any]) -> list[WorkflowTask]:
    """The branch a finished SWITCH / DECISION chose (its first task is its successor)."""
    result = output.get("evaluationResult", output.get("caseOutput"))
    case = result[0] if isinstance(result, list) and result else None
    if isinstance(case, str) and workflow_task.decisionCases.get(case):
        return workflow_task.decisionCases[case]
    return workflow_task.defaultCase  # no such case, or an empty one: the default case (as in Conductor)
