"""SET_VARIABLE (engine/tasks/set_variable.py)."""

from __future__ import annotations

from kondukt.engine import TaskStatus
from tests.unit.engine.flows import run
from tests.unit.engine.harness import simple, system


def test_set_variable_updates_variables_for_later_tasks() -> None:
    sim = run([system("s1", "SET_VARIABLE", {"count": 1, "name": "${workflow.input.n}"}),
               system("s2", "SET_VARIABLE", {"count": 2}),
               simple("a", inputs={"c": "${workflow.variables.count}", "n": "${workflow.variables.name}",
                                   "keep": "${workflow.variables.initial}"})],
              input={"n": "ann"}, variables={"initial": "yes"})
    assert sim.workflow.variables == {"initial": "yes", "count": 2, "name": "ann"}
    assert sim.task("a").inputData == {"c": 2, "n": "ann", "keep": "yes"}
    assert sim.task("s1").status is TaskStatus.COMPLETED
