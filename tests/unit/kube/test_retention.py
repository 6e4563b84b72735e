"""kube.retention's pure part: which TTL applies, when a finished Workflow is due, the Archived condition and
what the archive keeps of a Workflow (its I/O is tested on the real control plane and PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from kondukt.archive.store import ArchiveStore
from kondukt.engine.models import TTLStrategy
from kondukt.kube import resources as r
from kondukt.kube.memo import TransientError
from kondukt.kube.retention import (
    archive_record,
    deletion_due_ms,
    finished_ms,
    is_archived,
    ttl_seconds,
    ttl_strategy,
    with_archived_condition,
)
from kondukt.kube.status import pack
from tests.postgres import free_port
from tests.unit.kube.harness import ECHO, Harness, chain, run_of

END = 1_700_000_000_000


def finished(phase: str = "COMPLETED", ttl: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"workflowDefRef": {"name": "x"}}
    if ttl is not None:
        spec["ttlStrategy"] = ttl
    return {"metadata": {"name": "wf", "namespace": "ns", "uid": "u-1", **meta}, "spec": spec,
            "status": {"phase": phase, "status": phase, "endTime": END, "workflowId": "u-1"}}


@pytest.mark.parametrize(("strategy", "phase", "expected"), [
    pytest.param(None, "COMPLETED", None, id="no-strategy-keeps"),
    pytest.param(TTLStrategy(), "FAILED", None, id="empty-strategy-keeps"),
    pytest.param(TTLStrategy(secondsAfterCompletion=10), "COMPLETED", 10, id="completion-on-success"),
    pytest.param(TTLStrategy(secondsAfterCompletion=10), "TERMINATED", 10, id="completion-on-terminated"),
    pytest.param(TTLStrategy(secondsAfterCompletion=10, secondsAfterSuccess=5), "COMPLETED", 5, id="success-wins"),
    pytest.param(TTLStrategy(secondsAfterCompletion=10, secondsAfterSuccess=5), "FAILED", 10,
                 id="success-does-not-apply-to-failure"),
    pytest.param(TTLStrategy(secondsAfterFailure=0), "TIMED_OUT", 0, id="failure-zero-at-once"),
    pytest.param(TTLStrategy(secondsAfterFailure=7, secondsAfterCompletion=1), "FAILED", 7, id="failure-wins"),
    pytest.param(TTLStrategy(secondsAfterCompletion=10), "RUNNING", None, id="running-never"),
])
def test_ttl_seconds_follows_argos_precedence(strategy: TTLStrategy | None, phase: str, expected: int | None) -> None:
    assert ttl_seconds(strategy, phase) == expected


def test_the_spec_wins_over_the_default_even_when_empty() -> None:
    default = TTLStrategy(secondsAfterCompletion=60)
    assert ttl_strategy(finished(), default) == default
    assert ttl_strategy(finished(ttl={}), default) == TTLStrategy()
    assert deletion_due_ms(finished(ttl={}), default) is None
    assert deletion_due_ms(finished(), default) == END + 60_000
    assert deletion_due_ms(finished(ttl={"secondsAfterSuccess": 2}), default) == END + 2_000


def test_a_child_has_no_ttl_of_its_own() -> None:
    child = finished(ttl={"secondsAfterCompletion": 1}, labels={r.LABEL_PARENT_UID: "parent-uid"})
    assert deletion_due_ms(child, TTLStrategy(secondsAfterCompletion=1)) is None


def test_a_workflow_that_never_started_ends_when_its_ready_condition_changed() -> None:
    obj = finished("FAILED")
    del obj["status"]["endTime"]
    obj["status"]["conditions"] = [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-12-06T20:00:00Z"}]
    expected = int(dt.datetime(2026, 12, 6, 20, tzinfo=dt.UTC).timestamp() * 1000)
    assert finished_ms(obj) == expected
    assert deletion_due_ms(obj, TTLStrategy(secondsAfterFailure=5)) == expected + 5000
    obj["status"]["conditions"] = []
    assert deletion_due_ms(obj, TTLStrategy(secondsAfterFailure=5)) is None


def test_the_archived_condition_is_added_and_keeps_the_others() -> None:
    now = dt.datetime(2026, 12, 6, 20, 0, tzinfo=dt.UTC)
    ready = {"type": "Ready", "status": "True", "reason": "Completed", "message": "completed",
             "observedGeneration": 1, "lastTransitionTime": "2026-12-06T19:00:00Z"}
    status = {"phase": "COMPLETED", "conditions": [ready]}
    assert not is_archived(status)
    pending = with_archived_condition(status, "False", "ArchiveUnavailable", "down", 1, now)
    assert not is_archived(pending)
    done = with_archived_condition(pending, "True", "Archived", "archived", 1, now + dt.timedelta(minutes=1))
    assert is_archived(done)
    assert done["conditions"][0] == ready
    archived = done["conditions"][1]
    assert (archived["type"], archived["reason"], archived["lastTransitionTime"]) == (
        "Archived", "Archived", "2026-12-06T20:01:00Z")
    assert status == {"phase": "COMPLETED", "conditions": [ready]}, "the input is not changed"


def test_the_archive_record_decodes_the_status_and_drops_bookkeeping() -> None:
    tasks = [{"taskId": "t1", "referenceTaskName": "a", "status": "COMPLETED", "outputData": {"v": 1}}]
    obj = finished("FAILED", labels={"team": "a", r.LABEL_PARENT_UID: "p-1"},
                   annotations={"kubectl.kubernetes.io/last-applied-configuration": "{...}",
                                "kopf.kondukt.io/last-handled-configuration": "{}", "keep": "me"},
                   managedFields=[{"manager": "kubectl"}], creationTimestamp="2026-12-06T19:59:00Z", resourceVersion="9")
    obj["status"].update({"tasksCompressed": pack(tasks), "outputCompressed": pack({"big": "x" * 10}),
                          "workflowName": "pipeline", "workflowVersion": 3, "startTime": END - 5000})
    record = archive_record(obj)
    assert (record.uid, record.namespace, record.name, record.phase) == ("u-1", "ns", "wf", "FAILED")
    assert (record.definition_name, record.definition_version, record.parent_uid) == ("pipeline", 3, "p-1")
    assert record.labels == {"team": "a", r.LABEL_PARENT_UID: "p-1"}
    assert record.finished_at == dt.datetime.fromtimestamp(END / 1000, dt.UTC)
    assert record.started_at == dt.datetime.fromtimestamp((END - 5000) / 1000, dt.UTC)
    assert record.created_at == dt.datetime(2026, 12, 6, 19, 59, tzinfo=dt.UTC)
    status = record.workflow["status"]
    assert status["tasks"] == tasks and status["output"] == {"big": "x" * 10}
    assert "tasksCompressed" not in status and "outputCompressed" not in status
    meta = record.workflow["metadata"]
    assert meta["annotations"] == {"keep": "me"}
    assert "managedFields" not in meta and "resourceVersion" not in meta
    assert record.workflow["spec"] == obj["spec"]


# ------------------------------------------------------------------------- through the reconcile (fake API)
async def finish(harness: Harness, name: str) -> None:
    """Run the harness's two-step chain to COMPLETED."""
    await harness.reconcile(name)
    first = harness.only_new_job(set())
    harness.cluster.echo(first)
    await harness.reconcile(name)
    second = harness.only_new_job({first})
    harness.cluster.echo(second)
    await harness.reconcile(name)
    assert harness.status(name)["phase"] == "COMPLETED"


def ready_harness() -> Harness:
    harness = Harness()
    harness.cluster.apply(ECHO)
    harness.cluster.apply(chain())
    return harness


async def test_the_reconcile_deletes_a_finished_workflow_at_its_time_by_the_operators_clock() -> None:
    harness = ready_harness()
    harness.cluster.apply(run_of("run", ttlStrategy={"secondsAfterSuccess": 30}))
    await finish(harness, "run")
    end = harness.status("run")["endTime"]
    outcome = await harness.reconcile("run")
    assert outcome is not None and outcome.wake_at_ms == end + 30_000, "an exact timer at the due time"
    assert ("DELETE", "/apis/kondukt.io/v1alpha1/namespaces/ns/workflows/run") not in harness.cluster.calls
    harness.clock.ms = end + 29_999
    assert (await harness.reconcile("run")).wake_at_ms == end + 30_000
    harness.clock.ms = end + 30_000
    assert await harness.reconcile("run") is None
    assert "/apis/kondukt.io/v1alpha1/namespaces/ns/workflows/run" not in harness.cluster.objects
    assert harness.reconciler.metrics.workflows_deleted._value.get() == 1  # type: ignore[attr-defined]


async def test_without_a_ttl_a_finished_workflow_stays_and_costs_no_timer() -> None:
    harness = ready_harness()
    harness.cluster.apply(run_of("run"))
    await finish(harness, "run")
    harness.clock.ms += 10 ** 9
    assert await harness.reconcile("run") is None
    assert "/apis/kondukt.io/v1alpha1/namespaces/ns/workflows/run" in harness.cluster.objects


async def test_archived_first_then_deleted_at_its_time(archive_dsn: str) -> None:
    harness = ready_harness()
    store = ArchiveStore(archive_dsn)
    harness.reconciler.retention.archive = store
    try:
        harness.cluster.apply(run_of("run", ttlStrategy={"secondsAfterCompletion": 5}))
        await finish(harness, "run")
        uid = harness.cluster.workflow("run")["metadata"]["uid"]
        end = harness.status("run")["endTime"]
        outcome = await harness.reconcile("run")
        assert outcome is not None and outcome.wake_at_ms == end + 5_000
        assert await store.count(uid) == 1
        archived = [c for c in harness.status("run")["conditions"] if c["type"] == "Archived"]
        assert [(c["status"], c["reason"]) for c in archived] == [("True", "Archived")]
        harness.clock.ms = end + 5_000
        assert await harness.reconcile("run") is None
        assert "/apis/kondukt.io/v1alpha1/namespaces/ns/workflows/run" not in harness.cluster.objects
        assert await store.count() == 1, "archived once"
    finally:
        await store.close()


async def test_with_the_archive_down_the_workflow_is_never_deleted_and_the_condition_says_so_once() -> None:
    harness = ready_harness()
    nobody_listens = f"postgresql://kondukt:pw-XYZZY@127.0.0.1:{free_port()}/archive"
    store = ArchiveStore(nobody_listens, connect_timeout=2, max_backoff=0.001)
    harness.reconciler.retention.archive = store
    harness.cluster.apply(run_of("run", ttlStrategy={"secondsAfterCompletion": 0}))
    await finish(harness, "run")
    for _attempt in range(3):
        harness.clock.ms += 60_000
        await asyncio.sleep(0.01)  # past the store's own backoff: every attempt really connects
        with pytest.raises(TransientError, match="archiving workflow ns/run"):
            await harness.reconcile("run")
    condition = [c for c in harness.status("run")["conditions"] if c["type"] == "Archived"]
    assert [(c["status"], c["reason"]) for c in condition] == [("False", "ArchiveUnavailable")]
    assert "XYZZY" not in condition[0]["message"]
    puts = [call for call in harness.cluster.calls if call[0] == "PUT"]
    assert len(puts) == 4, "three status writes of the run, one for the condition: not one per retry"
    assert "/apis/kondukt.io/v1alpha1/namespaces/ns/workflows/run" in harness.cluster.objects
    assert harness.reconciler.metrics.archive_pending._value.get() == 1  # type: ignore[attr-defined]
    assert harness.reconciler.metrics.archive_up._value.get() == 0  # type: ignore[attr-defined]
    assert harness.reconciler.metrics.archive_writes.labels("failed")._value.get() == 3  # type: ignore[attr-defined]
