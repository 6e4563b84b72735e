"""Status writes of progress alone are gathered (``ReconcileSettings.status_coalesce_ms``): a wide fan-out's
branches starting and ending one by one cost a few large writes, not one each, while every start, end and
operation is still written at once and nothing observed is lost."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kondukt.kube.reconcile import Reconciler
from tests.unit.kube.harness import ECHO, Harness, run_of

WINDOW_MS = 1000
BRANCHES = 6


def _wide() -> dict[str, Any]:
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "wide"},
            "spec": {"name": "wide", "tasks": [
                {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN",
                 "forkTasks": [[{"name": "echo", "taskReferenceName": f"b{i}", "inputParameters": {"i": i}}]
                               for i in range(BRANCHES)]},
                {"name": "join", "taskReferenceName": "join", "type": "JOIN",
                 "joinOn": [f"b{i}" for i in range(BRANCHES)]},
                {"name": "echo", "taskReferenceName": "after", "inputParameters": {"i": -1}}]}}


class Coalescing(Harness):
    def new_reconciler(self) -> Reconciler:
        reconciler = super().new_reconciler()
        reconciler.settings = dataclasses.replace(reconciler.settings, status_coalesce_ms=WINDOW_MS)
        return reconciler


@pytest.fixture
def harness() -> Coalescing:
    h = Coalescing()
    h.cluster.apply(ECHO)
    h.cluster.apply(_wide())
    h.cluster.apply(run_of("run", definition="wide"))
    return h


def _puts(harness: Harness) -> int:
    return sum(1 for method, path in harness.cluster.calls if method == "PUT" and path.endswith("/status"))


def _branches(harness: Harness) -> dict[str, str]:
    return {t["referenceTaskName"]: t["status"] for t in harness.tasks("run") if t["referenceTaskName"][0] == "b"}


def _job_of(harness: Harness, ref: str) -> str:
    [name] = [n for n, job in harness.cluster.jobs().items()
              if job["metadata"]["annotations"].get("kondukt.io/task-ref") == ref]
    return name


async def test_progress_within_the_window_is_written_once_when_it_ends(harness: Coalescing) -> None:
    await harness.reconcile("run")  # the branches' Jobs created: written at once
    assert _puts(harness) == 1
    started = harness.clock.ms
    harness.cluster.start_pod(_job_of(harness, "b0"))
    harness.cluster.echo(_job_of(harness, "b1"))
    outcome = await harness.reconcile("run")
    harness.cluster.echo(_job_of(harness, "b2"))
    harness.clock.ms += 300
    outcome = await harness.reconcile("run")
    assert _puts(harness) == 1, "progress alone, within the window: not written yet"
    assert set(_branches(harness).values()) == {"SCHEDULED"}
    assert outcome.wake_at_ms == started + WINDOW_MS, "the reconciler comes back when the window ends"
    harness.clock.ms = started + WINDOW_MS
    await harness.reconcile("run")
    assert _puts(harness) == 2, "one write for all of it"
    branches = _branches(harness)
    assert (branches["b0"], branches["b1"], branches["b2"]) == ("IN_PROGRESS", "COMPLETED", "COMPLETED")
    times = {t["referenceTaskName"]: (t.get("startTime"), t.get("endTime")) for t in harness.tasks("run")}
    assert times["b1"][1] == started and times["b2"][1] == started + 300, \
        "each end recorded when it was first seen, not when written (a limit's next attempt may start between)"
    assert times["b0"][0] == started


async def test_a_start_an_end_and_an_operation_are_written_at_once(harness: Coalescing) -> None:
    await harness.reconcile("run")
    for i in range(BRANCHES - 1):
        harness.cluster.echo(_job_of(harness, f"b{i}"))
    await harness.reconcile("run")
    assert _puts(harness) == 1
    harness.cluster.echo(_job_of(harness, f"b{BRANCHES - 1}"))  # the last branch: the join starts "after"
    await harness.reconcile("run")
    assert _puts(harness) == 2, "a reconcile that started a Job writes at once"
    assert set(_branches(harness).values()) == {"COMPLETED"}
    harness.cluster.edit_workflow("run", spec={"suspend": True})
    await harness.reconcile("run")
    assert _puts(harness) == 3, "an operation is written at once"
    assert harness.status("run")["phase"] == "PAUSED"
    harness.cluster.edit_workflow("run", spec={"suspend": False})
    await harness.reconcile("run")
    assert _puts(harness) == 4
    harness.cluster.echo(_job_of(harness, "after"))
    await harness.reconcile("run")
    assert _puts(harness) == 5, "the end is written at once"
    assert harness.status("run")["phase"] == "COMPLETED"


async def test_a_failed_attempt_and_its_retry_are_written_at_once_with_their_events(harness: Coalescing) -> None:
    await harness.reconcile("run")
    harness.cluster.finish(_job_of(harness, "b0"), exit_code=1, message="boom")
    await harness.reconcile("run")
    assert _puts(harness) == 2, "the retry's Job was created: written at once"
    attempts = [t["status"] for t in harness.tasks("run") if t["referenceTaskName"] == "b0"]
    assert attempts == ["FAILED", "SCHEDULED"]
    reasons = [e["reason"] for e in harness.reconciler.events._queue._queue]  # type: ignore[attr-defined]
    assert "TaskFailed" in reasons and "TaskRetried" in reasons


async def test_off_every_change_is_written() -> None:
    h = Harness()
    h.cluster.apply(ECHO)
    h.cluster.apply(_wide())
    h.cluster.apply(run_of("run", definition="wide"))
    await h.reconcile("run")
    h.cluster.echo(_job_of(h, "b0"))
    await h.reconcile("run")
    assert _puts(h) == 2


async def test_an_end_seen_by_the_watch_is_recorded_at_that_time(harness: Coalescing) -> None:
    await harness.reconcile("run")
    seen_at = harness.clock.ms
    harness.cluster.echo(_job_of(harness, "b3"))
    harness.reconciler.observer.seen(harness.cluster.workflow("run")["metadata"]["uid"],
                                     next(t["taskId"] for t in harness.tasks("run") if t["referenceTaskName"] == "b3"),
                                     ended=True, at_ms=seen_at)
    harness.clock.ms += WINDOW_MS  # the reconcile it woke ran later (or was deferred)
    await harness.reconcile("run")
    [b3] = [t for t in harness.tasks("run") if t["referenceTaskName"] == "b3"]
    assert (b3["status"], b3["endTime"]) == ("COMPLETED", seen_at)
    assert harness.reconciler.observer._first_seen == {}, "recorded: nothing left to remember"
