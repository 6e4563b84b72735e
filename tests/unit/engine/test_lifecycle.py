"""The workflow's life (engine/lifecycle.py): timeouts, completion, its output, the end and the failureWorkflow.

Timeouts: when they fire, what each policy does, and that the engine wakes exactly then.

Kubernetes mapping (docs/architecture.md): ``timeoutSeconds`` counts from the attempt's start (its pod running),
``pollTimeoutSeconds`` from the hand-out to the driver (a pod that never starts), ``responseTimeoutSeconds``
from the last heartbeat, and only once the worker has sent one.
"""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine import CancelTask, Operation, OperationKind, TaskStatus, TaskUpdate, WorkflowStatus
from tests.unit.engine.flows import WORK, run
from tests.unit.engine.harness import (
    T0,
    Sim,
    blueprint,
    fail,
    failed_by,
    never,
    never_started,
    ok,
    simple,
    start,
    step,
    system,
    task_def,
    terminal_error,
    workflow_def,
)


def cancels(sim: Sim) -> list[CancelTask]:
    return [a for a in sim.actions(CancelTask) if isinstance(a, CancelTask)]


def test_timeout_with_retry_policy_times_out_the_attempt_and_retries() -> None:
    sim = Sim(workflow_def([simple("a")]),
              [task_def("work", timeoutSeconds=5, timeoutPolicy="RETRY", retryCount=1, retryDelaySeconds=1)],
              results={"a": [never(), ok({"v": 1})]})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    first, second = sim.attempts("a")
    assert first.status is TaskStatus.TIMED_OUT and first.retried
    assert first.endTime == T0 + 10 + 5000  # started at +10 ms
    assert first.reasonForIncompletion == ("Task timed out after 5 seconds. Timeout configured as 5 seconds. "
                                           "Timeout policy configured to RETRY")
    assert [c.taskId for c in cancels(sim)] == [first.taskId]
    assert second.retryCount == 1


def test_retry_policy_timeout_that_exhausts_retries_times_the_workflow_out() -> None:
    sim = Sim(workflow_def([simple("a")]), [task_def("work", timeoutSeconds=5, timeoutPolicy="RETRY", retryCount=2)],
              results={"a": never()})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.TIMED_OUT
    assert [t.status for t in sim.attempts("a")] == [TaskStatus.TIMED_OUT] * 3
    assert len(cancels(sim)) == 3


def test_time_out_wf_policy_times_the_workflow_out_without_retrying() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b")]),
              [task_def("work", timeoutSeconds=5, timeoutPolicy="TIME_OUT_WF", retryCount=3)],
              results={"a": never()})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.TIMED_OUT
    assert len(sim.attempts("a")) == 1
    assert workflow.endTime == T0 + 5010
    assert "Timeout policy configured to TIME_OUT_WF" in (workflow.reasonForIncompletion or "")
    assert [c.referenceTaskName for c in cancels(sim)] == ["a"]


def test_time_out_wf_wins_over_optional() -> None:
    sim = Sim(workflow_def([simple("a", optional=True), simple("b")]),
              [task_def("work", timeoutSeconds=5, timeoutPolicy="TIME_OUT_WF")], results={"a": never()})
    assert sim.run().status is WorkflowStatus.TIMED_OUT


def test_retry_policy_timeout_of_an_optional_task_lets_the_flow_go_on() -> None:
    sim = Sim(workflow_def([simple("a", optional=True), simple("b")]),
              [task_def("work", timeoutSeconds=5, timeoutPolicy="RETRY")], results={"a": never()})
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert sim.task("a").status is TaskStatus.COMPLETED_WITH_ERRORS


def test_alert_only_timeout_lets_the_attempt_run_on() -> None:
    sim = Sim(workflow_def([simple("a")]), [task_def("work", timeoutSeconds=5, timeoutPolicy="ALERT_ONLY")],
              results={"a": ok(runs_ms=60_000)})
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert sim.task("a").status is TaskStatus.COMPLETED
    assert cancels(sim) == []
    assert all(d.wakeAt is None for d in sim.decisions)


@pytest.mark.parametrize(("policy", "expected"), [
    pytest.param(dict(timeoutSeconds=5, timeoutPolicy="RETRY"), T0 + 10 + 5000, id="timeout-from-start"),
    pytest.param(dict(pollTimeoutSeconds=3, timeoutPolicy="RETRY"), None, id="poll-ends-once-started"),
    pytest.param(dict(timeoutSeconds=5, pollTimeoutSeconds=3, timeoutPolicy="TIME_OUT_WF"), T0 + 10 + 5000,
                 id="timeout-after-poll"),
    pytest.param(dict(timeoutSeconds=0, responseTimeoutSeconds=2), None, id="response-needs-a-heartbeat"),
])
def test_wake_up_is_the_exact_deadline_of_a_running_attempt(policy: dict[str, Any], expected: int | None) -> None:
    sim = Sim(workflow_def([simple("a")]), [task_def("work", **policy)], results={"a": never()})
    sim.run(until=lambda s: bool(s.refs()) and s.task("a").status is TaskStatus.IN_PROGRESS)
    assert sim.decisions[-1].wakeAt == expected


def test_deadline_fires_at_the_instant_not_a_millisecond_earlier() -> None:
    bp = blueprint(workflow_def([simple("a")]), [task_def("work", timeoutSeconds=5, timeoutPolicy="TIME_OUT_WF")])
    first = start(bp)
    task_id = first.workflow.tasks[0].taskId
    running = step(bp, first.workflow, [TaskUpdate(taskId=task_id, started=True)], now=T0 + 100)
    assert running.wakeAt == T0 + 5100
    before = step(bp, running.workflow, now=T0 + 5099)
    assert before.workflow.status is WorkflowStatus.RUNNING and not before.changed
    at = step(bp, before.workflow, now=T0 + 5100)
    assert at.workflow.status is WorkflowStatus.TIMED_OUT


def test_poll_timeout_fires_when_the_attempt_never_starts() -> None:
    sim = Sim(workflow_def([simple("a")]),
              [task_def("work", pollTimeoutSeconds=30, timeoutPolicy="RETRY", retryCount=1)],
              results={"a": [never_started(), ok()]})
    sim.run(until=lambda s: bool(s.refs()))
    assert sim.decisions[-1].wakeAt == T0 + 30_000
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    first = sim.attempts("a")[0]
    assert first.status is TaskStatus.TIMED_OUT and first.endTime == T0 + 30_000
    assert "pollTimeoutSeconds" in (first.reasonForIncompletion or "")
    assert [c.taskId for c in cancels(sim)] == [first.taskId]


def test_poll_timeout_under_time_out_wf_times_the_workflow_out() -> None:
    sim = Sim(workflow_def([simple("a")]), [task_def("work", pollTimeoutSeconds=30, timeoutPolicy="TIME_OUT_WF")],
              results={"a": never_started()})
    assert sim.run().status is WorkflowStatus.TIMED_OUT


def test_poll_timeout_under_alert_only_does_not_time_out() -> None:
    sim = Sim(workflow_def([simple("a")]), [task_def("work", pollTimeoutSeconds=30, timeoutPolicy="ALERT_ONLY")],
              results={"a": never_started()})
    workflow = sim.run(until_time=T0 + 600_000)
    assert workflow.status is WorkflowStatus.RUNNING
    assert sim.task("a").status is TaskStatus.SCHEDULED


def test_poll_timeout_does_not_count_a_start_delay() -> None:
    sim = Sim(workflow_def([simple("a", startDelay=60)]),
              [task_def("work", pollTimeoutSeconds=30, timeoutPolicy="TIME_OUT_WF")], results={"a": ok()})
    assert sim.run().status is WorkflowStatus.COMPLETED


def test_response_timeout_applies_only_after_a_heartbeat() -> None:
    no_heartbeat = Sim(workflow_def([simple("a")]), [task_def("work", responseTimeoutSeconds=2)],
                       results={"a": ok(runs_ms=60_000)})
    assert no_heartbeat.run().status is WorkflowStatus.COMPLETED
    silent = Sim(workflow_def([simple("a")]), [task_def("work", responseTimeoutSeconds=2)],
                 results={"a": never(heartbeats_ms=(1000,))})
    workflow = silent.run()
    assert workflow.status is WorkflowStatus.TIMED_OUT
    assert silent.task("a").endTime == T0 + 3000
    assert "responseTimeoutSeconds" in (silent.task("a").reasonForIncompletion or "")


def test_each_heartbeat_pushes_the_response_deadline() -> None:
    sim = Sim(workflow_def([simple("a")]), [task_def("work", responseTimeoutSeconds=2)],
              results={"a": never(heartbeats_ms=(1000, 2500, 4000))})
    sim.run()
    assert sim.task("a").endTime == T0 + 6000


def test_response_timeout_is_retried_whatever_the_timeout_policy() -> None:
    sim = Sim(workflow_def([simple("a")]),
              [task_def("work", responseTimeoutSeconds=2, timeoutPolicy="TIME_OUT_WF", retryCount=1)],
              results={"a": [never(heartbeats_ms=(100,)), ok()]})
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert [t.status for t in sim.attempts("a")] == [TaskStatus.TIMED_OUT, TaskStatus.COMPLETED]


def test_task_timers_wait_while_the_workflow_is_paused() -> None:
    sim = Sim(workflow_def([simple("a")]),
              [task_def("work", timeoutSeconds=5, timeoutPolicy="RETRY", retryCount=1, retryDelaySeconds=0)],
              results={"a": [never(), ok()]})
    sim.operate(OperationKind.PAUSE, at=T0 + 1000)
    sim.run(until_time=T0 + 60_000)
    assert sim.workflow.status is WorkflowStatus.PAUSED
    assert sim.task("a").status is TaskStatus.IN_PROGRESS
    assert sim.decisions[-1].wakeAt is None
    sim.operate(OperationKind.RESUME)
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert sim.attempts("a")[0].endTime == T0 + 60_000


def test_workflow_timeout_time_out_wf_cancels_running_tasks_and_sub_workflows() -> None:
    fork = system("fork", "FORK_JOIN", forkTasks=[
        [simple("a")],
        [{"name": "child", "taskReferenceName": "sub", "type": "SUB_WORKFLOW",
          "subWorkflowParam": {"name": "child", "version": 1}}]])
    child = workflow_def([simple("inner")], name="child")
    sim = Sim(workflow_def([fork, system("join", "JOIN", joinOn=["a", "sub"])], timeoutSeconds=10,
                           timeoutPolicy="TIME_OUT_WF"),
              [task_def("work")], results={"a": never(), "inner": never()}, children={"child": {"definition": child}})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.TIMED_OUT
    assert workflow.endTime == T0 + 10_000
    assert workflow.reasonForIncompletion == ("Workflow timed out after 10 seconds. Timeout configured as 10 "
                                              "seconds. Timeout policy configured to TIME_OUT_WF")
    canceled = {c.referenceTaskName: c for c in cancels(sim) if c.taskId in {t.taskId for t in workflow.tasks}}
    assert set(canceled) == {"a", "sub"}
    assert canceled["sub"].subWorkflowId == sim.child("sub").run_id
    assert sim.child("sub").workflow.status is WorkflowStatus.TERMINATED
    assert {t.referenceTaskName: t.status for t in workflow.tasks}["join"] is TaskStatus.CANCELED


def test_workflow_timeout_wakes_exactly_at_the_deadline() -> None:
    bp = blueprint(workflow_def([simple("a")], timeoutSeconds=90, timeoutPolicy="TIME_OUT_WF"), [task_def("work")])
    assert start(bp).wakeAt == T0 + 90_000


def test_workflow_timeout_alert_only_reports_once_and_the_workflow_goes_on() -> None:
    sim = Sim(workflow_def([simple("a")], timeoutSeconds=10, timeoutPolicy="ALERT_ONLY"), [task_def("work")],
              results={"a": ok(runs_ms=30_000)})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    alerts = [m for d in sim.decisions for m in d.messages if "ALERT_ONLY" in m]
    assert len(alerts) == 1
    assert workflow.timeoutAlerted
    assert cancels(sim) == []


def test_workflow_timeout_counts_from_the_last_retry() -> None:
    sim = Sim(workflow_def([simple("a")], timeoutSeconds=10, timeoutPolicy="TIME_OUT_WF"), [task_def("work")],
              results={"a": [fail(runs_ms=1000), ok(runs_ms=8000)]})
    assert sim.run().status is WorkflowStatus.FAILED
    sim.observe(Operation(op=OperationKind.RETRY, nonce="r1"), at=T0 + 20_000)
    assert sim.run().status is WorkflowStatus.COMPLETED


def test_workflow_timeout_fires_while_paused() -> None:
    sim = Sim(workflow_def([simple("a")], timeoutSeconds=10, timeoutPolicy="TIME_OUT_WF"), [task_def("work")],
              results={"a": never()})
    sim.operate(OperationKind.PAUSE, at=T0 + 1000)
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.TIMED_OUT
    assert workflow.endTime == T0 + 10_000


def test_failure_workflow_gets_the_input_and_the_failure() -> None:
    sim = run([simple("a"), simple("b")], {"b": fail("disk full")}, input={"file": "x.jpg"},
              failureWorkflow="cleanup", defs=[WORK])
    starts = [a for _, a in sim.started_workflows]
    assert len(starts) == 1
    action = starts[0]
    assert (action.name, action.purpose) == ("cleanup", "failureWorkflow")
    assert action.input["file"] == "x.jpg"
    assert action.input["workflowId"] == "wf-1"
    assert action.input["reason"] == failed_by(sim.task("b"), "FAILED", "disk full")
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


def test_workflow_output_is_the_last_task_output_without_output_parameters() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b")]), [WORK],
              results={"a": ok({"first": 1}), "b": ok({"second": 2})})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.output == {"second": 2}


def test_workflow_output_parameters_are_resolved_at_the_end() -> None:
    definition = workflow_def([simple("a"), simple("b")],
                              outputParameters={"from_a": "${a.output.v}", "in": "${workflow.input.x}"})
    sim = Sim(definition, [WORK], input={"x": "X"}, results={"a": ok({"v": 1}), "b": ok({"v": 2})})
    assert sim.run().output == {"from_a": 1, "in": "X"}


def test_failed_workflow_still_computes_output_parameters() -> None:
    definition = workflow_def([simple("a"), simple("b")], outputParameters={"a": "${a.output.v}",
                                                                           "b": "${b.output.partial}"})
    sim = Sim(definition, [WORK], results={"a": ok({"v": 1}), "b": fail("broken", output={"partial": "half"})})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.output == {"a": 1, "b": "half"}


def test_failed_workflow_without_output_parameters_outputs_the_failed_task_output() -> None:
    sim = Sim(workflow_def([simple("a"), simple("b")]), [WORK],
              results={"a": ok({"v": 1}), "b": fail(output={"error": "disk full"})})
    assert sim.run().output == {"error": "disk full"}


def test_failed_workflow_records_reason_and_failed_task() -> None:
    sim = Sim(workflow_def([simple("a")]), [WORK], results={"a": terminal_error("image is not a picture")})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.reasonForIncompletion == failed_by(sim.task("a"), "FAILED_WITH_TERMINAL_ERROR",
                                                       "image is not a picture")
    assert workflow.failedReferenceTaskNames == ["a"]
    assert workflow.failedTaskId == sim.task("a").taskId
    assert workflow.endTime == T0 + 1000


def test_completed_workflow_has_end_time_and_no_wake_up() -> None:
    sim = Sim(workflow_def([simple("a")]), [WORK])
    workflow = sim.run()
    assert workflow.endTime == T0 + 1000
    assert sim.decisions[-1].wakeAt is None


def test_empty_workflow_completes_at_once() -> None:
    decision = start(blueprint(workflow_def([]), []))
    assert decision.workflow.status is WorkflowStatus.COMPLETED
    assert decision.actions == ()
