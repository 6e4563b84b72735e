"""JSON_JQ_TRANSFORM (engine/tasks/jq.py): handed to the driver as EvaluateScript, never evaluated in the engine."""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine import (
    CancelTask,
    EvaluateScript,
    Operation,
    OperationKind,
    TaskStatus,
    TaskUpdate,
    WorkflowStatus,
)
from tests.unit.engine.flows import run
from tests.unit.engine.harness import (
    T0,
    blueprint,
    failed_by,
    simple,
    start,
    step,
    system,
    task_def,
    workflow_def,
)

WORK = task_def("work")


@pytest.mark.parametrize(("query", "data", "output"), [
    pytest.param(".a + .b", {"a": 1, "b": 2}, {"result": 3, "resultList": [3]}, id="single"),
    pytest.param(".xs[]", {"xs": [1, 2]}, {"result": 1, "resultList": [1, 2]}, id="many"),
    pytest.param("{k: .key}", {"key": "v"}, {"result": {"k": "v"}, "resultList": [{"k": "v"}]}, id="object"),
])
def test_json_jq_transform(query: str, data: dict[str, Any], output: dict[str, Any]) -> None:
    sim = run([system("jq", "JSON_JQ_TRANSFORM", {"queryExpression": query, **data})])
    assert sim.task("jq").outputData == output


@pytest.mark.parametrize(("inputs", "message"), [
    pytest.param({"queryExpression": ".a | error(\"nope\")", "a": 1}, "nope", id="jq-error"),
    pytest.param({"queryExpression": "{{{"}, "syntax error", id="syntax-error"),
    pytest.param({}, "queryExpression must be a jq program", id="missing-query"),
])
def test_json_jq_transform_errors_fail_the_workflow(inputs: dict[str, Any], message: str) -> None:
    sim = run([system("jq", "JSON_JQ_TRANSFORM", inputs)])
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert message in (sim.task("jq").reasonForIncompletion or "")


def test_json_jq_transform_is_handed_to_the_driver_never_evaluated_in_the_engine() -> None:
    bp = blueprint(workflow_def([system("jq", "JSON_JQ_TRANSFORM", {"queryExpression": "def f: f; f", "a": 1}),
                                 simple("after", inputs={"r": "${jq.output.result}"})]), [WORK])
    first = start(bp)  # returns at once: a jq program that never ends is the driver's to stop
    task = first.workflow.tasks[0]
    assert (task.status, task.dispatched) == (TaskStatus.IN_PROGRESS, True)
    assert [a.kind for a in first.actions] == ["evaluate_script"]
    action = first.actions[0]
    assert isinstance(action, EvaluateScript)
    assert (action.taskId, action.referenceTaskName, action.language, action.expression, action.nowMs) == (
        task.taskId, "jq", "jq", "def f: f; f", T0)
    assert action.input == {"queryExpression": "def f: f; f", "a": 1}
    # A driver that restarted (and lost the evaluation) rebuilds the same action from the stored task.
    assert EvaluateScript.for_task(task) == action
    # Deciding again hands out nothing new; the driver's report of the limit fails the task with its reason.
    assert not step(bp, first.workflow, now=T0 + 1000).actions
    reason = "task 'jq': jq: the evaluation exceeded its time limit of 5 s"
    done = step(bp, first.workflow, [TaskUpdate(taskId=task.taskId, status=TaskStatus.FAILED,
                                                outputData={"error": reason}, reasonForIncompletion=reason)],
                now=T0 + 5000)
    assert done.workflow.status is WorkflowStatus.FAILED
    assert done.workflow.reasonForIncompletion == failed_by(task, "FAILED", reason)


def test_json_jq_transform_canceled_with_its_workflow_abandons_the_evaluation() -> None:
    bp = blueprint(workflow_def([system("jq", "JSON_JQ_TRANSFORM", {"queryExpression": "."})]), [WORK])
    first = start(bp)
    ended = step(bp, first.workflow, [Operation(op=OperationKind.TERMINATE, nonce="n1", reason="stop")], now=T0 + 5)
    assert ended.workflow.status is WorkflowStatus.TERMINATED
    cancels = [a for a in ended.actions if isinstance(a, CancelTask)]
    assert [(c.referenceTaskName, c.taskType) for c in cancels] == [("jq", "JSON_JQ_TRANSFORM")]


def test_json_jq_transform_retries_evaluate_again() -> None:
    retried = system("jq", "JSON_JQ_TRANSFORM", {"queryExpression": ".n | if . < 0 then error(\"neg\") else . end",
                                                  "n": "${workflow.input.n}"}, retryCount=1)
    sim = run([retried], input={"n": -1})
    assert [t.status for t in sim.attempts("jq")] == [TaskStatus.FAILED, TaskStatus.FAILED]
    assert len(sim.actions(EvaluateScript)) == 2
    assert sim.attempts("jq")[1].retryCount == 1
