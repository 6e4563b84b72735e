"""The table of schedulers (engine/tasks/__init__.py): every task type has one; an unknown type fails
its attempt with a reason.
"""

from __future__ import annotations

from kondukt.engine import TaskType, WorkflowStatus
from kondukt.engine.models import DRIVER_TASK_TYPES
from kondukt.engine.tasks import SCHEDULERS, driver
from tests.unit.engine.flows import run
from tests.unit.engine.harness import system


def test_unknown_task_type_fails_the_workflow_with_a_reason() -> None:
    sim = run([system("k", "KAFKA_PUBLISH")])
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert "unknown task type 'KAFKA_PUBLISH'" in (sim.workflow.reasonForIncompletion or "")


def test_every_task_type_has_a_scheduler() -> None:
    assert set(SCHEDULERS) == {t.value for t in TaskType}


def test_the_driver_runs_exactly_the_types_the_driver_module_schedules() -> None:
    driver_scheduled = {name for name, scheduler in SCHEDULERS.items() if scheduler is driver.schedule}
    assert driver_scheduled == DRIVER_TASK_TYPES
