"""Whether a process still runs: the one check the test control plane, the test PostgreSQL and the benchmarks'
scratch directories use to tell a live owner from one that is gone (a zombie counts as gone)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
