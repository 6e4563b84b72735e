"""One SIMPLE task attempt as a local process, under the worker protocol of docs/worker-protocol.md.

``kondukt run`` executes a SIMPLE task attempt the way a Job's container would: the TaskDef's
``template.command`` + ``template.args`` with ``template.env``, the attempt's identity and input in
``KONDUKT_*`` environment variables, and the result read back from ``KONDUKT_OUTPUT_FILE`` (a
Conductor TaskResult as JSON). This module builds that environment, starts the process, waits for it,
enforces the attempt's deadline and turns what the process left behind into a task status.

It must never go through a shell (the argv list runs as is, so inputs cannot inject commands), and must
never leave a process behind: every attempt runs in a session of its own, and a timeout or a cancel
kills that whole process group, grandchildren included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kondukt.driver.limits import INPUT_ENV_LIMIT_BYTES
from kondukt.engine.models import ContainerTemplate, TaskStatus
from kondukt_workers.context import TaskContext

#: How long a process group gets between SIGTERM and SIGKILL when an attempt is stopped.
KILL_GRACE_SECONDS = 1.0

#: How much of the end of stderr becomes the reason of a failed attempt.
REASON_TAIL_CHARS = 2000

#: Statuses a worker may write in its result file (Conductor's TaskResult statuses that end an attempt).
_RESULT_STATUSES = {
    "COMPLETED": TaskStatus.COMPLETED,
    "FAILED": TaskStatus.FAILED,
    "FAILED_WITH_TERMINAL_ERROR": TaskStatus.FAILED_WITH_TERMINAL_ERROR,
}


class TemplateError(ValueError):
    """A TaskDef's template cannot run as a local process (no command, an unsupported env source)."""


# --------------------------------------------------------------------------------------------------
# Building the process: argv and environment
# --------------------------------------------------------------------------------------------------


def resolve_program(program: str) -> str:
    """Find a bare program name on PATH, then next to this interpreter (a venv's ``bin/``).

    ``.venv/bin/kondukt run`` works without activating the venv: ``kondukt-worker`` lives in the same
    ``bin/`` directory as the interpreter running ``kondukt``. Paths (with a ``/``) are used as they are.
    """
    if os.sep in program:
        return program
    found = shutil.which(program)
    if found:
        return found
    beside_interpreter = Path(sys.executable).parent / program
    if beside_interpreter.is_file() and os.access(beside_interpreter, os.X_OK):
        return str(beside_interpreter)
    raise TemplateError(f"program {program!r} not found on PATH nor in {Path(sys.executable).parent}")


def attempt_argv(template: ContainerTemplate | None, task_def_name: str) -> list[str]:
    """The argv of an attempt: ``template.command`` + ``template.args`` (the image is ignored locally)."""
    if template is None or not template.command:
        raise TemplateError(
            f"TaskDef {task_def_name!r} has no template.command: a local run needs the program that runs "
            f"the task (e.g. template: {{command: [kondukt-worker, {task_def_name}]}})"
        )
    argv = [str(part) for part in template.command] + [str(part) for part in (template.args or [])]
    argv[0] = resolve_program(argv[0])
    return argv


def template_environment(template: ContainerTemplate | None, task_def_name: str) -> dict[str, str]:
    """The TaskDef's ``template.env`` as a dict; only literal ``value`` entries exist without a cluster."""
    env: dict[str, str] = {}
    if template is None:
        return env
    if template.envFrom:
        raise TemplateError(
            f"TaskDef {task_def_name!r}: template.envFrom reads ConfigMaps/Secrets, which do not exist in a "
            "local run; set the variables with template.env values or in your shell"
        )
    for index, entry in enumerate(template.env or []):
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise TemplateError(f"TaskDef {task_def_name!r}: template.env[{index}] has no name")
        if "valueFrom" in entry:
            raise TemplateError(
                f"TaskDef {task_def_name!r}: template.env[{index}] ({name}) uses valueFrom, which needs a "
                "cluster; give it a literal value or export it in your shell for a local run"
            )
        value = entry.get("value", "")
        env[name] = value if isinstance(value, str) else json.dumps(value)
    return env


@dataclass(frozen=True)
class AttemptRequest:
    """Everything needed to run one attempt; built by the runner from a StartTask action."""

    task_id: str
    workflow_id: str
    reference_task_name: str
    task_def_name: str
    retry_count: int
    iteration: int
    input_data: Mapping[str, Any]
    argv: list[str]
    base_environment: Mapping[str, str]
    work_dir: Path
    working_directory: str | None = None
    timeout_seconds: int | None = None


def protocol_environment(request: AttemptRequest, input_json: str, output_file: Path) -> dict[str, str]:
    """The worker protocol's variables (docs/worker-protocol.md) for one attempt."""
    return {
        "KONDUKT_INPUT": input_json,
        "KONDUKT_WORKFLOW_ID": request.workflow_id,
        "KONDUKT_TASK_ID": request.task_id,
        "KONDUKT_TASK_REF": request.reference_task_name,
        "KONDUKT_TASK_NAME": request.task_def_name,
        "KONDUKT_RETRY_COUNT": str(request.retry_count),
        "KONDUKT_ITERATION": str(request.iteration),
        "KONDUKT_OUTPUT_FILE": str(output_file),
    }


# --------------------------------------------------------------------------------------------------
# Reading the result back
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended, in the engine's terms (a TaskUpdate's fields)."""

    status: TaskStatus
    output_data: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    exit_code: int | None = None
    external_output_path: str | None = None


def _tail(text: str, limit: int = REASON_TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _exit_description(exit_code: int) -> str:
    if exit_code < 0:
        try:
            return f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"killed by signal {-exit_code}"
    return f"exit code {exit_code}"


def outcome_from_result(result_text: str, exit_code: int, stderr_tail: str) -> AttemptOutcome:
    """Interpret the result file and the exit code (docs/worker-protocol.md).

    The file's ``status`` wins when present; without one, exit code 0 means COMPLETED and anything else
    FAILED with the end of stderr as the reason. A file that is not a JSON object fails the attempt.
    """
    result: dict[str, Any] = {}
    if result_text.strip():
        try:
            parsed = json.loads(result_text)
        except json.JSONDecodeError as e:
            return AttemptOutcome(
                TaskStatus.FAILED,
                reason=f"the result file is not JSON ({e.msg} at line {e.lineno}); {_exit_description(exit_code)}",
                exit_code=exit_code,
            )
        if not isinstance(parsed, dict):
            return AttemptOutcome(
                TaskStatus.FAILED,
                reason=f"the result file holds a JSON {type(parsed).__name__}, not an object",
                exit_code=exit_code,
            )
        result = parsed

    output = result.get("outputData")
    if output is None:
        output = {}
    if not isinstance(output, dict):
        return AttemptOutcome(
            TaskStatus.FAILED, reason="the result file's outputData is not an object", exit_code=exit_code
        )
    external = result.get("externalOutputPayloadStoragePath")
    if external is not None and not isinstance(external, str):
        return AttemptOutcome(
            TaskStatus.FAILED,
            reason="the result file's externalOutputPayloadStoragePath is not a string",
            exit_code=exit_code,
        )
    reason = result.get("reasonForIncompletion")
    reason = None if reason is None else str(reason)

    raw_status = result.get("status")
    if raw_status is None:
        if exit_code == 0:
            return AttemptOutcome(TaskStatus.COMPLETED, output, reason, exit_code, external)
        detail = _tail(stderr_tail)
        failure = f"{_exit_description(exit_code)}: {detail}" if detail else _exit_description(exit_code)
        return AttemptOutcome(TaskStatus.FAILED, output, reason or failure, exit_code, external)
    status = _RESULT_STATUSES.get(str(raw_status))
    if status is None:
        return AttemptOutcome(
            TaskStatus.FAILED,
            output,
            f"the result file's status {raw_status!r} is not one of {', '.join(_RESULT_STATUSES)}",
            exit_code,
            external,
        )
    if not status.successful and not reason:
        detail = _tail(stderr_tail)
        reason = (
            f"{_exit_description(exit_code)}: {detail}" if detail else f"the worker reported {status.value}"
        )
    return AttemptOutcome(status, output, reason, exit_code, external)


# --------------------------------------------------------------------------------------------------
# The process
# --------------------------------------------------------------------------------------------------


def kill_process_group(pgid: int, sig: signal.Signals) -> bool:
    """Signal a whole process group; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


InputStore = Callable[[str, bytes], str]
"""Stores an oversized input (key, JSON bytes) and returns its URI (s3://... or file://...)."""


class AttemptProcess:
    """One attempt's process: start it, wait for it (with its deadline), or stop it with its children.

    Files of the attempt live in ``request.work_dir``: ``<taskId>.result.json`` (KONDUKT_OUTPUT_FILE),
    ``<taskId>.stdout.log``, ``<taskId>.stderr.log`` and ``<taskId>.heartbeat`` (KONDUKT_HEARTBEAT_FILE,
    touched by the worker SDK's ``heartbeat()``).
    """

    def __init__(self, request: AttemptRequest, store_input: InputStore | None = None) -> None:
        self.request = request
        self._store_input = store_input
        self._process: asyncio.subprocess.Process | None = None
        self._stopping: str | None = None  # "timeout" | "cancel"
        self.spawned_at: float | None = None  # time.monotonic()
        self.exited_at: float | None = None
        stem = request.task_id
        self.output_file = request.work_dir / f"{stem}.result.json"
        self.stdout_file = request.work_dir / f"{stem}.stdout.log"
        self.stderr_file = request.work_dir / f"{stem}.stderr.log"
        self.heartbeat_file = request.work_dir / f"{stem}.heartbeat"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _input_json(self) -> str:
        text = json.dumps(self.request.input_data, separators=(",", ":"), default=str)
        if len(text.encode()) <= INPUT_ENV_LIMIT_BYTES:
            return text
        if self._store_input is None:
            raise TemplateError(
                f"the input of {self.request.reference_task_name} is {len(text.encode())} bytes, more than an "
                "environment variable holds, and no external payload storage is configured"
            )
        attempt_path = TaskContext(
            workflow_id=self.request.workflow_id,
            task_id=self.request.task_id,
            task_ref=self.request.reference_task_name,
            task_name=self.request.task_def_name,
            retry_count=self.request.retry_count,
            iteration=self.request.iteration,
        ).attempt_path
        uri = self._store_input(f"{attempt_path}/input.json", text.encode())
        return json.dumps({"externalInputPayloadStoragePath": uri})

    async def start(self) -> None:
        """Spawn the process in a new session; raises OSError / TemplateError when it cannot start."""
        self.request.work_dir.mkdir(parents=True, exist_ok=True)
        self.output_file.write_bytes(b"")
        environment = dict(self.request.base_environment)
        environment.update(protocol_environment(self.request, self._input_json(), self.output_file))
        environment["KONDUKT_HEARTBEAT_FILE"] = str(self.heartbeat_file)
        with self.stdout_file.open("wb") as stdout, self.stderr_file.open("wb") as stderr:
            self._process = await asyncio.create_subprocess_exec(
                *self.request.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=environment,
                cwd=self.request.working_directory,
                start_new_session=True,
            )
        self.spawned_at = time.monotonic()
        if self._stopping is not None:  # canceled while it was being spawned
            kill_process_group(self._process.pid, signal.SIGKILL)

    async def wait(self) -> AttemptOutcome:
        """Wait for the process to end (killing its group at the deadline) and read its result."""
        process = self._process
        assert process is not None, "start() first"
        timeout = self.request.timeout_seconds or None
        try:
            exit_code = await asyncio.wait_for(asyncio.shield(process.wait()), timeout)
        except TimeoutError:
            self._stopping = self._stopping or "timeout"
            await self.stop_group()
            exit_code = await process.wait()
            self.exited_at = time.monotonic()
        else:
            self.exited_at = time.monotonic()
            # The leader is gone; whatever it left running in its group goes with it (as in a Job).
            kill_process_group(process.pid, signal.SIGKILL)
        if self._stopping == "timeout":
            return AttemptOutcome(
                TaskStatus.TIMED_OUT,
                reason=f"the attempt ran longer than timeoutSeconds={self.request.timeout_seconds}; its "
                "process group was killed",
                exit_code=exit_code,
            )
        if self._stopping == "cancel":
            return AttemptOutcome(TaskStatus.CANCELED, reason="canceled", exit_code=exit_code)
        result_text = self.output_file.read_text(errors="replace") if self.output_file.exists() else ""
        return outcome_from_result(result_text, exit_code, self.stderr_tail())

    def stderr_tail(self) -> str:
        try:
            with self.stderr_file.open("rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 4 * REASON_TAIL_CHARS))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def cancel(self) -> None:
        """Ask for the attempt to stop (CancelTask); ``wait()`` then returns CANCELED."""
        self._stopping = self._stopping or "cancel"
        if self._process is not None and self._process.returncode is None:
            kill_process_group(self._process.pid, signal.SIGTERM)
            asyncio.get_running_loop().call_later(
                KILL_GRACE_SECONDS, kill_process_group, self._process.pid, signal.SIGKILL
            )

    async def stop_group(self) -> None:
        """SIGTERM the attempt's process group, then SIGKILL whatever is left after a short grace."""
        process = self._process
        if process is None:
            return
        kill_process_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), KILL_GRACE_SECONDS)
        kill_process_group(process.pid, signal.SIGKILL)

    def kill_now(self) -> None:
        """SIGKILL the whole group at once (Ctrl-C, or the runner is going away)."""
        self._stopping = self._stopping or "cancel"
        if self._process is not None:
            kill_process_group(self._process.pid, signal.SIGKILL)
