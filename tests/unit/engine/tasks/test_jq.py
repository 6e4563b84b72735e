"""JSON_JQ_TRANSFORM (engine/tasks/jq.py)."""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine import WorkflowStatus
from tests.unit.engine.flows import run
from tests.unit.engine.harness import system


@pytest.mark.parametrize(("query", "data", "output"), [
    pytest.param(".a + .b", {"a": 1, "b": 2}, {"result": 3, "resultList": [3]}, id="single"),
    pytest.param(".xs[]", {"xs": [1, 2]}, {"result": 1, "resultList": [1, 2]}, id="many"),
    pytest.param("{k: .key}", {"key": "v"}, {"result": {"k": "v"}, "resultList": [{"k": "v"}]}, id="object"),
])
def test_json_jq_transform(query: str, data: dict[str, Any], output: dict[str, Any]) -> None:
    sim = run([system("jq", "JSON_JQ_TRANSFORM", {"queryExpression": query, **data})])
    assert sim.task("jq").outputData == output


@pytest.mark.parametrize(("inputs", "message"), [
    pytest.param({"queryExpression": ".a | error(\"nope\")", "a": 1}, "nope", id="jq-error"),
    pytest.param({"queryExpression": "{{{"}, "jq", id="syntax-error"),
    pytest.param({}, "queryExpression must be a jq program", id="missing-query"),
])
def test_json_jq_transform_errors_fail_the_workflow(inputs: dict[str, Any], message: str) -> None:
    sim = run([system("jq", "JSON_JQ_TRANSFORM", inputs)])
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert message in (sim.task("jq").reasonForIncompletion or "")
