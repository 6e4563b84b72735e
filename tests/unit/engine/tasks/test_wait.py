"""WAIT and HUMAN (engine/tasks/wait.py): IN_PROGRESS until their time comes or a user completes them."""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine import Operation, OperationKind, StartTask, TaskStatus, TaskUpdate, WorkflowStatus
from tests.unit.engine.flows import WORK, run
from tests.unit.engine.harness import T0, Sim, blueprint, failed_by, simple, start, step, system, workflow_def


@pytest.mark.parametrize(("inputs", "ends"), [
    pytest.param({"duration": "30s"}, T0 + 30_000, id="duration-seconds"),
    pytest.param({"duration": "1 hours 2 minutes"}, T0 + 3_720_000, id="duration-words"),
    pytest.param({"until": "2024-01-01 00:05 UTC"}, T0 + 300_000, id="until"),
    pytest.param({"until": "2024-01-01T01:00:00+01:00"}, T0, id="until-with-offset"),
])
def test_wait_completes_when_its_time_comes(inputs: dict[str, Any], ends: int) -> None:
    bp = blueprint(workflow_def([system("w", "WAIT", inputs), simple("after")]), [WORK])
    first = start(bp)
    if ends > T0:
        assert first.workflow.tasks[0].status is TaskStatus.IN_PROGRESS
        assert first.wakeAt == ends
        later = step(bp, first.workflow, now=ends)
    else:
        later = first
    assert later.workflow.tasks[0].status is TaskStatus.COMPLETED
    assert later.workflow.tasks[0].endTime == max(ends, T0)
    assert [a.referenceTaskName for a in later.actions if isinstance(a, StartTask)] == ["after"]


def test_wait_in_the_past_after_another_task_completes_without_a_timer() -> None:
    sim = run([simple("a"), system("w", "WAIT", {"until": "2020-01-01"}), simple("b")])
    assert sim.workflow.status is WorkflowStatus.COMPLETED
    assert sim.task("w").endTime == T0 + 1000


@pytest.mark.parametrize("inputs", [{"until": "2020-01-01"}, {"duration": "0s"}])
def test_wait_already_due_completes_in_the_decision_that_reaches_it(inputs: dict[str, Any]) -> None:
    bp = blueprint(workflow_def([simple("a"), system("w", "WAIT", inputs), simple("b")]), [WORK])
    first = start(bp)
    done = TaskUpdate(taskId=first.workflow.tasks[0].taskId, status=TaskStatus.COMPLETED)
    decision = step(bp, first.workflow, [done], now=T0 + 100)
    assert [a.referenceTaskName for a in decision.actions if isinstance(a, StartTask)] == ["b"]
    assert decision.wakeAt is None


def test_wait_without_time_waits_until_completed_by_a_user() -> None:
    sim = Sim(workflow_def([system("w", "WAIT"), simple("after", inputs={"by": "${w.output.by}"})]), [WORK])
    sim.run()
    assert sim.task("w").status is TaskStatus.IN_PROGRESS
    assert sim.decisions[-1].wakeAt is None
    sim.observe(Operation(op=OperationKind.COMPLETE, nonce="c1", taskReferenceName="w", outputData={"by": "ann"}),
                at=T0 + 86_400_000)
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert sim.task("after").inputData == {"by": "ann"}


@pytest.mark.parametrize("inputs", [{"duration": "soon"}, {"until": "next tuesday"}])
def test_wait_with_unreadable_time_fails_the_workflow(inputs: dict[str, Any]) -> None:
    sim = run([system("w", "WAIT", inputs)])
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert "cannot read" in (sim.workflow.reasonForIncompletion or "")


def test_human_task_waits_for_completion_by_an_operation() -> None:
    sim = Sim(workflow_def([system("approve", "HUMAN", {"doc": "${workflow.input.doc}"}),
                            simple("after", inputs={"ok": "${approve.output.approved}"})]), [WORK],
              input={"doc": "d1"})
    sim.run()
    assert sim.task("approve").status is TaskStatus.IN_PROGRESS and sim.task("approve").inputData == {"doc": "d1"}
    sim.operate(OperationKind.COMPLETE, taskReferenceName="approve", outputData={"approved": True})
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert sim.task("approve").outputData == {"approved": True}
    assert sim.task("after").inputData == {"ok": True}


def test_human_task_failed_by_an_operation_fails_the_workflow() -> None:
    sim = Sim(workflow_def([system("approve", "HUMAN"), simple("after")]), [WORK])
    sim.run()
    sim.operate(OperationKind.COMPLETE, taskReferenceName="approve", status=TaskStatus.FAILED, reason="rejected")
    assert sim.run().status is WorkflowStatus.FAILED
    assert sim.workflow.reasonForIncompletion == failed_by(sim.task("approve"), "FAILED", "rejected")
