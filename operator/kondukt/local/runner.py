"""The no-cluster driver: one workflow (with its sub-workflows and the workflows it starts) on this machine.

``LocalRunner`` does what the operator does, with processes instead of Jobs and memory instead of the
Workflow resource's status: for each workflow it loops { gather observations → ``decide`` → carry out the
actions → sleep until a process exits, the engine's ``wakeAt`` comes, or a signal arrives }. SIMPLE tasks
run as local processes under the worker protocol (:mod:`kondukt.local.process`), SUB_WORKFLOW children
and started workflows (START_WORKFLOW, failureWorkflow) run in the same event loop with engine states of
their own, HTTP tasks are sent from this process (:mod:`kondukt.driver.http`, as the operator does), and
JSON_JQ_TRANSFORM programs run in the processes of a :class:`~kondukt.scriptpool.ScriptPool` (time and
memory limits; never in this process, so Ctrl-C and SIGTERM are always heard). One workflow's loop and
attempts are :mod:`kondukt.local.workflow`'s; what a run reports is :mod:`kondukt.local.events`'.

Every semantic decision (retries and their delays, timeouts, rate limits, what runs next) belongs to the
engine; this module never decides anything about the workflow itself. It must never leave a process
behind: on Ctrl-C / SIGTERM, a timeout or a cancel, the whole process group of an attempt is killed, and
``run()`` kills whatever is still alive before it returns.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

from kondukt.driver.load import LoadTracker
from kondukt.engine import (
    Blueprint,
    Workflow,
    WorkflowDef,
    new_workflow,
)
from kondukt.engine.models import PayloadLimits
from kondukt.engine.payloads import DEFAULT_INLINE_VALUE_BYTES
from kondukt.limits import (
    DEFAULT_MAX_SUB_WORKFLOW_DEPTH,
)
from kondukt.local.events import (
    DefinitionNotFound,
    DefinitionSource,
    EventSink,
    MessageEvent,
    RunEvent,
    RunnerStats,
    RunResult,
    TaskEvent,
    WorkflowEvent,
    WorkflowRun,
    now_ms,
)
from kondukt.local.process import (
    AttemptProcess,
    InputStore,
)
from kondukt.local.workflow import WorkflowDriver
from kondukt.scriptpool import ScriptLimits, ScriptPool
from kondukt_workers.egress import EgressPolicy, policy_environ

#: The operator's limit without external payload storage, so that a run that works here works in a cluster.
LOCAL_PAYLOAD_LIMITS = PayloadLimits(
    maxValueBytes=DEFAULT_INLINE_VALUE_BYTES,
    hint="the limit of a Workflow's status in a cluster without external payload storage",
)


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
        self._drivers: list[WorkflowDriver] = []
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
    ) -> WorkflowDriver:
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
        driver = WorkflowDriver(self, blueprint, state, path, purpose, depth)
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
