"""Hypothesis profiles: the one mechanism that says how property and fuzz tests pick their examples.

- ``ci`` (the default, and always when ``CI`` is set): derandomized, so every run of ``make test`` on any
  clone tries the same examples; a property test cannot pass in CI and fail on a fresh clone.
- ``dev`` (``HYPOTHESIS_PROFILE=dev``): random examples, ``HYPOTHESIS_EXAMPLES`` per property (default
  500), for local exploration. An example it finds becomes an explicit test (an ``@example`` or a named
  case), never only a database entry.

Each property states its CI number through ``tests.profiles.examples(n)``; under ``dev`` every property
runs the dev number instead.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.postgres import PostgresError, PostgresServer

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", derandomize=False, deadline=None, print_blob=True,
                          max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "500")))
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# --------------------------------------------------------------------------------------- PostgreSQL
# One throwaway server per test session (tests/postgres.py), shared by the archive's unit tests and the e2e
# tests; every test gets a fresh database in it. A test that stops the server gets a server of its own.

@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer().start()
    except PostgresError as err:
        pytest.fail(f"cannot start PostgreSQL: {err}", pytrace=False)
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def archive_dsn(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """The DSN of a fresh, empty database for this test."""
    base = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower())[:40]
    return postgres.create_database(f"t_{base}_{secrets.token_hex(3)}")
