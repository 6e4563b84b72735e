"""SIMPLE, HTTP, SUB_WORKFLOW, START_WORKFLOW (engine/tasks/driver.py): what the driver is asked to run.

Conductor's rules checked here: a SIMPLE attempt's ``taskType`` is its TaskDef's name; its inputs are the
resolved ``inputParameters`` (over the TaskDef's ``inputTemplate``); a SUB_WORKFLOW starts a child and
takes its output; START_WORKFLOW and HTTP are asked of the driver.
"""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine import CallHttp, StartSubWorkflow, StartTask, StartWorkflow, TaskStatus, WorkflowStatus
from tests.unit.engine.flows import CHILD, WORK, first_start, run, sub
from tests.unit.engine.harness import (
    Attempt,
    Result,
    Sim,
    fail,
    ok,
    simple,
    system,
    task_def,
    workflow_def,
)

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


def test_sub_workflow_starts_a_child_and_takes_its_output() -> None:
    sim = Sim(workflow_def([sub(), simple("after", inputs={"c": "${sub.output.got}"})]), [WORK],
              input={"x": 5}, children={"child": {"definition": CHILD}}, correlation_id="corr",
              results={"inner": lambda attempt: ok({"r": attempt.task.inputData["x"] * 2})})
    assert sim.run().status is WorkflowStatus.COMPLETED
    action = sim.actions(StartSubWorkflow)[0]
    assert isinstance(action, StartSubWorkflow)
    assert (action.name, action.version, action.input, action.correlationId) == ("child", 2, {"x": 5}, "corr")
    task = sim.task("sub")
    assert task.taskType == "SUB_WORKFLOW" and task.subWorkflowId == sim.child("sub").run_id
    assert task.outputData == {"got": 10}
    assert sim.task("after").inputData == {"c": 10}
    child = sim.child("sub").workflow
    assert child.parentWorkflowId == "wf-1" and child.parentWorkflowTaskId == task.taskId


def test_sub_workflow_failure_fails_the_task_and_retries_per_policy() -> None:
    calls: list[int] = []

    def inner(attempt: Attempt) -> Result:
        calls.append(1)
        return fail("child broke") if len(calls) == 1 else ok({"r": 1})

    sim = Sim(workflow_def([sub()]), [WORK, task_def("child", retryCount=1, retryDelaySeconds=3)],
              children={"child": {"definition": CHILD}}, results={"inner": inner})
    assert sim.run().status is WorkflowStatus.COMPLETED
    first, second = sim.attempts("sub")
    assert first.status is TaskStatus.FAILED and (first.reasonForIncompletion or "").endswith(
        " failed with status: FAILED and reason: 'child broke'")  # the child's reason, in Conductor's words
    assert second.status is TaskStatus.COMPLETED and second.retryCount == 1
    assert len(sim.actions(StartSubWorkflow)) == 2


def test_sub_workflow_failure_without_retries_fails_the_parent() -> None:
    sim = Sim(workflow_def([sub()]), [WORK], children={"child": {"definition": CHILD}}, results={"inner": fail()})
    assert sim.run().status is WorkflowStatus.FAILED


def test_sub_workflow_with_an_inline_definition() -> None:
    inline = sub(subWorkflowParam={"name": "inline_child", "workflowDefinition": CHILD})
    sim = Sim(workflow_def([inline]), [WORK], results={"inner": ok({"r": "in"})})
    assert sim.run().status is WorkflowStatus.COMPLETED
    action = sim.actions(StartSubWorkflow)[0]
    assert isinstance(action, StartSubWorkflow) and action.definition is not None
    assert sim.task("sub").outputData == {"got": "in"}


def test_sub_workflow_name_may_be_an_expression() -> None:
    spec = sub(subWorkflowParam={"name": "${workflow.input.child}", "version": 2})
    sim = Sim(workflow_def([spec]), [WORK], input={"child": "child"}, children={"child": {"definition": CHILD}})
    assert sim.run().status is WorkflowStatus.COMPLETED


def test_start_workflow_asks_the_driver_and_completes_with_the_new_id() -> None:
    spec = system("sw", "START_WORKFLOW", {"startWorkflow": {"name": "other", "version": 3,
                                                             "input": {"k": "${workflow.input.k}"},
                                                             "correlationId": "c9"}})
    sim = run([spec, simple("after", inputs={"id": "${sw.output.workflowId}"})], input={"k": "v"})
    action = sim.actions(StartWorkflow)[0]
    assert isinstance(action, StartWorkflow)
    assert (action.name, action.version, action.input, action.correlationId, action.purpose) == (
        "other", 3, {"k": "v"}, "c9", "START_WORKFLOW")
    assert action.taskId == sim.task("sw").taskId
    assert sim.task("after").inputData == {"id": f"started-{action.requestId}"}


def test_http_task_asks_the_driver_for_the_call() -> None:
    spec = system("h", "HTTP", {"http_request": {"uri": "https://svc/${workflow.input.id}", "method": "POST",
                                                 "body": {"a": 1}}})
    sim = Sim(workflow_def([spec]), [], input={"id": "7"},
              results={"h": ok({"response": {"statusCode": 201, "body": {"ok": True}}})})
    sim.run(until=lambda s: bool(s.refs()))
    assert sim.task("h").status is TaskStatus.IN_PROGRESS
    sim.run()
    action = sim.actions(CallHttp)[0]
    assert isinstance(action, CallHttp)
    assert action.request == {"uri": "https://svc/7", "method": "POST", "body": {"a": 1}}
    assert sim.task("h").outputData["response"]["statusCode"] == 201
    assert sim.workflow.status is WorkflowStatus.COMPLETED
