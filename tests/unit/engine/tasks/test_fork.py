"""FORK_JOIN and FORK_JOIN_DYNAMIC (engine/tasks/fork.py): branches started together, the JOIN created
with the fork, Conductor's two dynamic-fork forms and their input errors.
"""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine import CallHttp, StartSubWorkflow, StartTask, TaskStatus, WorkflowStatus
from tests.unit.engine.flows import WORK, dynamic_fork, fork, generator_output, join, loop, run, upto
from tests.unit.engine.harness import Sim, blueprint, fail, never, ok, simple, start, system, workflow_def


def test_fork_and_join_are_created_together_with_the_branch_starts() -> None:
    bp = blueprint(workflow_def([fork("f", [simple("a")], [simple("b")]), join("j", "a", "b")]), [WORK])
    decision = start(bp)
    assert [(t.referenceTaskName, t.taskType, t.status) for t in decision.workflow.tasks] == [
        ("f", "FORK", TaskStatus.COMPLETED), ("a", "work", TaskStatus.SCHEDULED),
        ("b", "work", TaskStatus.SCHEDULED), ("j", "JOIN", TaskStatus.IN_PROGRESS)]
    assert [a.referenceTaskName for a in decision.actions if isinstance(a, StartTask)] == ["a", "b"]
    assert decision.workflow.tasks[3].inputData == {"joinOn": ["a", "b"]}


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
    assert sim.refs() == ["gen"]  # Conductor's mapper rejects the input: no FORK task is recorded
    assert sim.actions(StartTask)[1:] == []


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
