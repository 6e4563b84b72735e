"""Moving the flow on (engine/progression.py): successors, retries, optional and permissive tasks.

Retries as Conductor's DeciderService.retry() defines them.

A retry is a new attempt (new taskId, retryCount + 1, inputs resolved again); the failed attempt stays
FAILED with ``retried`` set. Delays: FIXED = delay, LINEAR_BACKOFF = delay x scale x (n + 1),
EXPONENTIAL_BACKOFF = delay x 2^n, capped by maxRetryDelaySeconds; ``totalTimeoutSeconds`` stops retrying.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from kondukt.engine import CancelTask, StartTask, TaskDef, TaskStatus, WorkflowStatus, WorkflowTask
from kondukt.engine.policies import allowed_retries, retry_delay_seconds
from tests.unit.engine.flows import WORK
from tests.unit.engine.harness import (
    T0,
    Sim,
    fail,
    failed_by,
    never,
    ok,
    simple,
    system,
    task_def,
    terminal_error,
    timed_out,
    workflow_def,
)


def dispatch_times(sim: Sim, ref: str) -> list[int]:
    return [e.at - T0 for e in sim.log if isinstance(e.action, StartTask) and e.action.referenceTaskName == ref]


DELAY_CASES = [
    pytest.param(dict(retryLogic="FIXED", retryDelaySeconds=5), [5, 5, 5], id="fixed"),
    pytest.param(dict(retryLogic="FIXED", retryDelaySeconds=0), [0, 0, 0], id="fixed-zero"),
    pytest.param(dict(retryLogic="LINEAR_BACKOFF", retryDelaySeconds=2, backoffScaleFactor=1), [2, 4, 6],
                 id="linear"),
    pytest.param(dict(retryLogic="LINEAR_BACKOFF", retryDelaySeconds=2, backoffScaleFactor=3), [6, 12, 18],
                 id="linear-scaled"),
    pytest.param(dict(retryLogic="EXPONENTIAL_BACKOFF", retryDelaySeconds=3), [3, 6, 12], id="exponential"),
    pytest.param(dict(retryLogic="EXPONENTIAL_BACKOFF", retryDelaySeconds=3, maxRetryDelaySeconds=7), [3, 6, 7],
                 id="exponential-capped"),
    pytest.param(dict(retryLogic="LINEAR_BACKOFF", retryDelaySeconds=5, maxRetryDelaySeconds=8), [5, 8, 8],
                 id="linear-capped"),
    pytest.param(dict(retryLogic="FIXED", retryDelaySeconds=10, maxRetryDelaySeconds=3), [10, 10, 10],
                 id="cap-leaves-fixed-alone"),
]


@pytest.mark.parametrize(("policy", "delays"), DELAY_CASES)
def test_retry_delays_follow_the_retry_logic(policy: dict[str, Any], delays: list[int]) -> None:
    sim = Sim(workflow_def([simple("a")]), [task_def("work", retryCount=3, **policy)],
              results={"a": [fail(runs_ms=1000)] * 3 + [ok(runs_ms=1000)]})
    assert sim.run().status is WorkflowStatus.COMPLETED
    times = dispatch_times(sim, "a")
    gaps = [(b - a - 1000) // 1000 for a, b in itertools.pairwise(times)]
    assert gaps == delays


@pytest.mark.parametrize(("policy", "n", "expected"), [
    pytest.param(dict(retryLogic="FIXED", retryDelaySeconds=7), 5, 7, id="fixed"),
    pytest.param(dict(retryLogic="LINEAR_BACKOFF", retryDelaySeconds=7, backoffScaleFactor=2), 0, 14,
                 id="linear-first"),
    pytest.param(dict(retryLogic="LINEAR_BACKOFF", retryDelaySeconds=7, backoffScaleFactor=2), 2, 42,
                 id="linear-third"),
    pytest.param(dict(retryLogic="EXPONENTIAL_BACKOFF", retryDelaySeconds=1), 10, 1024, id="exponential-10"),
    pytest.param(dict(retryLogic="EXPONENTIAL_BACKOFF", retryDelaySeconds=1, maxRetryDelaySeconds=60), 10, 60,
                 id="exponential-capped"),
    pytest.param(dict(retryLogic="EXPONENTIAL_BACKOFF", retryDelaySeconds=1), 500, 2**32, id="huge-exponent-bounded"),
    pytest.param(dict(retryLogic="EXPONENTIAL_BACKOFF", retryDelaySeconds=4, maxRetryDelaySeconds=0), 3, 32,
                 id="zero-cap-means-none"),
])
def test_retry_delay_formula(policy: dict[str, Any], n: int, expected: int) -> None:
    assert retry_delay_seconds(TaskDef.model_validate({"name": "t", **policy}), n) == expected


def test_retry_wakes_at_the_exact_instant_the_delay_ends() -> None:
    sim = Sim(workflow_def([simple("a")]), [task_def("work", retryCount=1, retryDelaySeconds=42)],
              results={"a": [fail(runs_ms=300), ok()]})
    sim.run(until=lambda s: len(s.attempts("a")) == 2)
    assert sim.decisions[-1].wakeAt == T0 + 300 + 42_000
    sim.run()
    assert dispatch_times(sim, "a") == [0, 42_300]


def test_a_retry_is_a_new_attempt_and_the_failed_one_stays_failed() -> None:
    sim = Sim(workflow_def([simple("a")]), [task_def("work", retryCount=2)],
              results={"a": [fail("first"), fail("second"), ok({"v": 3})]})
    sim.run()
    attempts = sim.attempts("a")
    assert [(t.status, t.retryCount, t.retried) for t in attempts] == [
        (TaskStatus.FAILED, 0, True), (TaskStatus.FAILED, 1, True), (TaskStatus.COMPLETED, 2, False)]
    assert len({t.taskId for t in attempts}) == 3
    assert attempts[1].retriedTaskId == attempts[0].taskId and attempts[2].retriedTaskId == attempts[1].taskId
    assert [t.reasonForIncompletion for t in attempts[:2]] == ["first", "second"]
    assert [a.retryCount for a in sim.actions(StartTask) if isinstance(a, StartTask)] == [0, 1, 2]
    assert sim.workflow.status is WorkflowStatus.COMPLETED and sim.workflow.output == {"v": 3}


def test_retries_exhausted_fail_the_workflow() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b")]), [task_def("work", retryCount=2)], results={"a": fail("no")})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.FAILED
    assert len(sim.attempts("a")) == 3
    assert "b" not in sim.refs()
    assert workflow.failedTaskId == sim.attempts("a")[-1].taskId


@pytest.mark.parametrize(("task_level", "attempts"), [
    pytest.param(None, 3, id="task-def-count"),
    pytest.param(0, 1, id="override-to-zero"),
    pytest.param(4, 5, id="override-up"),
])
def test_task_level_retry_count_overrides_the_task_def(task_level: int | None, attempts: int) -> None:
    extra: dict[str, Any] = {} if task_level is None else {"retryCount": task_level}
    sim = Sim(workflow_def([simple("a", **extra)]), [task_def("work", retryCount=2)], results={"a": fail()})
    sim.run()
    assert len(sim.attempts("a")) == attempts


def test_allowed_retries_prefers_the_workflow_task() -> None:
    definition = TaskDef(name="t", retryCount=3)
    assert allowed_retries(definition, None) == 3
    assert allowed_retries(definition, WorkflowTask(name="t", taskReferenceName="r", retryCount=1)) == 1


def test_retry_resolves_inputs_again() -> None:
    fork = system("fork", "FORK_JOIN", forkTasks=[[simple("a", inputs={"seen": "${b.output.v}"})], [simple("b")]])
    sim = Sim(workflow_def([fork, system("join", "JOIN", joinOn=["a", "b"])]),
              [task_def("work", retryCount=1, retryDelaySeconds=5)],
              results={"a": [fail(runs_ms=100), ok()], "b": ok({"v": "ready"}, runs_ms=50)})
    sim.run()
    # Resolved when the retry is scheduled (as Conductor's retry() does): b finished in between.
    assert [t.inputData for t in sim.attempts("a")] == [{"seen": None}, {"seen": "ready"}]


@pytest.mark.parametrize("result", [
    pytest.param(terminal_error(), id="failed-with-terminal-error"),
])
def test_terminal_errors_are_not_retried(result: Any) -> None:
    sim = Sim(workflow_def([simple("a")]), [task_def("work", retryCount=5)], results={"a": result})
    assert sim.run().status is WorkflowStatus.FAILED
    assert len(sim.attempts("a")) == 1


def test_worker_reported_timeout_is_retried_under_retry_policy() -> None:
    sim = Sim(workflow_def([simple("a")]), [task_def("work", retryCount=1, timeoutPolicy="RETRY")],
              results={"a": [timed_out(), ok()]})
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert [t.status for t in sim.attempts("a")] == [TaskStatus.TIMED_OUT, TaskStatus.COMPLETED]


def test_total_timeout_stops_further_retries() -> None:
    sim = Sim(workflow_def([simple("a")]),
              [task_def("work", retryCount=10, retryDelaySeconds=10, totalTimeoutSeconds=25)],
              results={"a": fail(runs_ms=1000)})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.FAILED
    # Attempts fail at 1 s, 12 s, 23 s (all within 25 s of the first), and 34 s: no retry after that.
    assert dispatch_times(sim, "a") == [0, 11_000, 22_000, 33_000]


def test_optional_task_failure_becomes_completed_with_errors_and_the_flow_goes_on() -> None:
    sim = Sim(workflow_def([simple("a", optional=True), simple("b", inputs={"a_status": "${a.status}"})]),
              [task_def("work")], results={"a": fail("meh")})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    assert sim.task("a").status is TaskStatus.COMPLETED_WITH_ERRORS
    assert sim.task("a").reasonForIncompletion == "meh"
    assert sim.task("b").inputData == {"a_status": "COMPLETED_WITH_ERRORS"}


def test_optional_task_is_retried_before_it_gives_up() -> None:
    sim = Sim(workflow_def([simple("a", optional=True), simple("b")]), [task_def("work", retryCount=2)],
              results={"a": fail()})
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert [t.status for t in sim.attempts("a")] == [TaskStatus.FAILED, TaskStatus.FAILED,
                                                     TaskStatus.COMPLETED_WITH_ERRORS]


def test_optional_terminal_error_is_also_tolerated() -> None:
    sim = Sim(workflow_def([simple("a", optional=True), simple("b")]), [task_def("work")],
              results={"a": terminal_error()})
    assert sim.run().status is WorkflowStatus.COMPLETED


def test_optional_wins_over_permissive() -> None:
    sim = Sim(workflow_def([simple("a", optional=True, permissive=True), simple("b")]), [task_def("work")],
              results={"a": fail()})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    assert sim.task("a").status is TaskStatus.COMPLETED_WITH_ERRORS
    assert workflow.failedReferenceTaskNames == []


def test_permissive_task_stays_failed_the_flow_continues_and_the_workflow_fails_at_the_end() -> None:
    sim = Sim(workflow_def([simple("a", permissive=True), simple("b"), simple("c")]), [task_def("work")],
              results={"a": fail("tolerated for now")})
    workflow = sim.run()
    assert sim.started_refs() == ["a", "b", "c"]
    assert sim.task("a").status is TaskStatus.FAILED
    assert sim.task("c").status is TaskStatus.COMPLETED
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.reasonForIncompletion == failed_by(sim.task("a"), "FAILED", "tolerated for now")
    assert workflow.failedReferenceTaskNames == ["a"]
    assert workflow.endTime == T0 + 3000


def test_permissive_task_in_a_fork_lets_siblings_finish_then_fails_at_the_join() -> None:
    fork = system("fork", "FORK_JOIN", forkTasks=[[simple("a", permissive=True)], [simple("b1"), simple("b2")]])
    sim = Sim(workflow_def([fork, system("join", "JOIN", joinOn=["a", "b2"]), simple("after")]),
              [task_def("work")], results={"a": fail("branch a broke", runs_ms=100)})
    workflow = sim.run()
    assert sim.task("b2").status is TaskStatus.COMPLETED
    assert sim.task("join").status is TaskStatus.FAILED  # as Conductor's Join: FAILED, not terminal
    assert "branch a broke" in (sim.task("join").reasonForIncompletion or "")
    assert "after" not in sim.refs()
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.endTime == T0 + 2000


def test_permissive_task_is_retried_first() -> None:
    sim = Sim(workflow_def([simple("a", permissive=True), simple("b")]), [task_def("work", retryCount=1)],
              results={"a": [fail(), ok()]})
    assert sim.run().status is WorkflowStatus.COMPLETED


def test_non_permissive_failure_in_a_fork_cancels_the_siblings() -> None:
    fork = system("fork", "FORK_JOIN", forkTasks=[[simple("a")], [simple("b")]])
    sim = Sim(workflow_def([fork, system("join", "JOIN", joinOn=["a", "b"])]), [task_def("work")],
              results={"a": fail(runs_ms=100), "b": never()})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.FAILED
    assert sim.task("b").status is TaskStatus.CANCELED
    assert sim.task("join").status is TaskStatus.CANCELED
    assert [a.referenceTaskName for a in sim.actions(CancelTask) if isinstance(a, CancelTask)] == ["b"]


def test_flow_control_tasks_are_never_retried() -> None:
    switch = system("sw", "SWITCH", evaluatorType="javascript", expression="undefinedThing.x", retryCount=3,
                    decisionCases={})
    sim = Sim(workflow_def([switch]), [])
    assert sim.run().status is WorkflowStatus.FAILED
    assert len(sim.attempts("sw")) == 1


def test_http_task_retries_per_its_task_def() -> None:
    http = system("call", "HTTP", {"http_request": {"uri": "http://x", "method": "GET"}})
    http["name"] = "call_api"
    sim = Sim(workflow_def([http]), [task_def("call_api", retryCount=1, retryDelaySeconds=2)],
              results={"call": [fail("503"), ok({"response": {"statusCode": 200}})]})
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert [t.status for t in sim.attempts("call")] == [TaskStatus.FAILED, TaskStatus.COMPLETED]
    assert [a.kind for a in sim.actions()] == ["call_http", "call_http"]


def test_system_task_without_task_def_is_not_retried() -> None:
    http = system("call", "HTTP", {"http_request": {"uri": "http://x"}})
    sim = Sim(workflow_def([http]), [], results={"call": fail()})
    assert sim.run().status is WorkflowStatus.FAILED
    assert len(sim.attempts("call")) == 1


def test_dynamically_forked_task_retry_keeps_its_fork_input() -> None:
    fork = system("df", "FORK_JOIN_DYNAMIC", {"forkTaskName": "work", "forkTaskInputs": [{"n": 1}, {"n": 2}]})
    sim = Sim(workflow_def([fork, system("join", "JOIN")]), [task_def("work", retryCount=1)],
              results={"_work_1": [fail(), ok()]})
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert [t.inputData for t in sim.attempts("_work_1")] == [{"n": 2, "__index": 1}] * 2


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
