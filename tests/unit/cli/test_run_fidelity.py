"""Conductor fidelity (issue 9) black-box: Conductor JSON through ``kondukt run -o json``, as a new user runs it.

Only system tasks, so no worker command is needed; the engine-level cases are in
``tests/unit/engine/test_conductor_fidelity.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.unit.cli.runs import kondukt_run


def conductor_workflow(name: str, tasks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": name, "version": 1, "schemaVersion": 2, "tasks": tasks, **extra}


def run_json(tmp_path: Path, *definitions: dict[str, Any], main: str, workflow_input: dict[str, Any] | None = None
             ) -> tuple[int, dict[str, Any]]:
    files = []
    for definition in definitions:
        path = tmp_path / f"{definition['name']}.json"
        path.write_text(json.dumps(definition))
        files.append(str(path))
    done = kondukt_run(*files, "--workflow", main, "--input", json.dumps(workflow_input or {}), "-o", "json",
                       cwd=tmp_path, data_dir=tmp_path / "data")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_failure_workflow_named_by_an_expression_starts_and_is_recorded(tmp_path: Path) -> None:
    main = conductor_workflow("main", [
        {"name": "stop", "taskReferenceName": "stop", "type": "TERMINATE",
         "inputParameters": {"terminationStatus": "FAILED", "terminationReason": "giving up"}},
    ], failureWorkflow="$workflow.input.failureWfName")
    cleanup = conductor_workflow("cleanup", [
        {"name": "note", "taskReferenceName": "note", "type": "INLINE",
         "inputParameters": {"evaluatorType": "javascript", "expression": "'cleaned'"}},
    ])
    code, execution = run_json(tmp_path, main, cleanup, main="main", workflow_input={"failureWfName": "cleanup"})
    assert (code, execution["status"], execution["reasonForIncompletion"]) == (1, "FAILED", "giving up")
    failure_id = execution["output"]["conductor.failure_workflow"]
    assert isinstance(failure_id, str) and failure_id and failure_id != execution["workflowId"]


def test_do_while_counter_after_500_passes(tmp_path: Path) -> None:
    main = conductor_workflow("loop500", [
        {"name": "loop", "taskReferenceName": "loop", "type": "DO_WHILE", "inputParameters": {"keepLastN": 2},
         "loopCondition": "$.loop['iteration'] < 500",
         "loopOver": [{"name": "step", "taskReferenceName": "step", "type": "INLINE",
                       "inputParameters": {"evaluatorType": "javascript", "expression": "$.n",
                                           "n": "${loop.iteration}"}}]},
    ])
    code, execution = run_json(tmp_path, main, main="loop500")
    assert (code, execution["status"]) == (0, "COMPLETED")
    loop = execution["tasks"][0]
    assert (loop["iteration"], loop["outputData"]["iteration"]) == (500, 500)
    assert loop["outputData"]["500"] == {"step": {"result": 500}}
    assert [(t["referenceTaskName"], t["iteration"]) for t in execution["tasks"][1:]] == [
        ("step__499", 499), ("step__500", 500)]


def test_lambda_and_jq_messages_as_in_conductor(tmp_path: Path) -> None:
    main = conductor_workflow("lambda_jq", [
        {"name": "lam", "taskReferenceName": "lam", "type": "LAMBDA",
         "inputParameters": {"v": "${workflow.input.v}",
                             "scriptExpression": "if ($.v > 1) { return {big: true}; } return {big: false};"}},
        {"name": "jq", "taskReferenceName": "jq", "type": "JSON_JQ_TRANSFORM",
         "inputParameters": {"queryExpression": ".big | error(\"no luck\")", "big": "${lam.output.result.big}"}},
    ])
    code, execution = run_json(tmp_path, main, main="lambda_jq", workflow_input={"v": 5})
    lam, jq = execution["tasks"]
    assert lam["outputData"] == {"result": {"big": True}}
    assert (jq["status"], jq["reasonForIncompletion"], jq["outputData"]) == ("FAILED", "no luck",
                                                                              {"error": "no luck"})
    assert (code, execution["reasonForIncompletion"]) == (
        1, f"Task {jq['taskId']} failed with status: FAILED and reason: 'no luck'")


def test_start_workflow_with_an_invalid_request_fails_the_task_retriably(tmp_path: Path) -> None:
    main = conductor_workflow("starter", [
        {"name": "start", "taskReferenceName": "start", "type": "START_WORKFLOW",
         "inputParameters": {"startWorkflow": {"name": "nowhere", "input": {}}}},
    ])
    code, execution = run_json(tmp_path, main, main="starter")
    (start,) = execution["tasks"]
    assert (code, start["status"]) == (1, "FAILED")
    assert "nowhere" in start["reasonForIncompletion"]


def test_inline_definitions_for_sub_workflow_and_start_workflow(tmp_path: Path) -> None:
    child = {"name": "built_child", "version": 1, "tasks": [
        {"name": "echo", "taskReferenceName": "echo", "type": "INLINE",
         "inputParameters": {"evaluatorType": "javascript", "expression": "$.w * 2", "w": "$${workflow.input.w}"}}],
        "outputParameters": {"doubled": "$${echo.output.result}"}}
    main = conductor_workflow("inline_defs", [
        {"name": "build", "taskReferenceName": "build", "type": "INLINE",
         "inputParameters": {"evaluatorType": "javascript", "expression": "$.def", "def": child}},
        {"name": "sub", "taskReferenceName": "sub", "type": "SUB_WORKFLOW",
         "inputParameters": {"w": 21},
         "subWorkflowParam": {"name": "built_child", "workflowDefinition": "${build.output.result}"}},
        {"name": "start", "taskReferenceName": "start", "type": "START_WORKFLOW",
         "inputParameters": {"startWorkflow": {"workflowDefinition": "${build.output.result}", "input": {"w": 1}}}},
    ], outputParameters={"doubled": "${sub.output.doubled}", "started": "${start.output.workflowId}"})
    code, execution = run_json(tmp_path, main, main="inline_defs")
    assert (code, execution["status"]) == (0, "COMPLETED"), execution.get("reasonForIncompletion")
    assert execution["output"]["doubled"] == 42
    assert isinstance(execution["output"]["started"], str) and execution["output"]["started"]
