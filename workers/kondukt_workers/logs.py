"""Structured logs: one JSON object per line on stderr, one line per event.

Kubernetes keeps a container's stderr (``kubectl logs``) and log pipelines parse JSON lines, so every
event a worker reports (``task_started``, ``task_finished``, ``result_offloaded``, ...) is a single line
carrying the attempt's identity (``workflowId``, ``taskId``, ``ref``), the ``event`` name and, where
something was timed, ``duration_ms``. Stdout is left to the user's code.

Logging must never fail a task: an unserialisable field is written with ``str()``, a closed stderr is
ignored.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from kondukt_workers.context import TaskContext, current_task


def log_event(event: str, *, stream: TextIO | None = None, **fields: Any) -> None:
    """Write ``{"ts": ..., "event": event, "workflowId": ..., "taskId": ..., "ref": ..., **fields}``."""
    try:
        context = current_task()
    except Exception:  # a malformed KONDUKT_* variable: log without the identity rather than not at all
        context = TaskContext()
    now = time.time()
    record: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z",
        "event": event,
        "workflowId": context.workflow_id,
        "taskId": context.task_id,
        "ref": context.task_ref,
        "task": context.task_name,
    }
    record.update(fields)
    target = stream if stream is not None else sys.stderr
    try:
        target.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        target.flush()
    except (OSError, ValueError):
        pass
