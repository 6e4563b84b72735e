"""``kondukt operator``'s flags that need more than argparse: the default ttlStrategy."""

from __future__ import annotations

import pytest

from kondukt.cli import app
from kondukt.cli.operator import default_ttl
from kondukt.engine.models import TTLStrategy
from kondukt.errors import KonduktUserError


def test_no_ttl_flag_keeps_finished_workflows() -> None:
    assert default_ttl(app.parse_args(["operator", "--standalone"])) is None


def test_the_ttl_flags_make_the_default_strategy() -> None:
    args = app.parse_args(["operator", "--ttl-after-completion", "3600", "--ttl-after-failure", "0"])
    assert default_ttl(args) == TTLStrategy(secondsAfterCompletion=3600, secondsAfterFailure=0)


def test_a_negative_ttl_is_refused_naming_the_flag() -> None:
    with pytest.raises(KonduktUserError, match="--ttl-after-success must not be negative"):
        default_ttl(app.parse_args(["operator", "--ttl-after-success", "-1"]))


def test_the_archive_needs_its_connection_string_from_the_environment_only() -> None:
    from kondukt.cli.operator import archive_dsn

    assert archive_dsn(app.parse_args(["operator"]), {"KONDUKT_ARCHIVE_DSN": "host=db"}) is None
    args = app.parse_args(["operator", "--archive", "--archive-retention-days", "30"])
    assert archive_dsn(args, {"KONDUKT_ARCHIVE_DSN": "host=db dbname=k"}) == "host=db dbname=k"
    with pytest.raises(KonduktUserError, match=r"--archive needs the archive's connection string in \$KONDUKT_ARCHIVE_DSN"):
        archive_dsn(args, {})
    with pytest.raises(KonduktUserError, match="connection string is not valid") as caught:
        archive_dsn(args, {"KONDUKT_ARCHIVE_DSN": "host=db password='pw-XYZZY"})
    assert "XYZZY" not in str(caught.value)
    with pytest.raises(KonduktUserError, match="--archive-retention-days must not be negative"):
        archive_dsn(app.parse_args(["operator", "--archive-retention-days", "-1"]), {})


def test_status_coalescing_defaults_to_a_second_and_refuses_a_bad_value_naming_the_flag() -> None:
    from kondukt.cli.operator import run

    assert app.parse_args(["operator"]).status_coalesce_seconds == 1.0
    for bad in ("-1", "61"):
        with pytest.raises(KonduktUserError, match="--status-coalesce-seconds must be between 0 and 60"):
            run(app.parse_args(["operator", "--status-coalesce-seconds", bad]))
