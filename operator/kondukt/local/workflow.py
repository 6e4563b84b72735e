"""One workflow of a local run: its engine state, its loop { observations -> ``decide`` -> actions ->
sleep }, and the attempts it has in flight (processes, sub-workflows, HTTP requests, jq evaluations).

:class:`WorkflowDriver` is the local :class:`~kondukt.driver.dispatch.ActionHandler`: each action becomes
a process under the worker protocol, a child driver in the same event loop, an HTTP request
(:mod:`kondukt.driver.http`) or an evaluation in the run's script pool. What is shared by every workflow
of the run (slots, the load, the processes to kill, the event sink) is the :class:`~kondukt.local.runner.LocalRunner`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kondukt.driver.dispatch import dispatch
from kondukt.driver.http import checked_session, perform_http_task
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
    WorkflowStatus,
    decide,
)
from kondukt.limits import (
    MAX_SUB_WORKFLOW_DEPTH_ENV,
    is_sub_workflow_depth_reason,
    sub_workflow_depth_reason,
)
from kondukt.local.events import DefinitionNotFound, MessageEvent, TaskEvent, WorkflowEvent, now_ms
from kondukt.local.process import (
    AttemptOutcome,
    AttemptProcess,
    AttemptRequest,
    TemplateError,
    attempt_argv,
    template_environment,
)

#: A workflow's engine is called again at least this long after a decision that asked for "now" and
#: changed nothing (guards against a busy loop; the engine should never ask for that).
_MIN_IDLE_WAKE_SECONDS = 0.005

if TYPE_CHECKING:
    from kondukt.local.runner import LocalRunner

#: How often a running attempt's heartbeat file (KONDUKT_HEARTBEAT_FILE) is checked.
HEARTBEAT_POLL_SECONDS = 1.0


# --------------------------------------------------------------------------------------------------
# Attempts in flight
# --------------------------------------------------------------------------------------------------


@dataclass
class _Attempt:
    task_id: str
    kind: str  # "process" | "sub_workflow" | "http" | "script"
    task_def_name: str = ""
    process: AttemptProcess | None = None
    child: WorkflowDriver | None = None
    job: asyncio.Task[None] | None = None
    canceled: bool = False
    spawning: bool = False


# --------------------------------------------------------------------------------------------------
# One workflow
# --------------------------------------------------------------------------------------------------


class WorkflowDriver:
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

    async def _await_child(self, attempt: _Attempt, child: WorkflowDriver) -> None:
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


