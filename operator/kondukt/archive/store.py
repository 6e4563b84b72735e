"""The archive's PostgreSQL client (psycopg 3, async): migrate, archive, find, get, prune.

One connection per store, used by one request at a time (an archive write is one short upsert; hundreds a
minute need no pool). Why it is built the way it is:

- **Idempotent writes.** A workflow is keyed by its Kubernetes uid and written with ``INSERT ... ON CONFLICT
  (uid) DO UPDATE``: an operator that dies between the write and the ``Archived`` condition writes the same
  row again, never a second one (a retried or restarted workflow keeps its uid: its newest run replaces the
  row).
- **A database that is down never stalls the operator.** Connecting and every statement have time limits;
  after a failure the store refuses at once (:class:`ArchiveUnavailable`) until its backoff has passed, so a
  thousand finished workflows waiting for the database cost one connection attempt per backoff, not a
  thousand timeouts in the reconcile's workers; while one request connects, the others are refused at once
  rather than queued behind it.
- **No secret leaves it.** The connection string (password included) is only handed to libpq; error
  messages are cleaned of the password before they reach a log line, a condition or an Event.
- **Retention of the archive itself.** :meth:`ArchiveStore.prune` deletes rows finished before a cut-off, in
  bounded batches (one huge DELETE would hold locks and bloat the WAL).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from kondukt.archive import migrations
from kondukt.archive.errors import ArchiveError, ArchiveUnavailable
from kondukt.archive.records import ArchivedWorkflow
from kondukt.archive.selectors import ArchiveQuery

logger = logging.getLogger(__name__)

T = TypeVar("T")

TABLE: Final = migrations.TABLE
#: Rows one prune statement deletes at most (it repeats up to PRUNE_ROUNDS times per call).
PRUNE_BATCH: Final = 5000
PRUNE_ROUNDS: Final = 100
_COLUMNS: Final = ("uid, namespace, name, phase, definition_name, definition_version, parent_uid, labels, "
                   "created_at, started_at, finished_at, archived_at")


def redact(text: str, dsn: str) -> str:
    """``text`` without the connection string's password (libpq never prints it, but a DSN might be)."""
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        password = None
    out = text.replace(dsn, "<archive connection string>") if dsn else text
    return out.replace(str(password), "***") if password else out


def check_dsn(dsn: str) -> None:
    """Raise ArchiveError when ``dsn`` is not a libpq connection string (the message never repeats it)."""
    if not dsn.strip():
        raise ArchiveError("the archive's connection string is empty")
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as err:
        raise ArchiveError(f"the archive's connection string is not valid: {redact(str(err), dsn)}") from None


class ArchiveStore:
    def __init__(self, dsn: str, *, connect_timeout: float = 5.0, statement_timeout: float = 15.0,
                 max_backoff: float = 30.0) -> None:
        check_dsn(dsn)
        self._dsn = dsn
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.max_backoff = max_backoff
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self._failures = 0
        self._retry_at = 0.0
        self._last_error = ""

    def __repr__(self) -> str:  # never the DSN
        return "ArchiveStore(<connection string hidden>)"

    # ---------------------------------------------------------------------------------- connection
    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        if time.monotonic() < self._retry_at:
            raise ArchiveUnavailable(f"{self._last_error} (next attempt in "
                                     f"{self._retry_at - time.monotonic():.0f}s)")
        conn = await psycopg.AsyncConnection.connect(
            self._dsn, autocommit=True, connect_timeout=max(1, round(self.connect_timeout)),
            application_name="kondukt",
            options=f"-c statement_timeout={int(self.statement_timeout * 1000)}")
        try:
            await self._migrate(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return conn

    async def _run(self, what: str, operation: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Run ``operation`` on the connection (connecting first when needed); a connection or server
        failure closes it and becomes ArchiveUnavailable, with the store's backoff."""
        if self._lock.locked() and self._conn is None:
            # Another request is connecting (maybe waiting out a timeout): do not queue behind it.
            raise ArchiveUnavailable(f"{what}: the archive is being connected to"
                                     + (f" (last error: {self._last_error})" if self._last_error else ""))
        async with self._lock:
            try:
                conn = await asyncio.wait_for(self._connect(), self.connect_timeout + self.statement_timeout)
                result = await asyncio.wait_for(operation(conn), self.statement_timeout + 5)
            except ArchiveUnavailable:
                raise
            except ArchiveError:
                raise
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError, TimeoutError) as err:
                await self._broken()
                self._failures += 1
                delay = min(self.max_backoff, 0.5 * 2 ** min(self._failures - 1, 10))
                self._retry_at = time.monotonic() + delay
                text = " ".join(redact(str(err) or type(err).__name__, self._dsn).split())
                self._last_error = f"{what}: {text}"[:300]
                raise ArchiveUnavailable(self._last_error) from None
            self._failures = 0
            self._retry_at = 0.0
            return result

    async def _broken(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a dead connection may fail too
                await conn.close()

    async def close(self) -> None:
        async with self._lock:
            await self._broken()

    @staticmethod
    async def _migrate(conn: psycopg.AsyncConnection[Any]) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (migrations.MIGRATION_LOCK,))
            await conn.execute(migrations.CREATE_MIGRATIONS_TABLE)
            cursor = await conn.execute("SELECT version FROM kondukt_schema_migrations")
            applied = {int(row[0]) for row in await cursor.fetchall()}
            newest = max(applied, default=0)
            if newest > migrations.LATEST:
                raise ArchiveError(f"the archive's schema is at version {newest}, newer than this Kondukt knows "
                                   f"({migrations.LATEST}): upgrade Kondukt")
            for migration in migrations.MIGRATIONS:
                if migration.version in applied:
                    continue
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO kondukt_schema_migrations (version, description) VALUES (%s, %s)",
                                   (migration.version, migration.description))
                logger.info("archive schema migrated to version %d (%s)", migration.version, migration.description)

    async def schema_version(self) -> int:
        async def read(conn: psycopg.AsyncConnection[Any]) -> int:
            cursor = await conn.execute("SELECT max(version) FROM kondukt_schema_migrations")
            row = await cursor.fetchone()
            return int(row[0]) if row and row[0] is not None else 0
        return await self._run("reading the schema version", read)

    # ---------------------------------------------------------------------------------- writing
    async def archive(self, record: ArchivedWorkflow) -> None:
        """Write (or rewrite) one finished workflow, keyed by its uid."""
        params = (record.uid, record.namespace, record.name, record.phase, record.definition_name,
                  record.definition_version, record.parent_uid, Jsonb(dict(record.labels)), record.created_at,
                  record.started_at, record.finished_at, Jsonb(dict(record.workflow)))

        async def write(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                f"""INSERT INTO {TABLE} (uid, namespace, name, phase, definition_name, definition_version,
                        parent_uid, labels, created_at, started_at, finished_at, workflow)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                    ON CONFLICT (uid) DO UPDATE SET namespace = EXCLUDED.namespace, name = EXCLUDED.name,
                        phase = EXCLUDED.phase, definition_name = EXCLUDED.definition_name,
                        definition_version = EXCLUDED.definition_version, parent_uid = EXCLUDED.parent_uid,
                        labels = EXCLUDED.labels, created_at = EXCLUDED.created_at,
                        started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
                        archived_at = now(), workflow = EXCLUDED.workflow""",
                params)
        await self._run(f"archiving workflow {record.namespace}/{record.name}", write)

    async def prune(self, finished_before: dt.datetime) -> int:
        """Delete the workflows that finished before ``finished_before``; returns how many."""
        async def delete(conn: psycopg.AsyncConnection[Any]) -> int:
            total = 0
            for _round in range(PRUNE_ROUNDS):
                cursor = await conn.execute(
                    f"DELETE FROM {TABLE} WHERE uid IN (SELECT uid FROM {TABLE} WHERE finished_at < %s "
                    f"LIMIT {PRUNE_BATCH})", (finished_before,))
                total += cursor.rowcount
                if cursor.rowcount < PRUNE_BATCH:
                    break
            return total
        return await self._run("pruning the archive", delete)

    # ---------------------------------------------------------------------------------- reading
    async def find(self, query: ArchiveQuery, *, with_workflow: bool = False) -> list[ArchivedWorkflow]:
        """The archived workflows ``query`` selects, newest first."""
        where, params = query.where()
        columns = _COLUMNS + (", workflow" if with_workflow else "")

        async def select(conn: psycopg.AsyncConnection[Any]) -> list[ArchivedWorkflow]:
            async with conn.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(
                    f"SELECT {columns} FROM {TABLE} WHERE {where} "
                    f"ORDER BY finished_at DESC, name LIMIT %s", [*params, query.limit])
                return [_record(row) for row in await cursor.fetchall()]
        return await self._run("reading the archive", select)

    async def get(self, name_or_uid: str, namespace: str | None) -> list[ArchivedWorkflow]:
        """The archived workflows whose uid is ``name_or_uid``, else those of that name (in ``namespace``
        unless None), newest first, with their Workflow objects."""
        async def select(conn: psycopg.AsyncConnection[Any]) -> list[ArchivedWorkflow]:
            async with conn.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(f"SELECT {_COLUMNS}, workflow FROM {TABLE} WHERE uid = %s",
                                     (name_or_uid,))
                rows: Sequence[dict[str, Any]] = await cursor.fetchall()
                if not rows:
                    where = "name = %s" + (" AND namespace = %s" if namespace is not None else "")
                    await cursor.execute(
                        f"SELECT {_COLUMNS}, workflow FROM {TABLE} WHERE {where} "
                        f"ORDER BY finished_at DESC LIMIT 50",
                        (name_or_uid, namespace) if namespace is not None else (name_or_uid,))
                    rows = await cursor.fetchall()
                return [_record(row) for row in rows]
        return await self._run("reading the archive", select)

    async def count(self, uid: str | None = None) -> int:
        async def select(conn: psycopg.AsyncConnection[Any]) -> int:
            if uid is None:
                cursor = await conn.execute(f"SELECT count(*) FROM {TABLE}")
            else:
                cursor = await conn.execute(f"SELECT count(*) FROM {TABLE} WHERE uid = %s", (uid,))
            row = await cursor.fetchone()
            return int(row[0]) if row else 0
        return await self._run("reading the archive", select)


def _record(row: dict[str, Any]) -> ArchivedWorkflow:
    return ArchivedWorkflow(
        uid=row["uid"], namespace=row["namespace"], name=row["name"], phase=row["phase"],
        finished_at=row["finished_at"], definition_name=row["definition_name"],
        definition_version=row["definition_version"], parent_uid=row["parent_uid"],
        labels=dict(row["labels"] or {}), created_at=row["created_at"], started_at=row["started_at"],
        archived_at=row["archived_at"], workflow=dict(row.get("workflow") or {}),
    )
