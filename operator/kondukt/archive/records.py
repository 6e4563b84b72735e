"""One archived workflow, as the store writes and reads it (pure data).

``workflow`` is the Workflow object as it was when it finished — metadata (name, namespace, uid, labels,
annotations, creation time, owner references), ``spec`` and ``status`` with every task attempt and the
output decoded (never compressed) — so ``kondukt describe`` and ``kondukt graph`` read an archived run as they
read a live one. The other fields are its searchable columns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ArchivedWorkflow:
    uid: str
    namespace: str
    name: str
    phase: str
    finished_at: dt.datetime
    definition_name: str | None = None
    definition_version: int | None = None
    #: The SUB_WORKFLOW parent's uid (a child is archived on its own, and deleted with its parent).
    parent_uid: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    #: Set by the store when read back.
    archived_at: dt.datetime | None = None
    workflow: Mapping[str, Any] = field(default_factory=dict)
