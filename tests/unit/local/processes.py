"""Real-process helpers for the local driver's tests: the fake worker, liveness, bounded readiness waits."""

from __future__ import annotations

import time
from pathlib import Path

FAKE_WORKER = Path(__file__).parents[2] / "fixtures" / "workers" / "fake_worker.py"


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate: object, timeout: float = 120.0) -> bool:
    """Poll ``predicate`` until it holds: a readiness wait, bounded generously (a loaded machine is slow)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return bool(predicate())  # type: ignore[operator]
