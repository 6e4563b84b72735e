"""Liveness signal from a long-running worker: :func:`heartbeat`.

Conductor workers prove they are alive by updating the task before ``responseTimeoutSeconds`` runs out.
A Kondukt attempt is a process, so the signal is a file: when the driver sets ``KONDUKT_HEARTBEAT_FILE``,
:func:`heartbeat` rewrites it with ``{"heartbeatTime": <epoch ms>, "progress": {...}}`` and the driver
watches it (``kondukt run`` does; see docs/worker-protocol.md §5). When the variable is not set (in a cluster:
a pod has no heartbeat channel to the operator, so ``responseTimeoutSeconds`` has no effect there) it does
nothing, so workers may call it freely.

It must stay cheap and must never fail the task: an unwritable file is ignored (and reported as False).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any


def heartbeat(progress: Mapping[str, Any] | None = None) -> bool:
    """Record that the attempt is alive (and optionally how far it got). True when something was written."""
    path = os.environ.get("KONDUKT_HEARTBEAT_FILE", "").strip()
    if not path:
        return False
    document: dict[str, Any] = {"heartbeatTime": int(time.time() * 1000)}
    if progress:
        document["progress"] = dict(progress)
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(document, handle, default=str)
        os.replace(temporary, path)
    except OSError:
        return False
    return True
