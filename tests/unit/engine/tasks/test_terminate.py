"""TERMINATE (engine/tasks/terminate.py): the workflow ends with the task's status and output."""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine import TaskStatus, WorkflowStatus
from tests.unit.engine.flows import fork, join, run
from tests.unit.engine.harness import T0, never, ok, simple, system


@pytest.mark.parametrize(("status", "expected"), [
    pytest.param("COMPLETED", WorkflowStatus.COMPLETED, id="completed"),
    pytest.param("FAILED", WorkflowStatus.FAILED, id="failed"),
    pytest.param("TERMINATED", WorkflowStatus.TERMINATED, id="terminated"),
])
def test_terminate_ends_the_workflow_with_its_status(status: str, expected: WorkflowStatus) -> None:
    term = system("t", "TERMINATE", {"terminationStatus": status, "terminationReason": "enough"})
    sim = run([fork("f", [simple("a"), term], [simple("slow")]), join("j", "t", "slow"), simple("after")],
              {"slow": never()})
    assert sim.workflow.status is expected
    assert sim.workflow.reasonForIncompletion == "enough"
    assert sim.task("t").status is TaskStatus.COMPLETED
    assert sim.task("slow").status is TaskStatus.CANCELED
    assert "after" not in sim.refs()
    assert sim.workflow.endTime == T0 + 1000


@pytest.mark.parametrize(("workflow_output", "expected"), [
    pytest.param({"a": "${a.output.v}"}, {"a": 1}, id="map-replaces-output"),
    pytest.param("${a.output.v}", {"output": 1}, id="non-map-wrapped"),
    pytest.param([1, 2], {"output": [1, 2]}, id="list-wrapped"),
])
def test_terminate_workflow_output_replaces_the_output(workflow_output: Any, expected: dict[str, Any]) -> None:
    term = system("t", "TERMINATE", {"terminationStatus": "COMPLETED", "workflowOutput": workflow_output})
    sim = run([simple("a"), term], {"a": ok({"v": 1})}, outputParameters={"ignored": "${a.output.v}"})
    assert sim.workflow.output == expected
    assert sim.task("t").outputData == expected


def test_terminate_without_workflow_output_empties_the_output() -> None:
    term = system("t", "TERMINATE", {"terminationStatus": "COMPLETED"})
    sim = run([simple("a"), term], {"a": ok({"v": 1})}, outputParameters={"v": "${a.output.v}"})
    assert sim.workflow.output == {}


def test_terminate_with_an_invalid_status_fails_the_workflow_with_a_reason() -> None:
    sim = run([system("t", "TERMINATE", {"terminationStatus": "DONE"}), simple("after")])
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert "terminationStatus 'DONE' is not valid" in (sim.workflow.reasonForIncompletion or "")
