"""What one ``decide`` costs as workflows grow: 10, 1,000 and 10,000 tasks (target: <= 5 ms per event).

A lean driver (no invariant checks, no simulated pods) runs each workflow to completion on a fake clock,
calling ``decide`` once per event, where one event is one task result observed (a TaskUpdate with a
terminal status). Workflows:

- ``seq10``: ten SIMPLE tasks one after another (the small, common case);
- ``fork1000`` and ``fork10000``: the seed's dynamic-fork shape, a generator task whose output forks
  1,000 / 10,000 ``image_convert_resize`` branches (inputs and outputs shaped like the seed's), then a JOIN.

Figures per workflow (milliseconds unless named otherwise):
- ``per_event_amortised_ms``: all decide time of the run (the first decide and the fork's included) divided
  by the number of events;
- ``fork_decide_ms``: the one decide that observes the generator's result and creates every branch;
- ``early_p50/p99`` and ``late_p50/p99``: single-event decides in the first and the last 10% of the
  branch results, and ``late_to_early_p50_ratio``: about 1 when an event's cost does not grow with the
  number of finished tasks;
- ``rebuild_ms``: one decide on the final-but-one state read back from JSON (the index rebuilt: what a
  driver pays once after a restart);
- ``state_json_bytes``: ``len(model_dump_json(exclude_defaults=True))`` of the final state, and
  ``state_gzip_base64_bytes`` the same packed as the operator stores a large task list.
"""

from __future__ import annotations

import base64
import gc
import gzip
import statistics
import time
from typing import Any

from kondukt.engine import (
    Blueprint,
    StartTask,
    TaskDef,
    TaskStatus,
    TaskUpdate,
    Workflow,
    WorkflowDef,
    WorkflowStatus,
    decide,
    new_workflow,
)

T0 = 1_704_067_200_000
TARGET_MS_PER_EVENT = 5.0

_TASK_DEFS = {name: TaskDef(name=name, retryCount=3, retryDelaySeconds=30, timeoutSeconds=30, pollTimeoutSeconds=30,
                            responseTimeoutSeconds=30, timeoutPolicy="TIME_OUT_WF")
              for name in ("image_convert_resize", "image_multiple_convert_resize", "step")}


def _sequence(n: int) -> Blueprint:
    tasks = [{"name": "step", "taskReferenceName": f"s{i}",
              "inputParameters": {"previous": f"${{s{i - 1}.output.fileLocation}}" if i else "${workflow.input.file}",
                                  "size": "${workflow.input.size}"}} for i in range(n)]
    return Blueprint(workflow=WorkflowDef.model_validate({"name": f"seq{n}", "tasks": tasks}), taskDefs=_TASK_DEFS)


def _dynamic_fork() -> Blueprint:
    definition = {"name": "fork", "tasks": [
        {"name": "image_multiple_convert_resize", "taskReferenceName": "gen",
         "inputParameters": {"fileLocation": "${workflow.input.file}", "count": "${workflow.input.count}"}},
        {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN_DYNAMIC",
         "inputParameters": {"dynamicTasks": "${gen.output.dynamicTasks}",
                             "dynamicTasksInput": "${gen.output.dynamicTasksInput}"},
         "dynamicForkTasksParam": "dynamicTasks", "dynamicForkTasksInputParamName": "dynamicTasksInput"},
        {"name": "join", "taskReferenceName": "join", "type": "JOIN"}],
        "outputParameters": {"count": "${workflow.input.count}"}}
    return Blueprint(workflow=WorkflowDef.model_validate(definition), taskDefs=_TASK_DEFS)


def _generator_output(count: int, file: str) -> dict[str, Any]:
    """The seed generator's output shape: one image_convert_resize per (format, size)."""
    formats = ["jpg", "png", "webp", "avif"]
    tasks: list[dict[str, Any]] = []
    inputs: dict[str, Any] = {}
    for i in range(count):
        fmt, width = formats[i % 4], 100 + i // 4
        ref = f"image_convert_resize_{fmt}_{width}x{width}_{i}"
        tasks.append({"name": "image_convert_resize", "taskReferenceName": ref, "type": "SIMPLE"})
        inputs[ref] = {"fileLocation": file, "outputFormat": fmt, "outputWidth": width, "outputHeight": width,
                       "maintainAspectRatio": True}
    return {"dynamicTasks": tasks, "dynamicTasksInput": inputs}


def _result_for(action: StartTask, count: int) -> dict[str, Any]:
    if action.taskDefName == "image_multiple_convert_resize":
        return _generator_output(count, str(action.inputData.get("fileLocation")))
    fmt = action.inputData.get("outputFormat", "jpg")
    return {"fileLocation": f"s3://kondukt-work/wf-bench/{action.referenceTaskName}.{fmt}"}


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _drive(bp: Blueprint, count: int) -> dict[str, object]:
    """Run one workflow to completion, one task result per decide; time every decide."""
    now = T0
    state = new_workflow(bp, "wf-bench", {"file": "s3://in/cat.jpg", "size": 300, "count": count}, now)
    pending: list[StartTask] = []
    per_event: list[float] = []  # decide times of single-result events, in order
    total = 0.0
    fork_ms = 0.0
    events = 0
    previous = state
    gc.collect()
    gc.disable()  # collections would land on random decides; they are measured in the total instead
    try:
        started = time.perf_counter()
        decision = decide(bp, state, [], now)
        total += time.perf_counter() - started
        state = decision.workflow
        pending.extend(a for a in decision.actions if isinstance(a, StartTask))
        while pending:
            action = pending.pop(0)
            now += 1
            update = TaskUpdate(taskId=action.taskId, status=TaskStatus.COMPLETED,
                                outputData=_result_for(action, count))
            previous = state
            started = time.perf_counter()
            decision = decide(bp, state, [update], now)
            elapsed = time.perf_counter() - started
            total += elapsed
            events += 1
            new_starts = [a for a in decision.actions if isinstance(a, StartTask)]
            if len(new_starts) > 1:
                fork_ms = elapsed * 1000
            else:
                per_event.append(elapsed * 1000)
            state = decision.workflow
            pending.extend(new_starts)
    finally:
        gc.enable()
    if state.status is not WorkflowStatus.COMPLETED:
        raise RuntimeError(f"the benchmark workflow ended {state.status.value}: {state.reasonForIncompletion}")
    tenth = max(1, len(per_event) // 10)
    early, late = per_event[:tenth], per_event[-tenth:]
    reread = Workflow.model_validate_json(previous.model_dump_json())
    started = time.perf_counter()
    decide(bp, reread, [], now)
    rebuild_ms = (time.perf_counter() - started) * 1000
    text = state.model_dump_json(exclude_defaults=True)
    packed = base64.b64encode(gzip.compress(text.encode(), compresslevel=6))
    early_p50 = statistics.median(early)
    late_p50 = statistics.median(late)
    figures: dict[str, object] = {
        "tasks": len(state.tasks),
        "events": events,
        "per_event_amortised_ms": round(total * 1000 / events, 3),
        "total_decide_s": round(total, 3),
    }
    if fork_ms:
        figures["fork_decide_ms"] = round(fork_ms, 2)
    return figures | {
        "early_p50_ms": round(early_p50, 3),
        "early_p99_ms": round(_percentile(early, 0.99), 3),
        "late_p50_ms": round(late_p50, 3),
        "late_p99_ms": round(_percentile(late, 0.99), 3),
        "late_to_early_p50_ratio": round(late_p50 / early_p50, 2) if early_p50 else None,
        "rebuild_ms": round(rebuild_ms, 2),
        "state_json_bytes": len(text),
        "state_gzip_base64_bytes": len(packed),
    }


def run(quick: bool = False) -> dict[str, object]:
    sizes = {"seq10": (_sequence(10), 10), "fork1000": (_dynamic_fork(), 1000)}
    if not quick:
        sizes["fork10000"] = (_dynamic_fork(), 10_000)
    results: dict[str, object] = {}
    for name, (bp, count) in sizes.items():
        for figure, value in _drive(bp, count).items():
            results[f"{name}_{figure}"] = value
    largest = "fork10000" if not quick else "fork1000"
    per_event = results[f"{largest}_per_event_amortised_ms"]
    results["target_per_event_ms"] = TARGET_MS_PER_EVENT
    results["meets_target"] = isinstance(per_event, float) and per_event <= TARGET_MS_PER_EVENT
    return results


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
