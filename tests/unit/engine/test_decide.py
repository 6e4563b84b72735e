"""The entry point (engine/decide.py): how the driver's task updates apply, late and unknown news, and
the deterministic task ids.
"""

from __future__ import annotations

from kondukt.engine import TaskStatus, TaskUpdate, WorkflowStatus
from tests.unit.engine.flows import WORK, sub
from tests.unit.engine.harness import T0, Sim, blueprint, never, ok, simple, start, step, workflow_def


def test_update_with_sub_workflow_id_is_recorded() -> None:
    bp = blueprint(workflow_def([sub()]), [WORK])
    first = start(bp)
    task_id = first.workflow.tasks[0].taskId
    later = step(bp, first.workflow, [TaskUpdate(taskId=task_id, subWorkflowId="child-9")], now=T0 + 1)
    assert later.workflow.tasks[0].subWorkflowId == "child-9"
    assert later.actions == ()


def test_task_times_follow_the_attempt() -> None:
    sim = Sim(workflow_def([simple("a")]), [WORK], results={"a": ok(runs_ms=2500)})
    sim.run()
    task = sim.task("a")
    assert (task.scheduledTime, task.startTime, task.endTime) == (T0, T0 + 10, T0 + 2500)


def test_running_task_reports_progress_output_without_finishing() -> None:
    bp = blueprint(workflow_def([simple("a")]), [WORK])
    first = start(bp)
    task_id = first.workflow.tasks[0].taskId
    running = step(bp, first.workflow, [TaskUpdate(taskId=task_id, started=True, outputData={"pct": 40})], now=T0 + 5)
    task = running.workflow.tasks[0]
    assert task.status is TaskStatus.IN_PROGRESS and task.outputData == {"pct": 40}
    assert running.workflow.status is WorkflowStatus.RUNNING


def test_late_result_for_a_finished_attempt_is_ignored() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b")]), [WORK], results={"b": never()})
    sim.run(until=lambda s: len(s.refs()) == 2)
    first_id = sim.task("a").taskId
    sim.observe(TaskUpdate(taskId=first_id, status=TaskStatus.FAILED, reasonForIncompletion="late"))
    sim.run(until_time=sim.now + 10)
    assert sim.task("a").status is TaskStatus.COMPLETED
    assert sim.workflow.status is WorkflowStatus.RUNNING


def test_update_for_an_unknown_task_is_reported_not_applied() -> None:
    bp = blueprint(workflow_def([simple("a")]), [WORK])
    first = start(bp)
    decision = step(bp, first.workflow, [TaskUpdate(taskId="nope", status=TaskStatus.COMPLETED)], now=T0 + 1)
    assert not decision.changed
    assert any("unknown task nope" in m for m in decision.messages)


def test_task_ids_are_deterministic_per_workflow_and_seq() -> None:
    bp = blueprint(workflow_def([simple("a")]), [WORK])
    assert start(bp).workflow.tasks[0].taskId == start(bp).workflow.tasks[0].taskId
    assert start(bp).workflow.tasks[0].taskId != start(bp, workflow_id="wf-2").workflow.tasks[0].taskId
