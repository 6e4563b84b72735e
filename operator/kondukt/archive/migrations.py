"""The archive's schema, as numbered migrations applied in order (no ORM: SQL a DBA can read).

Each migration runs once, in a transaction, and is recorded in ``kondukt_schema_migrations``; every
operator replica and the CLI call :func:`migrate` on connecting, under a transaction-scoped advisory lock, so
two of them never apply the same migration at once. A database whose newest recorded version is newer than
this Kondukt knows (a downgrade) is refused with a message naming both versions, never changed.

Never edit a migration that was released: add the next number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: The key of the advisory lock migrations run under ("kondukt" in ASCII, fits a bigint).
MIGRATION_LOCK: Final = 0x6B6F6E64756B74

TABLE: Final = "kondukt_archived_workflows"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "archived workflows", (
        f"""CREATE TABLE {TABLE} (
            uid text PRIMARY KEY,
            namespace text NOT NULL,
            name text NOT NULL,
            phase text NOT NULL,
            definition_name text,
            definition_version integer,
            parent_uid text,
            labels jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            created_at timestamptz,
            started_at timestamptz,
            finished_at timestamptz NOT NULL,
            archived_at timestamptz NOT NULL DEFAULT now(),
            workflow jsonb NOT NULL
        )""",
        f"CREATE INDEX {TABLE}_name ON {TABLE} (namespace, name)",
        f"CREATE INDEX {TABLE}_finished ON {TABLE} (finished_at)",
        f"CREATE INDEX {TABLE}_labels ON {TABLE} USING gin (labels jsonb_path_ops)",
    )),
)

LATEST: Final = MIGRATIONS[-1].version

CREATE_MIGRATIONS_TABLE: Final = """CREATE TABLE IF NOT EXISTS kondukt_schema_migrations (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
