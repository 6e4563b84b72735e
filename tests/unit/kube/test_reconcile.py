"""The reconcile against an in-memory API server and the real engine.

The in-memory API server (``FakeCluster``) and the ``Harness`` that drives the reconcile against it
are in :mod:`tests.unit.kube.harness`.

What is checked: the happy path through Jobs and termination messages, kill-safety (a crash between
the actions and the status write loses nothing and creates no second Job), optimistic concurrency,
operations applied exactly once, namespace-wide concurrency limits, invalid and waiting workflows.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from kondukt.engine.models import TaskStatus
from kondukt.kube import cache
from kondukt.kube import resources as r
from kondukt.kube.builders import JobOptions
from kondukt.kube.events import EventRecorder
from kondukt.kube.kubeapi import Conflict, KubeClient, NotLeader, TransientApiError
from kondukt.kube.metrics import Metrics
from kondukt.kube.reconcile import Reconciler, ReconcileSettings
from kondukt.kube.shards import acting_shard
from kondukt.kube.status import read_status
from kondukt.scriptpool import ScriptLimits
from tests.bigvalues import incompressible_inline
from tests.unit.kube.harness import (
    ECHO,
    GROUP_PATH,
    Crash,
    Harness,
    chain,
    run_of,
)

# ------------------------------------------------------------------------------------------ harness


@pytest.fixture
def harness() -> Harness:
    h = Harness()
    h.cluster.apply(ECHO)
    h.cluster.apply(chain())
    return h


# -------------------------------------------------------------------------------------------- tests
async def test_a_chain_runs_through_jobs_and_termination_messages(harness: Harness) -> None:
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    first = harness.only_new_job(set())
    assert harness.status("run")["phase"] == "RUNNING"
    assert harness.tasks("run")[0]["jobName"] == first
    harness.cluster.start_pod(first)
    await harness.reconcile("run")
    assert harness.tasks("run")[0]["status"] == "IN_PROGRESS"
    harness.cluster.echo(first)
    await harness.reconcile("run")
    second = harness.only_new_job({first})
    harness.cluster.echo(second)
    await harness.reconcile("run")
    status = harness.status("run")
    assert status["phase"] == "COMPLETED" and status["output"] == {"v": 7} and status["progress"] == "2/2"
    reasons = [e["reason"] for e in harness.reconciler.events._queue._queue]  # type: ignore[attr-defined]
    assert reasons == ["WorkflowRunning", "WorkflowCompleted"], "a run without trouble: its start and its end"


async def test_nothing_changes_nothing_is_written(harness: Harness) -> None:
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    puts = sum(1 for method, _ in harness.cluster.calls if method == "PUT")
    await harness.reconcile("run")
    await harness.reconcile("run")
    assert sum(1 for method, _ in harness.cluster.calls if method == "PUT") == puts


@pytest.mark.parametrize("crash_at", ["PUT", "second-job"], ids=["before-status-write", "between-jobs"])
async def test_a_crash_loses_nothing_and_runs_no_attempt_twice(harness: Harness, crash_at: str) -> None:
    """Kill the operator between its actions and its status write; a new process finishes the run."""
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    first = harness.only_new_job(set())
    harness.cluster.echo(first)
    if crash_at == "PUT":
        harness.cluster.crash_on = ("PUT", "/apis/kondukt.io")
    else:
        harness.cluster.crash_on = ("POST", "/apis/batch/v1")
    with pytest.raises(Crash):
        await harness.reconcile("run")
    harness.reconciler = harness.new_reconciler()  # the restarted operator
    await harness.reconcile("run")
    await harness.reconcile("run")
    second = harness.only_new_job({first})
    harness.cluster.echo(second)
    harness.reconciler = harness.new_reconciler()
    await harness.reconcile("run")
    assert harness.status("run")["phase"] == "COMPLETED"
    assert sorted(set(harness.cluster.created_jobs)) == sorted(harness.cluster.created_jobs), "a Job created twice"
    assert len(harness.cluster.jobs()) == 2


async def test_a_stale_resource_version_is_a_conflict_not_a_lost_update(harness: Harness) -> None:
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    first = harness.only_new_job(set())
    harness.cluster.echo(first)
    harness.reconciler.observe(copy.deepcopy(harness.cluster.workflow("run")))
    harness.cluster.edit_workflow("run", annotations={"someone": "else"})  # the cache is now behind
    with pytest.raises(Conflict):
        await harness.reconcile("run", watched=False)
    assert sum(1 for method, path in harness.cluster.calls if method == "GET" and path.endswith("/run")) == 0
    await harness.reconciler.run(("ns", "run"))  # the conflict drops the cached object ...
    await harness.reconcile("run", watched=False)  # ... so this reconcile reads it fresh
    assert any(method == "GET" and path.endswith("/workflows/run") for method, path in harness.cluster.calls)
    assert len(harness.cluster.jobs()) == 2 and harness.tasks("run")[0]["status"] == "COMPLETED"


async def test_failures_retry_with_a_new_attempt_and_job(harness: Harness) -> None:
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    first = harness.only_new_job(set())
    harness.cluster.finish(first, exit_code=2, message="Traceback: boom")
    await harness.reconcile("run")
    retry = harness.only_new_job({first})
    tasks = harness.tasks("run")
    assert [t["status"] for t in tasks] == ["FAILED", "SCHEDULED"] and tasks[1]["retryCount"] == 1
    assert "code 2" in tasks[0]["reasonForIncompletion"] and "boom" in tasks[0]["reasonForIncompletion"]
    harness.cluster.finish(retry, exit_code=1)
    await harness.reconcile("run")
    status = harness.status("run")
    assert status["phase"] == "FAILED" and "code 1" in status["reasonForIncompletion"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Failed"]["status"] == "True"
    events = [(e["type"], e["reason"]) for e in harness.reconciler.events._queue._queue]  # type: ignore[attr-defined]
    assert events == [("Normal", "WorkflowRunning"), ("Warning", "TaskFailed"), ("Normal", "TaskRetried"),
                      ("Warning", "TaskFailed"), ("Warning", "WorkflowFailed")], "what a person needs to see"


async def test_a_deadline_exceeded_job_times_the_task_out(harness: Harness) -> None:
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    harness.cluster.fail_job(harness.only_new_job(set()), "DeadlineExceeded")
    await harness.reconcile("run")
    assert harness.tasks("run")[0]["status"] == "TIMED_OUT"


async def test_a_deleted_job_fails_its_attempt_after_the_grace_period(harness: Harness) -> None:
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    first = harness.only_new_job(set())
    await harness.cluster.delete(KubeClient.job_path("ns", first), "job")
    outcome = await harness.reconcile("run")
    assert harness.tasks("run")[0]["status"] == "SCHEDULED", "within the grace period nothing is decided"
    assert outcome.wake_at_ms is not None
    harness.clock.ms += 31_000
    await harness.reconcile("run")
    assert "disappeared" in harness.tasks("run")[0]["reasonForIncompletion"]


async def test_a_job_the_cache_does_not_show_yet_is_asked_about_once_per_grace_period(harness: Harness) -> None:
    """A Job created late in a big fork, or a lagging watch: after the grace period the API is asked, and a
    Job it finds is not asked about again in every reconcile until the watch delivers it."""
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    first = harness.only_new_job(set())
    observer = harness.reconciler.observer
    indices = dict(observer.view._indices)  # type: ignore[attr-defined]
    observer.view = cache.ClusterView({**indices, cache.JOBS_INDEX: {}, cache.PODS_INDEX: {}})  # the lagging cache
    job_gets = lambda: sum(1 for method, path in harness.cluster.calls  # noqa: E731
                           if method == "GET" and path.endswith(f"/jobs/{first}"))
    harness.clock.ms += 31_000
    outcome = await harness.reconcile("run")
    assert job_gets() == 1 and harness.tasks("run")[0]["status"] == "SCHEDULED"
    assert outcome.wake_at_ms is not None, "it comes back to look again"
    for _ in range(3):
        harness.clock.ms += 1_000
        await harness.reconcile("run")
    assert job_gets() == 1, "found a moment ago: not asked again"
    harness.clock.ms += 31_000
    await harness.reconcile("run")
    assert job_gets() == 2 and harness.tasks("run")[0]["status"] == "SCHEDULED"
    await harness.cluster.delete(KubeClient.job_path("ns", first), "job")
    harness.clock.ms += 31_000
    await harness.reconcile("run")
    assert "disappeared" in harness.tasks("run")[0]["reasonForIncompletion"], "a Job really gone still fails it"


def fork_of(branches: int, name: str = "wide") -> dict[str, Any]:
    refs = [f"b{i}" for i in range(branches)]
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": name},
            "spec": {"name": name, "tasks": [
                {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN",
                 "forkTasks": [[{"name": "echo", "taskReferenceName": ref}] for ref in refs]},
                {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": refs}]}}


async def test_many_jobs_the_lagging_cache_does_not_show_cost_one_list_not_a_get_each(harness: Harness) -> None:
    """A big fork whose Job creates the watch has not delivered yet (the API server busy with their pods): past
    the grace period the reconcile asks with one LIST of the workflow's Jobs, names only, in pages — not one
    GET per Job, one after another (at 10,000 branches that held a reconcile for an hour while completions
    waited). A Job really gone still fails its attempt."""
    harness.cluster.apply(fork_of(30))
    harness.cluster.apply(run_of("run", definition="wide"))
    await harness.reconcile("run")
    created = set(harness.cluster.jobs())
    assert len(created) == 30
    other = harness.cluster.apply(run_of("other", definition="wide"))  # its Jobs are not the workflow's
    await harness.reconcile("other")
    observer = harness.reconciler.observer
    indices = dict(observer.view._indices)  # type: ignore[attr-defined]
    observer.view = cache.ClusterView({**indices, cache.JOBS_INDEX: {}, cache.PODS_INDEX: {}})  # the lagging cache
    job_gets = lambda: sum(1 for method, path in harness.cluster.calls  # noqa: E731
                           if method == "GET" and "/jobs/" in path)
    harness.clock.ms += 31_000
    outcome = await harness.reconcile("run")
    uid = harness.cluster.workflow("run")["metadata"]["uid"]
    assert job_gets() == 0
    assert harness.cluster.lists == [("/apis/batch/v1/namespaces/ns/jobs", f"{r.LABEL_WORKFLOW_UID}={uid}", 30)]
    assert {t["status"] for t in harness.tasks("run") if t["referenceTaskName"].startswith("b")} == {"SCHEDULED"}
    assert outcome.wake_at_ms is not None, "it comes back to look again"
    harness.clock.ms += 1_000
    await harness.reconcile("run")
    assert len(harness.cluster.lists) == 1, "found a moment ago: not asked again"
    gone = sorted(created)[:3]
    for job in gone:
        await harness.cluster.delete(KubeClient.job_path("ns", job), "job")
    harness.clock.ms += 31_000
    await harness.reconcile("run")
    assert job_gets() == 0 and len(harness.cluster.lists) == 2
    failed = [t for t in harness.tasks("run") if t["status"] == "FAILED"]
    assert sorted(t["jobName"] for t in failed) == gone
    assert all("disappeared" in t["reasonForIncompletion"] for t in failed)
    assert other["metadata"]["uid"] != uid


async def test_names_are_listed_in_pages_with_metadata_only() -> None:
    cluster = Harness().cluster
    for i in range(12):
        cluster.objects[f"/apis/batch/v1/namespaces/ns/jobs/j{i}"] = {
            "metadata": {"name": f"j{i}", "labels": {"k": "a" if i % 3 else "b"}}, "spec": {"big": "x" * 100}}
    assert await cluster.list_names("/apis/batch/v1/namespaces/ns/jobs", "jobs", label_selector="k=a", page=3) == {
        f"j{i}" for i in range(12) if i % 3}
    assert [n for _, _, n in cluster.lists] == [3, 3, 2]


async def test_suspend_and_resume_are_edges_of_spec_suspend(harness: Harness) -> None:
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    first = harness.only_new_job(set())
    harness.cluster.edit_workflow("run", spec={"suspend": True})
    await harness.reconcile("run")
    assert harness.status("run")["phase"] == "PAUSED"
    harness.cluster.echo(first)
    await harness.reconcile("run")
    assert set(harness.cluster.jobs()) == {first}, "nothing new starts while paused"
    assert harness.tasks("run")[0]["status"] == "COMPLETED", "running attempts finish"
    harness.cluster.edit_workflow("run", spec={"suspend": False})
    await harness.reconcile("run")
    assert harness.status("run")["phase"] == "RUNNING"
    harness.only_new_job({first})


async def test_an_annotation_pause_is_not_undone_by_an_unchanged_spec(harness: Harness) -> None:
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    harness.cluster.edit_workflow("run", annotations={"ops.kondukt.io/pause": json.dumps({"nonce": "p1"})})
    await harness.reconcile("run")
    await harness.reconcile("run")
    assert harness.status("run")["phase"] == "PAUSED"


async def test_terminate_deletes_running_jobs(harness: Harness) -> None:
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    first = harness.only_new_job(set())
    harness.cluster.edit_workflow("run", spec={"terminate": {"reason": "enough"}})
    await harness.reconcile("run")
    status = harness.status("run")
    assert status["phase"] == "TERMINATED" and status["reasonForIncompletion"] == "enough"
    assert first not in harness.cluster.jobs()
    assert harness.tasks("run")[0]["status"] == "CANCELED"


async def test_retry_annotation_applies_exactly_once(harness: Harness) -> None:
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    first = harness.only_new_job(set())
    harness.cluster.finish(first, message=json.dumps({"status": "FAILED_WITH_TERMINAL_ERROR",
                                                      "reasonForIncompletion": "bad input"}))
    await harness.reconcile("run")
    assert harness.status("run")["phase"] == "FAILED"
    harness.cluster.edit_workflow("run", annotations={"ops.kondukt.io/retry": json.dumps({"nonce": "n-1"})})
    await harness.reconcile("run")
    retry = harness.only_new_job({first})
    assert harness.status("run")["phase"] == "RUNNING"
    harness.cluster.finish(retry, exit_code=1)
    await harness.reconcile("run")
    await harness.reconcile("run")
    assert harness.status("run")["phase"] == "FAILED", "the same nonce is not applied a second time"
    assert len(harness.cluster.jobs()) == 2, "no attempt beyond the retried one (its retryCount is used up)"


async def test_a_malformed_operation_is_reported_and_ignored(harness: Harness) -> None:
    harness.cluster.apply(run_of("run"))
    harness.cluster.edit_workflow("run", annotations={"ops.kondukt.io/retry": "not json"})
    await harness.reconcile("run")
    assert harness.status("run")["phase"] == "RUNNING"
    queued = harness.reconciler.events._queue._queue  # type: ignore[attr-defined]
    assert any(e["reason"] == "InvalidOperation" for e in queued)


async def test_concurrency_limits_hold_across_workflows() -> None:
    harness = Harness()
    limited = copy.deepcopy(ECHO)
    limited["spec"]["concurrentExecLimit"] = 1
    harness.cluster.apply(limited)
    harness.cluster.apply(chain(steps=1))
    harness.cluster.apply(run_of("a"))
    harness.cluster.apply(run_of("b"))
    await harness.reconcile("a")
    outcome = await harness.reconcile("b")
    assert len(harness.cluster.jobs()) == 1, "the second workflow waits for a free slot"
    assert outcome.waiting_on == ("echo",)
    job = next(iter(harness.cluster.jobs()))
    harness.cluster.echo(job)
    await harness.reconcile("a")
    await harness.reconcile("b")
    assert len(harness.cluster.jobs()) == 2


async def test_reservations_count_jobs_the_watch_has_not_shown_yet() -> None:
    harness = Harness()
    limited = copy.deepcopy(ECHO)
    limited["spec"]["concurrentExecLimit"] = 1
    harness.cluster.apply(limited)
    harness.cluster.apply(chain(steps=1))
    harness.cluster.apply(run_of("a"))
    harness.cluster.apply(run_of("b"))
    view_without_jobs = cache.ClusterView({
        key: value for key, value in harness.cluster.view()._indices.items()  # type: ignore[attr-defined]
        if key != cache.JOBS_INDEX
    })
    harness.reconciler.view = view_without_jobs
    await harness.reconcile("a")
    await harness.reconcile("b")
    assert len(harness.cluster.jobs()) == 1


async def test_a_workflow_waits_for_its_definition_then_fails_clearly(harness: Harness) -> None:
    harness.cluster.apply(run_of("run", definition="missing"))
    harness.clock.ms = 1_767_225_600_000 + 1_000  # one second after creationTimestamp
    outcome = await harness.reconcile("run")
    status = harness.status("run")
    assert "phase" not in status and "not found" in status["message"]
    assert outcome.wake_at_ms == 1_767_225_600_000 + 15_000
    harness.clock.ms += 20_000
    await harness.reconcile("run")
    status = harness.status("run")
    assert status["phase"] == "FAILED" and "WorkflowDef 'missing' not found" in status["reasonForIncompletion"]
    assert {c["type"]: c for c in status["conditions"]}["Failed"]["reason"] == "WorkflowDefNotFound"


async def test_a_failed_start_with_an_input_too_large_to_copy_still_ends_failed(harness: Harness) -> None:
    harness.cluster.max_status_bytes = 50_000  # the spec's 100 KB input fits once, not twice
    harness.cluster.apply(run_of("run", definition="missing", input={"v": "x" * 100_000}))
    harness.clock.ms = 1_767_225_600_000 + 60_000  # past the wait for definitions
    await harness.reconcile("run")
    status = harness.status("run")
    assert status["phase"] == "FAILED" and "WorkflowDef 'missing' not found" in status["reasonForIncompletion"]
    assert "input" not in status


async def test_an_invalid_definition_fails_without_jobs(harness: Harness) -> None:
    bad = chain("bad")
    bad["spec"]["tasks"][1]["taskReferenceName"] = "s0"  # duplicate reference
    harness.cluster.apply(bad)
    harness.cluster.apply(run_of("run", definition="bad"))
    await harness.reconcile("run")
    status = harness.status("run")
    assert status["phase"] == "FAILED" and "s0" in status["reasonForIncompletion"]
    assert harness.cluster.jobs() == {}
    assert read_status(status).workflow is not None


async def test_a_rejected_job_fails_the_attempt_with_the_api_message(harness: Harness) -> None:
    harness.cluster.reject["/apis/batch/v1/namespaces/ns/jobs"] = "spec.template.spec.containers[0].image: Required"
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    tasks = harness.tasks("run")
    assert tasks[0]["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert "image: Required" in tasks[0]["reasonForIncompletion"]
    assert harness.status("run")["phase"] == "FAILED"


async def test_inline_definitions_and_sub_workflows() -> None:
    harness = Harness()
    harness.cluster.apply(ECHO)
    harness.cluster.apply(chain("inner", steps=1))
    parent = {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "parent"},
              "spec": {"definition": {"tasks": [{"name": "sub", "taskReferenceName": "sub", "type": "SUB_WORKFLOW",
                                                 "subWorkflowParam": {"name": "inner"},
                                                 "inputParameters": {"v": "${workflow.input.v}"}}]},
                       "input": {"v": 3}}}
    harness.cluster.apply(parent)
    await harness.reconcile("parent")
    children = [o for p, o in harness.cluster.objects.items() if "/workflows/" in p and p.endswith("") and
                (o["metadata"].get("labels") or {}).get(r.LABEL_PARENT_UID)]
    assert len(children) == 1
    child = children[0]["metadata"]["name"]
    assert harness.tasks("parent")[0]["subWorkflowId"] == children[0]["metadata"]["uid"]
    await harness.reconcile(child)
    harness.cluster.echo(harness.only_new_job(set()))
    await harness.reconcile(child)
    assert harness.status(child)["phase"] == "COMPLETED"
    await harness.reconcile("parent")
    status = harness.status("parent")
    assert status["phase"] == "COMPLETED"
    assert harness.tasks("parent")[0]["outputData"]["v"] == 3


def jq_run(name: str, query: str) -> dict[str, Any]:
    tasks = [{"name": "t", "taskReferenceName": "t", "type": "JSON_JQ_TRANSFORM",
              "inputParameters": {"queryExpression": query, "v": "${workflow.input.v}"}}]
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name},
            "spec": {"definition": {"tasks": tasks, "outputParameters": {"r": "${t.output.result}"}},
                     "input": {"v": 7}}}


async def evaluations_done(reconciler: Reconciler) -> None:
    """Wait until the pool has answered every evaluation this operator handed it."""
    while reconciler.actor.evaluations:  # the operator's own background work
        await asyncio.wait(list(reconciler.actor.evaluations.values()))


async def test_jq_is_evaluated_by_the_pool_and_its_result_recorded(harness: Harness) -> None:
    harness.cluster.apply(jq_run("jq", "{double: (.v * 2)}"))
    try:
        await harness.reconcile("jq")
        assert harness.tasks("jq")[0]["status"] == "IN_PROGRESS"
        assert not harness.cluster.jobs()  # no Job, and the reconcile did not wait for the evaluation
        await evaluations_done(harness.reconciler)
        await harness.reconcile("jq")
        status = harness.status("jq")
        assert status["phase"] == "COMPLETED" and status["output"] == {"r": {"double": 14}}
    finally:
        await harness.reconciler.scripts.close()


async def test_a_jq_evaluation_lost_with_the_operator_is_evaluated_again(harness: Harness) -> None:
    harness.cluster.apply(jq_run("jq", ".v + 1"))
    await harness.reconcile("jq")
    assert harness.tasks("jq")[0]["status"] == "IN_PROGRESS"
    await harness.reconciler.stop()  # the operator dies with the evaluation in flight (its process killed)
    harness.reconciler = harness.new_reconciler()
    try:
        await harness.reconcile("jq")  # finds the task IN_PROGRESS with nothing evaluating it
        await evaluations_done(harness.reconciler)
        await harness.reconcile("jq")
        assert harness.status("jq")["phase"] == "COMPLETED" and harness.status("jq")["output"] == {"r": 8}
    finally:
        await harness.reconciler.scripts.close()


async def test_a_jq_program_that_never_ends_fails_naming_the_limit() -> None:
    harness = Harness()
    # Two seconds: "fine" (microseconds of work) shares the limit with "stuck"; the margin covers an event loop
    # that wakes late on a loaded machine, and the child's own alarm is reported as the limit too.
    settings = ReconcileSettings(job_options=JobOptions(), script_limits=ScriptLimits(time_limit_seconds=2))
    metrics = Metrics()
    harness.reconciler = Reconciler(harness.cluster, harness.cluster.view(), settings, metrics,
                                    EventRecorder(harness.cluster, metrics), clock=harness.clock, workers=1)
    harness.cluster.apply(jq_run("stuck", "def f: f; f"))
    harness.cluster.apply(jq_run("fine", ".v"))
    try:
        await harness.reconcile("stuck")
        await harness.reconcile("fine")  # another workflow's reconcile does not wait behind the stuck one
        await evaluations_done(harness.reconciler)
        await harness.reconcile("stuck")
        await harness.reconcile("fine")
        stuck = harness.status("stuck")
        reason = "task 't': jq: the evaluation exceeded its time limit of 2 s"
        assert stuck["phase"] == "FAILED"
        assert stuck["reasonForIncompletion"].endswith(f" failed with status: FAILED and reason: '{reason}'")
        assert harness.status("fine")["phase"] == "COMPLETED"
        counted = {outcome: metrics.script_evaluations.labels(outcome)._value.get()  # type: ignore[attr-defined]
                   for outcome in ("completed", "time_limit")}
        assert counted == {"completed": 1, "time_limit": 1}
    finally:
        await harness.reconciler.scripts.close()


async def test_large_inputs_without_payload_storage_fail_the_attempt_clearly(harness: Harness,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KONDUKT_PAYLOAD_BUCKET", raising=False)
    harness.cluster.apply(run_of("run", input={"v": "x" * 40_000}))
    await harness.reconcile("run")
    task = harness.tasks("run")[0]
    assert task["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert "32768" in task["reasonForIncompletion"] and "KONDUKT_PAYLOAD_BUCKET" in task["reasonForIncompletion"]
    assert TaskStatus.FAILED_WITH_TERMINAL_ERROR.value == task["status"]


async def test_the_echo_of_our_own_status_write_is_not_news(harness: Harness) -> None:
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    echo = copy.deepcopy(harness.cluster.workflow("run"))
    assert harness.reconciler.observe(echo) is False, "the watch's echo of our write wakes nothing"
    harness.cluster.edit_workflow("run", annotations={"someone": "else"})
    assert harness.reconciler.observe(copy.deepcopy(harness.cluster.workflow("run"))) is True


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    """An S3-compatible endpoint on 127.0.0.1 (moto) with a bucket ``payloads``."""
    import boto3
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_REGION", "us-east-1"), ("AWS_CONFIG_FILE", "/nonexistent"),
                        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")):
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                            config=Config(s3={"addressing_style": "path"}))
    client.create_bucket(Bucket="payloads")
    try:
        yield endpoint, client
    finally:
        server.stop()


async def test_large_inputs_and_results_travel_through_payload_storage(s3: tuple[str, Any]) -> None:
    from kondukt_workers.settings import Settings

    endpoint, client = s3
    harness = Harness(payload_settings=Settings(payload_bucket="payloads", s3_endpoint=endpoint))
    harness.cluster.apply(ECHO)
    harness.cluster.apply(chain(steps=1))
    big = "x" * 40_000
    harness.cluster.apply(run_of("run", input={"v": big}))
    await harness.reconcile("run")
    job_name = harness.only_new_job(set())
    env = {e["name"]: e.get("value") for e in
           harness.cluster.jobs()[job_name]["spec"]["template"]["spec"]["containers"][0]["env"]}
    pointer = json.loads(env["KONDUKT_INPUT"])["externalInputPayloadStoragePath"]
    bucket, key = pointer.removeprefix("s3://").split("/", 1)
    stored = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert stored == {"v": big}
    client.put_object(Bucket="payloads", Key="results/out.json", Body=json.dumps({"v": "y" * 9000}).encode())
    harness.cluster.finish(job_name, message=json.dumps({
        "externalOutputPayloadStoragePath": "s3://payloads/results/out.json", "status": "COMPLETED"}))
    await harness.reconcile("run")
    status = harness.status("run")
    assert status["phase"] == "COMPLETED" and status["output"] == {"v": "y" * 9000}


async def test_a_missing_result_payload_fails_the_attempt(s3: tuple[str, Any]) -> None:
    from kondukt_workers.settings import Settings

    endpoint, _ = s3
    harness = Harness(payload_settings=Settings(payload_bucket="payloads", s3_endpoint=endpoint))
    harness.cluster.apply(ECHO)
    harness.cluster.apply(chain(steps=1))
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    job_name = harness.only_new_job(set())
    harness.cluster.finish(job_name, message=json.dumps({
        "externalOutputPayloadStoragePath": "s3://payloads/missing.json"}))
    await harness.reconcile("run")
    task = harness.tasks("run")[0]
    assert task["status"] == "FAILED" and "missing.json" in task["reasonForIncompletion"]


async def test_a_standby_replica_reconciles_nothing_until_it_leads(harness: Harness) -> None:
    leads = False
    harness.reconciler.leading = lambda: leads
    harness.cluster.apply(run_of("run"))
    harness.reconciler.observe(copy.deepcopy(harness.cluster.workflow("run")))
    harness.reconciler.queue.add_after(("ns", "run"), 60)  # a timer left from an earlier leadership
    calls = len(harness.cluster.calls)
    await harness.reconciler.run(("ns", "run"))
    assert len(harness.cluster.calls) == calls and not harness.cluster.jobs()
    assert harness.reconciler.queue.pending_timers() == 0  # the leader has the workflow, and its timers
    leads = True
    await harness.reconciler.run(("ns", "run"))
    assert len(harness.cluster.jobs()) == 1


async def test_with_shards_a_replica_reconciles_only_the_workflows_of_its_shards(harness: Harness) -> None:
    held = {0}
    for name in ("mine", "theirs"):
        harness.cluster.apply(run_of(name))
        harness.reconciler.observe(copy.deepcopy(harness.cluster.workflow(name)))
    uid_of = {harness.cluster.workflow(n)["metadata"]["uid"]: n for n in ("mine", "theirs")}
    harness.reconciler.shard_of = lambda uid: 0 if uid_of[uid] == "mine" else 1
    harness.reconciler.leading = lambda: ((shard := acting_shard.get()) is None and bool(held)) or shard in held
    harness.reconciler.queue.add_after(("ns", "theirs"), 60)
    await harness.reconciler.run(("ns", "theirs"))
    assert not harness.cluster.jobs() and harness.reconciler.queue.pending_timers() == 0
    await harness.reconciler.run(("ns", "mine"))
    assert len(harness.cluster.jobs()) == 1 and acting_shard.get() is None  # the shard does not leak out
    harness.reconciler.lead(1)  # shard 1 taken over: its workflows (only) are reconciled
    assert harness.reconciler.queue.depth == 1
    held.add(1)
    await harness.reconciler.run(("ns", "theirs"))
    assert len(harness.cluster.jobs()) == 2


async def test_a_new_leader_reconciles_every_workflow_it_knows(harness: Harness) -> None:
    for name in ("a", "b"):
        harness.cluster.apply(run_of(name))
        harness.reconciler.observe(copy.deepcopy(harness.cluster.workflow(name)))
    harness.reconciler.lead()
    assert harness.reconciler.queue.depth == 2


# ---------------------------------------------------------------------------- values too large for the object
def inline_run(name: str, size: int, *, then_echo: bool = False) -> dict[str, Any]:
    """INLINE returning ``size`` characters of incompressible text."""
    tasks: list[dict[str, Any]] = [incompressible_inline("big", size)]
    if then_echo:
        tasks.append({"name": "echo", "taskReferenceName": "use", "inputParameters": {"v": "${big.output.result}"}})
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name},
            "spec": {"definition": {"tasks": tasks, "outputParameters": {"r": "${big.output.result}"}}}}


async def test_a_value_too_large_for_the_status_fails_its_task_without_payload_storage(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KONDUKT_PAYLOAD_BUCKET", raising=False)
    harness.cluster.apply(inline_run("big", 300_000))
    await harness.reconcile("big")
    status = harness.status("big")
    task = harness.tasks("big")[0]
    assert task["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert task["reasonForIncompletion"] == (
        "task 'big': its output is 296.2 KiB (303289 bytes), more than the 256 KiB a value may take in the "
        "workflow's state; larger values need external payload storage (KONDUKT_PAYLOAD_BUCKET on the operator)")
    assert status["phase"] == "FAILED" and status["message"].startswith(
        f"Task {task['taskId']} failed with status: FAILED_WITH_TERMINAL_ERROR and reason: 'task 'big': its output is "
        "296.2 KiB")


async def test_a_status_the_api_refuses_for_its_size_ends_the_workflow_failed(harness: Harness) -> None:
    harness.cluster.max_status_bytes = 200_000  # stands for etcd's limit; each value stays under 256 KiB
    harness.cluster.apply(inline_run("big", 250_000))
    await harness.reconcile("big")
    status = harness.status("big")
    assert status["phase"] == "FAILED"
    assert status["reasonForIncompletion"].startswith("the Workflow's status would be ")
    assert "more than the API server stores (rpc error: code = ResourceExhausted desc = trying to send message " \
           "larger than max" in status["reasonForIncompletion"]
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Failed"] == "StatusTooLarge"
    assert [(t["referenceTaskName"], t["status"]) for t in harness.tasks("big")] == [("big", "COMPLETED")]
    assert "outputData" not in harness.tasks("big")[0] and "output" not in status
    puts = sum(1 for method, _ in harness.cluster.calls if method == "PUT")
    assert await harness.reconcile("big") is None  # settled: no retry loop
    assert sum(1 for method, _ in harness.cluster.calls if method == "PUT") == puts
    reasons = [e["reason"] for e in harness.reconciler.events._queue._queue]  # type: ignore[attr-defined]
    assert "StatusTooLarge" in reasons


async def test_values_too_large_for_the_status_go_to_payload_storage_and_come_back(s3: tuple[str, Any]) -> None:
    from kondukt_workers.settings import Settings

    endpoint, client = s3
    harness = Harness(payload_settings=Settings(payload_bucket="payloads", s3_endpoint=endpoint))
    harness.cluster.apply(ECHO)
    harness.cluster.max_status_bytes = 200_000
    harness.cluster.apply(inline_run("big", 300_000, then_echo=True))
    await harness.reconcile("big")
    raw = harness.status("big")
    big, use = harness.tasks("big")
    assert big["status"] == "COMPLETED" and "outputData" not in big
    pointer = big["externalOutputPayloadStoragePath"]
    assert pointer.startswith("s3://payloads/") and "inputData" not in use
    bucket, key = pointer.removeprefix("s3://").split("/", 1)
    stored = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert len(stored["result"]) == 300_000
    assert raw["phase"] == "RUNNING" and len(json.dumps(raw)) < 200_000
    # A new operator reads the values back from storage: the Job's input and the output are whole again.
    harness.reconciler = harness.new_reconciler()
    job_name = harness.only_new_job(set())
    harness.cluster.echo(job_name)
    await harness.reconcile("big")
    status = harness.status("big")
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    # The output was computed from the value read back, and is itself too large for the status: stored too.
    assert "output" not in status and "outputCompressed" not in status
    bucket, key = status["externalOutputPayloadStoragePath"].removeprefix("s3://").split("/", 1)
    output = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert output == {"r": stored["result"]}
    assert len(json.dumps(status)) < 200_000


async def test_start_workflow_naming_no_definition_fails_the_task_not_terminally(
        harness: Harness) -> None:
    # As Conductor's StartWorkflow (issue 9, item 9): FAILED, not FAILED_WITH_TERMINAL_ERROR, and no Workflow made.
    tasks = [{"name": "start", "taskReferenceName": "start", "type": "START_WORKFLOW",
              "inputParameters": {"startWorkflow": {"name": "nowhere", "version": 2}}}]
    harness.cluster.apply({"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "starter"},
                           "spec": {"definition": {"tasks": tasks}}})
    await harness.reconcile("starter")
    status = harness.status("starter")
    (task,) = harness.tasks("starter")
    assert (task["status"], task["reasonForIncompletion"]) == (
        "FAILED", "no WorkflowDef 'nowhere' version 2 in namespace ns")
    assert status["phase"] == "FAILED"
    assert [path for path in harness.cluster.objects if "/workflows/" in path] == [f"{GROUP_PATH}ns/workflows/starter"]


async def _crash_before_recording(harness: Harness) -> str:
    """The operator creates the second attempt's Job and dies before its status write records it; a new
    operator process takes over. Returns the second Job's name."""
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    first = harness.only_new_job(set())
    harness.cluster.echo(first)
    harness.cluster.crash_on = ("PUT", "/apis/kondukt.io")
    with pytest.raises(Crash):
        await harness.reconcile("run")  # the second attempt's Job is created, the status write dies
    harness.reconciler = harness.new_reconciler()  # the next operator (a restart, or the new leader)
    return harness.only_new_job({first})


async def test_a_job_found_already_there_is_read_at_once(harness: Harness) -> None:
    """The operator created the next attempt's Job and died before writing the status, and the Job finished
    while no operator acted (found by the HA e2e test: the new leader waited for ever at 'running: s1'). The
    new operator's create finds the Job there, and no watch event will ever announce it again: woken once —
    as a new leader wakes every workflow — the reconciler must come back by itself to read the result."""
    second = await _crash_before_recording(harness)
    harness.cluster.echo(second)  # it runs to the end while no operator acts
    try:
        ran = await harness.settle("run")
    finally:
        await harness.stop()
    assert harness.status("run")["phase"] == "COMPLETED", harness.tasks("run")
    assert ran == 2, "one reconcile finds the Job, one more reads it"
    assert sorted(harness.cluster.created_jobs) == sorted(set(harness.cluster.created_jobs))
    assert len(harness.cluster.jobs()) == 2


async def test_a_job_found_already_there_is_read_once_not_looped_on(harness: Harness) -> None:
    """The same, but the found Job is still running: the reconciler reads it once and then waits for its
    news like any attempt's — every later wake costs exactly one reconcile, however often it comes."""
    second = await _crash_before_recording(harness)
    try:
        assert await harness.settle("run") == 2, "one reconcile finds the Job, one more reads it"
        assert [t["status"] for t in harness.tasks("run")] == ["COMPLETED", "SCHEDULED"]
        for _ in range(3):  # the Job's and its pod's events, a resync: each one reconcile, none more
            assert await harness.settle("run") == 1
        harness.cluster.start_pod(second)
        assert await harness.settle("run") == 1
        assert [t["status"] for t in harness.tasks("run")] == ["COMPLETED", "IN_PROGRESS"]
        harness.cluster.echo(second)
        assert await harness.settle("run") == 1
    finally:
        await harness.stop()
    assert harness.status("run")["phase"] == "COMPLETED"
    assert len(harness.cluster.jobs()) == 2


async def test_simultaneous_completions_cost_one_reconcile_and_one_status_write() -> None:
    """A fan-out's branches finishing together wake the workflow once per pod (as the pod informer does):
    the work queue gathers them into one reconcile, and that reconcile writes the status once."""
    harness = Harness()
    harness.cluster.apply(ECHO)
    branches = 20
    fork = {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "wide"},
            "spec": {"name": "wide", "tasks": [
                {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN",
                 "forkTasks": [[{"name": "echo", "taskReferenceName": f"b{i}", "inputParameters": {"i": i}}]
                               for i in range(branches)]},
                {"name": "join", "taskReferenceName": "join", "type": "JOIN",
                 "joinOn": [f"b{i}" for i in range(branches)]}]}}
    harness.cluster.apply(fork)
    harness.cluster.apply(run_of("run", definition="wide"))
    await harness.reconcile("run")
    jobs = list(harness.cluster.jobs())
    assert len(jobs) == branches
    for job in jobs:
        harness.cluster.echo(job)
    reconciler = harness.reconciler
    puts_before = sum(1 for method, _ in harness.cluster.calls if method == "PUT")
    await reconciler.start()
    try:
        for _ in jobs:  # one wake-up per pod event, in one burst
            reconciler.enqueue(("ns", "run"))
        for _ in range(600):  # bounded: at most 60 s of a very slow machine; ends when the queue is empty
            if _reconciles(reconciler.metrics) >= 1 and reconciler.queue.depth == 0:
                break
            await asyncio.sleep(0.1)
    finally:
        await reconciler.stop()
    assert harness.status("run")["phase"] == "COMPLETED"
    assert sum(1 for method, _ in harness.cluster.calls if method == "PUT") - puts_before == 1
    assert _reconciles(reconciler.metrics) == 1, "one reconcile for the whole burst"


def _reconciles(metrics: Metrics) -> float:
    return sum(sample.value for family in metrics.registry.collect() for sample in family.samples
               if sample.name == "kondukt_reconcile_duration_seconds_count")


@pytest.mark.parametrize("error", ["not_leader", "transient"])
async def test_a_fenced_write_at_a_handover_is_retried_quietly(
    harness: Harness, error: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write refused because this replica lost the shard mid-reconcile (NotLeader) is expected at every
    handover: retried, counted apart, logged at INFO; any other transient API error stays a warning."""
    harness.cluster.apply(run_of("run"))
    harness.reconciler.observe(copy.deepcopy(harness.cluster.workflow("run")))
    refused = {"left": 1}
    request = harness.cluster.request

    async def fenced(method: str, path: str, **kwargs: Any) -> Any:
        if method == "POST" and path.startswith("/apis/batch/v1") and refused["left"]:
            refused["left"] -= 1
            if error == "not_leader":
                raise NotLeader(0, "NotLeader", "this replica does not lead", kwargs["what"])
            raise TransientApiError(503, "ServiceUnavailable", "etcd is busy", kwargs["what"])
        return await request(method, path, **kwargs)

    monkeypatch.setattr(harness.cluster, "request", fenced)
    with caplog.at_level("INFO", logger="kondukt.kube.reconcile"):
        await harness.reconciler.run(("ns", "run"))
    [record] = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert record.levelname == ("INFO" if error == "not_leader" else "WARNING")
    assert harness.reconciler.metrics.reconcile_errors.labels(error)._value.get() == 1
    assert not harness.cluster.jobs() and harness.reconciler.queue.depth + harness.reconciler.queue.pending_timers() == 1
    await harness.reconciler.run(("ns", "run"))  # the retry (here: the replica leads again)
    assert len(harness.cluster.jobs()) == 1


async def test_actions_are_carried_out_by_a_bounded_pool_each_once_and_failures_raised_after_all() -> None:
    """A fork's thousands of starts are taken by at most 32 workers in turn (not a coroutine each, alive at once);
    one that fails does not stop the others, and its error is raised once all had their turn."""
    from kondukt.engine.decision import CancelTask
    from kondukt.kube.actions import _PARALLEL_ACTIONS
    from kondukt.kube.builders import OwnerRef

    actor = Harness().reconciler.actor
    running = most = 0
    done: list[str] = []

    async def carry_out(acting: Any, action: Any) -> list[Any]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0)
        running -= 1
        done.append(action.taskId)
        if action.taskId == "t7":
            raise RuntimeError("t7 failed")
        return []

    actor._carry_out = carry_out  # type: ignore[method-assign]
    actions = [CancelTask(taskId=f"t{i}", referenceTaskName=f"r{i}", taskType="SIMPLE", reason="x") for i in range(500)]
    with pytest.raises(RuntimeError, match="t7 failed"):
        await actor.act(OwnerRef(name="w", namespace="ns", uid="u"), actions, None, 0)  # type: ignore[arg-type]
    assert sorted(done) == sorted(f"t{i}" for i in range(500))
    assert most == _PARALLEL_ACTIONS


async def test_offload_measures_a_task_s_values_once_per_task_object(monkeypatch: pytest.MonkeyPatch) -> None:
    """Task objects are immutable: the values of one already measured are not looked at again in later reconciles
    (a 10,000-branch fork spent a fifth of the operator's time re-checking 20,000 values in every reconcile)."""
    from kondukt.engine.models import Task, Workflow
    from kondukt.kube import offload as offload_module
    from kondukt.kube.builders import OwnerRef
    from kondukt.kube.memo import Memo
    from kondukt.kube.status import StoredStatus
    from kondukt_workers.settings import Settings

    measured: list[Any] = []

    def counting(value: Any) -> int:
        measured.append(value)
        return 10

    monkeypatch.setattr(offload_module, "json_size", counting)
    settings = ReconcileSettings(payload_settings=Settings(payload_bucket="payloads", s3_endpoint="http://127.0.0.1:9"))
    tasks = [Task(taskId=f"t{i}", taskType="SIMPLE", referenceTaskName=f"r{i}", taskDefName="echo",
                  inputData={"i": i}, outputData={"o": i}) for i in range(100)]
    workflow = Workflow(workflowId="w", tasks=tasks)
    memo = Memo(resource_version="1", stored=StoredStatus(workflow=None, definition=None))
    owner = OwnerRef(name="w", namespace="ns", uid="u")
    await offload_module.offload(settings, owner, workflow, memo)
    assert len(measured) == 200
    measured.clear()
    changed = tasks[7].model_copy(update={"outputData": {"o": "new"}})
    workflow = workflow.model_copy(update={"tasks": [*tasks[:7], changed, *tasks[8:]]})
    await offload_module.offload(settings, owner, workflow, memo)
    assert measured == [{"o": "new"}], "only the replaced task's changed value"


def _wide(branches: int) -> dict[str, Any]:
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "wide"},
            "spec": {"name": "wide", "tasks": [
                {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN",
                 "forkTasks": [[{"name": "echo", "taskReferenceName": f"b{i}", "inputParameters": {"i": i}}]
                               for i in range(branches)]},
                {"name": "join", "taskReferenceName": "join", "type": "JOIN",
                 "joinOn": [f"b{i}" for i in range(branches)]}]}}


def _job_posts(harness: Harness) -> int:
    return sum(1 for method, path in harness.cluster.calls if method == "POST" and path.endswith("/jobs"))


async def _fan_out_with_one_create_timed_out(harness: Harness) -> None:
    harness.cluster.apply(ECHO)
    harness.cluster.apply(_wide(10))
    harness.cluster.apply(run_of("run", definition="wide"))
    harness.cluster.time_out_creates = {7}  # the 7th Job create of this run times out, the others are made
    with pytest.raises(TransientApiError):
        await harness.reconcile("run")
    assert _job_posts(harness) == 10 and len(harness.cluster.jobs()) == 9
    assert "status" not in harness.cluster.workflow("run"), "the failed reconcile wrote no status"


async def test_a_fan_out_whose_one_create_timed_out_sends_only_that_create_again(harness: Harness) -> None:
    """Found in the 1,000-branch benchmark (2,001 Job creates for 1,001 Jobs): one create of a fan-out timed out,
    the reconcile failed before its status write, and the next one decided the same starts and sent every
    create again (999 AlreadyExists). Jobs that exist are not created again: only the one that timed out is
    sent once more, and the workflow runs to its end with one Job per branch."""
    await _fan_out_with_one_create_timed_out(harness)
    await harness.reconcile("run")
    assert _job_posts(harness) == 11, "only the create that timed out is sent again"
    assert len(harness.cluster.jobs()) == 10
    for job in harness.cluster.jobs():
        harness.cluster.echo(job)
    try:
        await harness.settle("run")
    finally:
        await harness.stop()
    assert harness.status("run")["phase"] == "COMPLETED", harness.tasks("run")
    assert _job_posts(harness) == 11
    assert sorted(harness.cluster.created_jobs) == sorted(set(harness.cluster.created_jobs))


async def test_jobs_a_failed_reconcile_created_are_not_sent_again_before_the_watch_shows_them(
        harness: Harness) -> None:
    """The same while the Job watch lags behind (a busy API server): the operator remembers the Jobs it created
    for a workflow until a status write records them; a new process (no memory) sends them again and finds
    them there (AlreadyExists), as before."""
    await _fan_out_with_one_create_timed_out(harness)
    harness.reconciler.actor.view = cache.ClusterView({})  # the watch shows no Job yet
    await harness.reconcile("run")
    assert _job_posts(harness) == 11, "only the create that timed out is sent again"
    assert harness.reconciler.actor.created == {}, "the status write recorded them: nothing left to remember"
    assert [t["status"] for t in harness.tasks("run") if t["referenceTaskName"].startswith("b")] == ["SCHEDULED"] * 10


async def test_the_spec_is_validated_once_per_generation(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1,000-branch spec cost more to validate than the rest of a reconcile: it is validated again only when
    its generation changes (an edit), not in every reconcile."""
    from kondukt.engine.models import WorkflowSpec

    validated: list[int] = []
    original = WorkflowSpec.model_validate.__func__  # type: ignore[attr-defined]

    def counting(cls: type[WorkflowSpec], value: Any, **kwargs: Any) -> WorkflowSpec:
        validated.append(1)
        return original(cls, value, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(WorkflowSpec, "model_validate", classmethod(counting))
    harness.cluster.apply(run_of("run"))
    await harness.reconcile("run")
    harness.cluster.start_pod(harness.only_new_job(set()))
    await harness.reconcile("run")
    await harness.reconcile("run")
    assert len(validated) == 1
    harness.cluster.edit_workflow("run", spec={"suspend": True})
    await harness.reconcile("run")
    assert len(validated) == 2, "an edit (a new generation) is validated"
    assert harness.status("run")["phase"] == "PAUSED"
