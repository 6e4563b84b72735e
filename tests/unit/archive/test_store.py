"""The archive store on a real PostgreSQL server (tests/postgres.py): migrations, idempotent writes,
filters, retention, and what it does while the database is down."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest

from kondukt.archive import migrations
from kondukt.archive.errors import ArchiveError, ArchiveUnavailable
from kondukt.archive.records import ArchivedWorkflow
from kondukt.archive.selectors import ArchiveQuery
from kondukt.archive.store import ArchiveStore, redact
from tests.postgres import PostgresServer

T0 = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def record(uid: str, name: str = "wf", *, phase: str = "COMPLETED", minutes: int = 0, namespace: str = "ns",
           labels: dict[str, str] | None = None, **extra: Any) -> ArchivedWorkflow:
    return ArchivedWorkflow(uid=uid, namespace=namespace, name=name, phase=phase,
                            finished_at=T0 + dt.timedelta(minutes=minutes), labels=labels or {},
                            definition_name="pipeline", definition_version=2, created_at=T0 - dt.timedelta(hours=1),
                            started_at=T0 - dt.timedelta(minutes=59),
                            workflow={"metadata": {"name": name, "uid": uid}, "status": {"phase": phase, **extra}})


async def test_migrations_run_once_and_record_their_version(archive_dsn: str) -> None:
    first, second = ArchiveStore(archive_dsn), ArchiveStore(archive_dsn)
    try:
        assert await first.schema_version() == migrations.LATEST
        assert await second.schema_version() == migrations.LATEST  # the second connection finds it done
    finally:
        await first.close()
        await second.close()
    with psycopg.connect(archive_dsn) as conn:
        rows = conn.execute("SELECT version, description FROM kondukt_schema_migrations ORDER BY version").fetchall()
    assert rows == [(m.version, m.description) for m in migrations.MIGRATIONS]


async def test_a_schema_newer_than_this_kondukt_is_refused_not_changed(archive_dsn: str) -> None:
    with psycopg.connect(archive_dsn, autocommit=True) as conn:
        conn.execute(migrations.CREATE_MIGRATIONS_TABLE)
        conn.execute("INSERT INTO kondukt_schema_migrations (version, description) VALUES (99, 'future')")
    store = ArchiveStore(archive_dsn)
    with pytest.raises(ArchiveError, match="version 99, newer than this Kondukt knows"):
        await store.schema_version()
    with psycopg.connect(archive_dsn) as conn:
        assert conn.execute("SELECT to_regclass(%s)", (migrations.TABLE,)).fetchone() == (None,)


async def test_writing_one_workflow_twice_keeps_one_row_with_the_newest_content(archive_dsn: str) -> None:
    store = ArchiveStore(archive_dsn)
    try:
        await store.archive(record("u1", phase="FAILED", attempt=1))
        await store.archive(record("u1", phase="COMPLETED", attempt=2))  # a retried run, or a replay
        assert await store.count() == 1
        [found] = await store.get("u1", None)
        assert found.phase == "COMPLETED" and found.workflow["status"]["attempt"] == 2
        assert (found.definition_name, found.definition_version) == ("pipeline", 2)
        assert found.finished_at == T0 and found.archived_at is not None
    finally:
        await store.close()


async def test_find_filters_by_name_phase_labels_and_time(archive_dsn: str) -> None:
    store = ArchiveStore(archive_dsn)
    try:
        await store.archive(record("a", "alpha", labels={"team": "x", "tier": "gold"}, minutes=1))
        await store.archive(record("b", "beta", phase="FAILED", labels={"team": "y"}, minutes=2))
        await store.archive(record("c", "gamma", phase="TIMED_OUT", labels={}, minutes=3))
        await store.archive(record("d", "alpha", namespace="other", labels={"team": "x"}, minutes=4))

        async def names(**query: Any) -> list[str]:
            return [r.uid for r in await store.find(ArchiveQuery(**query))]

        assert await names() == ["d", "c", "b", "a"]  # newest first
        assert await names(namespace="ns") == ["c", "b", "a"]
        assert await names(name="alpha") == ["d", "a"]
        assert await names(phases=("FAILED", "TIMED_OUT")) == ["c", "b"]
        assert await names(selector="team=x") == ["d", "a"]
        assert await names(selector="team==x,tier") == ["a"]
        assert await names(selector="team!=x") == ["c", "b"]  # without the label too, as in Kubernetes
        assert await names(selector="!team") == ["c"]
        assert await names(selector="team in (x, y)") == ["d", "b", "a"]
        assert await names(selector="team notin (x)") == ["c", "b"]
        assert await names(finished_after=T0 + dt.timedelta(minutes=2),
                           finished_before=T0 + dt.timedelta(minutes=4)) == ["c", "b"]
        assert await names(limit=1) == ["d"]
        [full] = await store.find(ArchiveQuery(name="beta"), with_workflow=True)
        assert full.workflow["metadata"]["uid"] == "b"
        assert (await store.find(ArchiveQuery(name="beta")))[0].workflow == {}
        assert [r.namespace for r in await store.get("alpha", None)] == ["other", "ns"]
        assert [r.uid for r in await store.get("alpha", "ns")] == ["a"]
        assert await store.get("nothing", None) == []
    finally:
        await store.close()


@pytest.mark.parametrize(("selector", "message"), [
    pytest.param("team=", None, id="empty-value-is-valid"),
    pytest.param("a b=c", "is not a valid label key", id="space-in-key"),
    pytest.param("team=x;DROP TABLE", "is not a valid label value", id="injection-attempt"),
    pytest.param("team,,tier", "an empty requirement", id="empty-requirement"),
])
def test_bad_label_selectors_are_refused_naming_the_requirement(selector: str, message: str | None) -> None:
    if message is None:
        ArchiveQuery(selector=selector).where()
    else:
        with pytest.raises(ArchiveError, match=message):
            ArchiveQuery(selector=selector).where()


def test_an_unknown_phase_is_refused() -> None:
    with pytest.raises(ArchiveError, match="phase 'DONE': expected one of COMPLETED"):
        ArchiveQuery(phases=("DONE",)).where()


async def test_prune_removes_what_finished_before_the_cut_off(archive_dsn: str) -> None:
    store = ArchiveStore(archive_dsn)
    try:
        for minute in range(5):
            await store.archive(record(f"u{minute}", minutes=minute))
        assert await store.prune(T0 + dt.timedelta(minutes=2)) == 2
        assert sorted(r.uid for r in await store.find(ArchiveQuery())) == ["u2", "u3", "u4"]
        assert await store.prune(T0) == 0
    finally:
        await store.close()


async def test_a_database_down_is_unavailable_without_the_password_then_usable_again() -> None:
    server = PostgresServer().start()
    try:
        dsn = server.create_database("down")
        store = ArchiveStore(dsn, connect_timeout=2, statement_timeout=5, max_backoff=0.01)
        await store.archive(record("before"))
        server.stop()
        with pytest.raises(ArchiveUnavailable) as caught:
            await store.archive(record("while-down"))
        assert server.password not in str(caught.value)
        assert "archiving workflow ns/wf" in str(caught.value)
        server.start()
        for _attempt in range(50):  # bounded: the store's backoff is 10 ms here
            try:
                await store.archive(record("after"))
                break
            except ArchiveUnavailable:
                continue
        assert sorted(r.uid for r in await store.find(ArchiveQuery())) == ["after", "before"]
        await store.close()
    finally:
        server.destroy()


def test_the_password_never_shows_in_messages_or_repr() -> None:
    dsn = "postgresql://kondukt:s3cret-pw@db.example:5432/archive"
    assert "s3cret-pw" not in redact(f"could not connect with {dsn}: password s3cret-pw refused", dsn)
    assert "s3cret-pw" not in repr(ArchiveStore(dsn))
    assert "s3cret" not in redact("password=s3cret-pw", "host=db password=s3cret-pw")


def test_a_malformed_connection_string_is_refused_without_repeating_it() -> None:
    with pytest.raises(ArchiveError, match="connection string is not valid") as caught:
        ArchiveStore("host=db password='pw-XYZZY")
    assert "XYZZY" not in str(caught.value)
    with pytest.raises(ArchiveError, match="connection string is empty"):
        ArchiveStore("  ")
