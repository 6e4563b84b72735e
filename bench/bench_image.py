"""How fast ``image_convert_resize`` converts photos, against a plain Pillow open-resize-save baseline.

The same JPEG photos (3000x2000, 20 of them; 4 with ``quick``) are resized to fit 800x600 (-> 800x533)
and saved as jpg and as webp, by:
- the baseline: ``Image.open`` -> ``convert("RGB")`` -> ``resize(LANCZOS)`` -> ``save(quality=85)``, what a
  straightforward worker does;
- the worker: ``image_convert_resize`` run in-process through the SDK (``execute``), reading and writing
  ``file://`` URIs so that storage does not dominate; it uses JPEG draft decoding and ``reducing_gap``.
Both run side by side in one process, image by image, best of a few rounds each. Figures: images per second
for each and their ratio (> 1: the worker is faster). Without ``quick``, one extra figure: the wall
time of ``kondukt-worker image_convert_resize`` as a process (what one task attempt costs locally,
interpreter start included), median of a few runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from kondukt_workers import TaskContext, execute

SOURCE_SIZE = (3000, 2000)
BOX = (800, 600)
QUALITY = 85


def _photo(index: int) -> Image.Image:
    """A photo-like picture with texture (so the JPEG decoder has real work), different per index."""
    width, height = SOURCE_SIZE
    gradient = Image.linear_gradient("L").resize(SOURCE_SIZE)
    noise = Image.effect_noise(SOURCE_SIZE, 40 + index).filter(ImageFilter.GaussianBlur(1.2))
    image = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    draw = ImageDraw.Draw(image)
    for shape in range(12):
        x, y = (shape * 397 + index * 113) % width, (shape * 211 + index * 71) % height
        draw.ellipse((x, y, x + 300, y + 220), fill=((shape * 40) % 256, (index * 30) % 256, 180))
    return image


def _target_size() -> tuple[int, int]:
    scale = min(BOX[0] / SOURCE_SIZE[0], BOX[1] / SOURCE_SIZE[1])
    return round(SOURCE_SIZE[0] * scale), round(SOURCE_SIZE[1] * scale)


def _baseline(source: Path, output_format: str, out_dir: Path) -> None:
    with Image.open(source) as image:
        resized = image.convert("RGB").resize(_target_size(), Image.Resampling.LANCZOS)
        resized.save(out_dir / f"{source.stem}.{output_format}", quality=QUALITY)


def _worker(source: Path, output_format: str, out_dir: Path) -> None:
    context = TaskContext(workflow_id="bench", task_id=source.stem, task_ref=f"resize_{source.stem}")
    task_input = {
        "fileLocation": source.as_uri(),
        "outputFormat": output_format,
        "outputWidth": BOX[0],
        "outputHeight": BOX[1],
        "quality": QUALITY,
        "outputLocation": out_dir.as_uri(),
    }
    result = execute("image_convert_resize", task_input, context)
    if result.status != "COMPLETED":
        raise RuntimeError(f"image_convert_resize failed: {result.reason_for_incompletion}")


def _best_seconds(function: Callable[[], None], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def _rates(sources: list[Path], output_format: str, root: Path, rounds: int) -> tuple[float, float]:
    """Images per second of the baseline and of the worker, image by image side by side (each image's
    best of ``rounds``), so that a burst of load on the shared machine hits both alike."""
    baseline_seconds = worker_seconds = 0.0
    for source in sources:
        baseline_seconds += _best_seconds(
            partial(_baseline, source, output_format, root / "baseline"), rounds
        )
        worker_seconds += _best_seconds(partial(_worker, source, output_format, root / "worker"), rounds)
    return len(sources) / baseline_seconds, len(sources) / worker_seconds


def _process_wall_ms(source: Path, out_dir: Path, runs: int) -> float:
    worker = Path(sys.executable).with_name("kondukt-worker")
    walls = []
    for run in range(runs):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KONDUKT_")}
        env.update(
            {
                "KONDUKT_INPUT": json.dumps(
                    {
                        "fileLocation": source.as_uri(),
                        "outputFormat": "jpg",
                        "outputWidth": 800,
                        "outputHeight": 600,
                    }
                ),
                "KONDUKT_OUTPUT_FILE": str(out_dir / f"result-{run}.json"),
                "KONDUKT_OUTPUT_PREFIX": out_dir.as_uri() + "/",
                "KONDUKT_WORKFLOW_ID": "bench-process",
                "KONDUKT_TASK_REF": f"resize_{run}",
            }
        )
        started = time.perf_counter()
        subprocess.run(
            [str(worker), "image_convert_resize"], env=env, check=True, capture_output=True, timeout=120
        )
        walls.append((time.perf_counter() - started) * 1000)
    return statistics.median(walls)


def run(quick: bool = False) -> dict[str, object]:
    count, rounds = (4, 2) if quick else (20, 3)
    figures: dict[str, object] = {
        "images": count,
        "source_size": f"{SOURCE_SIZE[0]}x{SOURCE_SIZE[1]} jpg",
        "target_size": "{}x{}".format(*_target_size()),
    }
    with tempfile.TemporaryDirectory(prefix="kondukt-bench-image-") as temporary:
        root = Path(temporary)
        sources = []
        for index in range(count):
            path = root / "sources" / f"photo{index:02d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            _photo(index).save(path, quality=90)
            sources.append(path)
        (root / "baseline").mkdir()
        total_baseline = total_worker = 0.0
        with contextlib.redirect_stderr(io.StringIO()):  # the worker's JSON log lines
            for output_format in ("jpg", "webp"):
                baseline, worker = _rates(sources, output_format, root, rounds)
                figures[f"baseline_{output_format}_images_per_s"] = round(baseline, 2)
                figures[f"worker_{output_format}_images_per_s"] = round(worker, 2)
                figures[f"worker_vs_baseline_{output_format}_ratio"] = round(worker / baseline, 2)
                total_baseline += count / baseline
                total_worker += count / worker
        figures["worker_vs_baseline_ratio"] = round(total_baseline / total_worker, 2)
        if not quick:
            figures["worker_process_wall_ms_p50"] = round(
                _process_wall_ms(sources[0], root / "process", 5), 1
            )
    return figures


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
