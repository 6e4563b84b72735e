"""``kondukt cron``: the list's table (a pure function of the objects and now) and the command table."""

from __future__ import annotations

import datetime as dt

from kondukt.cli import app
from kondukt.cli.cron import format_cron_table

NOW = dt.datetime(2026, 5, 1, 10, 0, 30, tzinfo=dt.UTC)


def test_the_table_shows_schedule_zone_runs_and_times() -> None:
    objs = [
        {"metadata": {"name": "nightly", "namespace": "a"},
         "spec": {"schedule": "@daily", "timezone": "Europe/Berlin"},
         "status": {"schedule": "0 0 * * *", "active": [{"name": "nightly-1"}],
                    "lastScheduleTime": "2026-05-01T10:00:00Z", "nextScheduleTime": "2026-05-01T10:05:00Z",
                    "conditions": [{"type": "Ready", "status": "True", "reason": "Scheduled", "message": "x"}]}},
        {"metadata": {"name": "broken", "namespace": "a"}, "spec": {"schedules": ["61 * * * *"], "suspend": True},
         "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec",
                                    "message": "spec.schedules[0]: bad"}]}},
    ]
    lines = format_cron_table(objs, NOW).splitlines()
    assert lines[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "NEXT",
                                "READY"]
    assert lines[1].split() == ["nightly", "0", "0", "*", "*", "*", "Europe/Berlin", "False", "1", "30s", "ago",
                                "in", "4m30s", "True"]
    assert "61 * * * *" in lines[2] and "UTC" in lines[2] and "False (InvalidSpec): spec.schedules[0]: bad" in lines[2]


def test_cron_is_a_lazy_command() -> None:
    assert "cron" in [c.name for c in app.COMMANDS]
    args = app.parse_args(["cron", "trigger", "nightly", "-n", "team"])
    assert (args.name, args.namespace) == ("nightly", "team")
    args = app.parse_args(["-n", "team", "cron", "list", "-A"])
    assert args.all_namespaces and args.namespace == "team"
