"""The local runner's own overhead per task: from a task process's exit to the next process's start.

A chain of N SIMPLE tasks, each a no-op Python process (``python -I -S -c pass``: it writes no result, so
exit code 0 means COMPLETED), runs through ``LocalRunner`` with the real engine. For each step the runner
records the instant it saw the previous process exit and the instant the next one was spawned; that gap is
everything Kondukt does between two tasks (read the result, call ``decide``, build the environment,
fork/exec). Interpreter start-up of the worker itself is not part of it.

Figures: p50 / p95 / max of the gap in ms over N-1 steps (target p50 <= 20 ms, issue 3), the wall time
of the whole chain per task, and the number of ``decide`` calls per task.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kondukt.engine import Blueprint, TaskDef, WorkflowDef, WorkflowStatus
from kondukt.local.runner import LocalRunner

TARGET_P50_MS = 20.0


class _Definitions:
    """The chain needs no other workflow (a DefinitionSource with nothing in it)."""

    def __init__(self, task_defs: dict[str, TaskDef]) -> None:
        self._task_defs = task_defs

    def find_workflow_def(self, name: str, version: int | None = None) -> WorkflowDef | None:
        return None

    def blueprint_for(self, workflow_def: WorkflowDef) -> Blueprint:
        return Blueprint(workflow=workflow_def, taskDefs=dict(self._task_defs))


def _chain(steps: int) -> tuple[Blueprint, _Definitions]:
    noop = TaskDef.model_validate(
        {
            "name": "noop",
            "retryCount": 0,
            "responseTimeoutSeconds": 0,
            "template": {"command": [sys.executable, "-I", "-S", "-c", "pass"]},
        }
    )
    workflow = WorkflowDef.model_validate(
        {
            "name": "noop_chain",
            "version": 1,
            "tasks": [
                {
                    "name": "noop",
                    "taskReferenceName": f"step_{i}",
                    "type": "SIMPLE",
                    "inputParameters": {"i": i},
                }
                for i in range(steps)
            ],
        }
    )
    definitions = _Definitions({"noop": noop})
    return definitions.blueprint_for(workflow), definitions


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def run(quick: bool = False) -> dict[str, object]:
    steps = 10 if quick else 30
    blueprint, definitions = _chain(steps)
    with tempfile.TemporaryDirectory(prefix="kondukt-bench-local-") as work:
        runner = LocalRunner(definitions, blueprint, {}, attempt_dir=Path(work) / "runs")
        started = time.perf_counter()
        result = asyncio.run(runner.run())
        wall = time.perf_counter() - started
    if result.status != WorkflowStatus.COMPLETED:
        raise RuntimeError(
            f"the no-op chain ended {result.status.value}: {result.workflow.reasonForIncompletion}"
        )
    gaps = result.stats.step_gaps_ms
    figures: dict[str, Any] = {
        "steps": steps,
        "step_gap_p50_ms": round(statistics.median(gaps), 2),
        "step_gap_p95_ms": round(_percentile(gaps, 0.95), 2),
        "step_gap_max_ms": round(max(gaps), 2),
        "step_gap_mean_ms": round(statistics.fmean(gaps), 2),
        "target_p50_ms": TARGET_P50_MS,
        "meets_target": statistics.median(gaps) <= TARGET_P50_MS,
        "wall_per_task_ms": round(wall * 1000 / steps, 2),
        "decide_calls_per_task": round(result.stats.decisions / steps, 2),
    }
    return figures


if __name__ == "__main__":
    for key, value in run(quick="--quick" in sys.argv).items():
        print(f"{key}: {value}")
