"""What expression resolution and embedded scripts cost per call (the decider pays these per task).

Figures are medians of several timed batches, in microseconds per call, measured side by side in one run:
- resolve of a typical SIMPLE task's input template (8 keys: workflow input, task outputs, an array
  index, interpolated strings, a nested dict), and of a template without any expression (the floor);
- one JavaScript evaluation in a fresh QuickJS context (a DO_WHILE loopCondition), and the part of it
  that is only creating the context;
- one jq evaluation of a cached program (JSON_JQ_TRANSFORM), and one compile of a new program.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jq
import quickjs

from kondukt.engine.expressions import resolve
from kondukt.engine.scripting import evaluate_javascript, evaluate_jq

_TEMPLATE: dict[str, Any] = {
    "fileLocation": "${image_convert_resize_ref.output.fileLocation}",
    "outputWidth": "${workflow.input.recipeParameters.outputSize.width}",
    "outputHeight": "${workflow.input.recipeParameters.outputSize.height}",
    "outputFormat": "${workflow.input.recipeParameters.outputFormat}",
    "firstTag": "${workflow.input.tags[0]}",
    "label": "image ${workflow.workflowId} at ${image_convert_resize_ref.output.width}px",
    "target": {"bucket": "${workflow.variables.bucket}", "prefix": "thumbs/", "retry": 3},
    "taskId": "${CPEWF_TASK_ID}",
}
_LITERAL: dict[str, Any] = {
    "fileLocation": "s3://bucket/a.jpg",
    "outputWidth": 300,
    "outputHeight": 200,
    "outputFormat": "png",
    "firstTag": "holiday",
    "label": "image w-1 at 300px",
    "target": {"bucket": "b", "prefix": "thumbs/", "retry": 3},
    "taskId": "t-1",
}
_WORKFLOW: dict[str, Any] = {
    "workflowId": "w-1",
    "input": {
        "fileLocation": "s3://bucket/a.jpg",
        "recipeParameters": {"outputSize": {"width": 300, "height": 200}, "outputFormat": "png"},
        "tags": ["holiday", "beach"],
    },
    "variables": {"bucket": "thumbs"},
    "output": {},
}
_TASKS: dict[str, dict[str, Any]] = {
    "image_convert_resize_ref": {
        "output": {"fileLocation": "s3://bucket/out.png", "width": 300},
        "status": "COMPLETED",
    }
}
_LOOP_CONDITION = "if ($.loop['iteration'] < 3) { true; } else { false; }"
_JQ_QUERY = "{key3: (.key1.value1 + .key2.value2)}"
_JQ_DATA = {"key1": {"value1": ["a", "b"]}, "key2": {"value2": ["c", "d"]}}


def _microseconds_per_call(call: Callable[[], object], calls: int, batches: int = 5) -> float:
    samples = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return round(statistics.median(samples), 2)


def run(quick: bool = False) -> dict[str, object]:
    scale = 1 if quick else 10
    compile_counter = iter(range(10**9))
    return {
        "resolve_typical_input_us": _microseconds_per_call(
            lambda: resolve(_TEMPLATE, _WORKFLOW, _TASKS.get, task_id="t-1"), 2000 * scale
        ),
        "resolve_literal_input_us": _microseconds_per_call(
            lambda: resolve(_LITERAL, _WORKFLOW, _TASKS.get), 2000 * scale
        ),
        "javascript_eval_us": _microseconds_per_call(
            lambda: evaluate_javascript(_LOOP_CONDITION, {"$": {"loop": {"iteration": 2}}}), 100 * scale
        ),
        "quickjs_context_creation_us": _microseconds_per_call(quickjs.Context, 100 * scale),
        "jq_eval_cached_program_us": _microseconds_per_call(
            lambda: evaluate_jq(_JQ_QUERY, _JQ_DATA), 500 * scale
        ),
        "jq_compile_new_program_us": _microseconds_per_call(
            lambda: jq.compile(f"{_JQ_QUERY} | .n = {next(compile_counter)}"), 20 * scale, batches=3
        ),
    }


if __name__ == "__main__":
    for name, figure in run(quick=True).items():
        print(f"{name}: {figure}")
