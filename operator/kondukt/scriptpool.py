"""Script evaluation in worker processes with hard limits, shared by both drivers (the operator, ``kondukt run``).

Why this module exists: libjq has no time or memory limit, and the ``jq`` binding holds Python's GIL while
it runs. A JSON_JQ_TRANSFORM whose program never ends (``def f: f; f``) evaluated in a driver's own process
would stop every thread of it — in a cluster, every workflow of every namespace, and the liveness probe
would restart the operator into the same freeze. So the engine hands the evaluation out
(``EvaluateScript``) and a driver gives it to a :class:`ScriptPool`:

- at most ``workers`` evaluation processes (``python -m kondukt.scriptpool``), started when first needed and
  reused; requests beyond them wait in a queue that takes turns between callers' fairness keys (a
  namespace), so one tenant's flood of jq tasks delays another's by at most one evaluation per worker;
- each evaluation has a wall-clock limit: the parent kills a process that overruns it (SIGKILL) and starts a
  fresh one for the next request; the child also arms SIGALRM (default action: terminate, no Python handler
  needed, so it fires while jq holds the GIL) a little after the limit, so it ends even if the parent died;
- each process runs under an address-space limit (RLIMIT_AS, set by the child itself); libjq aborts when an
  allocation fails, and the parent reports the limit;
- the child gets an empty environment (nothing of the operator's credentials), its own session (a terminal's
  Ctrl-C goes to the driver, which decides), dies with its parent (PR_SET_PDEATHSIG where Linux has it), and
  volunteers as the first victim of an out-of-memory kill in its cgroup (``oom_score_adj`` 1000).

The driver's event loop never waits on an evaluation: :meth:`ScriptPool.evaluate` is awaited by a task of
its own, and cancelling that task withdraws a queued request or kills the process running it.

This module must never import ``kondukt.kube`` or ``kondukt.local``: both import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from kondukt.engine.decision import EvaluateScript, TaskUpdate
from kondukt.engine.models import TaskStatus

MIB: Final = 1024 * 1024
DEFAULT_TIME_LIMIT_SECONDS: Final = 5.0
DEFAULT_MEMORY_LIMIT_BYTES: Final = 512 * MIB
#: The evaluating process itself (Python, pydantic, libjq) takes about this much address space.
MIN_MEMORY_LIMIT_BYTES: Final = 192 * MIB
DEFAULT_WORKERS: Final = 2
#: The child's own alarm fires this long after the parent's limit (the parent normally kills it first).
_CHILD_ALARM_GRACE_SECONDS: Final = 2.0
_STDERR_KEPT: Final = 4096
#: How long a new evaluation process may take to import what it needs (not part of any evaluation's limit).
_STARTUP_SECONDS: Final = 120.0
_READY: Final = b"ready\n"
_MEMORY_MARKERS: Final = ("cannot allocate memory", "MemoryError", "out of memory")


class ScriptLimitsError(ValueError):
    """A limit setting that cannot work (named, with the value)."""


@dataclass(frozen=True)
class ScriptLimits:
    """How script evaluations run: time and memory limits of one evaluation, and how many run at once."""

    time_limit_seconds: float = DEFAULT_TIME_LIMIT_SECONDS
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES
    workers: int = DEFAULT_WORKERS

    def __post_init__(self) -> None:
        if not self.time_limit_seconds > 0:
            raise ScriptLimitsError(f"the script time limit must be positive, not {self.time_limit_seconds}")
        if self.memory_limit_bytes < MIN_MEMORY_LIMIT_BYTES:
            raise ScriptLimitsError(f"the script memory limit must be at least {MIN_MEMORY_LIMIT_BYTES // MIB} MiB "
                                    f"(the evaluating process itself takes about that), not "
                                    f"{_size_text(self.memory_limit_bytes)}")
        if self.workers < 1:
            raise ScriptLimitsError(f"the number of script workers must be at least 1, not {self.workers}")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ScriptLimits:
        """Limits from KONDUKT_SCRIPT_TIME_LIMIT (seconds), KONDUKT_SCRIPT_MEMORY_LIMIT (MiB) and
        KONDUKT_SCRIPT_WORKERS; defaults for those not set."""
        env = os.environ if environ is None else environ
        values: dict[str, float | int] = {}
        for name, key, convert, scale in (
            ("KONDUKT_SCRIPT_TIME_LIMIT", "time_limit_seconds", float, 1),
            ("KONDUKT_SCRIPT_MEMORY_LIMIT", "memory_limit_bytes", int, MIB),
            ("KONDUKT_SCRIPT_WORKERS", "workers", int, 1),
        ):
            text = env.get(name)
            if text is None or not text.strip():
                continue
            try:
                values[key] = convert(text.strip()) * scale
            except ValueError:
                raise ScriptLimitsError(f"{name}={text!r} is not a number") from None
        return cls(**values)  # type: ignore[arg-type]

    def time_text(self) -> str:
        seconds = self.time_limit_seconds
        return f"{int(seconds)} s" if float(seconds).is_integer() else f"{seconds:g} s"


def _size_text(size: int) -> str:
    return f"{size // MIB} MiB" if size % MIB == 0 else f"{size} bytes"


def _failed(action: EvaluateScript, problem: str) -> TaskUpdate:
    """A limit or a broken evaluation: FAILED, with the reason (as for a jq error) also as ``output.error``."""
    error = f"{action.language}: {problem}"
    return TaskUpdate(taskId=action.taskId, status=TaskStatus.FAILED, outputData={"error": error},
                      reasonForIncompletion=f"task {action.referenceTaskName!r}: {error}")


# --------------------------------------------------------------------------------------------------
# The parent side
# --------------------------------------------------------------------------------------------------


@dataclass
class _Request:
    action: EvaluateScript
    future: asyncio.Future[TaskUpdate]
    child: _Child | None = None


class _FairQueue:
    """Requests by fairness key, served in turns (one from each waiting key in order)."""

    def __init__(self) -> None:
        self._by_key: dict[str, deque[_Request]] = {}
        self._turns: deque[str] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_key.values())

    def put(self, key: str, request: _Request) -> None:
        queue = self._by_key.get(key)
        if queue is None:
            queue = self._by_key[key] = deque()
            self._turns.append(key)
        queue.append(request)
        self._ready.set()

    async def get(self) -> _Request:
        while True:
            while self._turns:
                key = self._turns.popleft()
                queue = self._by_key[key]
                request = queue.popleft()
                if queue:
                    self._turns.append(key)  # its next request waits for the other keys' turns
                else:
                    del self._by_key[key]
                if not request.future.done():  # withdrawn while waiting: skip it
                    return request
            self._ready.clear()
            await self._ready.wait()

    def drain(self) -> list[_Request]:
        drained = [request for queue in self._by_key.values() for request in queue]
        self._by_key.clear()
        self._turns.clear()
        return drained


class _Child:
    """One evaluation process and the pipes to it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stderr_tail = b""
        assert process.stderr is not None
        self._drain = asyncio.get_running_loop().create_task(self._keep_stderr(process.stderr))

    @classmethod
    async def start(cls, limits: ScriptLimits) -> _Child:
        alarm = limits.time_limit_seconds + _CHILD_ALARM_GRACE_SECONDS
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-c", _CHILD_BOOT, json.dumps(_child_path()),
            str(limits.memory_limit_bytes), repr(alarm),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={}, start_new_session=True, limit=max(limits.memory_limit_bytes, 1 * MIB),
        )
        child = cls(process)
        # Its imports are not part of the first evaluation's time: wait until it says it is ready.
        assert process.stdout is not None
        try:
            ready = await asyncio.wait_for(process.stdout.readline(), _STARTUP_SECONDS)
        except TimeoutError:
            ready = b""
        if ready != _READY:
            await child.reap()
            tail = child.stderr_tail.decode("utf-8", "replace").strip().splitlines()
            raise OSError(f"the evaluation process did not start ({tail[-1] if tail else 'no message'})")
        return child

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def _keep_stderr(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_STDERR_KEPT):
            self.stderr_tail = (self.stderr_tail + chunk)[-_STDERR_KEPT:]

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def reap(self) -> None:
        self.kill()
        with contextlib.suppress(ProcessLookupError):
            await self.process.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._drain, 1.0)

    async def evaluate(self, action: EvaluateScript, limits: ScriptLimits) -> TaskUpdate:
        """Send one request and wait for its answer, within the time limit (else the process is killed)."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        line = action.model_dump_json().encode("utf-8") + b"\n"

        async def exchange() -> bytes:
            stdin.write(line)
            await stdin.drain()
            return await stdout.readline()

        try:
            answer = await asyncio.wait_for(exchange(), limits.time_limit_seconds)
        except TimeoutError:
            await self.reap()
            return _failed(action, f"the evaluation exceeded its time limit of {limits.time_text()}")
        except (ValueError, asyncio.LimitOverrunError):  # an answer longer than the reader's limit
            await self.reap()
            return _failed(action, f"the result is larger than the memory limit of "
                                   f"{_size_text(limits.memory_limit_bytes)}")
        except (ConnectionError, BrokenPipeError):
            answer = b""
        if not answer:
            await self.reap()
            return self._death(action, limits)
        try:
            return TaskUpdate.model_validate_json(answer)
        except ValueError as error:
            await self.reap()
            return _failed(action, f"the evaluation process gave an unreadable answer: {error}")

    def _death(self, action: EvaluateScript, limits: ScriptLimits) -> TaskUpdate:
        tail = self.stderr_tail.decode("utf-8", "replace")
        code = self.process.returncode
        if any(marker in tail for marker in _MEMORY_MARKERS):
            return _failed(action, f"the evaluation exceeded its memory limit of "
                                   f"{_size_text(limits.memory_limit_bytes)}")
        if code == -signal.SIGALRM:
            # The child's own alarm, armed past the limit, ended it before the parent's kill: on a loaded
            # machine the parent's event loop can wake that late. Either way the evaluation overran its limit.
            return _failed(action, f"the evaluation exceeded its time limit of {limits.time_text()}")
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        last = tail.strip().splitlines()[-1][:300] if tail.strip() else ""
        return _failed(action, f"the evaluation process {how}" + (f" ({last})" if last else ""))


class ScriptPool:
    """Evaluates ``EvaluateScript`` actions in at most ``limits.workers`` processes. Use from one event loop.

    ``await evaluate(action, key)`` gives the task's update (COMPLETED, or FAILED with a reason that names
    the limit); it never raises for what the script does. ``await close()`` kills every process.
    """

    def __init__(self, limits: ScriptLimits | None = None) -> None:
        self.limits = limits or ScriptLimits()
        self._queue: _FairQueue | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._children: set[_Child] = set()
        self._closed = False
        self.evaluations = 0
        self.killed = 0

    @property
    def queued(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    @property
    def processes(self) -> Sequence[int]:
        """The process ids of the evaluation processes alive now (for tests and diagnostics)."""
        return [child.process.pid for child in self._children if child.alive]

    async def evaluate(self, action: EvaluateScript, key: str = "") -> TaskUpdate:
        if self._closed:
            raise RuntimeError("the script pool is closed")
        if self._queue is None:
            self._queue = _FairQueue()
            self._workers = [asyncio.get_running_loop().create_task(self._work(), name=f"script-worker-{n}")
                             for n in range(self.limits.workers)]
        request = _Request(action, asyncio.get_running_loop().create_future())
        self._queue.put(key, request)
        try:
            return await request.future
        except asyncio.CancelledError:
            if not request.future.done():
                request.future.cancel()
            if request.child is not None:
                request.child.kill()  # withdrawn while it runs: the worker sees the process end and moves on
            raise

    async def _work(self) -> None:
        assert self._queue is not None
        child: _Child | None = None
        request: _Request | None = None
        try:
            while True:
                request = None
                request = await self._queue.get()
                if child is None or not child.alive:
                    if child is not None:
                        await child.reap()
                        self._children.discard(child)
                    try:
                        child = await _Child.start(self.limits)
                    except OSError as error:
                        child = None
                        if not request.future.done():
                            request.future.set_result(_failed(request.action,
                                                              f"cannot start an evaluation process: {error}"))
                        continue
                    self._children.add(child)
                if request.future.done():
                    continue
                request.child = child
                try:
                    update = await child.evaluate(request.action, self.limits)
                except Exception as error:  # a pipe in a state nobody planned for: never lose the worker
                    await child.reap()
                    update = _failed(request.action, f"the evaluation process failed: {error!r}")
                request.child = None
                self.evaluations += 1
                if not child.alive:
                    self.killed += 1
                if not request.future.done():
                    request.future.set_result(update)
        finally:  # closed: the request in hand is cancelled (its caller sees CancelledError), the process killed
            if request is not None and not request.future.done():
                request.future.cancel()
            if child is not None:
                child.kill()

    async def close(self) -> None:
        """Kill every evaluation process; requests still waiting are cancelled."""
        self._closed = True
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        self._workers = []
        if self._queue is not None:
            for request in self._queue.drain():
                request.future.cancel()
        for child in list(self._children):
            await child.reap()
        self._children.clear()

    def kill_now(self) -> None:
        """Kill every evaluation process at once, from a signal handler or a ``finally`` (no awaiting)."""
        for child in self._children:
            child.kill()


# --------------------------------------------------------------------------------------------------
# The child side
# --------------------------------------------------------------------------------------------------


def _child_path() -> list[str]:
    """Where the child finds ``kondukt`` and its dependencies: this process's import path."""
    return [entry for entry in sys.path if entry]


#: Run with ``python -I -c``: no user site, no PYTHON* variables; the parent's import path first.
_CHILD_BOOT: Final = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
    "from kondukt.scriptpool import child_main; child_main(int(sys.argv[2]), float(sys.argv[3]))"
)


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (else an endless jq would outlive the driver)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def child_main(memory_limit_bytes: int, alarm_seconds: float) -> None:
    """The evaluation process: one JSON request per line on stdin, one TaskUpdate per line on stdout."""
    import resource

    from kondukt.engine.tasks.jq import evaluate as evaluate_script

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    # Should the pod's memory run out, the kernel kills an evaluator first.
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as adjust:
        adjust.write("1000")
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(_READY)
    stdout.flush()
    for line in stdin:
        try:
            action = EvaluateScript.model_validate_json(line)
        except ValueError as error:
            stdout.write(json.dumps({"taskId": "", "status": "FAILED",
                                     "reasonForIncompletion": f"unreadable request: {error}"}).encode() + b"\n")
            stdout.flush()
            continue
        # SIGALRM's default action ends the process even while libjq holds the GIL.
        signal.setitimer(signal.ITIMER_REAL, alarm_seconds)
        try:
            update = evaluate_script(action)
            answer = update.model_dump_json().encode("utf-8")
        except MemoryError:
            answer = _failed(action, f"the evaluation exceeded its memory limit of "
                                     f"{_size_text(memory_limit_bytes)}").model_dump_json().encode("utf-8")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        stdout.write(answer + b"\n")
        stdout.flush()


__all__ = [
    "DEFAULT_MEMORY_LIMIT_BYTES",
    "DEFAULT_TIME_LIMIT_SECONDS",
    "DEFAULT_WORKERS",
    "ScriptLimits",
    "ScriptLimitsError",
    "ScriptPool",
    "child_main",
]
