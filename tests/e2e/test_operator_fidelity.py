"""Conductor fidelity (issue 9) on the cluster: a failureWorkflow named by an expression, DO_WHILE's counter,
and inline definitions carried by the child and started Workflows' specs.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_operator_support import (  # noqa: F401 (fixtures)
    Cluster,
    cluster_fixture,
    operator_fixture,
    taskdef,
    workflow,
)

pytestmark = pytest.mark.e2e


def inline(ref: str, expression: str, **inputs: Any) -> dict[str, Any]:
    return {"name": ref, "taskReferenceName": ref, "type": "INLINE",
            "inputParameters": {"evaluatorType": "javascript", "expression": expression, **inputs}}


def test_failure_workflow_named_by_an_expression_is_started_and_recorded(cluster: Cluster) -> None:
    cluster.apply({"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "tidy-up"},
                   "spec": {"name": "tidy_up", "tasks": [inline("note", "'tidied ' + $.who",
                                                                  who="${workflow.input.workflowId}")]}})
    definition = {"name": "gives_up", "failureWorkflow": "$workflow.input.failureWfName", "tasks": [
        {"name": "stop", "taskReferenceName": "stop", "type": "TERMINATE",
         "inputParameters": {"terminationStatus": "FAILED", "terminationReason": "giving up"}}]}
    cluster.apply(workflow("gives-up", definition=definition, input={"failureWfName": "tidy_up"}))
    status = cluster.wait_phase("gives-up")
    assert (status["phase"], status["reasonForIncompletion"]) == ("FAILED", "giving up")
    failure_id = status["output"]["conductor.failure_workflow"]
    started = {w["metadata"]["uid"]: w for w in cluster.list("workflows")}
    assert failure_id in started, "the recorded id is the started failure Workflow's uid"
    tidy = started[failure_id]
    assert tidy["spec"]["workflowDefRef"]["name"] == "tidy_up"
    assert cluster.wait_phase(tidy["metadata"]["name"])["phase"] == "COMPLETED"


def test_do_while_counter_on_the_cluster(cluster: Cluster) -> None:
    cluster.apply(taskdef("echo"))
    body = [
        {"name": "parity", "taskReferenceName": "parity", "type": "SWITCH", "evaluatorType": "javascript",
         "expression": "$.i % 2 == 0 ? 'even' : 'odd'", "inputParameters": {"i": "${loop.iteration}"},
         "decisionCases": {"even": [{"name": "pause", "taskReferenceName": "pause", "type": "WAIT",
                                     "inputParameters": {"duration": "1 seconds"}}]},
         "defaultCase": [{"name": "echo", "taskReferenceName": "odd", "inputParameters": {
             "dot": "${loop.iteration}", "bracket": "${loop['iteration']}"}}]},
        inline("count", "$.n", n="${loop.iteration}"),
    ]
    definition = {"name": "counting", "tasks": [
        {"name": "loop", "taskReferenceName": "loop", "type": "DO_WHILE", "loopOver": body,
         "loopCondition": "$.loop['iteration'] < 4"},
        {"name": "fast", "taskReferenceName": "fast", "type": "DO_WHILE", "inputParameters": {"keepLastN": 2},
         "loopCondition": "$.fast['iteration'] < 500", "loopOver": [inline("step", "$.n", n="${fast.iteration}")]},
    ], "outputParameters": {"loop": "${loop.output.iteration}", "fast": "${fast.output.iteration}"}}
    cluster.apply(workflow("counting", definition=definition))
    status = cluster.wait_phase("counting", timeout=120)
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    assert status["output"] == {"loop": 4, "fast": 500}
    tasks = {t["referenceTaskName"]: t for t in cluster.tasks("counting")}
    assert (tasks["loop"]["iteration"], tasks["fast"]["iteration"]) == (4, 500)
    assert [tasks[f"count__{n}"]["outputData"]["result"] for n in range(1, 5)] == [1, 2, 3, 4]
    assert {tasks[f"pause__{n}"]["iteration"] for n in (2, 4)} == {2, 4}
    assert tasks["odd__3"]["inputData"] == {"dot": 3, "bracket": 3}
    assert (tasks["step__500"]["iteration"], tasks["step__500"]["outputData"]["result"]) == (500, 500)


def test_inline_definitions_travel_in_the_child_and_started_workflow_specs(cluster: Cluster) -> None:
    child = {"name": "built_child", "version": 1, "tasks": [inline("double", "$.w * 2", w="$${workflow.input.w}")],
             "outputParameters": {"doubled": "$${double.output.result}"}}
    definition = {"name": "builder", "tasks": [
        inline("build", "$.def", **{"def": child}),
        {"name": "sub", "taskReferenceName": "sub", "type": "SUB_WORKFLOW", "inputParameters": {"w": 21},
         "subWorkflowParam": {"name": "built_child", "workflowDefinition": "${build.output.result}"}},
        {"name": "start", "taskReferenceName": "start", "type": "START_WORKFLOW",
         "inputParameters": {"startWorkflow": {"workflowDefinition": "${build.output.result}", "input": {"w": 5}}}},
    ], "outputParameters": {"doubled": "${sub.output.doubled}", "started": "${start.output.workflowId}"}}
    cluster.apply(workflow("builder", definition=definition))
    status = cluster.wait_phase("builder")
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    assert status["output"]["doubled"] == 42
    others = {w["metadata"]["uid"]: w for w in cluster.list("workflows") if w["metadata"]["name"] != "builder"}
    started = others[status["output"]["started"]]
    (sub_child,) = [w for w in others.values() if w["metadata"].get("ownerReferences")]
    for made in (sub_child, started):
        assert made["spec"]["definition"]["name"] == "built_child"
        assert "workflowDefRef" not in made["spec"]
    finished = cluster.wait_phase(started["metadata"]["name"])
    assert (finished["phase"], finished["output"]) == ("COMPLETED", {"doubled": 10})
