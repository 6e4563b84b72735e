"""The workflow archive on the real control plane and a real PostgreSQL server (tests/postgres.py).

1. A finished workflow and its SUB_WORKFLOW child are archived (each its row, then its ``Archived`` condition)
   before the parent's TTL deletes both. With
   the database stopped while a workflow runs, the workflow still completes; its ``Archived`` condition says
   ``ArchiveUnavailable`` and ``kondukt_archive_up`` / ``kondukt_archive_pending`` say so; it is not deleted.
   Once the database is back, its row appears and then its TTL deletes it.
2. An operator killed while its archive write waits (the test holds a lock on the table, the operator's
   INSERT is seen waiting in ``pg_stat_activity``) archives the workflow once: the restarted operator writes the
   same row again (keyed by uid), never a second one.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kondukt.archive.store import ArchiveStore
from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_support import Cluster, OperatorProcess, WatchRecorder, taskdef, workflow
from tests.postgres import PostgresServer, free_port

pytestmark = pytest.mark.e2e

TABLE = "kondukt_archived_workflows"


def rows(dsn: str, uid: str | None = None) -> int:
    with psycopg.connect(dsn) as conn:
        if uid is None:
            found = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()  # type: ignore[arg-type]
        else:
            found = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE uid = %s", (uid,)).fetchone()  # type: ignore[arg-type]
    return int(found[0]) if found else 0


def metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = [s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]
    return values[0] if values else None


def archived(workflow: dict[str, Any]) -> dict[str, str]:
    """The Workflow's ``Archived`` condition ({} without one)."""
    found = [c for c in (workflow.get("status") or {}).get("conditions") or [] if c.get("type") == "Archived"]
    return found[0] if found else {}


def archived_condition(cluster: Cluster, name: str) -> dict[str, str]:
    return archived(cluster.workflow(name))


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own: it is stopped and started again."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.destroy()


def test_archived_before_deletion_and_a_database_outage_delays_both_and_loses_nothing(
        control_plane: ControlPlane, namespace: str, tmp_path: Path, own_postgres: PostgresServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    dsn = own_postgres.create_database("archive")
    monkeypatch.setenv("KONDUKT_ARCHIVE_DSN", dsn)
    port = free_port()
    operator = OperatorProcess(control_plane, namespace, tmp_path, "--archive", "--ttl-after-completion", "1",
                               "--metrics-port", str(port), "--metrics-address", "127.0.0.1").start()
    cluster = Cluster(control_plane, namespace, operator)
    watch = WatchRecorder(cluster, "workflows").start()
    try:
        cluster.apply(taskdef("echo"), taskdef("slow", annotations={"kwok.kondukt.io/echo-input": "true",
                                                                     "kwok.kondukt.io/duration": "3s"}))
        cluster.apply({"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "inner"},
                       "spec": {"name": "inner", "tasks": [
                           {"name": "echo", "taskReferenceName": "deep", "inputParameters": {"v": 2}}]}})
        one = {"name": "one", "outputParameters": {"v": "${a.output.v}"}, "tasks": [
            {"name": "echo", "taskReferenceName": "a", "inputParameters": {"v": 1}},
            {"name": "inner", "taskReferenceName": "sub", "type": "SUB_WORKFLOW", "subWorkflowParam": {"name": "inner"}}]}
        # Long enough a TTL to see the condition before the deletion; its child is archived on its own and
        # deleted with it.
        cluster.apply(workflow("first", definition=one, ttlStrategy={"secondsAfterCompletion": 5},
                               input={"k": "v"}))
        # Seen through a watch begun before the apply, not by polling: under load a poll can miss the
        # few seconds between the condition and the deletion.
        uid = watch.wait(lambda: next((obj["metadata"]["uid"] for _, obj in watch.of("first")
                                       if archived(obj).get("status") == "True"), None),
                         "first archived (its Archived condition)")
        assert rows(dsn, uid) == 1, "the row is there before the condition says so"
        child = watch.wait(lambda: next((obj["metadata"] for _, obj in watch.recorded() if (
            obj["metadata"].get("labels") or {}).get("kondukt.io/parent-workflow-uid") == uid), None),
            "first's SUB_WORKFLOW child")
        watch.wait(lambda: "first" in watch.names("DELETED"), "first deleted by its TTL")
        assert rows(dsn, child["uid"]) == 1, "the child was archived before its parent went"
        watch.wait(lambda: child["name"] in watch.names("DELETED"), "the child deleted with its parent", timeout=90)
        with psycopg.connect(dsn) as conn:
            found = conn.execute(f"SELECT phase, workflow FROM {TABLE} WHERE uid = %s", (uid,)).fetchone()  # type: ignore[arg-type]
        assert found is not None
        phase, body = found
        assert phase == "COMPLETED" and body["spec"]["input"] == {"k": "v"} and body["status"]["output"] == {"v": 1}
        assert [t["referenceTaskName"] for t in body["status"]["tasks"]] == ["a", "sub"]

        # The database goes down while "second" runs: the workflow completes all the same.
        slow = {"name": "slow", "tasks": [{"name": "slow", "taskReferenceName": "s", "inputParameters": {"v": 2}}]}
        cluster.apply(workflow("second", definition=slow))
        cluster.wait_until(lambda: cluster.status("second").get("phase") == "RUNNING", "second running")
        own_postgres.stop()
        assert cluster.wait_phase("second")["phase"] == "COMPLETED"
        cluster.wait_until(lambda: archived_condition(cluster, "second").get("reason") == "ArchiveUnavailable",
                           "the ArchiveUnavailable condition")
        condition = archived_condition(cluster, "second")
        assert condition["status"] == "False" and "retrying" in condition["message"]
        assert own_postgres.password not in condition["message"]
        cluster.wait_until(lambda: metric(port, "kondukt_archive_pending") == 1, "kondukt_archive_pending 1")
        assert metric(port, "kondukt_archive_up") == 0
        assert cluster.get("workflows", "second") is not None, "not deleted before it is archived"
        assert any(e["reason"] == "ArchiveUnavailable" for e in cluster.events("second"))

        # Back: the row appears, then the TTL deletes the workflow; the metrics say all is well.
        second_uid = cluster.workflow("second")["metadata"]["uid"]  # before the database is back: then it goes
        own_postgres.start()
        cluster.wait_until(lambda: cluster.get("workflows", "second") is None, "second archived, then deleted",
                           timeout=120)
        assert rows(dsn, second_uid) == 1 and rows(dsn) == 3
        assert metric(port, "kondukt_archive_pending") == 0
        assert metric(port, "kondukt_archive_up") == 1
        logs = operator.logs()
        assert own_postgres.password not in logs
        assert "Traceback" not in logs
    finally:
        watch.stop()
        operator.stop()


def test_an_operator_killed_mid_archive_archives_the_workflow_once(
        control_plane: ControlPlane, namespace: str, tmp_path: Path, archive_dsn: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def migrate() -> None:
        store = ArchiveStore(archive_dsn)
        await store.schema_version()
        await store.close()
    asyncio.run(migrate())
    monkeypatch.setenv("KONDUKT_ARCHIVE_DSN", archive_dsn)
    operator = OperatorProcess(control_plane, namespace, tmp_path, "--archive").start()
    cluster = Cluster(control_plane, namespace, operator)
    try:
        cluster.apply(taskdef("echo"))
        with psycopg.connect(archive_dsn) as blocker:
            blocker.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")  # type: ignore[arg-type]
            cluster.apply(workflow("once", definition={"name": "once", "tasks": [
                {"name": "echo", "taskReferenceName": "a", "inputParameters": {"v": 1}}]}))
            assert cluster.wait_phase("once")["phase"] == "COMPLETED"

            def insert_waits() -> bool:
                with psycopg.connect(archive_dsn) as probe:
                    found = probe.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kondukt' "
                                          "AND wait_event_type = 'Lock' AND query LIKE 'INSERT%%'").fetchone()
                return bool(found and found[0] >= 1)
            cluster.wait_until(insert_waits, "the operator's INSERT waiting for the table")
            operator.kill()
            blocker.rollback()  # the dead operator's INSERT may still go through now: that is the point
        operator.start()
        cluster.wait_until(lambda: archived_condition(cluster, "once").get("status") == "True",
                           "once archived by the restarted operator")
        uid = cluster.workflow("once")["metadata"]["uid"]
        assert rows(archive_dsn, uid) == 1 and rows(archive_dsn) == 1
        assert operator.starts == 2
    finally:
        operator.stop()
