"""Which task attempt is running, and where it may write its files.

The driver describes the attempt in environment variables (``KONDUKT_WORKFLOW_ID``, ``KONDUKT_TASK_ID``,
``KONDUKT_TASK_REF``, ``KONDUKT_TASK_NAME``, ``KONDUKT_RETRY_COUNT``, ``KONDUKT_ITERATION``). A worker
reads them through :func:`current_task`, and names its outputs with :func:`output_uri`, which derives the
object name from the attempt only: running the same attempt again writes the same key, and a retry or
another loop iteration writes a different one (so a straggling attempt never overwrites a newer result).

Never generate random names here: idempotence of the whole system rests on deterministic names.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kondukt_workers.results import TerminalError
from kondukt_workers.settings import Settings

_SAFE_SEGMENT = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, fallback: str = "x") -> str:
    """``text`` reduced to characters safe in object keys and file names on every store."""
    cleaned = _SAFE_SEGMENT.sub("-", text).strip(".-")
    return cleaned[:120] or fallback


def _non_negative_int(environ: Mapping[str, str], name: str) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise TerminalError(f"{name}={raw!r} is not an integer") from None
    if value < 0:
        raise TerminalError(f"{name}={raw!r} must not be negative")
    return value


@dataclass(frozen=True)
class TaskContext:
    """The attempt a worker is running (the worker protocol's environment, docs/worker-protocol.md)."""

    workflow_id: str = "no-workflow"
    task_id: str = ""
    task_ref: str = ""
    task_name: str = ""
    retry_count: int = 0
    iteration: int = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, task_name: str = "") -> TaskContext:
        env = os.environ if environ is None else environ
        name = env.get("KONDUKT_TASK_NAME", "").strip() or task_name
        return cls(
            workflow_id=env.get("KONDUKT_WORKFLOW_ID", "").strip() or "no-workflow",
            task_id=env.get("KONDUKT_TASK_ID", "").strip(),
            task_ref=env.get("KONDUKT_TASK_REF", "").strip() or name,
            task_name=name,
            retry_count=_non_negative_int(env, "KONDUKT_RETRY_COUNT"),
            iteration=_non_negative_int(env, "KONDUKT_ITERATION"),
        )

    @property
    def attempt_path(self) -> str:
        """``<workflow id>/<task ref>/iter<N>-retry<M>``: the attempt's own folder in object storage."""
        workflow = safe_name(self.workflow_id, "no-workflow")
        ref = safe_name(self.task_ref or self.task_name, "task")
        return f"{workflow}/{ref}/iter{self.iteration}-retry{self.retry_count}"


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar("kondukt_task", default=None)


def current_task() -> TaskContext:
    """The attempt being run: set by the runner, else read from the environment."""
    context = _current.get()
    return context if context is not None else TaskContext.from_environ()


@contextlib.contextmanager
def running_task(context: TaskContext) -> Iterator[TaskContext]:
    """Make ``context`` the current attempt for the duration of the block (used by the runner)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def as_uri(location: str) -> str:
    """A URI for ``location``: URIs pass through; a bare local path (or ``file:relative/path``) becomes an
    absolute ``file://`` URI."""
    if "://" in location:
        return location
    if not location.strip():
        raise TerminalError("an empty string is not a file location")
    if location.startswith("file:"):  # "file:relative/path": relative to the working directory
        location = location[len("file:") :]
    return Path(location).expanduser().absolute().as_uri()


def output_prefix(input_data: Mapping[str, Any], settings: Settings | None = None) -> str:
    """The URI prefix outputs go under: input ``outputLocation``, else ``KONDUKT_OUTPUT_PREFIX``."""
    configured = input_data.get("outputLocation")
    if configured is not None and not isinstance(configured, str):
        raise TerminalError(f"input outputLocation must be a URI string, not {type(configured).__name__}")
    if not configured:
        configured = (settings or Settings.from_environ()).output_prefix
    if not configured:
        raise TerminalError(
            "no output location: set the environment variable KONDUKT_OUTPUT_PREFIX "
            "(e.g. s3://bucket/outputs/ or file:///tmp/kondukt/) or the input outputLocation"
        )
    prefix = as_uri(configured)
    return prefix if prefix.endswith("/") else prefix + "/"


def output_uri(
    input_data: Mapping[str, Any],
    file_name: str,
    settings: Settings | None = None,
    context: TaskContext | None = None,
) -> str:
    """Where the current attempt writes ``file_name``: ``<prefix><workflow>/<ref>/iter<N>-retry<M>/<name>``."""
    attempt = (context or current_task()).attempt_path
    return f"{output_prefix(input_data, settings)}{attempt}/{file_name}"
