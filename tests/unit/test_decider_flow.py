"""Every task type's flow through the decider, against Conductor's mappers and system tasks.

One section per task type. Each test runs a small workflow in the simulated world (``Sim``), which checks
the engine's invariants at every step, and then asserts what Conductor would show in the execution JSON.
"""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine import (
    CallHttp,
    Operation,
    OperationKind,
    StartSubWorkflow,
    StartTask,
    StartWorkflow,
    TaskStatus,
    TaskUpdate,
    WorkflowStatus,
)
from tests.unit.engine_harness import (
    T0,
    Attempt,
    Result,
    Sim,
    blueprint,
    fail,
    never,
    ok,
    simple,
    start,
    step,
    system,
    task_def,
    workflow_def,
)

WORK = task_def("work")


def run(tasks: list[dict[str, Any]], results: dict[str, Any] | None = None, input: dict[str, Any] | None = None,
        defs: list[dict[str, Any]] | None = None, **workflow: Any) -> Sim:
    sim = Sim(workflow_def(tasks, **workflow), defs if defs is not None else [WORK], results=results or {},
              input=input)
    sim.run()
    return sim


def fork(ref: str, *branches: list[dict[str, Any]]) -> dict[str, Any]:
    return system(ref, "FORK_JOIN", forkTasks=[list(b) for b in branches])


def join(ref: str, *on: str) -> dict[str, Any]:
    return system(ref, "JOIN", joinOn=list(on))


def loop(ref: str, body: list[dict[str, Any]], condition: str | None = None, **inputs: Any) -> dict[str, Any]:
    spec = system(ref, "DO_WHILE", inputs, loopOver=body)
    if condition is not None:
        spec["loopCondition"] = condition
    return spec


def upto(ref: str, n: int) -> str:
    return f"if ($.{ref}['iteration'] < {n}) {{ true; }} else {{ false; }}"


# --------------------------------------------------------------------------------------------------
# FORK_JOIN + JOIN
# --------------------------------------------------------------------------------------------------


def test_fork_and_join_are_created_together_with_the_branch_starts() -> None:
    bp = blueprint(workflow_def([fork("f", [simple("a")], [simple("b")]), join("j", "a", "b")]), [WORK])
    decision = start(bp)
    assert [(t.referenceTaskName, t.taskType, t.status) for t in decision.workflow.tasks] == [
        ("f", "FORK", TaskStatus.COMPLETED), ("a", "work", TaskStatus.SCHEDULED),
        ("b", "work", TaskStatus.SCHEDULED), ("j", "JOIN", TaskStatus.IN_PROGRESS)]
    assert [a.referenceTaskName for a in decision.actions if isinstance(a, StartTask)] == ["a", "b"]
    assert decision.workflow.tasks[3].inputData == {"joinOn": ["a", "b"]}


def test_join_output_maps_references_to_outputs_and_leaves_out_empty_ones() -> None:
    sim = run([fork("f", [simple("a")], [simple("b")], [simple("c")]), join("j", "a", "b", "c")],
              {"a": ok({"x": 1}), "b": ok({}), "c": ok({"y": [2]})})
    assert sim.task("j").outputData == {"a": {"x": 1}, "c": {"y": [2]}}
    assert sim.workflow.output == {"a": {"x": 1}, "c": {"y": [2]}}


def test_join_waits_for_every_joined_branch() -> None:
    sim = run([fork("f", [simple("a1"), simple("a2")], [simple("b")]), join("j", "a2", "b"), simple("after")],
              {"b": ok(runs_ms=5000)})
    after = next(e for e in sim.log if isinstance(e.action, StartTask) and e.action.referenceTaskName == "after")
    assert after.at == T0 + 5000
    assert sim.task("j").endTime == T0 + 5000


def test_join_on_a_subset_lets_the_flow_go_on_while_other_branches_run() -> None:
    sim = run([fork("f", [simple("a")], [simple("slow")]), join("j", "a"), simple("after")],
              {"slow": ok(runs_ms=10_000)})
    assert sim.task("after").startTime < sim.task("slow").endTime
    assert sim.workflow.status is WorkflowStatus.COMPLETED
    assert sim.workflow.endTime == T0 + 10_000


def test_join_with_empty_join_on_waits_for_the_last_task_of_each_branch() -> None:
    sim = run([fork("f", [simple("a1"), simple("a2")], [simple("b")]), join("j"), simple("after")],
              {"a2": ok({"v": 2}), "b": ok({"w": 3})})
    assert sim.task("j").inputData == {"joinOn": ["a2", "b"]}
    assert sim.task("j").outputData == {"a2": {"v": 2}, "b": {"w": 3}}
    assert sim.started_refs()[-1] == "after"


def test_nested_forks_join_inside_out() -> None:
    inner = [fork("f2", [simple("x")], [simple("y")]), join("j2", "x", "y")]
    sim = run([fork("f1", inner, [simple("z")]), join("j1", "j2", "z"), simple("after")],
              {"x": ok({"x": 1}), "y": ok({"y": 1}), "z": ok({"z": 1})})
    assert sim.workflow.status is WorkflowStatus.COMPLETED
    assert sim.task("j1").outputData == {"j2": {"x": {"x": 1}, "y": {"y": 1}}, "z": {"z": 1}}


def test_fork_without_a_join_fails_the_workflow_with_a_reason() -> None:
    sim = run([fork("f", [simple("a")]), simple("not_a_join")])
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert "must be followed by a JOIN" in (sim.workflow.reasonForIncompletion or "")


# --------------------------------------------------------------------------------------------------
# FORK_JOIN_DYNAMIC
# --------------------------------------------------------------------------------------------------


def generator_output(n: int) -> dict[str, Any]:
    tasks = [{"name": "work", "taskReferenceName": f"d{i}", "type": "SIMPLE"} for i in range(n)]
    return {"tasks": tasks, "inputs": {f"d{i}": {"i": i} for i in range(n)}}


def dynamic_fork(ref: str = "df", **extra: Any) -> dict[str, Any]:
    spec = system(ref, "FORK_JOIN_DYNAMIC", {"tasks": "${gen.output.tasks}", "inputs": "${gen.output.inputs}"},
                  dynamicForkTasksParam="tasks", dynamicForkTasksInputParamName="inputs")
    spec.update(extra)
    return spec


def test_dynamic_fork_from_task_list_and_input_map() -> None:
    sim = run([simple("gen"), dynamic_fork(), join("dj")],
              {"gen": ok(generator_output(3)), "d1": ok({"r": 1}), "d2": ok({})})
    fork_task = sim.task("df")
    assert fork_task.taskType == "FORK"
    assert fork_task.inputData["forkedTasks"] == ["d0", "d1", "d2"]
    assert [sim.task(f"d{i}").inputData for i in range(3)] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert [sim.task(f"d{i}").parentTaskRef for i in range(3)] == ["df"] * 3
    assert sim.task("dj").inputData == {"joinOn": ["d0", "d1", "d2"]}
    assert sim.task("dj").outputData == {"d1": {"r": 1}}
    assert sim.workflow.status is WorkflowStatus.COMPLETED


def test_dynamic_fork_join_is_created_with_the_fork() -> None:
    sim = Sim(workflow_def([simple("gen"), dynamic_fork(), join("dj")]), [WORK],
              results={"gen": ok(generator_output(2)), "d0": never(), "d1": never()})
    sim.run()
    assert sim.refs() == ["gen", "df", "d0", "d1", "dj"]
    assert sim.task("dj").status is TaskStatus.IN_PROGRESS


def test_dynamic_fork_task_name_form_names_refs_after_the_task() -> None:
    inputs = {"forkTaskName": "work", "forkTaskInputs": [{"a": 1}, "plain", {"a": 3}]}
    sim = run([system("df", "FORK_JOIN_DYNAMIC", inputs), join("dj")],
              {"_work_0": ok({"o": 0}), "_work_2": ok({"o": 2})})
    assert sim.refs() == ["df", "_work_0", "_work_1", "_work_2", "dj"]
    assert [t.inputData for t in sim.workflow.tasks[1:4]] == [
        {"a": 1, "__index": 0}, {"input": "plain", "__index": 1}, {"a": 3, "__index": 2}]
    assert sim.task("_work_0").taskType == "work"
    assert sim.task("dj").outputData == {"_work_0": {"o": 0}, "_work_2": {"o": 2}}


def test_dynamic_fork_of_sub_workflows() -> None:
    child = workflow_def([simple("inner")], name="child")
    sim = Sim(workflow_def([system("df", "FORK_JOIN_DYNAMIC", {"forkTaskWorkflow": "child",
                                                               "forkTaskWorkflowVersion": "1",
                                                               "forkTaskInputs": [{"n": 1}, {"n": 2}]}),
                            join("dj")]),
              [WORK], children={"child": {"definition": child}}, results={"inner": ok({"done": True})})
    assert sim.run().status is WorkflowStatus.COMPLETED
    starts = [a for a in sim.actions(StartSubWorkflow) if isinstance(a, StartSubWorkflow)]
    assert [(a.referenceTaskName, a.name, a.version, a.input) for a in starts] == [
        ("_df_0", "child", 1, {"n": 1, "__index": 0}), ("_df_1", "child", 1, {"n": 2, "__index": 1})]
    assert sim.task("dj").outputData == {"_df_0": {"done": True}, "_df_1": {"done": True}}


def test_dynamic_fork_branches_may_be_any_task_type() -> None:
    tasks = [{"name": "c", "taskReferenceName": "c", "type": "HTTP",
              "inputParameters": {"http_request": {"uri": "http://svc/${workflow.input.p}"}}},
             {"name": "n", "taskReferenceName": "n", "type": "INLINE",
              "inputParameters": {"evaluatorType": "javascript", "expression": "$.k * 2", "k": 21}}]
    sim = run([simple("gen"), dynamic_fork(), join("dj")], {"gen": ok({"tasks": tasks, "inputs": {}})},
              input={"p": "x"})
    http = [a for a in sim.actions(CallHttp) if isinstance(a, CallHttp)]
    assert [a.request for a in http] == [{"uri": "http://svc/x"}]
    assert sim.task("n").outputData == {"result": 42}
    assert sim.workflow.status is WorkflowStatus.COMPLETED


def test_empty_dynamic_fork_joins_at_once() -> None:
    sim = run([simple("gen"), dynamic_fork(), join("dj"), simple("after")], {"gen": ok({"tasks": [], "inputs": {}})})
    assert sim.task("dj").status is TaskStatus.COMPLETED and sim.task("dj").outputData == {}
    assert sim.workflow.status is WorkflowStatus.COMPLETED


def test_optional_dynamic_fork_makes_its_branches_optional() -> None:
    sim = run([simple("gen"), dynamic_fork(optional=True), join("dj")],
              {"gen": ok(generator_output(2)), "d1": fail()})
    assert sim.task("d1").status is TaskStatus.COMPLETED_WITH_ERRORS
    assert sim.workflow.status is WorkflowStatus.COMPLETED


INVALID_DYNAMIC = [
    pytest.param({"tasks": "not a list", "inputs": {}}, "must be a list of tasks", id="tasks-not-a-list"),
    pytest.param({"tasks": None, "inputs": {}}, "must be a list of tasks, got null", id="tasks-missing"),
    pytest.param({"tasks": [{"name": "work", "taskReferenceName": "d0"}], "inputs": ["x"]},
                 "must be a map of task reference to input map", id="inputs-not-a-map"),
    pytest.param({"tasks": [{"name": "work", "taskReferenceName": "d0"}], "inputs": {"d0": "x"}},
                 "must be a map, got str", id="input-not-a-map"),
    pytest.param({"tasks": [{"name": "work"}], "inputs": {}}, "must be an object with name and taskReferenceName",
                 id="task-without-reference"),
    pytest.param({"tasks": ["work"], "inputs": {}}, "must be an object", id="task-not-an-object"),
    pytest.param({"tasks": [{"name": "work", "taskReferenceName": "d"}, {"name": "work", "taskReferenceName": "d"}],
                  "inputs": {}}, "repeat a taskReferenceName", id="duplicate-references"),
    pytest.param({"tasks": [{"name": "work", "taskReferenceName": "gen"}], "inputs": {}}, "'gen' is already used",
                 id="reference-clash"),
]


@pytest.mark.parametrize(("generated", "reason"), INVALID_DYNAMIC)
def test_invalid_dynamic_fork_input_fails_the_workflow_with_a_reason(generated: dict[str, Any], reason: str) -> None:
    sim = run([simple("gen"), dynamic_fork(), join("dj"), simple("after")], {"gen": ok(generated)})
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert reason in (sim.workflow.reasonForIncompletion or "")
    assert "'df'" in (sim.workflow.reasonForIncompletion or "")
    assert sim.task("df").status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert sim.actions(StartTask)[1:] == []


# --------------------------------------------------------------------------------------------------
# SWITCH and DECISION
# --------------------------------------------------------------------------------------------------


def switch(ref: str = "sw", *, evaluator: str = "value-param", expression: str = "v",
           cases: dict[str, list[dict[str, Any]]] | None = None, default: list[dict[str, Any]] | None = None,
           inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    return system(ref, "SWITCH", inputs if inputs is not None else {"v": "${workflow.input.v}"},
                  evaluatorType=evaluator, expression=expression,
                  decisionCases=cases if cases is not None else {"x": [simple("x1"), simple("x2")],
                                                                 "y": [simple("y1")]},
                  defaultCase=default if default is not None else [simple("d1")])


@pytest.mark.parametrize(("value", "ran"), [
    pytest.param("x", ["x1", "x2", "after"], id="first-case"),
    pytest.param("y", ["y1", "after"], id="second-case"),
    pytest.param("z", ["d1", "after"], id="default-case"),
    pytest.param(None, ["d1", "after"], id="null-goes-default"),
])
def test_switch_value_param_picks_the_case(value: Any, ran: list[str]) -> None:
    sim = run([switch(), simple("after")], input={"v": value})
    assert sim.started_refs() == ran
    assert sim.task("sw").taskType == "SWITCH"
    assert sim.workflow.status is WorkflowStatus.COMPLETED


def test_switch_records_the_evaluation_in_its_output_and_input() -> None:
    sim = run([switch()], input={"v": "y"})
    assert sim.task("sw").outputData["evaluationResult"] == ["y"]
    assert sim.task("sw").inputData == {"v": "y", "case": "y"}


@pytest.mark.parametrize("evaluator", ["javascript", "graaljs"])
@pytest.mark.parametrize(("n", "ran"), [pytest.param(9, ["x1", "x2"], id="big"), pytest.param(1, ["y1"], id="small")])
def test_switch_javascript_expression(evaluator: str, n: int, ran: list[str]) -> None:
    sw = switch(evaluator=evaluator, expression="$.n > 5 ? 'x' : 'y'", inputs={"n": "${workflow.input.n}"})
    assert run([sw], input={"n": n}).started_refs() == ran


@pytest.mark.parametrize(("value", "case"), [
    pytest.param(True, "true", id="boolean"), pytest.param(3, "3", id="integer"), pytest.param(2.0, "2", id="float"),
])
def test_switch_compares_cases_as_text(value: Any, case: str) -> None:
    sim = run([switch(cases={case: [simple("hit")]}, default=[simple("miss")])], input={"v": value})
    assert sim.started_refs() == ["hit"]


def test_switch_matched_empty_case_runs_the_default_case() -> None:
    sim = run([switch(cases={"x": []}, default=[simple("d1")]), simple("after")], input={"v": "x"})
    assert sim.started_refs() == ["d1", "after"]


def test_switch_without_match_or_default_goes_on() -> None:
    sim = run([switch(cases={"x": [simple("x1")]}, default=[]), simple("after")], input={"v": "q"})
    assert sim.started_refs() == ["after"]


def test_nested_switch_continues_after_the_outer_one() -> None:
    inner = switch("inner", expression="w", inputs={"w": "${workflow.input.w}"}, cases={"a": [simple("ia")]},
                   default=[simple("idef")])
    sim = run([switch(cases={"x": [inner, simple("x_after")]}), simple("after")], input={"v": "x", "w": "a"})
    assert sim.started_refs() == ["ia", "x_after", "after"]


def test_switch_script_error_fails_the_workflow_with_a_reason() -> None:
    sim = run([switch(evaluator="javascript", expression="nope.x")])
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert sim.workflow.reasonForIncompletion is not None and "'sw'" in sim.workflow.reasonForIncompletion


def test_switch_unknown_evaluator_fails_the_workflow() -> None:
    sim = run([switch(evaluator="python")])
    assert "unknown evaluatorType 'python'" in (sim.workflow.reasonForIncompletion or "")


def decision(**extra: Any) -> dict[str, Any]:
    return system("d", "DECISION", {"v": "${workflow.input.v}"}, decisionCases={"x": [simple("x1")]},
                  defaultCase=[simple("d1")], **extra)


@pytest.mark.parametrize(("extra", "value", "ran"), [
    pytest.param({"caseValueParam": "v"}, "x", ["x1"], id="case-value-param"),
    pytest.param({"caseValueParam": "v"}, "nope", ["d1"], id="case-value-param-default"),
    pytest.param({"caseExpression": "$.v == 'a' ? 'x' : 'other'"}, "a", ["x1"], id="case-expression"),
    pytest.param({"caseExpression": "$.v == 'a' ? 'x' : 'other'"}, "b", ["d1"], id="case-expression-default"),
])
def test_decision_picks_its_case(extra: dict[str, Any], value: str, ran: list[str]) -> None:
    sim = run([decision(**extra)], input={"v": value})
    assert sim.started_refs() == ran
    assert sim.task("d").taskType == "DECISION"


def test_decision_reports_case_output_like_conductor() -> None:
    sim = run([decision(caseValueParam="v")], input={"v": "x"})
    assert sim.task("d").outputData == {"caseOutput": ["x"]}
    assert sim.task("d").inputData["case"] == "x"


# --------------------------------------------------------------------------------------------------
# DO_WHILE
# --------------------------------------------------------------------------------------------------


def test_do_while_with_javascript_condition_runs_three_iterations() -> None:
    sim = run([loop("loop", [simple("a"), simple("b")], "if ($.loop['iteration'] < 3) { true; } else { false; }"),
               simple("after")],
              {"a": lambda attempt: ok({"n": attempt.task.iteration})})
    assert sim.refs() == ["loop", "a__1", "b__1", "a__2", "b__2", "a__3", "b__3", "after"]
    assert [t.iteration for t in sim.workflow.tasks[1:7]] == [1, 1, 2, 2, 3, 3]
    loop_task = sim.task("loop")
    assert loop_task.status is TaskStatus.COMPLETED and loop_task.taskType == "DO_WHILE"
    assert loop_task.outputData == {"iteration": 3, "1": {"a": {"n": 1}, "b": {}}, "2": {"a": {"n": 2}, "b": {}},
                                    "3": {"a": {"n": 3}, "b": {}}}
    assert sim.workflow.status is WorkflowStatus.COMPLETED


def test_do_while_condition_reads_body_outputs_and_fresh_inputs() -> None:
    body = [simple("count")]
    sim = run([loop("loop", body, "$.count['n'] < $.limit", limit="${workflow.input.limit}")],
              {"count": lambda attempt: ok({"n": attempt.task.iteration * 10})}, input={"limit": 25})
    assert sim.task("loop").outputData["iteration"] == 3


def test_do_while_body_sees_the_current_iteration() -> None:
    sim = run([loop("loop", [simple("a", inputs={"page": "${loop.output.iteration}"})], upto("loop", 2))])
    assert [t.inputData for t in sim.attempts("a__1") + sim.attempts("a__2")] == [{"page": 1}, {"page": 2}]


def test_do_while_later_task_refers_to_the_latest_iteration_without_suffix() -> None:
    sim = run([loop("loop", [simple("a")], upto("loop", 2)), simple("after", inputs={"last": "${a.output.n}"})],
              {"a": lambda attempt: ok({"n": attempt.task.iteration})})
    assert sim.task("after").inputData == {"last": 2}


def test_do_while_items_iterates_over_the_list() -> None:
    body = [simple("each", inputs={"item": "${loop.output.item}", "index": "${loop.output.index}"})]
    sim = run([loop("loop", body, items="${workflow.input.files}")], input={"files": ["a.jpg", "b.png", "c.gif"]})
    assert [(t.inputData["item"], t.inputData["index"]) for t in sim.workflow.tasks[1:]] == [
        ("a.jpg", 0), ("b.png", 1), ("c.gif", 2)]
    assert sim.task("loop").outputData["iteration"] == 3
    assert sim.task("loop").outputData["loopItem"] == "c.gif"


def test_do_while_items_at_the_top_level_conductor_oss_style() -> None:
    spec = loop("loop", [simple("each", inputs={"item": "${loop.output.loopItem}"})])
    spec["items"] = "${workflow.input.files}"
    sim = run([spec], input={"files": ["x", "y"]})
    assert [t.inputData["item"] for t in sim.workflow.tasks[1:]] == ["x", "y"]


def test_do_while_items_and_condition_both_must_hold() -> None:
    sim = run([loop("loop", [simple("a")], upto("loop", 2), items=[1, 2, 3, 4])])
    assert sim.task("loop").outputData["iteration"] == 2


def test_do_while_over_empty_items_completes_at_once() -> None:
    sim = run([loop("loop", [simple("a")], items=[]), simple("after")])
    assert sim.refs() == ["loop", "after"]
    assert sim.task("loop").outputData == {"iteration": 0}


def test_do_while_items_that_are_not_a_list_fail_the_workflow() -> None:
    sim = run([loop("loop", [simple("a")], items="${workflow.input.files}")], input={"files": "a.jpg"})
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert "items must be a list" in (sim.workflow.reasonForIncompletion or "")


def test_do_while_keep_last_n_keeps_only_the_latest_iterations() -> None:
    sim = run([loop("loop", [simple("a")], upto("loop", 6), keepLastN=2), simple("after")])
    assert sim.refs() == ["loop", "a__5", "a__6", "after"]
    assert sorted(k for k in sim.task("loop").outputData if k.isdigit()) == ["5", "6"]
    assert len(sim.started_refs()) == 7


def test_do_while_keep_last_n_with_engine_only_bodies() -> None:
    sim = run([loop("loop", [system("n", "NOOP"), system("m", "NOOP")], upto("loop", 5), keepLastN=1)])
    assert sim.refs() == ["loop", "n__5", "m__5"]
    assert sim.workflow.status is WorkflowStatus.COMPLETED


def test_failed_task_inside_a_do_while_leaves_it_canceled() -> None:
    sim = run([loop("loop", [simple("a")], upto("loop", 3))], {"a": lambda attempt: fail() if
                                                               attempt.task.iteration == 2 else ok()})
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert sim.task("loop").status is TaskStatus.CANCELED
    assert sim.statuses()[1:] == [("a__1", "COMPLETED"), ("a__2", "FAILED")]


def test_do_while_condition_error_fails_the_workflow() -> None:
    sim = run([loop("loop", [simple("a")], "$.missing.deeper > 1")])
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert sim.task("loop").status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert "loopCondition" in (sim.workflow.reasonForIncompletion or "")


def test_runaway_loop_of_engine_only_tasks_yields_instead_of_spinning() -> None:
    bp = blueprint(workflow_def([loop("loop", [system("n", "NOOP")], "true")]), [])
    first = start(bp)
    assert first.wakeAt == T0
    done = sum(1 for t in first.workflow.tasks if t.referenceTaskName.startswith("n__"))
    assert 50 <= done <= 1000
    second = step(bp, first.workflow, now=T0)
    assert second.wakeAt == T0
    assert len(second.workflow.tasks) > len(first.workflow.tasks)
    assert second.workflow.status is WorkflowStatus.RUNNING


def test_long_engine_only_loop_finishes_across_several_decisions() -> None:
    sim = run([loop("loop", [system("n", "NOOP")], upto("loop", 600), keepLastN=3)])
    assert sim.workflow.status is WorkflowStatus.COMPLETED
    assert sim.task("loop").outputData["iteration"] == 600
    assert sim.workflow.endTime == T0


def test_fork_inside_a_do_while_joins_per_iteration() -> None:
    body = [fork("f", [simple("a")], [simple("b")]), join("j", "a", "b")]
    sim = run([loop("loop", body, upto("loop", 2))])
    assert sim.refs() == ["loop", "f__1", "a__1", "b__1", "j__1", "f__2", "a__2", "b__2", "j__2"]
    assert sim.task("j__2").inputData == {"joinOn": ["a__2", "b__2"]}
    assert sim.workflow.status is WorkflowStatus.COMPLETED


def test_dynamic_fork_inside_a_do_while() -> None:
    body = [system("df", "FORK_JOIN_DYNAMIC", {"forkTaskName": "work", "forkTaskInputs": [{"k": 1}, {"k": 2}]}),
            join("dj")]
    sim = run([loop("loop", body, upto("loop", 2))])
    assert sim.workflow.status is WorkflowStatus.COMPLETED
    assert sim.task("dj__2").inputData == {"joinOn": ["_work_0__2", "_work_1__2"]}


def test_switch_inside_a_do_while_follows_each_iteration() -> None:
    sw = switch(evaluator="javascript", expression="$.i % 2 == 0 ? 'x' : 'y'", inputs={"i": "${loop.output.iteration}"},
                cases={"x": [simple("even")], "y": [simple("odd")]})
    sim = run([loop("loop", [sw, simple("tail")], upto("loop", 3))])
    assert sim.started_refs() == ["odd__1", "tail__1", "even__2", "tail__2", "odd__3", "tail__3"]


# --------------------------------------------------------------------------------------------------
# DYNAMIC
# --------------------------------------------------------------------------------------------------


def test_dynamic_task_runs_the_named_task_def() -> None:
    dyn = system("dyn", "DYNAMIC", {"taskToExecute": "${workflow.input.which}", "x": 1},
                 dynamicTaskNameParam="taskToExecute")
    sim = run([dyn], defs=[task_def("resize"), WORK], input={"which": "resize"})
    action = sim.actions(StartTask)[0]
    assert isinstance(action, StartTask)
    assert (action.taskType, action.taskDefName, action.referenceTaskName) == ("resize", "resize", "dyn")
    assert action.inputData == {"taskToExecute": "resize", "x": 1}
    assert sim.workflow.status is WorkflowStatus.COMPLETED


def test_dynamic_task_without_a_name_fails_the_workflow() -> None:
    sim = run([system("dyn", "DYNAMIC", {"taskToExecute": "${workflow.input.which}"},
                      dynamicTaskNameParam="taskToExecute")])
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert "does not name a task" in (sim.workflow.reasonForIncompletion or "")


def test_dynamic_task_naming_an_unknown_task_def_fails_the_workflow() -> None:
    sim = run([system("dyn", "DYNAMIC", {"taskToExecute": "ghost"}, dynamicTaskNameParam="taskToExecute")])
    assert "no TaskDef named 'ghost'" in (sim.workflow.reasonForIncompletion or "")


# --------------------------------------------------------------------------------------------------
# SUB_WORKFLOW, START_WORKFLOW, HTTP
# --------------------------------------------------------------------------------------------------


def sub(ref: str = "sub", name: str = "child", **extra: Any) -> dict[str, Any]:
    return {"name": name, "taskReferenceName": ref, "type": "SUB_WORKFLOW",
            "inputParameters": {"x": "${workflow.input.x}"}, "subWorkflowParam": {"name": name, "version": 2},
            **extra}


CHILD = workflow_def([simple("inner", inputs={"x": "${workflow.input.x}"})], name="child",
                     outputParameters={"got": "${inner.output.r}"})


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
    assert first.status is TaskStatus.FAILED and first.reasonForIncompletion == "child broke"
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


# --------------------------------------------------------------------------------------------------
# WAIT and HUMAN
# --------------------------------------------------------------------------------------------------


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
    assert sim.workflow.reasonForIncompletion == "rejected"


# --------------------------------------------------------------------------------------------------
# TERMINATE
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected"), [
    pytest.param("COMPLETED", WorkflowStatus.COMPLETED, id="completed"),
    pytest.param("FAILED", WorkflowStatus.FAILED, id="failed"),
    pytest.param("TERMINATED", WorkflowStatus.TERMINATED, id="terminated"),
])
def test_terminate_ends_the_workflow_with_its_status(status: str, expected: WorkflowStatus) -> None:
    term = system("t", "TERMINATE", {"terminationStatus": status, "terminationReason": "enough"})
    sim = run([fork("f", [simple("a"), term], [simple("slow")]), join("j", "t", "slow"), simple("after")],
              {"slow": never()})
    assert sim.workflow.status is expected
    assert sim.workflow.reasonForIncompletion == "enough"
    assert sim.task("t").status is TaskStatus.COMPLETED
    assert sim.task("slow").status is TaskStatus.CANCELED
    assert "after" not in sim.refs()
    assert sim.workflow.endTime == T0 + 1000


@pytest.mark.parametrize(("workflow_output", "expected"), [
    pytest.param({"a": "${a.output.v}"}, {"a": 1}, id="map-replaces-output"),
    pytest.param("${a.output.v}", {"output": 1}, id="non-map-wrapped"),
    pytest.param([1, 2], {"output": [1, 2]}, id="list-wrapped"),
])
def test_terminate_workflow_output_replaces_the_output(workflow_output: Any, expected: dict[str, Any]) -> None:
    term = system("t", "TERMINATE", {"terminationStatus": "COMPLETED", "workflowOutput": workflow_output})
    sim = run([simple("a"), term], {"a": ok({"v": 1})}, outputParameters={"ignored": "${a.output.v}"})
    assert sim.workflow.output == expected
    assert sim.task("t").outputData == expected


def test_terminate_without_workflow_output_empties_the_output() -> None:
    term = system("t", "TERMINATE", {"terminationStatus": "COMPLETED"})
    sim = run([simple("a"), term], {"a": ok({"v": 1})}, outputParameters={"v": "${a.output.v}"})
    assert sim.workflow.output == {}


def test_terminate_with_an_invalid_status_fails_the_workflow_with_a_reason() -> None:
    sim = run([system("t", "TERMINATE", {"terminationStatus": "DONE"}), simple("after")])
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert "terminationStatus 'DONE' is not valid" in (sim.workflow.reasonForIncompletion or "")


# --------------------------------------------------------------------------------------------------
# SET_VARIABLE, INLINE, JSON_JQ_TRANSFORM, NOOP
# --------------------------------------------------------------------------------------------------


def test_set_variable_updates_variables_for_later_tasks() -> None:
    sim = run([system("s1", "SET_VARIABLE", {"count": 1, "name": "${workflow.input.n}"}),
               system("s2", "SET_VARIABLE", {"count": 2}),
               simple("a", inputs={"c": "${workflow.variables.count}", "n": "${workflow.variables.name}",
                                   "keep": "${workflow.variables.initial}"})],
              input={"n": "ann"}, variables={"initial": "yes"})
    assert sim.workflow.variables == {"initial": "yes", "count": 2, "name": "ann"}
    assert sim.task("a").inputData == {"c": 2, "n": "ann", "keep": "yes"}
    assert sim.task("s1").status is TaskStatus.COMPLETED


INLINE_CASES = [
    pytest.param({"evaluatorType": "javascript", "expression": "$.a + $.b", "a": 2, "b": 3}, 5, id="javascript"),
    pytest.param({"evaluatorType": "graaljs", "expression": "(function(){ return [$.a, 'x']; })()", "a": 1},
                 [1, "x"], id="graaljs-function"),
    pytest.param({"evaluatorType": "value-param", "expression": "a", "a": {"k": "v"}}, {"k": "v"}, id="value-param"),
    pytest.param({"evaluatorType": "javascript", "expression": "function e() { return $.s.length; } e();",
                  "s": "four"}, 4, id="function-declaration"),
]


@pytest.mark.parametrize(("inputs", "result"), INLINE_CASES)
def test_inline_evaluates_its_expression(inputs: dict[str, Any], result: Any) -> None:
    sim = run([system("i", "INLINE", inputs), simple("after", inputs={"r": "${i.output.result}"})])
    assert sim.task("i").outputData == {"result": result}
    assert sim.task("after").inputData == {"r": result}


@pytest.mark.parametrize(("inputs", "message"), [
    pytest.param({"evaluatorType": "javascript", "expression": "throw new Error('bad thing')"}, "bad thing",
                 id="throws"),
    pytest.param({"evaluatorType": "javascript", "expression": "while (true) {}"}, "javascript", id="runaway"),
    pytest.param({"evaluatorType": "cobol", "expression": "x"}, "unknown evaluatorType", id="unknown-evaluator"),
])
def test_inline_errors_fail_the_task_with_a_reason(inputs: dict[str, Any], message: str) -> None:
    sim = run([system("i", "INLINE", inputs)])
    assert sim.workflow.status is WorkflowStatus.FAILED
    task = sim.task("i")
    assert task.status is TaskStatus.FAILED
    assert message in (task.reasonForIncompletion or "") and "'i'" in (task.reasonForIncompletion or "")
    assert "error" in task.outputData


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
    pytest.param({"queryExpression": "{{{"}, "jq", id="syntax-error"),
    pytest.param({}, "queryExpression must be a jq program", id="missing-query"),
])
def test_json_jq_transform_errors_fail_the_workflow(inputs: dict[str, Any], message: str) -> None:
    sim = run([system("jq", "JSON_JQ_TRANSFORM", inputs)])
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert message in (sim.task("jq").reasonForIncompletion or "")


def test_noop_completes_and_the_flow_goes_on() -> None:
    sim = run([system("n", "NOOP"), simple("after")])
    assert sim.statuses() == [("n", "COMPLETED"), ("after", "COMPLETED")]


def test_unknown_task_type_fails_the_workflow_with_a_reason() -> None:
    sim = run([system("k", "KAFKA_PUBLISH")])
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert "unknown task type 'KAFKA_PUBLISH'" in (sim.workflow.reasonForIncompletion or "")


# --------------------------------------------------------------------------------------------------
# EXCLUSIVE_JOIN
# --------------------------------------------------------------------------------------------------


def exclusive(value: str, **join_fields: Any) -> Sim:
    dec = system("d", "DECISION", {"v": "${workflow.input.v}"}, caseValueParam="v",
                 decisionCases={"a": [simple("a1"), simple("a2")], "b": [simple("b1")], "c": [simple("c1")]},
                 defaultCase=[simple("dflt")])
    ej = system("ej", "EXCLUSIVE_JOIN", **join_fields)
    return run([dec, ej, simple("after", inputs={"got": "${ej.output.who}"})],
               {"a2": ok({"who": "a"}), "b1": ok({"who": "b"}), "c1": ok({"who": "c"}), "dflt": ok({"who": "default"})},
               input={"v": value})


@pytest.mark.parametrize(("value", "who"), [pytest.param("a", "a", id="case-a"), pytest.param("b", "b", id="case-b")])
def test_exclusive_join_takes_the_output_of_the_case_that_ran(value: str, who: str) -> None:
    sim = exclusive(value, joinOn=["a2", "b1"])
    assert sim.task("ej").status is TaskStatus.COMPLETED
    assert sim.task("ej").outputData == {"who": who}
    assert sim.task("after").inputData == {"got": who}


def test_exclusive_join_falls_back_to_default_exclusive_join_task() -> None:
    sim = exclusive("zzz", joinOn=["a2", "b1"], defaultExclusiveJoinTask=["dflt"])
    assert sim.task("ej").outputData == {"who": "default"}
    assert sim.workflow.status is WorkflowStatus.COMPLETED


# --------------------------------------------------------------------------------------------------
# failureWorkflow
# --------------------------------------------------------------------------------------------------


def test_failure_workflow_gets_the_input_and_the_failure() -> None:
    sim = run([simple("a"), simple("b")], {"b": fail("disk full")}, input={"file": "x.jpg"},
              failureWorkflow="cleanup", defs=[WORK])
    starts = [a for _, a in sim.started_workflows]
    assert len(starts) == 1
    action = starts[0]
    assert (action.name, action.purpose) == ("cleanup", "failureWorkflow")
    assert action.input["file"] == "x.jpg"
    assert action.input["workflowId"] == "wf-1"
    assert action.input["reason"] == "disk full"
    assert action.input["failureStatus"] == "FAILED"
    assert action.input["failureTaskId"] == sim.task("b").taskId
    failed = action.input["failedWorkflow"]
    assert failed["workflowId"] == "wf-1" and failed["status"] == "FAILED"
    assert [t["referenceTaskName"] for t in failed["tasks"]] == ["b"]


def test_failure_workflow_also_starts_on_timeout() -> None:
    sim = run([simple("a")], {"a": never()}, failureWorkflow="cleanup", timeoutSeconds=5, timeoutPolicy="TIME_OUT_WF")
    assert [a.input["failureStatus"] for _, a in sim.started_workflows] == ["TIMED_OUT"]


def test_failure_workflow_is_not_started_for_success_or_user_termination() -> None:
    assert run([simple("a")], failureWorkflow="cleanup").started_workflows == []
    sim = Sim(workflow_def([simple("a")], failureWorkflow="cleanup"), [WORK], results={"a": never()})
    sim.operate(OperationKind.TERMINATE, at=T0 + 100, reason="stop")
    sim.run()
    assert sim.workflow.status is WorkflowStatus.TERMINATED
    assert sim.started_workflows == []


def test_terminate_task_with_failed_status_starts_the_failure_workflow() -> None:
    sim = run([system("t", "TERMINATE", {"terminationStatus": "FAILED", "terminationReason": "bad"})],
              failureWorkflow="cleanup")
    assert [a.input["reason"] for _, a in sim.started_workflows] == ["bad"]


def test_update_with_sub_workflow_id_is_recorded() -> None:
    bp = blueprint(workflow_def([sub()]), [WORK])
    first = start(bp)
    task_id = first.workflow.tasks[0].taskId
    later = step(bp, first.workflow, [TaskUpdate(taskId=task_id, subWorkflowId="child-9")], now=T0 + 1)
    assert later.workflow.tasks[0].subWorkflowId == "child-9"
    assert later.actions == ()
