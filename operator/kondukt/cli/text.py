"""Text formatting shared by every ``kondukt`` command: durations, times, tables, truncation.

Durations and times were formatted in two places (the cluster commands and ``kondukt run``'s progress
view); they are formatted here only, so ``kondukt get``, ``describe``, ``watch`` and ``run`` agree:
ages follow kubectl (``human_duration``), a task's run time is ``short_duration``, a local run's elapsed
time is ``elapsed_duration``. Everything here is a pure function of its arguments (and of ``now`` where
a time is relative), so it is tested without a cluster or a terminal.

This module must stay free of I/O and of any import beyond the standard library.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any


# ============================================================================================ times
def parse_timestamp(value: Any) -> dt.datetime | None:
    """An RFC 3339 time (``metadata.creationTimestamp``) or epoch milliseconds (Conductor's times)."""
    if isinstance(value, bool) or value in (None, "", 0):
        return None
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def age(value: Any, now: dt.datetime) -> str:
    """How long ago ``value`` (a timestamp) was, kubectl style; ``<unknown>`` when it is not a time."""
    when = parse_timestamp(value)
    return "<unknown>" if when is None else human_duration((now - when).total_seconds())


def iso_time(value: Any) -> str:
    """A timestamp as ``2024-05-01T12:00:00Z`` (UTC); ``-`` when it is not a time."""
    when = parse_timestamp(value)
    return "-" if when is None else when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clock_time(at_ms: int) -> str:
    """A moment as local wall-clock time to the millisecond (``14:03:07.250``), for progress lines."""
    return dt.datetime.fromtimestamp(at_ms / 1000).strftime("%H:%M:%S.%f")[:-3]


# ============================================================================================ durations
def human_duration(seconds: float) -> str:
    """kubectl's AGE style (k8s.io/apimachinery's HumanDuration): 45s, 3m12s, 5h2m, 3d4h, 2y."""
    if seconds < -1:
        return "<invalid>"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def short_duration(milliseconds: float) -> str:
    """A task's run time: 850ms, 4.2s, then kubectl's style."""
    if milliseconds < 1000:
        return f"{max(0, int(milliseconds))}ms"
    if milliseconds < 60_000:
        return f"{milliseconds / 1000:.1f}s"
    return human_duration(milliseconds / 1000)


def elapsed_duration(seconds: float) -> str:
    """A local run's elapsed time, read off a stopwatch: 0.42s, 12.35s, then 3m07.5s."""
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:04.1f}s"


# ============================================================================================ text
def truncate(text: str, width: int) -> str:
    """``text`` on one line (whitespace runs become one space), cut to ``width`` with a final ``…``."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: max(0, width - 1)] + "…"


def compact_json(value: Any) -> str:
    """JSON without spaces, keys sorted (stable across runs); non-JSON values as their ``str``."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def count(number: int, noun: str) -> str:
    """``1 workflow``, ``2 workflows``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Columns like kubectl's: left-aligned, three spaces apart, the last column unpadded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append((indent + "   ".join(cells)).rstrip())
    return "\n".join(lines)
