"""The filters of ``kondukt get --archived`` turned into SQL (pure: no connection, no psycopg).

A label selector has kubectl's grammar (``-l``): requirements joined by commas, each ``key``, ``!key``,
``key=value`` (or ``==``), ``key!=value``, ``key in (a,b)`` or ``key notin (a,b)``; ``!=`` and ``notin`` also
match workflows without the label, as in Kubernetes. Every value reaches SQL as a parameter, never as text.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from kondukt.archive.errors import ArchiveError

_KEY: Final = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE: Final = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_SET: Final = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)$")
PHASES: Final = ("COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED")


def _split(selector: str) -> list[str]:
    """Split on the commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts]


def _key(key: str, requirement: str) -> str:
    if not _KEY.match(key):
        raise ArchiveError(f"label selector: {requirement!r}: {key!r} is not a valid label key")
    return key


def _value(value: str, requirement: str) -> str:
    if not _VALUE.match(value) or len(value) > 63:
        raise ArchiveError(f"label selector: {requirement!r}: {value!r} is not a valid label value")
    return value


def selector_sql(selector: str) -> tuple[list[str], list[Any]]:
    """SQL conditions on the ``labels`` column (to be joined with AND) and their parameters.
    Raises ArchiveError naming the requirement that is not valid."""
    conditions: list[str] = []
    params: list[Any] = []
    for requirement in _split(selector):
        if not requirement:
            raise ArchiveError(f"label selector {selector!r}: an empty requirement")
        found = _SET.match(requirement)
        if found:
            key = _key(found["key"], requirement)
            values = [_value(v.strip(), requirement) for v in found["values"].split(",")]
            if found["op"] == "in":
                conditions.append("labels->>%s = ANY(%s)")
            else:
                conditions.append("NOT coalesce(labels->>%s = ANY(%s), false)")
            params += [key, values]
        elif "!=" in requirement:
            key, value = (p.strip() for p in requirement.split("!=", 1))
            conditions.append("NOT (labels @> %s::jsonb)")
            params.append(json.dumps({_key(key, requirement): _value(value, requirement)}))
        elif "=" in requirement:
            key, value = (p.strip() for p in re.split(r"==?", requirement, maxsplit=1))
            conditions.append("labels @> %s::jsonb")
            params.append(json.dumps({_key(key, requirement): _value(value, requirement)}))
        elif requirement.startswith("!"):
            conditions.append("NOT (labels ? %s)")
            params.append(_key(requirement[1:].strip(), requirement))
        else:
            conditions.append("labels ? %s")
            params.append(_key(requirement, requirement))
    return conditions, params


@dataclass(frozen=True)
class ArchiveQuery:
    """Which archived workflows to list (every field narrows; None / empty: any)."""

    namespace: str | None = None
    name: str | None = None
    phases: tuple[str, ...] = ()
    selector: str | None = None
    finished_after: dt.datetime | None = None
    finished_before: dt.datetime | None = None
    limit: int = 500

    def where(self) -> tuple[str, list[Any]]:
        """The WHERE clause (``TRUE`` when nothing narrows) and its parameters."""
        conditions: list[str] = []
        params: list[Any] = []
        if self.namespace is not None:
            conditions.append("namespace = %s")
            params.append(self.namespace)
        if self.name is not None:
            conditions.append("name = %s")
            params.append(self.name)
        if self.phases:
            unknown = [p for p in self.phases if p not in PHASES]
            if unknown:
                raise ArchiveError(f"phase {unknown[0]!r}: expected one of {', '.join(PHASES)}")
            conditions.append("phase = ANY(%s)")
            params.append(list(self.phases))
        if self.selector:
            more, values = selector_sql(self.selector)
            conditions += more
            params += values
        if self.finished_after is not None:
            conditions.append("finished_at >= %s")
            params.append(self.finished_after)
        if self.finished_before is not None:
            conditions.append("finished_at < %s")
            params.append(self.finished_before)
        return (" AND ".join(conditions) or "TRUE"), params
