"""What ``kondukt run`` shows while a workflow runs and when it ends.

One line per task transition (time, status, task reference — sub-workflow tasks prefixed with the path of
SUB_WORKFLOW references that led to them) and a final summary (status, duration, task counts, the reason
of a failure, the output, and where result files are). On a terminal the statuses are coloured and a
footer line, rewritten in place, shows the elapsed time and what is running; when the output is not a
terminal (a pipe, a CI log) the same lines are plain and there is no footer.

Times and durations come from :mod:`kondukt.cli.text`, the one place the CLI formats them. This module
only formats; it must never decide anything about the run or read the engine's state other than through
the events and the final result it is handed.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable
from typing import Any, TextIO

from kondukt.cli.text import clock_time, elapsed_duration
from kondukt.engine import TaskStatus, WorkflowStatus
from kondukt.engine.models import CONTAINER_TASK_TYPES
from kondukt.local.events import MessageEvent, RunEvent, RunResult, TaskEvent, WorkflowEvent

_RESET = "\x1b[0m"
_COLOURS = {
    "green": "\x1b[32m",
    "red": "\x1b[31m",
    "yellow": "\x1b[33m",
    "blue": "\x1b[34m",
    "dim": "\x1b[2m",
    "bold": "\x1b[1m",
}
_STATUS_COLOUR = {
    TaskStatus.SCHEDULED: "dim",
    TaskStatus.IN_PROGRESS: "blue",
    TaskStatus.COMPLETED: "green",
    TaskStatus.COMPLETED_WITH_ERRORS: "yellow",
    TaskStatus.SKIPPED: "dim",
    TaskStatus.CANCELED: "yellow",
    TaskStatus.FAILED: "red",
    TaskStatus.FAILED_WITH_TERMINAL_ERROR: "red",
    TaskStatus.TIMED_OUT: "red",
    WorkflowStatus.RUNNING: "blue",
    WorkflowStatus.PAUSED: "yellow",
    WorkflowStatus.COMPLETED: "green",
    WorkflowStatus.FAILED: "red",
    WorkflowStatus.TIMED_OUT: "red",
    WorkflowStatus.TERMINATED: "yellow",
}
_STATUS_WIDTH = len(TaskStatus.IN_PROGRESS.value)  # longer statuses (FAILED_WITH_...) just push the line
_MAX_OUTPUT_LINES = 40
#: Task types that are IN_PROGRESS while they wait for others: not shown as running in the footer.
_WAITING_TYPES = CONTAINER_TASK_TYPES


def result_locations(value: Any) -> list[str]:
    """Every URI string (s3://, file://, http(s)://) found in a JSON value, in order, without repeats."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            if node.startswith(("s3://", "file://", "https://", "http://")) and node not in found:
                found.append(node)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    return found


class ProgressView:
    """An event sink for :class:`~kondukt.local.runner.LocalRunner` that writes to ``stream``."""

    def __init__(self, stream: TextIO, *, live: bool | None = None, colour: bool | None = None) -> None:
        self.stream = stream
        is_tty = bool(getattr(stream, "isatty", lambda: False)())
        self.live = is_tty if live is None else live
        self.colour = (self.live and "NO_COLOR" not in os.environ) if colour is None else colour
        self.started = time.monotonic()
        self._running: dict[str, str] = {}  # taskId -> display name
        self._footer_shown = False

    # -- formatting -------------------------------------------------------------------------------

    def _paint(self, text: str, colour: str | None) -> str:
        if not self.colour or colour is None:
            return text
        return f"{_COLOURS[colour]}{text}{_RESET}"

    def _status(self, status: TaskStatus | WorkflowStatus) -> str:
        return self._paint(status.value.ljust(_STATUS_WIDTH), _STATUS_COLOUR.get(status))

    def _write_line(self, line: str) -> None:
        self._clear_footer()
        self.stream.write(line + "\n")
        self._draw_footer()
        self.stream.flush()

    def _clear_footer(self) -> None:
        if self._footer_shown:
            self.stream.write("\r\x1b[K")
            self._footer_shown = False

    def _draw_footer(self) -> None:
        if not self.live:
            return
        elapsed = elapsed_duration(time.monotonic() - self.started)
        running = list(self._running.values())
        shown = ", ".join(running[:4]) + (f" +{len(running) - 4}" if len(running) > 4 else "")
        text = f"  {elapsed} · {len(running)} running" + (f": {shown}" if running else "")
        columns = 0
        with contextlib.suppress(OSError, ValueError, AttributeError):
            columns = os.get_terminal_size(self.stream.fileno()).columns
        if columns <= 0:  # a pseudo-terminal without a size
            columns = 100
        self.stream.write(self._paint(text[: max(10, columns - 1)], "dim"))
        self._footer_shown = True

    # -- the sink ---------------------------------------------------------------------------------

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, TaskEvent):
            name = f"{event.workflow_path}{event.reference_task_name}"
            if event.status == TaskStatus.IN_PROGRESS and event.task_type not in _WAITING_TYPES:
                self._running[event.task_id] = name
            elif event.status.terminal:
                self._running.pop(event.task_id, None)
            detail = f"  {event.reason}" if event.reason and not event.status.successful else ""
            if detail:
                detail = self._paint(detail, "dim")
            self._write_line(f"{clock_time(event.at_ms)}  {self._status(event.status)}  {name}{detail}")
        elif isinstance(event, WorkflowEvent):
            label = "workflow" if not event.workflow_path else f"workflow {event.workflow_path.rstrip('/')}:"
            reason = f"  {event.reason}" if event.reason else ""
            self._write_line(
                f"{clock_time(event.at_ms)}  {self._status(event.status)}  "
                + self._paint(f"{label} {event.workflow_name} ({event.workflow_id}){reason}", "bold")
            )
        elif isinstance(event, MessageEvent):
            where = f"{event.workflow_path}: " if event.workflow_path else ""
            self._write_line(f"{clock_time(event.at_ms)}  {'NOTE'.ljust(_STATUS_WIDTH)}  {where}{event.text}")

    def tick(self) -> None:
        """Refresh the footer (elapsed time); a no-op when not live."""
        if self.live:
            self._clear_footer()
            self._draw_footer()
            self.stream.flush()

    def close(self) -> None:
        self._clear_footer()
        self.stream.flush()

    # -- the end ----------------------------------------------------------------------------------

    def summary(
        self, result: RunResult, locations: Iterable[tuple[str, str | None]] = (), note: str | None = None
    ) -> None:
        """The final summary: status and duration, task counts, reason, output, result files."""
        self.close()
        workflow = result.workflow
        elapsed = elapsed_duration(time.monotonic() - self.started)
        counts: dict[str, int] = {}
        for task in workflow.tasks:
            counts[task.status.value] = counts.get(task.status.value, 0) + 1
        tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        lines = [
            "",
            self._paint(f"{workflow.status.value}", _STATUS_COLOUR.get(workflow.status))
            + self._paint(f"  {workflow.workflowName} v{workflow.workflowVersion}  in {elapsed}", "bold"),
            f"  workflowId: {workflow.workflowId}",
            f"  tasks:      {len(workflow.tasks)} attempts ({tally or 'none'})",
        ]
        if workflow.reasonForIncompletion:
            lines.append(f"  reason:     {workflow.reasonForIncompletion}")
        others = [run for run in result.workflows if run.purpose != "main"]
        for run in others:
            lines.append(
                f"  {run.purpose} {run.path.rstrip('/')}: {run.workflow.workflowName} "
                f"{run.workflow.status.value} ({run.workflow.workflowId})"
            )
        if workflow.output:
            text = json.dumps(workflow.output, indent=2, default=str).splitlines()
            if len(text) > _MAX_OUTPUT_LINES:
                text = [
                    *text[:_MAX_OUTPUT_LINES],
                    f"… ({len(text) - _MAX_OUTPUT_LINES} more lines; use -o json)",
                ]
            lines.append("  output:")
            lines.extend(f"    {line}" for line in text)
        located = list(locations)
        if located:
            lines.append("  results:")
            for uri, local in located:
                lines.append(f"    {uri}" + (f"\n      → {local}" if local and local != uri else ""))
            if note:
                lines.append(f"  ({note})")
        if not workflow.status.successful:
            lines.append(f"  task logs:  {result.attempt_dir / workflow.workflowId}/")
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
