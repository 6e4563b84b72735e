"""User operations (engine/operations.py): pause, resume, terminate, retry, restart, rerun, skip, complete.

Each operation carries a nonce and applies exactly once: a driver may observe the same request (an
annotation, a spec field) many times.
"""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine import (
    CancelTask,
    Operation,
    OperationKind,
    StartTask,
    TaskStatus,
    TaskUpdate,
    WorkflowStatus,
    new_workflow,
)
from tests.unit.engine.harness import (
    T0,
    Sim,
    blueprint,
    fail,
    failed_by,
    never,
    ok,
    simple,
    step,
    system,
    task_def,
    workflow_def,
)

WORK = task_def("work")


def op(kind: OperationKind | str, nonce: str = "n1", **fields: Any) -> Operation:
    return Operation(op=OperationKind(kind), nonce=nonce, **fields)


def started_at(sim: Sim, ref: str) -> list[int]:
    return [e.at - T0 for e in sim.log if isinstance(e.action, StartTask) and e.action.referenceTaskName == ref]


def cancel_refs(sim: Sim) -> list[str]:
    return [a.referenceTaskName for a in sim.actions(CancelTask) if isinstance(a, CancelTask)]


def refusals(sim: Sim) -> list[str]:
    return [m for d in sim.decisions for m in d.messages if "not applied" in m]


# --------------------------------------------------------------------------------------------------
# pause / resume
# --------------------------------------------------------------------------------------------------


def test_pause_lets_running_attempts_finish_and_starts_nothing_new() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b")]), [WORK], results={"a": ok({"v": 1}, runs_ms=3000)})
    sim.operate(OperationKind.PAUSE, at=T0 + 1000)
    workflow = sim.run(until_time=T0 + 60_000)
    assert workflow.status is WorkflowStatus.PAUSED
    assert sim.task("a").status is TaskStatus.COMPLETED and sim.task("a").outputData == {"v": 1}
    assert "b" not in sim.refs()
    assert cancel_refs(sim) == []
    sim.operate(OperationKind.RESUME)
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert started_at(sim, "b") == [60_000]


def test_pause_holds_back_a_retry_until_resumed() -> None:
    sim = Sim(workflow_def([simple("a")]), [task_def("work", retryCount=1, retryDelaySeconds=5)],
              results={"a": [fail(runs_ms=100), ok()]})
    sim.operate(OperationKind.PAUSE, at=T0 + 50)
    sim.run(until_time=T0 + 30_000)
    assert len(sim.attempts("a")) == 1
    assert sim.decisions[-1].wakeAt is None
    sim.operate(OperationKind.RESUME)
    assert sim.run().status is WorkflowStatus.COMPLETED
    # The failure is acted on at the resume: the retry delay counts from there.
    assert started_at(sim, "a") == [0, 35_000]


def test_pause_and_resume_are_refused_in_the_wrong_state() -> None:
    bp = blueprint(workflow_def([simple("a")]), [WORK])
    running = step(bp, new_workflow(bp, "wf-1", {}, T0), [op("resume", "r0")], now=T0)
    assert running.workflow.status is WorkflowStatus.RUNNING
    assert any("resume" in m and "not applied" in m for m in running.messages)
    paused = step(bp, running.workflow, [op("pause", "p1")], now=T0 + 1)
    again = step(bp, paused.workflow, [op("pause", "p2")], now=T0 + 2)
    assert again.workflow.status is WorkflowStatus.PAUSED
    assert any("the workflow is PAUSED" in m for m in again.messages)


# --------------------------------------------------------------------------------------------------
# terminate
# --------------------------------------------------------------------------------------------------


def test_terminate_cancels_running_attempts() -> None:
    fork = system("f", "FORK_JOIN", forkTasks=[[simple("a")], [simple("b")]])
    sim = Sim(workflow_def([fork, system("j", "JOIN", joinOn=["a", "b"])]), [WORK],
              results={"a": never(), "b": ok(runs_ms=100)})
    sim.operate(OperationKind.TERMINATE, at=T0 + 500, reason="no longer needed")
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.TERMINATED
    assert workflow.reasonForIncompletion == "no longer needed"
    assert workflow.endTime == T0 + 500
    assert cancel_refs(sim) == ["a"]
    assert sim.statuses() == [("f", "COMPLETED"), ("a", "CANCELED"), ("b", "COMPLETED"), ("j", "CANCELED")]


def test_terminate_stops_a_child_workflow() -> None:
    child = workflow_def([simple("inner")], name="child")
    sim = Sim(workflow_def([{"name": "child", "taskReferenceName": "sub", "type": "SUB_WORKFLOW",
                             "subWorkflowParam": {"name": "child"}}]), [WORK],
              children={"child": {"definition": child}}, results={"inner": never()})
    sim.operate(OperationKind.TERMINATE, at=T0 + 100)
    sim.run()
    assert sim.workflow.status is WorkflowStatus.TERMINATED
    assert sim.child("sub").workflow.status is WorkflowStatus.TERMINATED
    assert sim.child("sub").workflow.tasks[0].status is TaskStatus.CANCELED


def test_terminate_of_a_finished_workflow_is_refused() -> None:
    sim = Sim(workflow_def([simple("a")]), [WORK])
    sim.run()
    sim.operate(OperationKind.TERMINATE)
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert any("already COMPLETED" in m for m in refusals(sim))


# --------------------------------------------------------------------------------------------------
# retry
# --------------------------------------------------------------------------------------------------


def test_retry_runs_the_failed_task_again_and_keeps_completed_ones() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b"), simple("c")]), [WORK],
              results={"b": [fail("flaky"), ok()]})
    assert sim.run().status is WorkflowStatus.FAILED
    sim.operate(OperationKind.RETRY, at=T0 + 60_000)
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    assert sim.statuses() == [("a", "COMPLETED"), ("b", "FAILED"), ("b", "COMPLETED"), ("c", "COMPLETED")]
    assert sim.attempts("b")[0].retried and sim.attempts("b")[1].retryCount == 1
    assert started_at(sim, "a") == [0]
    assert workflow.lastRetriedTime == T0 + 60_000
    assert workflow.reasonForIncompletion is None and workflow.failedReferenceTaskNames == []


def test_retry_reopens_the_canceled_join_and_reruns_only_the_failed_branch() -> None:
    fork = system("f", "FORK_JOIN", forkTasks=[[simple("a")], [simple("b1"), simple("b2")]])
    sim = Sim(workflow_def([fork, system("j", "JOIN", joinOn=["a", "b2"]), simple("after")]), [WORK],
              results={"a": [fail(runs_ms=100), ok({"a": 1})], "b1": ok(runs_ms=5000)})
    assert sim.run().status is WorkflowStatus.FAILED
    assert sim.task("j").status is TaskStatus.CANCELED and sim.task("b1").status is TaskStatus.CANCELED
    sim.operate(OperationKind.RETRY)
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert len(sim.attempts("j")) == 1 and sim.task("j").status is TaskStatus.COMPLETED
    assert [t.status for t in sim.attempts("b1")] == [TaskStatus.CANCELED, TaskStatus.COMPLETED]
    assert sim.task("j").outputData["a"] == {"a": 1}


def test_retry_reopens_a_canceled_do_while_in_its_iteration() -> None:
    body = [simple("a")]
    spec = system("loop", "DO_WHILE", loopOver=body,
                  loopCondition="if ($.loop['iteration'] < 3) { true; } else { false; }")
    outcomes = iter([ok(), fail(), ok(), ok()])
    sim = Sim(workflow_def([spec, simple("after")]), [WORK], results={"a": lambda attempt: next(outcomes)})
    assert sim.run().status is WorkflowStatus.FAILED
    assert sim.task("loop").status is TaskStatus.CANCELED
    sim.operate(OperationKind.RETRY)
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert sim.refs() == ["loop", "a__1", "a__2", "a__2", "a__3", "after"]
    assert sim.task("loop").outputData["iteration"] == 3


def test_retry_of_a_terminated_workflow_reruns_the_canceled_attempts() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b")]), [WORK], results={"a": [never(), ok()]})
    sim.operate(OperationKind.TERMINATE, at=T0 + 100)
    sim.run()
    sim.operate(OperationKind.RETRY)
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert [t.status for t in sim.attempts("a")] == [TaskStatus.CANCELED, TaskStatus.COMPLETED]


def test_retry_of_a_running_or_completed_workflow_is_refused() -> None:
    sim = Sim(workflow_def([simple("a")]), [WORK], results={"a": ok(runs_ms=1000)})
    sim.operate(OperationKind.RETRY, at=T0 + 10)
    sim.run()
    sim.operate(OperationKind.RETRY, nonce="again")
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert len(refusals(sim)) == 2
    assert len(sim.attempts("a")) == 1


def test_retry_starts_a_new_failure_workflow_if_it_fails_again() -> None:
    sim = Sim(workflow_def([simple("a")], failureWorkflow="cleanup"), [WORK], results={"a": fail()})
    sim.run()
    sim.operate(OperationKind.RETRY, at=T0 + 5000)
    sim.run()
    request_ids = [a.requestId for _, a in sim.started_workflows]
    assert len(request_ids) == 2 and len(set(request_ids)) == 2


def test_rerun_evaluates_a_failed_dynamic_fork_again_and_retry_finds_nothing_to_retry() -> None:
    fork = system("df", "FORK_JOIN_DYNAMIC", {"tasks": "${gen.output.tasks}", "inputs": {}},
                  dynamicForkTasksParam="tasks", dynamicForkTasksInputParamName="inputs")
    good = {"tasks": [{"name": "work", "taskReferenceName": "d0"}]}
    sim = Sim(workflow_def([simple("gen"), fork, system("dj", "JOIN")]), [WORK],
              results={"gen": [ok({"tasks": "garbage"}), ok(good)]})
    assert sim.run().status is WorkflowStatus.FAILED
    sim.operate(OperationKind.RERUN, taskReferenceName="gen")
    assert sim.run().status is WorkflowStatus.COMPLETED
    failing = Sim(workflow_def([simple("gen"), fork, system("dj", "JOIN")]), [WORK],
                  results={"gen": ok({"tasks": "garbage"})})
    failing.run()
    failing.operate(OperationKind.RETRY)
    # Conductor's mapper recorded no task, so there is nothing to retry (Conductor: "no retryable tasks").
    assert failing.run().status is WorkflowStatus.FAILED
    assert failing.refs() == ["gen"]


def test_retry_of_a_do_while_whose_condition_failed_starts_the_loop_again() -> None:
    spec = system("loop", "DO_WHILE", {"limit": "${workflow.input.limit}"}, loopOver=[simple("a")],
                  loopCondition="$.loop['iteration'] < $.limit.max")
    sim = Sim(workflow_def([spec]), [WORK])
    assert sim.run().status is WorkflowStatus.FAILED
    sim.operate(OperationKind.RETRY)
    assert sim.run().status is WorkflowStatus.FAILED
    assert [t.status for t in sim.attempts("loop")] == [TaskStatus.FAILED_WITH_TERMINAL_ERROR] * 2


def test_retry_reopens_a_join_whose_branches_had_all_finished() -> None:
    fork = system("f", "FORK_JOIN", forkTasks=[[simple("a")], [simple("b")]])
    sim = Sim(workflow_def([fork, system("j", "JOIN", joinOn=["a", "b"]), simple("after")], timeoutSeconds=1,
                           timeoutPolicy="TIME_OUT_WF"), [WORK], results={"a": ok(runs_ms=1000), "b": ok(runs_ms=1000)})
    assert sim.run().status is WorkflowStatus.TIMED_OUT
    assert sim.task("j").status is TaskStatus.CANCELED
    sim.operate(OperationKind.RETRY)
    assert sim.run().status is WorkflowStatus.TIMED_OUT or sim.task("j").status is TaskStatus.COMPLETED


# --------------------------------------------------------------------------------------------------
# restart
# --------------------------------------------------------------------------------------------------


def test_restart_runs_the_workflow_again_from_the_start() -> None:
    sim = Sim(workflow_def([simple("a", inputs={"x": "${workflow.input.x}"}), simple("b")]), [WORK],
              input={"x": 1}, results={"b": [fail(), ok()]})
    assert sim.run().status is WorkflowStatus.FAILED
    old_ids = {t.taskId for t in sim.workflow.tasks}
    sim.operate(OperationKind.RESTART, at=T0 + 10_000, workflowInput={"x": 2})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    assert sim.refs() == ["a", "b"]
    assert not old_ids & {t.taskId for t in workflow.tasks}
    assert workflow.input == {"x": 2} and sim.task("a").inputData == {"x": 2}
    assert workflow.startTime == T0 + 10_000


def test_restart_of_a_running_workflow_is_refused() -> None:
    sim = Sim(workflow_def([simple("a")]), [WORK], results={"a": ok(runs_ms=1000)})
    sim.operate(OperationKind.RESTART, at=T0 + 10)
    sim.run()
    assert len(refusals(sim)) == 1 and len(sim.attempts("a")) == 1


# --------------------------------------------------------------------------------------------------
# rerun
# --------------------------------------------------------------------------------------------------


def test_rerun_from_a_task_with_new_input() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b", inputs={"x": "${workflow.input.x}"}), simple("c")]), [WORK],
              input={"x": 1}, results={"c": [fail(), ok()]})
    assert sim.run().status is WorkflowStatus.FAILED
    sim.operate(OperationKind.RERUN, taskReferenceName="b", taskInput={"x": "by hand"})
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert sim.refs() == ["a", "b", "c"]
    assert sim.task("b").inputData == {"x": "by hand"}
    assert started_at(sim, "a") == [0]


def test_rerun_with_new_workflow_input_resolves_the_task_again() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b", inputs={"x": "${workflow.input.x}"})]), [WORK], input={"x": 1})
    sim.run()
    sim.operate(OperationKind.RERUN, taskReferenceName="b", workflowInput={"x": 2})
    sim.run()
    assert sim.task("b").inputData == {"x": 2} and sim.workflow.input == {"x": 2}


def test_rerun_from_a_fork_branch_keeps_the_other_branch_and_reopens_the_join() -> None:
    fork = system("f", "FORK_JOIN", forkTasks=[[simple("a1"), simple("a2")], [simple("b")]])
    sim = Sim(workflow_def([fork, system("j", "JOIN", joinOn=["a2", "b"]), simple("after")]), [WORK],
              results={"a2": [fail("bad"), ok({"fixed": True})], "b": ok({"b": 1}, runs_ms=5000)})
    assert sim.run().status is WorkflowStatus.FAILED
    sim.observe(Operation(op=OperationKind.RERUN, nonce="rr", taskReferenceName="b"))
    sim.run()
    sim.operate(OperationKind.RERUN, taskReferenceName="a2")
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    assert sim.task("j").outputData == {"a2": {"fixed": True}, "b": {"b": 1}}
    assert started_at(sim, "a1") == [0]


def test_rerun_from_the_first_task_of_a_branch_keeps_the_parallel_branch() -> None:
    fork = system("f", "FORK_JOIN", forkTasks=[[simple("a")], [simple("b")]])
    sim = Sim(workflow_def([fork, system("j", "JOIN", joinOn=["a", "b"]), simple("after")]), [WORK])
    sim.run()
    sim.operate(OperationKind.RERUN, taskReferenceName="a")
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert started_at(sim, "b") == [0]
    assert len(started_at(sim, "a")) == 2 and len(started_at(sim, "after")) == 2


def test_rerun_inside_a_do_while_goes_back_to_that_iteration() -> None:
    spec = system("loop", "DO_WHILE", loopOver=[simple("a"), simple("b")],
                  loopCondition="if ($.loop['iteration'] < 3) { true; } else { false; }")
    sim = Sim(workflow_def([spec, simple("after")]), [WORK])
    sim.run()
    sim.operate(OperationKind.RERUN, taskReferenceName="b__2")
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert sim.refs() == ["loop", "a__1", "b__1", "a__2", "b__2", "a__3", "b__3", "after"]
    assert len(started_at(sim, "b__2")) == 2
    assert sim.task("loop").outputData["iteration"] == 3


def test_rerun_from_a_join_reopens_it_and_the_flow_goes_on_after_it() -> None:
    fork = system("f", "FORK_JOIN", forkTasks=[[simple("a")], [simple("b")]])
    sim = Sim(workflow_def([fork, system("j", "JOIN", joinOn=["a", "b"]), simple("after")]), [WORK],
              results={"after": [fail(), ok()]})
    assert sim.run().status is WorkflowStatus.FAILED
    sim.operate(OperationKind.RERUN, taskReferenceName="j")
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert sim.refs() == ["f", "a", "b", "j", "after"]
    assert started_at(sim, "a") == [0] and len(started_at(sim, "after")) == 2


def test_rerun_of_a_running_workflow_cancels_what_it_drops() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b"), simple("c")]), [WORK], results={"b": [never(), ok()]})
    sim.run(until=lambda s: "b" in s.refs() and s.task("b").status is TaskStatus.IN_PROGRESS)
    sim.operate(OperationKind.RERUN, taskReferenceName="a")
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert cancel_refs(sim) == ["b"]
    assert sim.refs() == ["a", "b", "c"]


def test_rerun_of_an_unknown_task_is_refused() -> None:
    sim = Sim(workflow_def([simple("a")]), [WORK])
    sim.run()
    sim.operate(OperationKind.RERUN, taskReferenceName="ghost")
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert any("no task 'ghost'" in m for m in refusals(sim))


def test_rerun_of_a_dynamically_forked_task_keeps_its_input() -> None:
    fork = system("df", "FORK_JOIN_DYNAMIC", {"forkTaskName": "work", "forkTaskInputs": [{"k": 1}, {"k": 2}]})
    sim = Sim(workflow_def([fork, system("dj", "JOIN")]), [WORK], results={"_work_1": [fail(), ok()]})
    assert sim.run().status is WorkflowStatus.FAILED
    sim.operate(OperationKind.RERUN, taskReferenceName="_work_1")
    assert sim.run().status is WorkflowStatus.COMPLETED
    # The rerun attempt replaces the failed one (as Conductor resets the task), with the fork's input.
    assert [(t.status, t.inputData) for t in sim.attempts("_work_1")] == [
        (TaskStatus.COMPLETED, {"k": 2, "__index": 1})]
    assert [a.inputData for a in sim.actions(StartTask) if isinstance(a, StartTask)
            and a.referenceTaskName == "_work_1"] == [{"k": 2, "__index": 1}] * 2


# --------------------------------------------------------------------------------------------------
# skip and complete
# --------------------------------------------------------------------------------------------------


def test_skip_a_running_task_cancels_it_and_the_flow_goes_on() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b", inputs={"a": "${a.output.given}"})]), [WORK],
              results={"a": never()})
    sim.operate(OperationKind.SKIP, at=T0 + 500, taskReferenceName="a", outputData={"given": "by hand"})
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert sim.task("a").status is TaskStatus.SKIPPED
    assert cancel_refs(sim) == ["a"]
    assert sim.task("b").inputData == {"a": "by hand"}


def test_skip_a_task_not_reached_yet_passes_over_it() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b"), simple("c")]), [WORK], results={"a": ok(runs_ms=1000)})
    sim.operate(OperationKind.SKIP, at=T0 + 100, taskReferenceName="b")
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert sim.started_refs() == ["a", "c"]
    assert dict(sim.statuses())["b"] == "SKIPPED"


def test_skip_a_later_iteration_of_a_loop_task() -> None:
    spec = system("loop", "DO_WHILE", loopOver=[simple("a"), simple("b")],
                  loopCondition="if ($.loop['iteration'] < 3) { true; } else { false; }")
    sim = Sim(workflow_def([spec]), [WORK])
    sim.operate(OperationKind.SKIP, at=T0 + 100, taskReferenceName="a__2", outputData={"skipped": True})
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert sim.started_refs() == ["a__1", "b__1", "b__2", "a__3", "b__3"]
    assert sim.task("loop").outputData["2"]["a"] == {"skipped": True}


def test_skip_a_finished_task_is_refused() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b")]), [WORK], results={"b": never()})
    sim.operate(OperationKind.SKIP, at=T0 + 2000, taskReferenceName="a")
    sim.run(until_time=T0 + 3000)
    assert any("already ran (COMPLETED)" in m for m in refusals(sim))


def test_complete_a_running_task_by_hand() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b", inputs={"v": "${a.output.v}"})]), [WORK],
              results={"a": never()})
    sim.operate(OperationKind.COMPLETE, at=T0 + 100, taskReferenceName="a", outputData={"v": 9})
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert sim.task("a").status is TaskStatus.COMPLETED and sim.task("b").inputData == {"v": 9}
    assert cancel_refs(sim) == ["a"]


def test_fail_a_task_by_hand_follows_its_retry_policy() -> None:
    sim = Sim(workflow_def([system("h", "HUMAN")]), [WORK])
    sim.run()
    sim.operate(OperationKind.COMPLETE, taskReferenceName="h", status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
                reason="denied")
    assert sim.run().status is WorkflowStatus.FAILED
    assert sim.workflow.reasonForIncompletion == failed_by(sim.workflow.tasks[-1], "FAILED_WITH_TERMINAL_ERROR",
                                                           "denied")


def test_complete_a_finished_task_is_refused() -> None:
    sim = Sim(workflow_def([simple("a")]), [WORK])
    sim.run()
    sim.operate(OperationKind.COMPLETE, taskReferenceName="a")
    sim.run()
    assert any("already COMPLETED" in m for m in refusals(sim))


# --------------------------------------------------------------------------------------------------
# once per nonce
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pause", "terminate", "skip", "complete"])
def test_the_same_operation_observed_twice_changes_nothing_the_second_time(kind: str) -> None:
    bp = blueprint(workflow_def([system("h", "HUMAN"), simple("b")]), [WORK])
    first = step(bp, new_workflow(bp, "wf-1", {}, T0), now=T0)
    request = op(kind, "same", taskReferenceName="h")
    applied = step(bp, first.workflow, [request], now=T0 + 1)
    assert applied.changed
    assert "same" in applied.workflow.appliedOperations
    again = step(bp, applied.workflow, [request], now=T0 + 2)
    assert not again.changed and again.actions == () and again.messages == ()


def test_resume_then_pause_again_with_new_nonces_applies_each() -> None:
    bp = blueprint(workflow_def([system("h", "HUMAN")]), [WORK])
    state = step(bp, new_workflow(bp, "wf-1", {}, T0), now=T0).workflow
    statuses = []
    for i, kind in enumerate(["pause", "resume", "pause", "pause", "resume"]):
        state = step(bp, state, [op(kind, f"n{i}")], now=T0 + i).workflow
        statuses.append(state.status)
    assert statuses == [WorkflowStatus.PAUSED, WorkflowStatus.RUNNING, WorkflowStatus.PAUSED, WorkflowStatus.PAUSED,
                        WorkflowStatus.RUNNING]


def test_an_operation_repeated_within_one_observation_batch_applies_once() -> None:
    sim = Sim(workflow_def([simple("a")]), [WORK], results={"a": fail()})
    sim.run()
    sim.observe(op("retry", "r"))
    sim.observe(op("retry", "r"))
    sim.run()
    assert len(sim.attempts("a")) == 2


def test_a_retry_nonce_seen_again_after_the_next_failure_does_not_retry_again() -> None:
    sim = Sim(workflow_def([simple("a")]), [WORK], results={"a": fail()})
    sim.run()
    sim.observe(op("retry", "r1"))
    sim.run()
    sim.observe(op("retry", "r1"))
    assert sim.run().status is WorkflowStatus.FAILED
    assert len(sim.attempts("a")) == 2


def test_applied_nonces_are_bounded() -> None:
    bp = blueprint(workflow_def([system("h", "HUMAN")]), [WORK])
    state = step(bp, new_workflow(bp, "wf-1", {}, T0), now=T0).workflow
    for i in range(120):
        state = step(bp, state, [op("pause" if i % 2 == 0 else "resume", f"n{i}")], now=T0 + i).workflow
    assert len(state.appliedOperations) == 50 and state.appliedOperations[-1] == "n119"


def test_operations_apply_before_results_in_the_same_call() -> None:
    bp = blueprint(workflow_def([simple("a"), simple("b")]), [WORK])
    first = step(bp, new_workflow(bp, "wf-1", {}, T0), now=T0)
    task_id = first.workflow.tasks[0].taskId
    paused = step(bp, first.workflow, [TaskUpdate(taskId=task_id, status=TaskStatus.COMPLETED), op("pause", "p")],
                  now=T0 + 5)
    assert paused.workflow.status is WorkflowStatus.PAUSED
    assert paused.workflow.tasks[0].status is TaskStatus.COMPLETED
    assert [t.referenceTaskName for t in paused.workflow.tasks] == ["a"]


@pytest.mark.parametrize(("kind", "fields", "started", "status"), [
    pytest.param("skip", {"taskReferenceName": "a"}, ["b"], WorkflowStatus.COMPLETED, id="skip-first"),
    pytest.param("pause", {}, [], WorkflowStatus.PAUSED, id="pause"),
    pytest.param("terminate", {}, [], WorkflowStatus.TERMINATED, id="terminate"),
])
def test_operation_observed_with_the_creation_applies_to_the_started_run(
        kind: str, fields: dict[str, Any], started: list[str], status: WorkflowStatus) -> None:
    sim = Sim(workflow_def([simple("a"), simple("b")]), [WORK])
    sim.operate(OperationKind(kind), at=T0, **fields)
    assert sim.run(until_time=T0 + 60_000).status is status
    assert sim.started_refs() == started
