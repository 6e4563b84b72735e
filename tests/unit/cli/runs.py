"""Running ``kondukt run`` as a user does (a subprocess without the caller's S3 endpoint), and writing its files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ENDPOINT_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "KONDUKT_S3_ENDPOINT",
    "KONDUKT_OUTPUT_PREFIX",
)


def kondukt_run(
    *args: str, cwd: Path, data_dir: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ENDPOINT_VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", "kondukt.cli", "run", "--data-dir", str(data_dir), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path
