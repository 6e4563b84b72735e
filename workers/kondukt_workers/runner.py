"""Running one task attempt under the worker protocol (docs/worker-protocol.md).

:func:`execute` runs a worker function in this process and turns whatever happens into a
:class:`TaskResult` (it never raises for an ordinary exception). :func:`run_attempt` is the whole
protocol for one process: read ``KONDUKT_INPUT`` (fetching an external payload), run the worker, write
the result to ``KONDUKT_OUTPUT_FILE`` (offloading a large one), and return the exit code: 0 whenever a
result was written (the status is inside it), 1 only when no result could be written.

A worker's traceback goes to the log on stderr, never into the result: ``reasonForIncompletion`` is a
short sentence people read in ``kubectl get``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from kondukt_workers.context import TaskContext, running_task
from kondukt_workers.logs import log_event
from kondukt_workers.payloads import encode_result, load_task_input
from kondukt_workers.registry import get_worker
from kondukt_workers.results import TaskResult, shorten_reason
from kondukt_workers.settings import DEFAULT_OUTPUT_FILE, Settings


def _as_result(value: object) -> TaskResult:
    if value is None:
        return TaskResult.completed()
    if isinstance(value, TaskResult):
        return value
    if isinstance(value, Mapping):
        return TaskResult.completed(value)
    # Conductor's Python SDK wraps a non-map return value the same way.
    return TaskResult.completed({"result": value})


def failure_from_exception(exc: BaseException) -> TaskResult:
    """The result for an exception a worker raised: terminal when its ``terminal`` attribute is true."""
    message = str(exc).strip()
    if getattr(exc, "terminal", False) is True:
        return TaskResult.failed_terminally(message or type(exc).__name__)
    return TaskResult.failed(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


def _check_serialisable(result: TaskResult) -> TaskResult:
    try:
        json.dumps(result.to_json_dict(), allow_nan=False)
    except (TypeError, ValueError) as exc:
        return TaskResult.failed_terminally(f"the worker's output cannot be written as JSON: {exc}")
    return result


def execute(
    worker: str | Callable[..., Any], input_data: dict[str, Any], context: TaskContext | None = None
) -> TaskResult:
    """Run ``worker`` (a registered name or a function) on ``input_data`` as the attempt ``context``."""
    name = worker if isinstance(worker, str) else getattr(worker, "__name__", "worker")
    attempt = context or TaskContext.from_environ(task_name=name)
    with running_task(attempt):
        started = time.perf_counter()
        log_event("task_started", worker=name, retryCount=attempt.retry_count, iteration=attempt.iteration)
        try:
            function = get_worker(worker) if isinstance(worker, str) else worker
            result = _check_serialisable(_as_result(function(input_data)))
        except Exception as exc:
            result = failure_from_exception(exc)
            log_event(
                "task_error",
                worker=name,
                error=type(exc).__name__,
                reason=result.reason_for_incompletion,
                terminal=result.status != "FAILED",
                traceback=traceback.format_exc(),
            )
        log_event(
            "task_finished",
            worker=name,
            status=result.status,
            reason=result.reason_for_incompletion,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return result


def _write_output(path: str, data: bytes) -> None:
    if path == "-":
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
        return
    with open(path, "wb") as handle:
        handle.write(data)


def run_attempt(worker: str | Callable[..., Any]) -> int:
    """The worker protocol for one process, configured by the environment. Returns the exit code."""
    output_file = os.environ.get("KONDUKT_OUTPUT_FILE", "").strip() or DEFAULT_OUTPUT_FILE
    name = worker if isinstance(worker, str) else getattr(worker, "__name__", "worker")
    context = TaskContext(task_name=name, task_ref=name)
    settings = Settings()
    try:
        settings = Settings.from_environ()
        context = TaskContext.from_environ(task_name=name)
        input_data = load_task_input(os.environ.get("KONDUKT_INPUT"), settings)
    except Exception as exc:
        result = failure_from_exception(exc)
        with running_task(context):
            log_event("task_input_error", worker=name, reason=result.reason_for_incompletion)
    else:
        result = execute(worker, input_data, context)
    with running_task(context):
        try:
            data = encode_result(result, context, settings)
        except Exception as exc:  # offloading failed in an unforeseen way: still report a result
            log_event("result_encoding_error", worker=name, error=repr(exc), traceback=traceback.format_exc())
            data = json.dumps(
                TaskResult.failed(shorten_reason(f"could not encode the result: {exc}")).to_json_dict()
            ).encode()
        try:
            _write_output(output_file, data)
        except OSError as exc:
            log_event("result_not_written", worker=name, path=output_file, error=str(exc))
            print(f"kondukt-worker: could not write the result to {output_file}: {exc}", file=sys.stderr)
            return 1
        log_event("result_written", worker=name, path=output_file, bytes=len(data), status=result.status)
    return 0
