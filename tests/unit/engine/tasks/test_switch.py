"""SWITCH and DECISION (engine/tasks/switch.py): the case evaluated, compared as text, the branch chosen."""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine import WorkflowStatus
from tests.unit.engine.flows import decision, loop, run, switch, upto
from tests.unit.engine.harness import simple


@pytest.mark.parametrize(("value", "ran"), [
    pytest.param("x", ["x1", "x2", "after"], id="first-case"),
    pytest.param("y", ["y1", "after"], id="second-case"),
    pytest.param("z", ["d1", "after"], id="default-case"),
    pytest.param(None, ["d1", "after"], id="null-goes-default"),
])
def test_switch_value_param_picks_the_case(value: Any, ran: list[str]) -> None:
    sim = run([switch(), simple("after")], input={"v": value})
    assert sim.started_refs() == ran
    assert sim.task("sw").taskType == "SWITCH"
    assert sim.workflow.status is WorkflowStatus.COMPLETED


def test_switch_records_the_evaluation_in_its_output_and_input() -> None:
    sim = run([switch()], input={"v": "y"})
    assert sim.task("sw").outputData["evaluationResult"] == ["y"]
    assert sim.task("sw").inputData == {"v": "y", "case": "y"}


@pytest.mark.parametrize("evaluator", ["javascript", "graaljs"])
@pytest.mark.parametrize(("n", "ran"), [pytest.param(9, ["x1", "x2"], id="big"), pytest.param(1, ["y1"], id="small")])
def test_switch_javascript_expression(evaluator: str, n: int, ran: list[str]) -> None:
    sw = switch(evaluator=evaluator, expression="$.n > 5 ? 'x' : 'y'", inputs={"n": "${workflow.input.n}"})
    assert run([sw], input={"n": n}).started_refs() == ran


@pytest.mark.parametrize(("value", "case"), [
    pytest.param(True, "true", id="boolean"), pytest.param(3, "3", id="integer"), pytest.param(2.0, "2", id="float"),
])
def test_switch_compares_cases_as_text(value: Any, case: str) -> None:
    sim = run([switch(cases={case: [simple("hit")]}, default=[simple("miss")])], input={"v": value})
    assert sim.started_refs() == ["hit"]


def test_switch_matched_empty_case_runs_the_default_case() -> None:
    sim = run([switch(cases={"x": []}, default=[simple("d1")]), simple("after")], input={"v": "x"})
    assert sim.started_refs() == ["d1", "after"]


def test_switch_without_match_or_default_goes_on() -> None:
    sim = run([switch(cases={"x": [simple("x1")]}, default=[]), simple("after")], input={"v": "q"})
    assert sim.started_refs() == ["after"]


def test_nested_switch_continues_after_the_outer_one() -> None:
    inner = switch("inner", expression="w", inputs={"w": "${workflow.input.w}"}, cases={"a": [simple("ia")]},
                   default=[simple("idef")])
    sim = run([switch(cases={"x": [inner, simple("x_after")]}), simple("after")], input={"v": "x", "w": "a"})
    assert sim.started_refs() == ["ia", "x_after", "after"]


def test_switch_script_error_fails_the_workflow_with_a_reason() -> None:
    sim = run([switch(evaluator="javascript", expression="nope.x")])
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert sim.workflow.reasonForIncompletion is not None and "'sw'" in sim.workflow.reasonForIncompletion


def test_switch_unknown_evaluator_fails_the_workflow() -> None:
    sim = run([switch(evaluator="python")])
    assert "unknown evaluatorType 'python'" in (sim.workflow.reasonForIncompletion or "")


@pytest.mark.parametrize(("extra", "value", "ran"), [
    pytest.param({"caseValueParam": "v"}, "x", ["x1"], id="case-value-param"),
    pytest.param({"caseValueParam": "v"}, "nope", ["d1"], id="case-value-param-default"),
    pytest.param({"caseExpression": "$.v == 'a' ? 'x' : 'other'"}, "a", ["x1"], id="case-expression"),
    pytest.param({"caseExpression": "$.v == 'a' ? 'x' : 'other'"}, "b", ["d1"], id="case-expression-default"),
])
def test_decision_picks_its_case(extra: dict[str, Any], value: str, ran: list[str]) -> None:
    sim = run([decision(**extra)], input={"v": value})
    assert sim.started_refs() == ran
    assert sim.task("d").taskType == "DECISION"


def test_decision_reports_case_output_like_conductor() -> None:
    sim = run([decision(caseValueParam="v")], input={"v": "x"})
    assert sim.task("d").outputData == {"caseOutput": ["x"]}
    assert sim.task("d").inputData["case"] == "x"


def test_switch_inside_a_do_while_follows_each_iteration() -> None:
    sw = switch(evaluator="javascript", expression="$.i % 2 == 0 ? 'x' : 'y'", inputs={"i": "${loop.output.iteration}"},
                cases={"x": [simple("even")], "y": [simple("odd")]})
    sim = run([loop("loop", [sw, simple("tail")], upto("loop", 3))])
    assert sim.started_refs() == ["odd__1", "tail__1", "even__2", "tail__2", "odd__3", "tail__3"]
