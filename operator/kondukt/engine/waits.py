"""Parsing a WAIT task's ``duration`` and ``until`` inputs the way Conductor reads them.

Conductor's WAIT accepts ``duration`` ("10s", "5m", "2h", "1d", "1 days 2 hours 30 minutes", ...) or
``until`` ("2026-11-27 10:00", "2026-11-27 10:00 UTC", "2026-11-27"); Kondukt also accepts ISO-8601
("2026-11-27T10:00:00Z", "2026-11-27T10:00:00.5+01:00"). A time without a zone is UTC.

Both the validator (a definition error when a literal cannot be parsed) and the decider (the instant a
WAIT task wakes up) use these functions, so they can never disagree.

The engine reads no clock and may not import ``datetime``: calendar arithmetic is done here with plain
integers (days from the civil date, as in Howard Hinnant's algorithm). Nothing here raises on bad text:
an unparseable value gives None.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["parse_wait_duration", "parse_wait_until", "wait_deadline", "wait_problem"]

# Conductor's DateTimeUtils.parseDuration grammar: each unit at most once, in this order, any spacing.
_DURATION = re.compile(
    r"\s*(?:(?P<days>\d+)\s*(?:days?|d))?"
    r"\s*(?:(?P<hours>\d+)\s*(?:hours?|hrs?|h))?"
    r"\s*(?:(?P<minutes>\d+)\s*(?:minutes?|mins?|m))?"
    r"\s*(?:(?P<seconds>\d+)\s*(?:seconds?|secs?|s))?"
    r"\s*",
    re.IGNORECASE,
)

_DATE_TIME = re.compile(
    r"\s*(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})"
    r"(?:(?:[Tt]|\s+)(?P<hour>\d{1,2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?)?"
    r"\s*(?P<zone>[A-Za-z][A-Za-z0-9+\-:]*|[+-]\d{2}(?::?\d{2})?)?\s*"
)

_ZONE_OFFSET = re.compile(r"(?:(?:UTC|GMT|UT)?)(?P<sign>[+-])(?P<hours>\d{1,2})(?::?(?P<minutes>\d{2}))?")

#: Zone names with one fixed meaning. Ambiguous abbreviations (IST, CST in Asia, ...) are rejected
#: rather than guessed; a numeric offset is always accepted.
_NAMED_ZONES_MINUTES = {
    "Z": 0,
    "UTC": 0,
    "GMT": 0,
    "UT": 0,
    "EST": -5 * 60,
    "EDT": -4 * 60,
    "CST": -6 * 60,
    "CDT": -5 * 60,
    "MST": -7 * 60,
    "MDT": -6 * 60,
    "PST": -8 * 60,
    "PDT": -7 * 60,
}

_MS_PER_DAY = 86_400_000


def parse_wait_duration(text: str) -> int | None:
    """Seconds in a Conductor duration ("30s", "1m", "2h", "1d", "1 days 2 hours 3 mins 4 secs").

    None when the text is blank or not a duration (a bare number has no unit, so it is not one).
    """
    if not isinstance(text, str) or not text.strip():
        return None
    match = _DURATION.fullmatch(text)
    if match is None:
        return None
    parts = {name: int(value) for name, value in match.groupdict().items() if value is not None}
    return (
        parts.get("days", 0) * 86_400
        + parts.get("hours", 0) * 3_600
        + parts.get("minutes", 0) * 60
        + parts.get("seconds", 0)
    )


def parse_wait_until(text: str) -> int | None:
    """Epoch milliseconds of a Conductor ``until`` value, or None when it is not a date-time.

    Accepted: 'YYYY-MM-DD', 'YYYY-MM-DD HH:MM', 'YYYY-MM-DD HH:MM:SS', each optionally followed by a
    zone ('UTC', 'GMT', 'Z', '+01:00', '-0800', 'GMT+5', or a fixed US abbreviation such as 'PST'), and
    ISO-8601 with a 'T' and fractional seconds. No zone means UTC.
    """
    if not isinstance(text, str):
        return None
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day = int(match["year"]), int(match["month"]), int(match["day"])
    hour = int(match["hour"]) if match["hour"] is not None else 0
    minute = int(match["minute"]) if match["minute"] is not None else 0
    second = int(match["second"]) if match["second"] is not None else 0
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    offset_minutes = _zone_offset_minutes(match["zone"])
    if offset_minutes is None:
        return None
    fraction_ms = int((match["fraction"] or "0").ljust(3, "0")[:3])
    local_ms = (
        _days_from_civil(year, month, day) * _MS_PER_DAY
        + ((hour * 60 + minute) * 60 + second) * 1000
        + fraction_ms
    )
    return local_ms - offset_minutes * 60_000


def _zone_offset_minutes(zone: str | None) -> int | None:
    if zone is None:
        return 0
    named = _NAMED_ZONES_MINUTES.get(zone.upper())
    if named is not None:
        return named
    match = _ZONE_OFFSET.fullmatch(zone.upper())
    if match is None:
        return None
    hours, minutes = int(match["hours"]), int(match["minutes"] or 0)
    if hours > 14 or minutes > 59:
        return None
    total = hours * 60 + minutes
    return -total if match["sign"] == "-" else total


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if _is_leap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's ``days_from_civil``)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def wait_deadline(input_data: Mapping[str, Any], start: int) -> int | None:
    """When a WAIT task that started at ``start`` (ms) completes, from its inputs; None = only by a user."""
    duration = input_data.get("duration")
    if isinstance(duration, str) and duration.strip():
        seconds = parse_wait_duration(duration)
        return start + seconds * 1000 if seconds is not None else None
    until = input_data.get("until")
    if isinstance(until, str) and until.strip():
        return parse_wait_until(until)
    return None


def wait_problem(input_data: Mapping[str, Any]) -> str | None:
    """Why a WAIT task's resolved inputs cannot be read, or None."""
    duration, until = input_data.get("duration"), input_data.get("until")
    if isinstance(duration, str) and duration.strip():
        return None if parse_wait_duration(duration) is not None else f"cannot read duration {duration!r}"
    if isinstance(until, str) and until.strip():
        return None if parse_wait_until(until) is not None else f"cannot read until {until!r}"
    return None
