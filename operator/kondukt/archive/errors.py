"""The archive's errors, shared by its store and the operator's retention (which must not import psycopg)."""

from __future__ import annotations


class ArchiveError(Exception):
    """The archive cannot be used as asked (a bad connection string, a schema newer than this Kondukt)."""


class ArchiveUnavailable(ArchiveError):
    """The archive cannot be reached or written now (database down, unreachable, refusing): retry later."""
