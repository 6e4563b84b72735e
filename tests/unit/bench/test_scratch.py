"""Scratch directories of the control-plane benchmarks (bench/scratch.py): gone after the block, after SIGTERM,
and what a killed run left is removed by the next one, never a live run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench.scratch import UNOWNED_GRACE_SECONDS, remove_orphans, scratch_directory

REPO = Path(__file__).resolve().parents[3]


def test_the_directory_names_its_owner_and_goes_after_the_block(tmp_path: Path) -> None:
    with scratch_directory("kondukt-soak-", base=tmp_path) as directory:
        assert directory.parent == tmp_path and directory.name.startswith("kondukt-soak-")
        assert (directory / "owner.pid").read_text() == str(os.getpid())
        (directory / "etcd").mkdir()
    assert not directory.exists()


def test_an_exception_in_the_block_removes_it_too(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), scratch_directory("kondukt-soak-", base=tmp_path) as directory:
        raise RuntimeError("boom")
    assert not directory.exists()


def test_orphans_are_removed_and_live_or_young_directories_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    orphan = tmp_path / "kondukt-soak-orphan"
    orphan.mkdir()
    (orphan / "owner.pid").write_text(dead.stdout.strip())
    live = tmp_path / "kondukt-soak-live"
    live.mkdir()
    (live / "owner.pid").write_text(str(os.getpid()))
    unowned_old, unowned_young = tmp_path / "kondukt-soak-old", tmp_path / "kondukt-soak-young"
    unowned_old.mkdir()
    unowned_young.mkdir()
    os.utime(unowned_old, (0, 0))
    other = tmp_path / "kondukt-cp-orphan"  # another prefix: not ours to remove
    other.mkdir()
    (other / "owner.pid").write_text(dead.stdout.strip())
    removed = remove_orphans(tmp_path, "kondukt-soak-", now=time.time())
    assert sorted(removed) == sorted([orphan, unowned_old])
    assert live.exists() and unowned_young.exists() and other.exists()
    assert UNOWNED_GRACE_SECONDS > 0


def test_sigterm_removes_the_directory(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from bench.scratch import scratch_directory\n"
        f"with scratch_directory('kondukt-soak-', base=Path({str(tmp_path)!r})) as d:\n"
        "    print(d, flush=True)\n"
        "    time.sleep(120)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        directory = Path(child.stdout.readline().strip())
        assert directory.is_dir()
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        child.kill()
        child.wait()
    assert not directory.exists()
    assert list(tmp_path.iterdir()) == []
