"""The tests' throwaway PostgreSQL (tests/postgres.py) cleans up after a run killed before its teardown."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from tests.postgres import OWNER_FILE, PostgresServer, reap_orphans


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_server_whose_test_run_died_is_stopped_and_removed_and_a_live_runs_is_not() -> None:
    orphan = PostgresServer().start()
    kept = PostgresServer().start()
    try:
        (orphan.root / OWNER_FILE).write_text(str(dead_pid()))  # as if its run had been SIGKILLed

        reaped = reap_orphans(orphan.bin, orphan.root.parent)

        assert reaped == [orphan.root]
        assert not orphan.root.exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(orphan.dsn(), connect_timeout=5).close()
        assert kept.running()
        psycopg.connect(kept.dsn(), connect_timeout=5).close()
    finally:
        orphan.destroy()
        kept.destroy()
