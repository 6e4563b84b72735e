"""JOIN and EXCLUSIVE_JOIN (engine/tasks/join.py): what a join waits for and what it outputs."""

from __future__ import annotations

import pytest

from kondukt.engine import StartTask, TaskStatus, WorkflowStatus
from tests.unit.engine.flows import exclusive, fork, join, run
from tests.unit.engine.harness import T0, ok, simple


def test_join_output_maps_references_to_outputs_and_leaves_out_empty_ones() -> None:
    sim = run([fork("f", [simple("a")], [simple("b")], [simple("c")]), join("j", "a", "b", "c")],
              {"a": ok({"x": 1}), "b": ok({}), "c": ok({"y": [2]})})
    assert sim.task("j").outputData == {"a": {"x": 1}, "c": {"y": [2]}}
    assert sim.workflow.output == {"a": {"x": 1}, "c": {"y": [2]}}


def test_join_waits_for_every_joined_branch() -> None:
    sim = run([fork("f", [simple("a1"), simple("a2")], [simple("b")]), join("j", "a2", "b"), simple("after")],
              {"b": ok(runs_ms=5000)})
    after = next(e for e in sim.log if isinstance(e.action, StartTask) and e.action.referenceTaskName == "after")
    assert after.at == T0 + 5000
    assert sim.task("j").endTime == T0 + 5000


def test_join_on_a_subset_lets_the_flow_go_on_while_other_branches_run() -> None:
    sim = run([fork("f", [simple("a")], [simple("slow")]), join("j", "a"), simple("after")],
              {"slow": ok(runs_ms=10_000)})
    assert sim.task("after").startTime < sim.task("slow").endTime
    assert sim.workflow.status is WorkflowStatus.COMPLETED
    assert sim.workflow.endTime == T0 + 10_000


@pytest.mark.parametrize(("value", "who"), [pytest.param("a", "a", id="case-a"), pytest.param("b", "b", id="case-b")])
def test_exclusive_join_takes_the_output_of_the_case_that_ran(value: str, who: str) -> None:
    sim = exclusive(value, joinOn=["a2", "b1"])
    assert sim.task("ej").status is TaskStatus.COMPLETED
    assert sim.task("ej").outputData == {"who": who}
    assert sim.task("after").inputData == {"got": who}


def test_exclusive_join_falls_back_to_default_exclusive_join_task() -> None:
    sim = exclusive("zzz", joinOn=["a2", "b1"], defaultExclusiveJoinTask=["dflt"])
    assert sim.task("ej").outputData == {"who": "default"}
    assert sim.workflow.status is WorkflowStatus.COMPLETED
