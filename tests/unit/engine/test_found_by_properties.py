"""Every example the hypothesis properties ever found, as an explicit test (issue 9, item 10).

The properties (``test_properties.py``) explore; what they found must stay found on every run, whatever
the profile: each case below names the commit whose message recorded it. (The JavaScript NUL round trip
is in ``tests/unit/test_scripting.py``.)
"""

from __future__ import annotations

from kondukt.engine import CancelTask, OperationKind, StartTask, StartWorkflow, TaskStatus, WorkflowStatus
from tests.unit.engine.flows import WORK, fork, join, run
from tests.unit.engine.harness import T0, Sim, fail, never, ok, simple, system, task_def, workflow_def


def test_terminate_without_a_reason_gets_conductors_default_reason() -> None:
    # b711876: a TERMINATE without terminationReason left reasonForIncompletion empty.
    sim = run([system("t", "TERMINATE", {"terminationStatus": "FAILED"})])
    assert sim.workflow.reasonForIncompletion == f"Workflow is FAILED by TERMINATE task: {sim.task('t').taskId}"


def test_ending_a_workflow_cancels_running_attempts_in_task_order_also_after_a_round_trip() -> None:
    # b711876: cancels followed a set's order, which differed between memory and the state read back.
    branches = [[simple(f"r{i}")] for i in range(6)]
    spec = [system("f", "FORK_JOIN", forkTasks=[*branches, [simple("bad")]]),
            join("j", *[f"r{i}" for i in range(6)], "bad")]
    results = {**{f"r{i}": never() for i in range(6)}, "bad": fail("broken")}
    for reread in (False, True):
        sim = Sim(workflow_def(spec), [WORK], results=results, reread=reread)
        sim.run()
        cancels = [a.referenceTaskName for a in sim.actions(CancelTask) if isinstance(a, CancelTask)]
        assert cancels == [f"r{i}" for i in range(6)], reread


def test_a_rerun_workflow_that_fails_again_starts_a_new_failure_workflow() -> None:
    # b711876: the failureWorkflow requestId collided when a rerun workflow failed again.
    sim = Sim(workflow_def([simple("a")], failureWorkflow="cleanup"), [WORK], results={"a": fail("no")})
    sim.run()
    sim.operate(OperationKind.RERUN, taskReferenceName="a")
    sim.run()
    request_ids = [a.requestId for _, a in sim.started_workflows]
    assert len(request_ids) == 2 and len(set(request_ids)) == 2
    assert all(isinstance(a, StartWorkflow) for _, a in sim.started_workflows)


def test_rate_limit_holds_when_the_state_is_read_back_after_every_decision() -> None:
    # b711876: dispatch times kept only in memory let a re-read state start a rate-limited task at once.
    branches = [[simple(f"t{i}")] for i in range(4)]
    sim = Sim(workflow_def([system("f", "FORK_JOIN", forkTasks=branches), join("j", "t0", "t1", "t2", "t3")]),
              [task_def("work", rateLimitPerFrequency=2, rateLimitFrequencyInSeconds=10)],
              results={f"t{i}": ok(runs_ms=100) for i in range(4)}, reread=True,
              check_redecide=False)  # a re-read state estimates dispatch times from start times (never earlier)
    assert sim.run().status is WorkflowStatus.COMPLETED
    starts = sorted(e.at - T0 for e in sim.log if isinstance(e.action, StartTask))
    assert starts[:2] == [0, 0] and all(10_000 <= at < 20_000 for at in starts[2:]), starts


def test_a_fork_without_its_join_fails_and_a_retry_does_not_complete_it_without_branches() -> None:
    # b711876: a fork that failed while being scheduled was returned stale and a retry COMPLETED the workflow.
    sim = Sim(workflow_def([fork("f", [simple("a")]), simple("after")]), [WORK])
    assert sim.run().status is WorkflowStatus.FAILED
    assert sim.task("f").status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
    sim.operate(OperationKind.RETRY)
    assert sim.run().status is WorkflowStatus.FAILED
    assert "a" not in sim.refs()
