"""NOOP (engine/tasks/noop.py)."""

from __future__ import annotations

from tests.unit.engine.flows import run
from tests.unit.engine.harness import simple, system


def test_noop_completes_and_the_flow_goes_on() -> None:
    sim = run([system("n", "NOOP"), simple("after")])
    assert sim.statuses() == [("n", "COMPLETED"), ("after", "COMPLETED")]
