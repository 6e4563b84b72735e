"""Conductor fidelity (issue 9): behaviour taken from Conductor OSS's own specs, checked on the engine.

Each test names the Conductor rule it holds the engine to; the local runner's black-box checks of the same
rules are in ``tests/unit/test_kondukt_run_fidelity.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine import StartSubWorkflow, StartWorkflow, TaskStatus, WorkflowStatus
from tests.unit.engine.flows import CHILD, WORK, dynamic_fork, fork, join, loop, run, sub, switch
from tests.unit.engine.harness import (
    Result,
    Sim,
    fail,
    failed_by,
    ok,
    simple,
    system,
    task_def,
    terminal_error,
    workflow_def,
)

# ------------------------------------------------------------------------------ 2. ${CPEWF_TASK_ID}


def test_cpewf_task_id_is_the_attempts_own_id_new_for_every_attempt() -> None:
    sim = run([simple("a", inputs={"me": "${CPEWF_TASK_ID}", "nested": {"id": "x-${CPEWF_TASK_ID}"}})],
              {"a": [fail("once"), ok()]}, defs=[task_def("work", retryCount=1, retryDelaySeconds=0)])
    first, second = sim.attempts("a")
    assert first.inputData == {"me": first.taskId, "nested": {"id": f"x-{first.taskId}"}}
    assert second.inputData == {"me": second.taskId, "nested": {"id": f"x-{second.taskId}"}}
    assert first.taskId != second.taskId


def test_cpewf_task_id_in_an_engine_run_task() -> None:
    sim = run([system("i", "INLINE", {"evaluatorType": "javascript", "expression": "$.me", "me": "${CPEWF_TASK_ID}"})])
    assert sim.task("i").outputData == {"result": sim.task("i").taskId}


# -------------------------------------------------------------------------------------------- 6. JOIN


@pytest.mark.parametrize(("branch_a", "result_a", "join_status", "workflow_status"), [
    pytest.param({}, ok(), TaskStatus.COMPLETED, WorkflowStatus.COMPLETED, id="all-completed"),
    pytest.param({"optional": True}, fail("flaky"), TaskStatus.COMPLETED_WITH_ERRORS, WorkflowStatus.COMPLETED,
                 id="optional-failed"),
    pytest.param({"optional": True}, terminal_error("broken"), TaskStatus.COMPLETED_WITH_ERRORS,
                 WorkflowStatus.COMPLETED, id="optional-terminal-error"),
    pytest.param({"permissive": True}, fail("tolerated"), TaskStatus.FAILED, WorkflowStatus.FAILED,
                 id="permissive-failed"),
])
def test_join_status_follows_the_joined_tasks(branch_a: dict[str, Any], result_a: Any, join_status: TaskStatus,
                                              workflow_status: WorkflowStatus) -> None:
    sim = run([fork("f", [simple("a", **branch_a)], [simple("b")]), join("j", "a", "b"), simple("after")],
              {"a": result_a})
    assert sim.task("j").status is join_status
    assert sim.workflow.status is workflow_status
    assert ("after" in sim.refs()) is (workflow_status is WorkflowStatus.COMPLETED)


def test_join_failed_by_a_permissive_task_fails_the_workflow_in_conductors_words() -> None:
    sim = run([fork("f", [simple("a", permissive=True)], [simple("b")]), join("j", "a", "b")],
              {"a": fail("tolerated")})
    joined = sim.task("j")
    assert joined.status is TaskStatus.FAILED
    assert joined.reasonForIncompletion == "task 'a' ended FAILED: tolerated"
    assert sim.workflow.reasonForIncompletion == failed_by(joined, "FAILED", "task 'a' ended FAILED: tolerated")


def test_join_over_a_task_that_completed_with_errors_completes_with_errors() -> None:
    # What a driver reports for a sub-workflow whose child completed with errors.
    sim = run([fork("f", [simple("s")], [simple("b")]), join("j", "s", "b"), simple("after")],
              {"s": Result(TaskStatus.COMPLETED_WITH_ERRORS)})
    assert sim.task("j").status is TaskStatus.COMPLETED_WITH_ERRORS
    assert sim.workflow.status is WorkflowStatus.COMPLETED and "after" in sim.refs()


# ------------------------------------------------------------------------------ 7. the failure reason


@pytest.mark.parametrize(("task_spec", "result", "status", "reason"), [
    pytest.param({}, fail("disk full"), "FAILED", "disk full", id="failed"),
    pytest.param({}, terminal_error("not a picture"), "FAILED_WITH_TERMINAL_ERROR", "not a picture",
                 id="terminal-error"),
    pytest.param({"permissive": True}, fail("tolerated"), "FAILED", "tolerated", id="permissive-at-the-end"),
])
def test_a_workflow_failed_by_a_task_says_so_in_conductors_words(task_spec: dict[str, Any], result: Any,
                                                                 status: str, reason: str) -> None:
    sim = run([simple("a", **task_spec), simple("b")], {"a": result})
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert sim.workflow.reasonForIncompletion == \
        f"Task {sim.task('a').taskId} failed with status: {status} and reason: '{reason}'"


def test_a_task_that_failed_without_a_reason_reads_null_as_conductor_prints_it() -> None:
    sim = run([simple("a")], {"a": fail("")})
    assert sim.workflow.reasonForIncompletion in (failed_by(sim.task("a"), "FAILED", "null"),
                                                  failed_by(sim.task("a"), "FAILED", ""))


@pytest.mark.parametrize(("query", "message"), [
    pytest.param('error("nope")', "nope", id="error-call"),
    pytest.param(".a.b", 'Cannot index number with string ("b")', id="index"),
    pytest.param("{{{", "syntax error, unexpected '{' at <top-level>, line 1, column 2", id="syntax"),
])
def test_jq_failure_reason_and_error_are_jqs_own_message(query: str, message: str) -> None:
    sim = run([system("jq", "JSON_JQ_TRANSFORM", {"queryExpression": query, "a": 1})])
    task = sim.task("jq")
    assert (task.status, task.reasonForIncompletion, task.outputData) == (TaskStatus.FAILED, message,
                                                                          {"error": message})


# ---------------------------------------------------------------- 8. FORK_JOIN_DYNAMIC with invalid input


@pytest.mark.parametrize(("gen_output", "reason"), [
    pytest.param({"tasks": "not-a-list", "inputs": {}},
                 "task 'df': input 'tasks' must be a list of tasks, got str", id="tasks-not-a-list"),
    pytest.param({"tasks": [{"name": "work", "taskReferenceName": "d0"}], "inputs": ["x"]},
                 "task 'df': input 'inputs' must be a map of task reference to input map, got list",
                 id="inputs-not-a-map"),
    pytest.param({"tasks": [{"name": "work", "taskReferenceName": "d0"}], "inputs": {"d0": "x"}},
                 "task 'df': input 'inputs'['d0'] must be a map, got str", id="an-input-not-a-map"),
])
def test_dynamic_fork_with_invalid_input_fails_the_workflow_before_recording_a_fork(
        gen_output: dict[str, Any], reason: str) -> None:
    sim = run([simple("gen"), dynamic_fork(), join("j")], {"gen": ok(gen_output)})
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert sim.workflow.reasonForIncompletion == reason
    assert sim.refs() == ["gen"]  # no FORK task, no JOIN


# -------------------------------------------------------------------------- 9. START_WORKFLOW requests


@pytest.mark.parametrize(("request_value", "reason"), [
    pytest.param("just a name", "input startWorkflow must be a map (a start request), got str", id="not-a-map"),
    pytest.param({"input": {}}, "startWorkflow.name is missing (it names the workflow to start)", id="no-name"),
    pytest.param({"name": "other", "version": "two"}, "startWorkflow.version must be an integer, got str",
                 id="version-not-an-integer"),
    pytest.param({"name": "other", "input": [1]}, "startWorkflow.input must be a map, got list",
                 id="input-not-a-map"),
    pytest.param({"name": "other", "workflowDefinition": "x"},
                 "startWorkflow.workflowDefinition must be a workflow definition (a map), got str",
                 id="definition-not-a-map"),
])
def test_start_workflow_with_an_invalid_request_fails_the_task_not_terminally(request_value: Any,
                                                                                reason: str) -> None:
    spec = system("sw", "START_WORKFLOW", {"startWorkflow": "${workflow.input.request}"})
    sim = run([spec], input={"request": request_value})
    task = sim.task("sw")
    assert (task.status, task.reasonForIncompletion) == (TaskStatus.FAILED, f"task 'sw': {reason}")
    assert not sim.actions(StartWorkflow)
    assert sim.workflow.status is WorkflowStatus.FAILED


def test_start_workflow_with_an_invalid_request_is_retried_by_its_task_def() -> None:
    spec = system("sw", "START_WORKFLOW", {"startWorkflow": "${workflow.input.request}"}, name="starter")
    sim = run([spec], input={"request": {}}, defs=[WORK, task_def("starter", retryCount=2, retryDelaySeconds=0)])
    assert [t.status for t in sim.attempts("sw")] == [TaskStatus.FAILED] * 3
    assert sim.workflow.status is WorkflowStatus.FAILED


# ------------------------------------------------------------------------------------- 3. DO_WHILE


@pytest.mark.parametrize("passes", [pytest.param(1, id="one-pass"), pytest.param(3, id="three-passes")])
def test_do_while_iteration_is_the_loop_counter(passes: int) -> None:
    body = [simple("a", inputs={"dot": "${lp.iteration}", "bracket": "${lp['iteration']}",
                                "output": "${lp.output.iteration}"})]
    sim = run([loop("lp", body, f"$.lp['iteration'] < {passes} && $.lp.iteration < {passes}")])
    assert sim.workflow.status is WorkflowStatus.COMPLETED
    assert sim.task("lp").iteration == passes
    assert [(t.iteration, t.inputData) for t in sim.workflow.tasks if t.taskDefName == "work"] == [
        (n, {"dot": n, "bracket": n, "output": n}) for n in range(1, passes + 1)]


def test_do_while_counter_is_exact_after_500_passes_of_a_synchronous_body() -> None:
    body = [system("step", "INLINE", {"evaluatorType": "javascript", "expression": "$.n + 1",
                                      "n": "${lp.iteration}"})]
    sim = run([loop("lp", body, "$.lp['iteration'] < 500")])
    loop_task = sim.task("lp")
    assert sim.workflow.status is WorkflowStatus.COMPLETED
    assert (loop_task.iteration, loop_task.outputData["iteration"]) == (500, 500)
    assert loop_task.outputData["500"] == {"step": {"result": 501}}
    assert [t.iteration for t in sim.workflow.tasks if t.referenceTaskName.startswith("step__")] == \
        list(range(1, 501))


def test_do_while_with_switch_and_wait_in_its_body_iterates() -> None:
    parity = switch("sw", evaluator="javascript", expression="$.i % 2 == 0 ? 'even' : 'odd'",
                    inputs={"i": "${lp.iteration}"},
                    cases={"even": [system("pause", "WAIT", {"duration": "1 seconds"})]},
                    default=[simple("odd_work")])
    sim = run([loop("lp", [parity, simple("after_switch")], "$.lp.iteration < 4")])
    assert sim.workflow.status is WorkflowStatus.COMPLETED
    assert sim.task("lp").iteration == 4
    assert [t.referenceTaskName for t in sim.workflow.tasks] == [
        "lp", "sw__1", "odd_work__1", "after_switch__1", "sw__2", "pause__2", "after_switch__2",
        "sw__3", "odd_work__3", "after_switch__3", "sw__4", "pause__4", "after_switch__4"]
    assert {t.iteration for t in sim.workflow.tasks if t.referenceTaskName.endswith("__2")} == {2}


# --------------------------------------------------------------------------------------------- 4. LAMBDA


@pytest.mark.parametrize(("value", "result"), [
    pytest.param(3, {"x": 6}, id="returns-an-object"),
    pytest.param(0, "small", id="returns-a-string"),
])
def test_lambda_runs_a_function_body_and_returns_its_result(value: int, result: Any) -> None:
    script = "if ($.value > 1) { return {x: $.value * 2}; } return 'small';"
    sim = run([system("l", "LAMBDA", {"value": "${workflow.input.v}", "scriptExpression": script}),
               simple("after", inputs={"r": "${l.output.result}"})], input={"v": value})
    assert sim.task("l").outputData == {"result": result}
    assert sim.task("after").inputData == {"r": result}


def test_lambda_script_error_fails_the_task_with_the_reason() -> None:
    sim = run([system("l", "LAMBDA", {"scriptExpression": "return $.missing.deeper;"})])
    assert sim.task("l").status is TaskStatus.FAILED
    assert "TypeError" in (sim.task("l").reasonForIncompletion or "")


# ------------------------------------------------------------------------------------ 1. failureWorkflow


@pytest.mark.parametrize("failure_workflow", [
    pytest.param("cleanup", id="a-name"),
    pytest.param("$workflow.input.failureWfName", id="conductor-dollar-path"),
    pytest.param("${workflow.input.failureWfName}", id="expression"),
])
def test_failure_workflow_may_be_an_expression_and_its_id_goes_into_the_output(failure_workflow: str) -> None:
    sim = run([simple("a")], {"a": fail("disk full")}, input={"failureWfName": "cleanup"},
              failureWorkflow=failure_workflow)
    (started,) = [action for _, action in sim.started_workflows]
    assert (started.name, started.purpose) == ("cleanup", "failureWorkflow")
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert sim.workflow.output["conductor.failure_workflow"] == f"started-{started.requestId}"


def test_a_terminate_with_status_failed_starts_the_failure_workflow_and_records_it() -> None:
    terminate = system("t", "TERMINATE", {"terminationStatus": "FAILED", "workflowOutput": {"why": "bad"}})
    sim = run([terminate], input={"name": "cleanup"}, failureWorkflow="${workflow.input.name}")
    (started,) = [action for _, action in sim.started_workflows]
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert sim.workflow.output == {"why": "bad", "conductor.failure_workflow": f"started-{started.requestId}"}


def test_a_failure_workflow_expression_that_names_nothing_starts_none() -> None:
    sim = run([simple("a")], {"a": fail("disk full")}, failureWorkflow="${workflow.input.missing}")
    assert sim.started_workflows == []
    assert "conductor.failure_workflow" not in sim.workflow.output
    assert any("resolved to no workflow name" in m for d in sim.decisions for m in d.messages)


# ---------------------------------------------------------------------------------- 5. inline definitions

CHILD_DEF = {"name": "built_child", "version": 1, "tasks": [simple("inner")],
             "outputParameters": {"got": "${inner.output.r}"}}


def test_sub_workflow_definition_may_be_an_expression_built_by_an_inline_task() -> None:
    # The INLINE task's input is resolved like any input: the child's own expressions are escaped ($${).
    escaped = {**CHILD_DEF, "outputParameters": {"got": "$${inner.output.r}"}}
    build = system("build", "INLINE", {"evaluatorType": "javascript", "expression": "$.def", "def": escaped})
    sub = system("sub", "SUB_WORKFLOW", subWorkflowParam={"name": "built_child",
                                                          "workflowDefinition": "${build.output.result}"})
    sim = run([build, sub], {"inner": ok({"r": "from the built child"})})
    (action,) = sim.actions(StartSubWorkflow)
    assert isinstance(action, StartSubWorkflow)
    assert action.definition is not None and action.definition["name"] == "built_child"
    assert "subWorkflowDefinition" not in action.input
    assert sim.workflow.status is WorkflowStatus.COMPLETED
    assert sim.task("sub").outputData == {"got": "from the built child"}


@pytest.mark.parametrize(("built", "got"), [
    pytest.param("not a definition", "str", id="a-string"),
    pytest.param([1, 2], "list", id="a-list"),
])
def test_sub_workflow_definition_expression_that_yields_no_definition_fails_the_task(built: Any, got: str) -> None:
    sub = system("sub", "SUB_WORKFLOW", subWorkflowParam={"name": "x", "workflowDefinition": "${workflow.input.d}"})
    sim = run([sub], input={"d": built})
    task = sim.task("sub")
    assert (task.status, task.reasonForIncompletion) == (
        TaskStatus.FAILED, f"task 'sub': subWorkflowParam.workflowDefinition must be a workflow definition (a map), "
        f"got {got}")
    assert not sim.actions(StartSubWorkflow)


def test_start_workflow_request_may_carry_an_inline_definition() -> None:
    inline = {"name": "adhoc", "version": 1, "tasks": [simple("x")]}
    spec = system("sw", "START_WORKFLOW", {"startWorkflow": {"workflowDefinition": inline, "input": {"k": 1}}})
    sim = run([spec])
    (action,) = sim.actions(StartWorkflow)
    assert isinstance(action, StartWorkflow)
    assert (action.name, action.definition, action.input) == ("adhoc", inline, {"k": 1})
    assert sim.task("sw").status is TaskStatus.COMPLETED


def test_a_long_reason_keeps_its_start_and_its_cause_at_the_end() -> None:
    # Nested sub-workflows quote the failure at every level (Conductor's words): the cause is at the end.
    reason = "start " + "x" * 5000 + " the cause"
    sim = run([simple("a")], {"a": fail(reason)})
    kept = sim.task("a").reasonForIncompletion or ""
    assert len(kept) <= 2000 and kept.startswith("start xxx") and kept.endswith("x the cause") and " … " in kept


def test_join_over_an_optional_sub_workflow_whose_child_failed_completes_with_errors() -> None:
    sim = Sim(workflow_def([fork("f", [sub(optional=True)], [simple("b")]), join("j", "sub", "b"), simple("after")]),
              [WORK], children={"child": {"definition": CHILD}}, results={"inner": fail("child broke")})
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert sim.child("sub").workflow.status is WorkflowStatus.FAILED
    assert sim.task("sub").status is TaskStatus.COMPLETED_WITH_ERRORS
    assert sim.task("j").status is TaskStatus.COMPLETED_WITH_ERRORS
    assert "after" in sim.refs()
