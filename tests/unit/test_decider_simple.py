"""SIMPLE tasks through the decider: what the driver is asked to run, and how the workflow ends.

Conductor's rules checked here: a SIMPLE attempt's ``taskType`` is its TaskDef's name; its inputs are the
resolved ``inputParameters`` (over the TaskDef's ``inputTemplate``); ``startDelay`` holds the first attempt
back; a workflow without ``outputParameters`` outputs its last task's output; a failed workflow still
computes its ``outputParameters``.
"""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine import StartTask, TaskStatus, TaskUpdate, WorkflowStatus
from tests.unit.engine_harness import (
    T0,
    Sim,
    blueprint,
    fail,
    never,
    ok,
    only,
    simple,
    start,
    step,
    task_def,
    terminal_error,
    workflow_def,
)

WORK = task_def("work")


def first_start(definition: dict[str, Any], task_defs: list[dict[str, Any]] | None = None,
                input: dict[str, Any] | None = None) -> StartTask:
    decision = start(blueprint(definition, task_defs if task_defs is not None else [WORK]), input)
    starts = [a for a in decision.actions if isinstance(a, StartTask)]
    assert len(starts) == 1, decision.actions
    return starts[0]


INPUT_CASES = [
    pytest.param({"x": "${workflow.input.a}"}, {"a": 5}, {"x": 5}, id="one-expression-keeps-the-type"),
    pytest.param({"x": "file-${workflow.input.a}.jpg"}, {"a": 5}, {"x": "file-5.jpg"}, id="interpolated-in-text"),
    pytest.param({"x": "${workflow.input.missing}"}, {}, {"x": None}, id="missing-path-is-null"),
    pytest.param({"x": {"deep": ["${workflow.input.a}", 1]}}, {"a": "v"}, {"x": {"deep": ["v", 1]}},
                 id="nested-templates"),
    pytest.param({"x": "$${workflow.input.a}"}, {"a": 1}, {"x": "${workflow.input.a}"}, id="escaped-dollar"),
    pytest.param({"id": "${workflow.workflowId}"}, {}, {"id": "wf-1"}, id="workflow-field"),
    pytest.param({}, {"a": 1}, {}, id="no-parameters"),
]


@pytest.mark.parametrize(("parameters", "workflow_input", "expected"), INPUT_CASES)
def test_simple_task_input_is_resolved(parameters: dict[str, Any], workflow_input: dict[str, Any],
                                       expected: dict[str, Any]) -> None:
    action = first_start(workflow_def([simple("a", inputs=parameters)]), input=workflow_input)
    assert action.inputData == expected


def test_task_def_input_template_supplies_defaults_under_the_inputs() -> None:
    defs = [task_def("work", inputTemplate={"size": 10, "fmt": "png", "who": "${workflow.input.user}"})]
    action = first_start(workflow_def([simple("a", inputs={"fmt": "jpg"})]), defs, {"user": "ann"})
    assert action.inputData == {"size": 10, "fmt": "jpg", "who": "ann"}


def test_start_task_carries_the_attempt_identity_and_task_def() -> None:
    defs = [task_def("resize", timeoutSeconds=30, timeoutPolicy="TIME_OUT_WF")]
    action = first_start(workflow_def([simple("a", name="resize")]), defs)
    assert (action.referenceTaskName, action.taskDefName, action.taskType) == ("a", "resize", "resize")
    assert action.retryCount == 0 and action.iteration == 0
    assert action.timeoutSeconds == 30
    assert action.taskDef is not None and action.taskDef.name == "resize"


def test_alert_only_task_gets_no_hard_deadline() -> None:
    defs = [task_def("work", timeoutSeconds=30, timeoutPolicy="ALERT_ONLY")]
    assert first_start(workflow_def([simple("a")]), defs).timeoutSeconds is None


def test_simple_task_type_is_its_task_def_name() -> None:
    sim = Sim(workflow_def([simple("a", name="resize"), simple("b", name="upload")]),
              [task_def("resize"), task_def("upload")])
    sim.run()
    assert [(t.referenceTaskName, t.taskType, t.taskDefName) for t in sim.workflow.tasks] == [
        ("a", "resize", "resize"), ("b", "upload", "upload")]


def test_inline_task_definition_replaces_the_registered_one() -> None:
    inline = task_def("work", retryCount=1, retryDelaySeconds=0)
    sim = Sim(workflow_def([simple("a", taskDefinition=inline)]), [WORK], results={"a": [fail(), ok()]})
    sim.run()
    assert [t.status for t in sim.attempts("a")] == [TaskStatus.FAILED, TaskStatus.COMPLETED]


def test_missing_task_def_fails_the_workflow_with_a_reason() -> None:
    sim = Sim(workflow_def([simple("a", name="nowhere")]), [])
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.FAILED
    assert sim.task("a").status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert "no TaskDef named 'nowhere'" in (workflow.reasonForIncompletion or "")
    assert "'a'" in (workflow.reasonForIncompletion or "")
    assert sim.actions(StartTask) == []


def test_tasks_run_in_order_and_each_sees_the_previous_output() -> None:
    definition = workflow_def([simple("a"), simple("b", inputs={"got": "${a.output.v}"}),
                               simple("c", inputs={"all": "${b.input.got}-${a.status}"})])
    sim = Sim(definition, [WORK], results={"a": ok({"v": 7})})
    sim.run()
    assert sim.started_refs() == ["a", "b", "c"]
    assert sim.task("b").inputData == {"got": 7}
    assert sim.task("c").inputData == {"all": "7-COMPLETED"}


def test_the_next_task_starts_in_the_decision_that_observes_the_result() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b")]), [WORK], results={"a": ok(runs_ms=500)})
    sim.run()
    started_b = next(e for e in sim.log if isinstance(e.action, StartTask) and e.action.referenceTaskName == "b")
    assert started_b.at == T0 + 500


def test_start_delay_holds_the_first_attempt_back_and_wakes_exactly() -> None:
    bp = blueprint(workflow_def([simple("a", startDelay=30)]), [WORK])
    first = start(bp)
    assert only(first.actions, StartTask) == []
    assert first.wakeAt == T0 + 30_000
    assert first.workflow.tasks[0].startDelayInSeconds == 30
    too_early = step(bp, first.workflow, now=T0 + 29_999)
    assert only(too_early.actions, StartTask) == []
    due = step(bp, too_early.workflow, now=T0 + 30_000)
    assert [a.referenceTaskName for a in only(due.actions, StartTask)] == ["a"]


def test_workflow_output_is_the_last_task_output_without_output_parameters() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b")]), [WORK],
              results={"a": ok({"first": 1}), "b": ok({"second": 2})})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.output == {"second": 2}


def test_workflow_output_parameters_are_resolved_at_the_end() -> None:
    definition = workflow_def([simple("a"), simple("b")],
                              outputParameters={"from_a": "${a.output.v}", "in": "${workflow.input.x}"})
    sim = Sim(definition, [WORK], input={"x": "X"}, results={"a": ok({"v": 1}), "b": ok({"v": 2})})
    assert sim.run().output == {"from_a": 1, "in": "X"}


def test_failed_workflow_still_computes_output_parameters() -> None:
    definition = workflow_def([simple("a"), simple("b")], outputParameters={"a": "${a.output.v}",
                                                                           "b": "${b.output.partial}"})
    sim = Sim(definition, [WORK], results={"a": ok({"v": 1}), "b": fail("broken", output={"partial": "half"})})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.output == {"a": 1, "b": "half"}


def test_failed_workflow_without_output_parameters_outputs_the_failed_task_output() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b")]), [WORK],
              results={"a": ok({"v": 1}), "b": fail(output={"error": "disk full"})})
    assert sim.run().output == {"error": "disk full"}


def test_failed_workflow_records_reason_and_failed_task() -> None:
    sim = Sim(workflow_def([simple("a")]), [WORK], results={"a": terminal_error("image is not a picture")})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.reasonForIncompletion == "image is not a picture"
    assert workflow.failedReferenceTaskNames == ["a"]
    assert workflow.failedTaskId == sim.task("a").taskId
    assert workflow.endTime == T0 + 1000


def test_completed_workflow_has_end_time_and_no_wake_up() -> None:
    sim = Sim(workflow_def([simple("a")]), [WORK])
    workflow = sim.run()
    assert workflow.endTime == T0 + 1000
    assert sim.decisions[-1].wakeAt is None


def test_empty_workflow_completes_at_once() -> None:
    decision = start(blueprint(workflow_def([]), []))
    assert decision.workflow.status is WorkflowStatus.COMPLETED
    assert decision.actions == ()


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
