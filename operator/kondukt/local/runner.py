"""The no-cluster driver: one workflow (with its sub-workflows and the workflows it starts) on this machine.

``LocalRunner`` does what the operator does, with processes instead of Jobs and memory instead of the
Workflow resource's status: for each workflow it loops { gather observations → ``decide`` → carry out the
actions → sleep until a process exits, the engine's ``wakeAt`` comes, or a signal arrives }. SIMPLE tasks
run as local processes under the worker protocol (:mod:`kondukt.local.process`), SUB_WORKFLOW children
and started workflows (START_WORKFLOW, failureWorkflow) run in the same event loop with engine states of
their own, HTTP tasks run in a thread, and JSON_JQ_TRANSFORM programs in the processes of a
:class:`~kondukt.scriptpool.ScriptPool` (time and memory limits; never in this process, so Ctrl-C and
SIGTERM are always heard).

Every semantic decision (retries and their delays, timeouts, rate limits, what runs next) belongs to the
engine; this module never decides anything about the workflow itself. It must never leave a process
behind: on Ctrl-C / SIGTERM, a timeout or a cancel, the whole process group of an attempt is killed, and
``run()`` kills whatever is still alive before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kondukt.driver.dispatch import dispatch
from kondukt.driver.http import checked_session, perform_http_task
from kondukt.driver.load import LoadTracker
from kondukt.engine import (
    Blueprint,
    CallHttp,
    CancelTask,
    Decision,
    EvaluateScript,
    FailureWorkflowStarted,
    Observation,
    Operation,
    OperationKind,
    StartSubWorkflow,
    StartTask,
    StartWorkflow,
    TaskStatus,
    TaskUpdate,
    Workflow,
    WorkflowDef,
    WorkflowStatus,
    decide,
    new_workflow,
)
from kondukt.engine.models import PayloadLimits
from kondukt.engine.payloads import DEFAULT_INLINE_VALUE_BYTES
from kondukt.limits import (
    DEFAULT_MAX_SUB_WORKFLOW_DEPTH,
    MAX_SUB_WORKFLOW_DEPTH_ENV,
    is_sub_workflow_depth_reason,
    sub_workflow_depth_reason,
)
from kondukt.local.process import (
    AttemptOutcome,
    AttemptProcess,
    AttemptRequest,
    InputStore,
    TemplateError,
    attempt_argv,
    template_environment,
)
from kondukt.scriptpool import ScriptLimits, ScriptPool
from kondukt_workers.egress import EgressPolicy, policy_environ

#: A workflow's engine is called again at least this long after a decision that asked for "now" and
#: changed nothing (guards against a busy loop; the engine should never ask for that).
_MIN_IDLE_WAKE_SECONDS = 0.005

#: The operator's limit without external payload storage, so that a run that works here works in a cluster.
LOCAL_PAYLOAD_LIMITS = PayloadLimits(
    maxValueBytes=DEFAULT_INLINE_VALUE_BYTES,
    hint="the limit of a Workflow's status in a cluster without external payload storage",
)

#: How often a running attempt's heartbeat file (KONDUKT_HEARTBEAT_FILE) is checked.
HEARTBEAT_POLL_SECONDS = 1.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class DefinitionSource(Protocol):
    """Where sub-workflow and started-workflow definitions come from (a manifests Bundle)."""

    def find_workflow_def(self, name: str, version: int | None = None) -> WorkflowDef | None: ...

    def blueprint_for(self, workflow_def: WorkflowDef) -> Blueprint: ...


class DefinitionNotFound(LookupError):
    pass


# --------------------------------------------------------------------------------------------------
# Events (for the progress view) and statistics
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskEvent:
    """A task attempt changed status (from the engine's transitions)."""

    at_ms: int
    workflow_path: str
    workflow_id: str
    task_id: str
    reference_task_name: str
    task_type: str
    status: TaskStatus
    reason: str | None = None


@dataclass(frozen=True)
class WorkflowEvent:
    """A workflow started or ended."""

    at_ms: int
    workflow_path: str
    workflow_id: str
    workflow_name: str
    status: WorkflowStatus
    reason: str | None = None


@dataclass(frozen=True)
class MessageEvent:
    """A note for the user (an engine message, a workflow that could not start)."""

    at_ms: int
    workflow_path: str
    text: str


RunEvent = TaskEvent | WorkflowEvent | MessageEvent
EventSink = Callable[[RunEvent], None]


@dataclass
class RunnerStats:
    """The runner's own overhead: from a task process's exit to the next process's start."""

    step_gaps_ms: list[float] = field(default_factory=list)
    dispatches: list[tuple[str, int]] = field(default_factory=list)
    """(TaskDef name, ms) of every process attempt handed to the runner, in order."""
    decisions: int = 0
    processes_started: int = 0
    _unconsumed_exit: float | None = None

    def process_exited(self, at: float) -> None:
        self._unconsumed_exit = at

    def process_started(self, at: float) -> None:
        self.processes_started += 1
        if self._unconsumed_exit is not None:
            self.step_gaps_ms.append((at - self._unconsumed_exit) * 1000.0)
            self._unconsumed_exit = None


@dataclass(frozen=True)
class WorkflowRun:
    """One workflow of the run, as it ended."""

    path: str
    workflow: Workflow
    purpose: str  # "main" | "sub_workflow" | "START_WORKFLOW" | "failureWorkflow"


@dataclass(frozen=True)
class RunResult:
    workflow: Workflow
    workflows: tuple[WorkflowRun, ...]
    stats: RunnerStats
    interrupted: bool
    attempt_dir: Path

    @property
    def status(self) -> WorkflowStatus:
        return self.workflow.status


# --------------------------------------------------------------------------------------------------
# Attempts in flight
# --------------------------------------------------------------------------------------------------


@dataclass
class _Attempt:
    task_id: str
    kind: str  # "process" | "sub_workflow" | "http" | "script"
    task_def_name: str = ""
    process: AttemptProcess | None = None
    child: _WorkflowDriver | None = None
    job: asyncio.Task[None] | None = None
    canceled: bool = False
    spawning: bool = False


# --------------------------------------------------------------------------------------------------
# One workflow
# --------------------------------------------------------------------------------------------------


class _WorkflowDriver:
    def __init__(
        self,
        runner: LocalRunner,
        blueprint: Blueprint,
        state: Workflow,
        path: str,
        purpose: str,
        depth: int = 0,
    ) -> None:
        self.runner = runner
        self.blueprint = blueprint
        self.state = state
        self.path = path
        self.purpose = purpose
        #: How deep this workflow nests as a sub-workflow (the main workflow and started ones: 0).
        self.depth = depth
        self._inbox: list[Observation] = []
        self._wake = asyncio.Event()
        self._attempts: dict[str, _Attempt] = {}
        self._terminate_requested = False
        self.waiting_on: frozenset[str] = frozenset()
        self.idle = False
        self.done: asyncio.Future[Workflow] = asyncio.get_running_loop().create_future()

    @property
    def workflow_id(self) -> str:
        return self.state.workflowId

    # -- inbox ------------------------------------------------------------------------------------

    def observe(self, observation: Observation) -> None:
        self._inbox.append(observation)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def request_terminate(self, reason: str) -> None:
        if self._terminate_requested or self.done.done():
            return
        self._terminate_requested = True
        self.observe(
            Operation(op=OperationKind.TERMINATE, nonce=f"local-terminate-{uuid.uuid4().hex}", reason=reason)
        )

    # -- the loop ---------------------------------------------------------------------------------

    async def drive(self) -> None:
        runner = self.runner
        runner.emit(
            WorkflowEvent(now_ms(), self.path, self.workflow_id, self.state.workflowName, self.state.status)
        )
        try:
            while True:
                observations: list[Observation] = self._inbox
                self._inbox = []
                self._wake.clear()
                observations.append(runner.load.observation(now_ms()))
                decision = decide(self.blueprint, self.state, observations, now_ms())
                runner.stats.decisions += 1
                self._apply(decision)
                if self.state.status.terminal:
                    for attempt in list(self._attempts.values()):
                        self._cancel(attempt, "the workflow ended")
                    if not self._attempts and not self._inbox:
                        break
                await self._sleep(decision)
        finally:
            for attempt in list(self._attempts.values()):
                self._cancel(attempt, "the runner stopped")
        runner.emit(
            WorkflowEvent(
                now_ms(),
                self.path,
                self.workflow_id,
                self.state.workflowName,
                self.state.status,
                self.state.reasonForIncompletion,
            )
        )
        if not self.done.done():
            self.done.set_result(self.state)

    async def _sleep(self, decision: Decision) -> None:
        if self._inbox:
            return
        timeout: float | None = None
        if decision.wakeAt is not None:
            timeout = max(0.0, (decision.wakeAt - now_ms()) / 1000.0)
            if timeout == 0.0 and not decision.changed and not decision.actions:
                timeout = _MIN_IDLE_WAKE_SECONDS
        self.idle = timeout is None and not self._attempts
        if self.idle:
            self.runner.check_stalled()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            self.idle = False

    @property
    def stalled(self) -> bool:
        """Nothing can ever wake this workflow: no timer, nothing in flight, nothing observed."""
        return self.idle and not self._wake.is_set() and not self._attempts and not self._inbox

    def stall_reason(self) -> str:
        waiting = [
            f"{task.referenceTaskName} ({task.taskType})"
            for task in self.state.tasks
            if not task.status.terminal
        ]
        what = ", ".join(waiting) if waiting else "no task"
        return (
            f"nothing can move the workflow on in a local run: {what} waits for an update that only a "
            "user or another system could send (e.g. a HUMAN task)"
        )

    def _apply(self, decision: Decision) -> None:
        self.state = decision.workflow
        self.waiting_on = frozenset(decision.waitingOn)
        at = now_ms()
        for transition in decision.transitions:
            self.runner.emit(
                TaskEvent(
                    at,
                    self.path,
                    self.workflow_id,
                    transition.taskId,
                    transition.referenceTaskName,
                    transition.taskType,
                    transition.toStatus,
                    transition.reason,
                )
            )
        for message in decision.messages:
            self.runner.emit(MessageEvent(at, self.path, message))
        for action in decision.actions:
            dispatch(action, self)

    # -- actions ----------------------------------------------------------------------------------

    def _report(
        self, task_id: str, outcome_status: TaskStatus, output: Mapping[str, Any] | None, reason: str | None
    ) -> None:
        self.observe(
            TaskUpdate(
                taskId=task_id,
                status=outcome_status,
                outputData=dict(output or {}),
                reasonForIncompletion=reason,
                at=now_ms(),
            )
        )

    def start_task(self, action: StartTask) -> None:
        if action.taskId in self._attempts:
            return  # already running: actions are idempotent
        if action.taskType == "HTTP":
            request = action.inputData.get("http_request", action.inputData)
            self._call_http(
                action.taskId, request if isinstance(request, Mapping) else {}, action.timeoutSeconds
            )
            return
        task_def = action.taskDef or self.blueprint.task_def(action.taskDefName)
        template = task_def.template if task_def else None
        try:
            argv = attempt_argv(template, action.taskDefName)
            environment = self.runner.task_environment(template_environment(template, action.taskDefName))
        except TemplateError as e:
            self._report(action.taskId, TaskStatus.FAILED_WITH_TERMINAL_ERROR, None, str(e))
            return
        request = AttemptRequest(
            task_id=action.taskId,
            workflow_id=self.workflow_id,
            reference_task_name=action.referenceTaskName,
            task_def_name=action.taskDefName,
            retry_count=action.retryCount,
            iteration=action.iteration,
            input_data=action.inputData,
            argv=argv,
            base_environment=environment,
            work_dir=self.runner.attempt_dir / self.workflow_id,
            working_directory=template.workingDir if template else None,
            timeout_seconds=action.timeoutSeconds,
        )
        attempt = _Attempt(action.taskId, "process", action.taskDefName)
        attempt.process = AttemptProcess(request, self.runner.store_input)
        self._attempts[action.taskId] = attempt
        dispatched_at = now_ms()
        self.runner.load.dispatched(action.taskDefName, task_def, dispatched_at)
        self.runner.stats.dispatches.append((action.taskDefName, dispatched_at))
        attempt.job = self.runner.spawn(self._run_process(attempt))

    async def _run_process(self, attempt: _Attempt) -> None:
        process = attempt.process
        assert process is not None
        runner = self.runner
        outcome: AttemptOutcome | None = None
        try:
            async with runner.slots:
                if attempt.canceled:
                    return
                attempt.spawning = True
                try:
                    await process.start()
                except Exception as e:  # cannot spawn, or cannot store an oversized input: the attempt fails
                    outcome = AttemptOutcome(
                        TaskStatus.FAILED,
                        reason=f"cannot start {' '.join(process.request.argv)}: {e}",
                    )
                else:
                    assert process.spawned_at is not None
                    runner.stats.process_started(process.spawned_at)
                    runner.track_process(process)
                    self.observe(TaskUpdate(taskId=attempt.task_id, started=True, at=now_ms()))
                    heartbeats = asyncio.get_running_loop().create_task(
                        self._watch_heartbeats(attempt, process)
                    )
                    try:
                        outcome = await process.wait()
                    finally:
                        heartbeats.cancel()
                        runner.untrack_process(process)
                        if process.exited_at is not None:
                            runner.stats.process_exited(process.exited_at)
            if outcome.external_output_path and outcome.status.successful:
                outcome = await self._fetch_external_output(outcome)
        finally:
            runner.attempt_finished(attempt.task_def_name)
            self._attempts.pop(attempt.task_id, None)
            if outcome is not None and not attempt.canceled:
                self._report(attempt.task_id, outcome.status, outcome.output_data, outcome.reason)
            else:
                self._wake.set()

    async def _watch_heartbeats(self, attempt: _Attempt, process: AttemptProcess) -> None:
        """Report a heartbeat each time the worker SDK touches KONDUKT_HEARTBEAT_FILE."""
        last_seen = 0
        while True:
            await asyncio.sleep(HEARTBEAT_POLL_SECONDS)
            try:
                touched = process.heartbeat_file.stat().st_mtime_ns // 1_000_000
            except OSError:
                continue
            if touched > last_seen and not attempt.canceled:
                last_seen = touched
                self.observe(TaskUpdate(taskId=attempt.task_id, heartbeat=True, at=touched))

    async def _fetch_external_output(self, outcome: AttemptOutcome) -> AttemptOutcome:
        path = outcome.external_output_path
        assert path is not None
        try:
            payload = await asyncio.to_thread(self.runner.fetch_payload, path)
        except Exception as e:  # any storage or JSON error fails the attempt, with the URI named
            return AttemptOutcome(TaskStatus.FAILED, reason=f"cannot read the external output {path}: {e}")
        if not isinstance(payload, dict):
            return AttemptOutcome(
                TaskStatus.FAILED, reason=f"the external output {path} is not a JSON object"
            )
        return AttemptOutcome(outcome.status, payload, outcome.reason, outcome.exit_code, path)

    def call_http(self, action: CallHttp) -> None:
        self._call_http(action.taskId, action.request, action.timeoutSeconds)

    def cancel_task(self, action: CancelTask) -> None:
        attempt = self._attempts.get(action.taskId)
        if attempt is not None:
            self._cancel(attempt, action.reason or "canceled by the engine")

    def _call_http(self, task_id: str, request: Mapping[str, Any], timeout_seconds: int | None) -> None:
        if task_id in self._attempts:
            return
        attempt = _Attempt(task_id, "http")
        self._attempts[task_id] = attempt
        attempt.job = self.runner.spawn(self._run_http(attempt, dict(request), timeout_seconds))

    async def _run_http(
        self, attempt: _Attempt, request: dict[str, Any], timeout_seconds: int | None
    ) -> None:
        self.observe(TaskUpdate(taskId=attempt.task_id, started=True, at=now_ms()))
        try:
            async with checked_session(self.runner.egress) as session:
                update = await perform_http_task(attempt.task_id, request, timeout_seconds, session,
                                                 self.runner.egress)
        finally:
            self._attempts.pop(attempt.task_id, None)
        if not attempt.canceled:
            self.observe(update.model_copy(update={"at": now_ms()}))
        else:
            self._wake.set()

    def evaluate_script(self, action: EvaluateScript) -> None:
        if action.taskId in self._attempts:
            return
        attempt = _Attempt(action.taskId, "script")
        self._attempts[action.taskId] = attempt
        attempt.job = self.runner.spawn(self._run_script(attempt, action))

    async def _run_script(self, attempt: _Attempt, action: EvaluateScript) -> None:
        try:
            update = await self.runner.scripts.evaluate(action, self.workflow_id)
        finally:
            self._attempts.pop(attempt.task_id, None)
            self._wake.set()
        if attempt.canceled:
            self._wake.set()
        else:
            self.observe(update.model_copy(update={"at": now_ms()}))

    def start_sub_workflow(self, action: StartSubWorkflow) -> None:
        if action.taskId in self._attempts:
            return
        limit = self.runner.max_sub_workflow_depth
        if self.depth + 1 > limit:
            reason = sub_workflow_depth_reason(
                action.name, self.depth + 1, limit, f"kondukt run --max-sub-workflow-depth, ${MAX_SUB_WORKFLOW_DEPTH_ENV}"
            )
            self.runner.emit(MessageEvent(now_ms(), self.path, reason))
            self._report(action.taskId, TaskStatus.FAILED_WITH_TERMINAL_ERROR, None, reason)
            return
        try:
            blueprint = self.runner.resolve_blueprint(action.name, action.version, action.definition)
        except DefinitionNotFound as e:
            self._report(action.taskId, TaskStatus.FAILED_WITH_TERMINAL_ERROR, None, str(e))
            return
        child = self.runner.new_driver(
            blueprint,
            action.input,
            path=f"{self.path}{action.referenceTaskName}/",
            purpose="sub_workflow",
            correlation_id=action.correlationId or self.state.correlationId,
            parent=(self.workflow_id, action.taskId),
            depth=self.depth + 1,
        )
        attempt = _Attempt(action.taskId, "sub_workflow", child=child)
        self._attempts[action.taskId] = attempt
        self.observe(
            TaskUpdate(taskId=action.taskId, started=True, subWorkflowId=child.workflow_id, at=now_ms())
        )
        attempt.job = self.runner.spawn(self._await_child(attempt, child))

    async def _await_child(self, attempt: _Attempt, child: _WorkflowDriver) -> None:
        try:
            final = await asyncio.shield(child.done)
        finally:
            self._attempts.pop(attempt.task_id, None)
        if attempt.canceled:
            self._wake.set()
            return
        status = _SUB_WORKFLOW_TASK_STATUS.get(final.status, TaskStatus.FAILED)
        reason = final.reasonForIncompletion
        if status is TaskStatus.FAILED and is_sub_workflow_depth_reason(reason):
            status = TaskStatus.FAILED_WITH_TERMINAL_ERROR  # a retry would hit the same limit, with more children
        if not status.successful and not reason:
            reason = f"sub-workflow {final.workflowId} ended {final.status.value}"
        self._report(attempt.task_id, status, final.output, reason)

    def start_workflow(self, action: StartWorkflow) -> None:
        runner = self.runner
        if runner.interrupted:
            runner.emit(
                MessageEvent(
                    now_ms(),
                    self.path,
                    f"not starting {action.purpose} {action.name}: the run was interrupted",
                )
            )
            if action.taskId:
                self._report(action.taskId, TaskStatus.CANCELED, None, "the run was interrupted")
            return
        try:
            blueprint = runner.resolve_blueprint(action.name, action.version, action.definition)
        except DefinitionNotFound as e:
            runner.emit(
                MessageEvent(now_ms(), self.path, f"cannot start {action.purpose} {action.name}: {e}")
            )
            if action.taskId:  # as Conductor's StartWorkflow: FAILED, retriable by the task's TaskDef
                self._report(action.taskId, TaskStatus.FAILED, None, str(e))
            return
        if self.depth + 1 > runner.max_sub_workflow_depth:
            reason = sub_workflow_depth_reason(
                action.name, self.depth + 1, runner.max_sub_workflow_depth,
                f"kondukt run --max-sub-workflow-depth, ${MAX_SUB_WORKFLOW_DEPTH_ENV}", started=True,
            )
            runner.emit(MessageEvent(now_ms(), self.path, f"not starting {action.purpose} {action.name}: {reason}"))
            if action.taskId:
                self._report(action.taskId, TaskStatus.FAILED_WITH_TERMINAL_ERROR, None, reason)
            return
        label = "failureWorkflow" if action.purpose == "failureWorkflow" else action.name
        driver = runner.new_driver(
            blueprint,
            action.input,
            path=f"{self.path}{label}/",
            purpose=action.purpose,
            correlation_id=action.correlationId,
            parent=None,
            depth=self.depth + 1,
        )
        if action.taskId:
            self._report(action.taskId, TaskStatus.COMPLETED, {"workflowId": driver.workflow_id}, None)
        elif action.purpose == "failureWorkflow":
            self.observe(FailureWorkflowStarted(workflowId=driver.workflow_id))

    def _cancel(self, attempt: _Attempt, reason: str) -> None:
        """Stop an attempt; its result, if one still comes, is not reported (the engine canceled it)."""
        if attempt.canceled:
            return
        attempt.canceled = True
        if attempt.process is not None:
            if not attempt.spawning and attempt.job is not None:
                attempt.job.cancel()  # still waiting for a free slot: it never starts
            else:
                attempt.process.cancel()
        elif attempt.child is not None:
            attempt.child.request_terminate(reason)
        elif attempt.kind == "script" and attempt.job is not None:
            attempt.job.cancel()  # withdrawn from the pool's queue, or its process killed
            self._attempts.pop(attempt.task_id, None)
            self._wake.set()
        else:
            # An HTTP call in a thread cannot be interrupted; its answer is ignored.
            self._attempts.pop(attempt.task_id, None)
            self._wake.set()

    def interrupt(self, reason: str) -> None:
        """Ctrl-C: kill every process of this workflow at once and ask the engine to terminate it."""
        for attempt in list(self._attempts.values()):
            attempt.canceled = True
            if attempt.process is not None:
                if not attempt.spawning and attempt.job is not None:
                    attempt.job.cancel()
                else:
                    attempt.process.kill_now()
            elif attempt.kind == "script" and attempt.job is not None:
                attempt.job.cancel()
        self.request_terminate(reason)


#: How a SUB_WORKFLOW task ends when its child workflow ends (Conductor's SubWorkflow task).
_SUB_WORKFLOW_TASK_STATUS = {
    WorkflowStatus.COMPLETED: TaskStatus.COMPLETED,
    WorkflowStatus.FAILED: TaskStatus.FAILED,
    WorkflowStatus.TIMED_OUT: TaskStatus.TIMED_OUT,
    WorkflowStatus.TERMINATED: TaskStatus.CANCELED,
}


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


class LocalRunner:
    """Runs one workflow, with everything it starts, to the end. Use :meth:`run` (async) once.

    ``task_environment``: variables every task process gets on top of this process's environment (the
    object store's endpoint, bucket and output prefix). ``attempt_dir``: where attempts keep their result
    file and logs (``<attempt_dir>/<workflow id>/<task id>.*``). ``script_limits``: the time and memory
    limits of jq evaluations and how many run at once. ``payload_limits``: how large a task input or output
    may be (default: as in a cluster without external payload storage).
    """

    def __init__(
        self,
        definitions: DefinitionSource,
        blueprint: Blueprint,
        workflow_input: Mapping[str, Any],
        *,
        attempt_dir: Path,
        correlation_id: str | None = None,
        workflow_id: str | None = None,
        parallelism: int | None = None,
        base_environment: Mapping[str, str] | None = None,
        store_input: InputStore | None = None,
        fetch_payload: Callable[[str], Any] | None = None,
        on_event: EventSink | None = None,
        script_limits: ScriptLimits | None = None,
        payload_limits: PayloadLimits | None = None,
        max_sub_workflow_depth: int = DEFAULT_MAX_SUB_WORKFLOW_DEPTH,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.definitions = definitions
        self.max_sub_workflow_depth = max_sub_workflow_depth
        self.blueprint = blueprint
        self.workflow_input = dict(workflow_input)
        self.attempt_dir = attempt_dir
        self.correlation_id = correlation_id
        self.workflow_id = workflow_id or str(uuid.uuid4())
        self.parallelism = max(1, parallelism or (os.cpu_count() or 1) * 2)
        self.base_environment = dict(os.environ if base_environment is None else base_environment)
        self.store_input = store_input
        self._fetch_payload = fetch_payload
        self._on_event = on_event
        self.scripts = ScriptPool(script_limits)
        self.payload_limits = payload_limits or LOCAL_PAYLOAD_LIMITS
        #: Where HTTP tasks and the task processes' URI reader may connect (``kondukt run --egress*``).
        self.egress = egress or EgressPolicy.local()
        self.stats = RunnerStats()
        self.load = LoadTracker()
        self.interrupted = False
        self._drivers: list[_WorkflowDriver] = []
        self._jobs: list[asyncio.Task[None]] = []
        self._processes: set[AttemptProcess] = set()
        self._slots: asyncio.Semaphore | None = None
        self._all_jobs: set[asyncio.Task[None]] = set()
        self._crash: BaseException | None = None

    # -- services for the drivers -----------------------------------------------------------------

    @property
    def slots(self) -> asyncio.Semaphore:
        assert self._slots is not None
        return self._slots

    def emit(self, event: RunEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def task_environment(self, template_env: Mapping[str, str]) -> dict[str, str]:
        env = dict(self.base_environment)
        env.update(template_env)
        env.update(policy_environ(self.egress))
        return env

    def fetch_payload(self, uri: str) -> Any:
        if self._fetch_payload is None:
            import json

            from kondukt_workers.storage import read_uri

            return json.loads(read_uri(uri))
        return self._fetch_payload(uri)

    def attempt_finished(self, task_def_name: str) -> None:
        """An attempt of ``task_def_name`` ended: wake the workflows its concurrentExecLimit held back."""
        self.load.finished(task_def_name)
        for driver in self._drivers:
            if task_def_name in driver.waiting_on:
                driver.wake()

    def check_stalled(self) -> None:
        """When every workflow of the run waits with no timer and nothing in flight, none can ever move
        again (a HUMAN task has no one to complete it locally): end them TERMINATED with the reason."""
        live = [driver for driver in self._drivers if not driver.done.done()]
        if not live or self._processes or not all(driver.stalled for driver in live):
            return
        for driver in live:
            reason = driver.stall_reason()
            self.emit(MessageEvent(now_ms(), driver.path, reason))
            driver.request_terminate(reason)

    def track_process(self, process: AttemptProcess) -> None:
        self._processes.add(process)

    def untrack_process(self, process: AttemptProcess) -> None:
        self._processes.discard(process)

    def resolve_blueprint(
        self, name: str, version: int | None, definition: Mapping[str, Any] | None
    ) -> Blueprint:
        if definition:
            try:
                workflow_def = WorkflowDef.model_validate({"name": name, **definition})
            except ValueError as e:
                raise DefinitionNotFound(f"the inline workflowDefinition of {name!r} is invalid: {e}") from e
        else:
            found = self.definitions.find_workflow_def(name, version)
            if found is None:
                which = f"{name!r} version {version}" if version is not None else repr(name)
                raise DefinitionNotFound(f"no WorkflowDef {which} among the files given to kondukt run")
            workflow_def = found
        return self.definitions.blueprint_for(workflow_def)

    def new_driver(
        self,
        blueprint: Blueprint,
        workflow_input: Mapping[str, Any],
        *,
        path: str,
        purpose: str,
        correlation_id: str | None,
        parent: tuple[str, str] | None,
        workflow_id: str | None = None,
        depth: int = 0,
    ) -> _WorkflowDriver:
        blueprint = blueprint.model_copy(update={"payloadLimits": self.payload_limits})
        state = new_workflow(
            blueprint,
            workflow_id or str(uuid.uuid4()),
            dict(workflow_input),
            now_ms(),
            correlation_id=correlation_id,
            parent_workflow_id=parent[0] if parent else None,
            parent_workflow_task_id=parent[1] if parent else None,
        )
        driver = _WorkflowDriver(self, blueprint, state, path, purpose, depth)
        self._drivers.append(driver)
        self._jobs.append(self.spawn(driver.drive()))
        return driver

    # -- control ----------------------------------------------------------------------------------

    def terminate(self, reason: str = "interrupted by the user") -> None:
        """Ctrl-C / SIGTERM: kill every process group now and end every workflow TERMINATED."""
        self.interrupted = True
        for driver in self._drivers:
            driver.interrupt(reason)
        self.kill_everything()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a driver's or an attempt's coroutine; a crash in one (a bug) stops the whole run."""
        job = asyncio.get_running_loop().create_task(coroutine)
        self._all_jobs.add(job)
        job.add_done_callback(self._job_done)
        return job

    def _job_done(self, job: asyncio.Task[None]) -> None:
        self._all_jobs.discard(job)
        if job.cancelled() or job.exception() is None:
            return
        if self._crash is None:
            self._crash = job.exception()
        self.kill_everything()
        for other in list(self._all_jobs):
            other.cancel()

    def kill_everything(self) -> None:
        for process in list(self._processes):
            process.kill_now()
        self.scripts.kill_now()

    async def run(self) -> RunResult:
        self._slots = asyncio.Semaphore(self.parallelism)
        main = self.new_driver(
            self.blueprint,
            self.workflow_input,
            path="",
            purpose="main",
            correlation_id=self.correlation_id,
            parent=None,
            workflow_id=self.workflow_id,
        )
        try:
            while True:
                pending = [job for job in self._jobs if not job.done()]
                if not pending:
                    break
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.kill_everything()
            for job in list(self._all_jobs):
                job.cancel()
            await self.scripts.close()
        if self._crash is not None:
            raise self._crash
        return RunResult(
            workflow=main.state,
            workflows=tuple(WorkflowRun(d.path, d.state, d.purpose) for d in self._drivers),
            stats=self.stats,
            interrupted=self.interrupted,
            attempt_dir=self.attempt_dir,
        )


def workflows_by_path(result: RunResult) -> dict[str, Workflow]:
    return {run.path: run.workflow for run in result.workflows}


__all__: Sequence[str] = [
    "DefinitionNotFound",
    "DefinitionSource",
    "LocalRunner",
    "MessageEvent",
    "RunEvent",
    "RunResult",
    "RunnerStats",
    "TaskEvent",
    "WorkflowEvent",
    "WorkflowRun",
]
