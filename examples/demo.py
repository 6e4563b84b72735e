"""``make demo``: run the seed's image pipelines on the sample image, locally, and show where the results are.

It runs ``kondukt run`` (the installed command, as a user would) on two examples: the single-image
pipeline (image_convert_resize, then upload_toS3 into the embedded S3) and the dynamic fork (one
resize per format x size). Progress goes to the terminal; each run's execution JSON comes back on stdout
and this script prints the status and the resized images it produced, as files on disk.

Exit code 0 when both pipelines COMPLETED, 1 otherwise. Results stay under ``.kondukt/`` in the
repository (the embedded S3's objects are copied to ``.kondukt/s3/<bucket>/<key>`` when a run ends).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / ".kondukt"
PIPELINES = [
    ("single image: image_convert_resize -> upload_toS3", REPO / "examples" / "image-convert-resize.yaml"),
    ("dynamic fork: formats x sizes", REPO / "examples" / "image-dynamic-fork.yaml"),
]


def kondukt_command() -> list[str]:
    """The ``kondukt`` script of this interpreter's environment (``.venv/bin/kondukt``)."""
    script = Path(sys.executable).parent / "kondukt"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "kondukt.cli"]


def image_locations(value: Any) -> list[str]:
    """Every ``fileLocation`` in a workflow output, in order."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "fileLocation" and isinstance(item, str):
                found.append(item)
            else:
                found.extend(image_locations(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(image_locations(item))
    return found


def on_disk(uri: str) -> Path | None:
    """The file behind a result URI: ``s3://bucket/key`` of the embedded S3 is copied to ``.kondukt/s3/bucket/key``."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme == "s3":
        path = DATA_DIR / "s3" / parsed.netloc / unquote(parsed.path.lstrip("/"))
    elif parsed.scheme == "http" and parsed.hostname == "127.0.0.1":
        path = DATA_DIR / "s3" / unquote(parsed.path.lstrip("/"))
    else:
        return None
    return path if path.is_file() else None


def describe(path: Path) -> str:
    try:
        from PIL import Image

        with Image.open(path) as image:
            size = f"{image.width}x{image.height} {image.format}"
    except Exception:  # the demo still lists a file Pillow cannot read
        size = "?"
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return f"{shown}  ({size}, {path.stat().st_size} bytes)"


def run_pipeline(title: str, manifest: Path) -> bool:
    print(f"\n=== {title}\n    kondukt run {manifest.relative_to(REPO)}", flush=True)
    environment = dict(os.environ)
    started = time.monotonic()
    done = subprocess.run(
        [*kondukt_command(), "run", str(manifest), "--data-dir", str(DATA_DIR), "-o", "json"],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    elapsed = time.monotonic() - started
    try:
        execution = json.loads(done.stdout)
    except json.JSONDecodeError:
        print(
            f"    FAILED: kondukt run exited {done.returncode} without an execution (see the messages above)"
        )
        return False
    status = execution.get("status")
    print(f"    {status} in {elapsed:.1f}s (workflowId {execution.get('workflowId')})")
    if status != "COMPLETED":
        print(f"    reason: {execution.get('reasonForIncompletion')}")
        return False
    locations = image_locations(execution.get("output"))
    print(f"    {len(locations)} resized image(s):")
    for uri in locations:
        path = on_disk(uri)
        print(f"      {describe(path) if path else uri}")
    return done.returncode == 0


def main() -> int:
    sample = REPO / "examples" / "images" / "sample.jpg"
    if not sample.is_file():
        print(f"demo: the sample image {sample} is missing", file=sys.stderr)
        return 1
    outcomes = [run_pipeline(title, manifest) for title, manifest in PIPELINES]
    print()
    if all(outcomes):
        print(f"demo: every pipeline COMPLETED; results under {DATA_DIR.relative_to(REPO)}/s3/")
        return 0
    print("demo: some pipeline did not complete", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
