"""Scratch directories for the benchmarks that start their own control plane: removed on every way out.

A soak holds etcd's data in /dev/shm (memory). An interrupted run used to leave it there (298 MB found after one
was stopped): a ``with`` block does not run on SIGTERM or SIGHUP, and nothing runs on SIGKILL. So the directory
names its owner process (``owner.pid``, written at once), SIGTERM and SIGHUP become SystemExit while it is in use
(the ``finally`` blocks stop the control plane and the operators, then the directory goes), and every new one
first removes the directories of the same prefix whose owner is gone (what a SIGKILL left).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from tests.pids import pid_alive

#: A directory without owner.pid younger than this may be one being created right now: left alone.
UNOWNED_GRACE_SECONDS = 300.0


def base_directory() -> Path:
    """/dev/shm when the machine has it (etcd's data in memory, as the e2e control planes), else the temp dir."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def remove_orphans(base: Path, prefix: str, now: float | None = None) -> list[Path]:
    """Remove ``base/<prefix>*`` directories whose owner process is gone; returns what was removed."""
    removed = []
    now = time.time() if now is None else now
    for directory in sorted(base.glob(prefix + "*")):
        if not directory.is_dir():
            continue
        try:
            owner: int | None = int((directory / "owner.pid").read_text())
        except (OSError, ValueError):
            owner = None
        if owner is not None and pid_alive(owner):
            continue
        if owner is None:
            with contextlib.suppress(OSError):
                if now - directory.stat().st_mtime < UNOWNED_GRACE_SECONDS:
                    continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def scratch_directory(prefix: str, base: Path | None = None) -> Iterator[Path]:
    """A new ``<base>/<prefix>XXXX`` directory owned by this process, removed when the block ends, also on
    SIGTERM/SIGHUP (turned into SystemExit while the block runs, in the main thread); orphans of the same prefix
    are removed first."""
    base = base_directory() if base is None else base
    for orphan in remove_orphans(base, prefix):
        print(f"   removed {orphan}: left by an interrupted run", flush=True)
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    (directory / "owner.pid").write_text(str(os.getpid()))
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, _exit_on_signal)
    try:
        yield directory
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        shutil.rmtree(directory, ignore_errors=True)
