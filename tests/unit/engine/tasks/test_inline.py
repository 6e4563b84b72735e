"""INLINE and LAMBDA (engine/tasks/inline.py): scripts evaluated in the engine, errors with a reason."""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine import TaskStatus, WorkflowStatus
from tests.unit.engine.flows import run
from tests.unit.engine.harness import simple, system

INLINE_CASES = [
    pytest.param({"evaluatorType": "javascript", "expression": "$.a + $.b", "a": 2, "b": 3}, 5, id="javascript"),
    pytest.param({"evaluatorType": "graaljs", "expression": "(function(){ return [$.a, 'x']; })()", "a": 1},
                 [1, "x"], id="graaljs-function"),
    pytest.param({"evaluatorType": "value-param", "expression": "a", "a": {"k": "v"}}, {"k": "v"}, id="value-param"),
    pytest.param({"evaluatorType": "javascript", "expression": "function e() { return $.s.length; } e();",
                  "s": "four"}, 4, id="function-declaration"),
]


@pytest.mark.parametrize(("inputs", "result"), INLINE_CASES)
def test_inline_evaluates_its_expression(inputs: dict[str, Any], result: Any) -> None:
    sim = run([system("i", "INLINE", inputs), simple("after", inputs={"r": "${i.output.result}"})])
    assert sim.task("i").outputData == {"result": result}
    assert sim.task("after").inputData == {"r": result}


@pytest.mark.parametrize(("inputs", "message"), [
    pytest.param({"evaluatorType": "javascript", "expression": "throw new Error('bad thing')"}, "bad thing",
                 id="throws"),
    pytest.param({"evaluatorType": "javascript", "expression": "while (true) {}"}, "javascript", id="runaway"),
    pytest.param({"evaluatorType": "cobol", "expression": "x"}, "unknown evaluatorType", id="unknown-evaluator"),
])
def test_inline_errors_fail_the_task_with_a_reason(inputs: dict[str, Any], message: str) -> None:
    sim = run([system("i", "INLINE", inputs)])
    assert sim.workflow.status is WorkflowStatus.FAILED
    task = sim.task("i")
    assert task.status is TaskStatus.FAILED
    assert message in (task.reasonForIncompletion or "") and "'i'" in (task.reasonForIncompletion or "")
    assert "error" in task.outputData
