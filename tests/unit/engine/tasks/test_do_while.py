"""DO_WHILE (engine/tasks/do_while.py): conditions, items, keepLastN, loops holding forks and switches,
and the loop budget that keeps a loop of engine-only tasks from spinning in one call.
"""

from __future__ import annotations

from kondukt.engine import TaskStatus, WorkflowStatus
from tests.unit.engine.flows import loop, run, upto
from tests.unit.engine.harness import T0, blueprint, fail, ok, simple, start, step, system, workflow_def


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
