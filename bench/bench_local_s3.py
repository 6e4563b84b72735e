"""What the embedded S3 endpoint of ``kondukt run`` (moto's ThreadedMotoServer) costs a run: its start and
its end.

Each sample is a fresh Python process, as a ``kondukt run`` is: it imports moto's server (``import_ms``),
then opens the run's storage — the server bound on 127.0.0.1, the bucket created and its read policy set
(``start_ms``; ``ready_ms`` is both) — puts ``objects`` small objects through boto3 as the workers would,
and closes the storage: the server stops and every object is copied to ``<data dir>/s3/<bucket>/<key>``
(``close_ms``). Samples run one after the other; the figures are medians and maxima over them.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

_SAMPLE = r"""
import json, sys, tempfile, time
from pathlib import Path
objects = int(sys.argv[1])
t0 = time.perf_counter()
import moto.server  # noqa: F401
t1 = time.perf_counter()
from kondukt.local.objectstore import open_task_storage
with tempfile.TemporaryDirectory(prefix="kondukt-bench-s3-") as work:
    storage_cm = open_task_storage(Path(work), want_s3=True, environ={})
    storage = storage_cm.__enter__()
    t2 = time.perf_counter()
    if objects:
        client = storage._client()
        for i in range(objects):
            client.put_object(Bucket=storage.bucket, Key=f"runs/wf/t{i}/out.bin", Body=b"x" * 65536)
    t3 = time.perf_counter()
    storage_cm.__exit__(None, None, None)
    t4 = time.perf_counter()
    copied = sum(1 for p in (Path(work) / "s3").rglob("*") if p.is_file())
print(json.dumps({"import_ms": (t1 - t0) * 1000, "start_ms": (t2 - t1) * 1000, "ready_ms": (t2 - t0) * 1000,
                  "close_ms": (t4 - t3) * 1000, "copied": copied}))
"""


def _sample(objects: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _SAMPLE, str(objects)], capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the embedded S3 sample failed: {done.stderr.strip()[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["copied"] != objects:
        raise RuntimeError(f"{figures['copied']} of {objects} objects reached the data directory")
    return figures


def run(quick: bool = False) -> dict[str, object]:
    samples = 2 if quick else 7
    objects = 10 if quick else 50
    empty = [_sample(0) for _ in range(samples)]
    loaded = [_sample(objects) for _ in range(samples)]

    def median(rows: list[dict[str, Any]], key: str) -> float:
        return round(statistics.median(row[key] for row in rows), 1)

    def largest(rows: list[dict[str, Any]], key: str) -> float:
        return round(max(row[key] for row in rows), 1)

    return {
        "samples": samples,
        "import_moto_p50_ms": median(empty + loaded, "import_ms"),
        "start_p50_ms": median(empty + loaded, "start_ms"),
        "ready_p50_ms": median(empty + loaded, "ready_ms"),
        "ready_max_ms": largest(empty + loaded, "ready_ms"),
        "close_empty_p50_ms": median(empty, "close_ms"),
        "objects": objects,
        "object_bytes": 65536,
        "close_with_objects_p50_ms": median(loaded, "close_ms"),
        "close_with_objects_max_ms": largest(loaded, "close_ms"),
    }


if __name__ == "__main__":
    for key, value in run(quick="--quick" in sys.argv).items():
        print(f"{key}: {value}")
