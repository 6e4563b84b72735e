"""Sizes of the values kept in a workflow's state, against the driver's ``PayloadLimits``.

Why: a value that would make the state too large to store (the Workflow resource) must fail its task with
a reason a person can act on — the size, the limit, and the driver's hint — at the moment it appears,
rather than leave the driver unable to write the state at all. Pure: sizes are measured as compact JSON.
"""

from __future__ import annotations

import json
from typing import Any

from kondukt.engine.models import PayloadLimits

KIB = 1024
MIB = 1024 * 1024
#: A value larger than this does not stay in a Workflow's status (it goes to external payload storage, or its task
#: fails). Conductor's own limit for a workflow's variables is 256 KB; its 3 MB threshold for task payloads does
#: not fit a Kubernetes object (etcd refuses one past 1.5 MiB), so the 256 KiB serves every value.
DEFAULT_INLINE_VALUE_BYTES = 256 * KIB
#: Conductor's largest task payload (maxTaskOutputPayloadSizeThreshold, 10 MB): past it a task fails even with
#: external payload storage.
MAX_STORED_VALUE_BYTES = 10 * MIB


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (how the drivers store it)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8"))


def size_text(size: int) -> str:
    """``2.5 MiB (2621456 bytes)``, ``256 KiB``: a size as people read it, exact when it is not round."""
    for unit, name in ((MIB, "MiB"), (KIB, "KiB")):
        if size >= unit:
            whole = size % unit == 0
            shown = f"{size // unit} {name}" if whole else f"{size / unit:.1f} {name}"
            return shown if whole else f"{shown} ({size} bytes)"
    return f"{size} bytes"


def oversize(what: str, value: Any, limits: PayloadLimits, *, cap: int | None = None) -> str | None:
    """None when ``value`` fits; else why it does not (``what`` names it with its verb: "its output is").

    ``cap`` lowers the limit for this kind of value (the variables, which always stay in the state)."""
    limit = limits.maxValueBytes
    if limit is None:
        return None
    if cap is not None:
        limit = min(limit, cap)
    size = json_size(value)
    if size <= limit:
        return None
    hint = f"; {limits.hint}" if limits.hint else ""
    return f"{what} {size_text(size)}, more than the {size_text(limit)} a value may take in the workflow's state{hint}"
