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
