"""``kondukt get|describe|graph --archived``: finished workflows read back from the workflow archive.

Kondukt has no server of its own (Argo's ``argo archive`` goes through the Argo Server), so the CLI reads the
archive's PostgreSQL database directly: ``--archive-dsn`` or ``$KONDUKT_ARCHIVE_DSN`` (a libpq connection
string; its password may stay out of it, in ``~/.pgpass`` or ``$PGPASSWORD``, as with psql). A read-only
database role is all it needs. Without ``-n`` the archive is searched in every namespace (it outlives
namespaces and clusters); ``-n NS`` narrows it.

Formatting is done by pure functions (tested without a database); ``describe`` and ``graph`` reuse the live
commands' writers on the archived Workflow object. This module only reads the archive, never the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from kondukt.archive import DSN_ENV
from kondukt.archive.errors import ArchiveError
from kondukt.archive.records import ArchivedWorkflow
from kondukt.archive.selectors import PHASES, ArchiveQuery
from kondukt.cli.text import format_table, human_duration
from kondukt.errors import KonduktError, KonduktUserError

if TYPE_CHECKING:  # psycopg is imported only when an --archived command runs
    from kondukt.archive.store import ArchiveStore

T = TypeVar("T")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_archive_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archived", action="store_true",
                        help="read finished workflows from the workflow archive (PostgreSQL) instead of the cluster")
    parser.add_argument("--archive-dsn", metavar="DSN",
                        help=f"the archive's libpq connection string (default ${DSN_ENV}); keep the password "
                        "in ~/.pgpass or $PGPASSWORD rather than on the command line")


def archive_dsn(args: argparse.Namespace) -> str:
    dsn = getattr(args, "archive_dsn", None) or os.environ.get(DSN_ENV, "")
    if not dsn.strip():
        raise KonduktUserError(f"--archived needs the archive's connection string: --archive-dsn or ${DSN_ENV} "
                               "(see docs/operations.md, 'Reading the archive')")
    return dsn


def parse_time(text: str, flag: str, now: dt.datetime) -> dt.datetime:
    """``30m``, ``2h``, ``7d`` (that long ago) or an RFC 3339 time (``2026-12-06T10:00:00Z``)."""
    found = _DURATION.match(text.strip())
    if found:
        return now - dt.timedelta(seconds=float(found[1]) * _UNITS[found[2]])
    try:
        stamp = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise KonduktUserError(f"{flag} {text}: expected a duration (30m, 2h, 7d) or an RFC 3339 time "
                               "(2026-12-06T10:00:00Z)") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def query_from_args(args: argparse.Namespace, now: dt.datetime) -> ArchiveQuery:
    phases = tuple(p.upper() for value in (args.phase or []) for p in value.split(",") if p)
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise KonduktUserError(f"--phase {unknown[0]}: expected one of {', '.join(PHASES)}")
    if args.limit < 1:
        raise KonduktUserError("--limit must be at least 1")
    return ArchiveQuery(
        namespace=None if args.all_namespaces else args.namespace, name=args.name, phases=phases,
        selector=args.selector, limit=args.limit,
        finished_after=parse_time(args.since, "--since", now) if args.since else None,
        finished_before=parse_time(args.until, "--until", now) if args.until else None,
    )


def _stamp(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else "-"


def archived_rows(records: Sequence[ArchivedWorkflow], wide: bool) -> str:
    headers = ["NAMESPACE", "NAME", "PHASE", "FINISHED", "DURATION", "UID"]
    if wide:
        headers += ["DEFINITION", "ARCHIVED"]
    rows = []
    for record in records:
        duration = (human_duration((record.finished_at - record.started_at).total_seconds())
                     if record.started_at else "-")
        row = [record.namespace, record.name, record.phase, _stamp(record.finished_at), duration, record.uid]
        if wide:
            definition = (f"{record.definition_name}:{record.definition_version}" if record.definition_version
                          else record.definition_name or "-")
            row += [definition, _stamp(record.archived_at)]
        rows.append(row)
    return format_table(headers, rows)


def _run(dsn: str, operation: Callable[[ArchiveStore], Awaitable[T]]) -> T:
    from kondukt.archive.store import ArchiveStore

    async def main() -> T:
        store = ArchiveStore(dsn)
        try:
            return await operation(store)
        finally:
            await store.close()
    try:
        return asyncio.run(main())
    except ArchiveError as err:
        raise KonduktError(f"the workflow archive: {err}") from None


def find(args: argparse.Namespace, query: ArchiveQuery, with_workflow: bool) -> list[ArchivedWorkflow]:
    async def operation(store: ArchiveStore) -> list[ArchivedWorkflow]:
        return await store.find(query, with_workflow=with_workflow)
    return _run(archive_dsn(args), operation)


def get_one(args: argparse.Namespace, name_or_uid: str) -> tuple[ArchivedWorkflow, list[ArchivedWorkflow]]:
    """The archived workflow with this uid, else the newest of that name (the others returned too)."""
    namespace = None if getattr(args, "all_namespaces", False) else args.namespace

    async def operation(store: ArchiveStore) -> list[ArchivedWorkflow]:
        return await store.get(name_or_uid, namespace)
    found = _run(archive_dsn(args), operation)
    if not found:
        where = f" in namespace {namespace}" if namespace else ""
        raise KonduktError(f"no archived workflow {name_or_uid}{where} (a name or a uid)")
    return found[0], found[1:]


def others_note(others: Sequence[ArchivedWorkflow]) -> str:
    if not others:
        return ""
    listed = ", ".join(f"{o.namespace}/{o.name} {o.uid} ({_stamp(o.finished_at)})" for o in others[:5])
    more = f" and {len(others) - 5} more" if len(others) > 5 else ""
    return f"note: {len(others)} older archived runs of that name: {listed}{more}; give a uid to choose one\n"


def archive_header(record: ArchivedWorkflow) -> str:
    """The lines ``describe --archived`` prints before the Workflow itself."""
    return f"{'UID:':<17}{record.uid}\n{'Archived:':<17}{_stamp(record.archived_at)}\n"
