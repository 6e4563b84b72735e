"""Carrying out the engine's actions in a cluster, and the attempts the operator runs itself.

:func:`kondukt.driver.dispatch.dispatch` hands each action to :class:`_Acting` (bound to one workflow):
a task attempt becomes a Job, a sub-workflow a child Workflow, START_WORKFLOW an independent Workflow
(deterministic names: AlreadyExists means done, so a reconcile that repeats an action does nothing), a
cancel deletes the Job or terminates the child. HTTP tasks and jq evaluations run in the operator
(:mod:`kondukt.driver.http`, the :class:`~kondukt.scriptpool.ScriptPool`): :class:`Actor` keeps them in
flight and their results until the status that records them is written, and wakes the workflow when
one ends. It also keeps the namespace's load (:mod:`kondukt.driver.load`): the Jobs that exist, plus
those just created that the watch has not shown yet (reservations).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import aiohttp

from kondukt.driver.dispatch import dispatch
from kondukt.driver.http import checked_session, perform_http_task
from kondukt.driver.limits import INPUT_ENV_LIMIT_BYTES
from kondukt.driver.load import is_limited, rate_window_ms, task_load
from kondukt.engine.decision import (
    Action,
    CallHttp,
    CancelTask,
    EvaluateScript,
    FailureWorkflowStarted,
    Load,
    Observation,
    StartSubWorkflow,
    StartTask,
    StartWorkflow,
    TaskLoad,
    TaskUpdate,
)
from kondukt.engine.models import Blueprint, TaskDef, TaskStatus, TaskType
from kondukt.kube import names
from kondukt.kube.builders import (
    AttemptSpecError,
    OwnerRef,
    build_child_workflow,
    build_job_for_attempt,
    build_started_workflow,
    sub_workflow_depth,
)
from kondukt.kube.cache import ClusterView, WorkflowDefRecord
from kondukt.kube.events import EventRecorder
from kondukt.kube.kubeapi import Invalid, KubeClient, NotFound, TransientApiError, exceeded_quota
from kondukt.kube.memo import ReconcileSettings, TransientError, WorkflowKey
from kondukt.kube.metrics import Metrics
from kondukt.limits import sub_workflow_depth_reason
from kondukt.scriptpool import ScriptPool
from kondukt_workers.context import TaskContext
from kondukt_workers.payloads import encode_task_input

logger = logging.getLogger(__name__)

_PARALLEL_ACTIONS: Final = 32


def _evaluation_outcome(update: TaskUpdate) -> str:
    """The metric label of a script evaluation's result (the pool's reasons name the limit)."""
    if update.status is TaskStatus.COMPLETED:
        return "completed"
    reason = update.reasonForIncompletion or ""
    if "exceeded its time limit" in reason:
        return "time_limit"
    if "exceeded its memory limit" in reason:
        return "memory_limit"
    if "evaluation process" in reason:
        return "died"
    return "failed"


@dataclasses.dataclass(frozen=True)
class _Acting:
    """The operator's :class:`~kondukt.driver.dispatch.ActionHandler` for one workflow's actions: each
    returns the updates known at once (a failed start, a child that already exists)."""

    actor: Actor
    owner: OwnerRef
    blueprint: Blueprint
    now: int
    #: The workflow's Jobs that exist already (not created again).
    known_jobs: frozenset[str] = frozenset()

    async def start_task(self, action: StartTask) -> list[Observation]:
        return [*await self.actor.start_job(self.owner, action, self.blueprint, self.now, self.known_jobs)]

    async def start_sub_workflow(self, action: StartSubWorkflow) -> list[Observation]:
        return [*await self.actor.start_child(self.owner, action)]

    async def start_workflow(self, action: StartWorkflow) -> list[Observation]:
        return await self.actor.start_workflow(self.owner, action)

    async def call_http(self, action: CallHttp) -> list[Observation]:
        self.actor.call_http(self.owner, action)
        return []

    async def evaluate_script(self, action: EvaluateScript) -> list[Observation]:
        self.actor.evaluate_script(self.owner, action)
        return []

    async def cancel_task(self, action: CancelTask) -> list[Observation]:
        await self.actor.cancel(self.owner, action)
        return []


class Actor:
    """Carries out the actions of the :class:`~kondukt.kube.reconcile.Reconciler`'s workflows; owns what
    runs in the operator (HTTP requests, jq evaluations), their results, and the load's reservations."""

    def __init__(
        self,
        api: KubeClient,
        view: ClusterView,
        settings: ReconcileSettings,
        metrics: Metrics,
        events: EventRecorder,
        wake: Callable[[WorkflowKey], None],
        leading: Callable[[], bool],
        workflow_object: Callable[[WorkflowKey], Mapping[str, Any] | None],
        find_workflow_def: Callable[[str, str, int | None], Awaitable[WorkflowDefRecord | None]],
    ) -> None:
        self.api = api
        self.view = view
        self.settings = settings
        self.metrics = metrics
        self.events = events
        #: Reconcile this workflow again (an HTTP request or an evaluation ended).
        self.wake = wake
        #: Whether this replica may act now (it holds the operator's Lease).
        self.leading = leading
        #: The newest version seen of a Workflow (the reconciler's cache), for its sub-workflow depth.
        self.workflow_object = workflow_object
        #: The WorkflowDef a START_WORKFLOW names (namespace, name, version), from the cache or the API.
        self.find_workflow_def = find_workflow_def
        #: Jobs created for limited TaskDefs that the Job watch has not shown yet: (ns, def) -> job -> ms.
        self.reservations: dict[tuple[str, str], dict[str, int]] = {}
        self.http: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.http_done: dict[str, set[str]] = {}
        #: Results of the attempts the operator carries out itself (HTTP, scripts), by workflow uid, until the
        #: status that records them is written.
        self.results: dict[str, dict[str, TaskUpdate]] = {}
        self.scripts = ScriptPool(settings.script_limits)
        #: jq evaluations in flight: (workflow uid, task id) -> the task awaiting the pool.
        self.evaluations: dict[tuple[str, str], asyncio.Task[None]] = {}
        #: Workflows (uid) whose reconcile found an attempt's Job already there: an earlier process (or the
        #: previous leader) created it and died before its status write, and the Job may have run meanwhile.
        #: No watch event will announce it again, so the reconciler comes back at once to read it.
        self.found_existing: set[str] = set()
        #: Jobs this process created (or found there) for a workflow (uid) whose status has not recorded them
        #: yet: a reconcile that failed after some of a fan-out's creates (one create timed out, the status
        #: write conflicted) decides the same starts again, and must not send them all once more. Cleared by
        #: the status write that records them (:meth:`recorded`).
        self.created: dict[str, set[str]] = {}
        self._session: aiohttp.ClientSession | None = None

    def forget(self, uid: str) -> None:
        """The workflow is gone or finished: its requests and evaluations in flight are canceled."""
        self.http_done.pop(uid, None)
        self.results.pop(uid, None)
        self.found_existing.discard(uid)
        self.created.pop(uid, None)
        for http_key in [k for k in self.http if k[0] == uid]:
            self.http.pop(http_key).cancel()
        for script_key in [k for k in self.evaluations if k[0] == uid]:
            self.evaluations.pop(script_key).cancel()

    def drop_all(self) -> None:
        """Stop leading: every request and evaluation in flight is canceled, the results not written dropped."""
        for task in [*self.http.values(), *self.evaluations.values()]:
            task.cancel()
        self.http.clear()
        self.evaluations.clear()
        self.http_done.clear()
        self.results.clear()
        self.found_existing.clear()
        self.created.clear()

    def recorded(self, uid: str) -> None:
        """The workflow's status was written: the Jobs created for it are recorded there now."""
        self.created.pop(uid, None)

    async def close(self) -> None:
        for task in [*self.http.values(), *self.evaluations.values()]:
            task.cancel()
        await self.scripts.close()
        if self._session is not None:
            await self._session.close()

    def _pod_finished(self, namespace: str, job_name: str) -> bool:
        return any(pod.terminated for pod in self.view.pods_of_job(namespace, job_name))

    def finished_jobs(self, namespace: str, task_def: str) -> dict[str, bool]:
        """The Jobs of ``task_def`` the informer shows: name -> finished."""
        return {job.name: job.finished or self._pod_finished(namespace, job.name)
                for job in self.view.jobs_of_task_def(namespace, task_def)}

    def load(self, namespace: str, task_defs: Mapping[str, TaskDef], now: int,
             claimed: Mapping[str, Mapping[str, int]] | None = None) -> Load:
        """How busy each limited TaskDef is across the namespace, from the Jobs that exist, those this replica
        just created, and (``claimed``: TaskDef -> Job -> dispatch ms) other replicas' claims not seen yet."""
        by_def: dict[str, TaskLoad] = {}
        for name, task_def in task_defs.items():
            if not is_limited(task_def):
                continue
            jobs = self.view.jobs_of_task_def(namespace, name)
            seen = {job.name for job in jobs}
            reserved = self.reservations.get((namespace, name), {})
            for job_name in [j for j, at in reserved.items() if j in seen or now - at > 120_000]:
                reserved.pop(job_name, None)
            pending = {**reserved, **{j: at for j, at in ((claimed or {}).get(name) or {}).items() if j not in seen}}
            running = sum(1 for job in jobs if not job.finished and not self._pod_finished(namespace, job.name))
            running += len(pending)
            starts = [job.dispatched_at_ms for job in jobs] + list(pending.values())
            by_def[name] = task_load(running, starts, rate_window_ms(task_def), now)
        return Load(byTaskDef=by_def)

    def reserve(self, namespace: str, owner: OwnerRef, actions: Sequence[Action],
                 task_defs: Mapping[str, TaskDef], now: int) -> None:
        """Count Jobs about to be created against their limits at once (before any await)."""
        for action in actions:
            if isinstance(action, StartTask) and is_limited(task_defs.get(action.taskDefName)):
                job_name = names.job_name(owner.name, owner.uid, action.referenceTaskName, action.taskId)
                self.reservations.setdefault((namespace, action.taskDefName), {})[job_name] = now

    async def act(
        self, owner: OwnerRef, actions: Sequence[Action], blueprint: Blueprint, now: int
    ) -> tuple[list[Observation], float | None]:
        """Carry out ``actions`` (concurrently, bounded); results known at once come back as observations.

        At most ``_PARALLEL_ACTIONS`` workers take the actions in turn: a fork's 10,000 starts are not 10,000
        coroutines and tasks alive at once (tens of MiB that the process's RSS keeps afterwards). Every action is
        carried out even when one fails; the first failure is raised after all of them."""
        if not actions:
            return [], None
        first_start: list[float] = []
        known = self.known_jobs(owner) if any(isinstance(a, StartTask) for a in actions) else frozenset()
        acting = _Acting(self, owner, blueprint, now, known)
        results: list[list[Observation] | Exception] = [[] for _ in actions]
        queue = iter(enumerate(actions))

        async def worker() -> None:
            for index, action in queue:  # shared: each action is taken by exactly one worker
                try:
                    results[index] = await self._carry_out(acting, action)
                except Exception as err:  # raised below, once every action had its turn
                    results[index] = err
                    continue
                if isinstance(action, StartTask | StartSubWorkflow) and not first_start:
                    first_start.append(time.perf_counter())

        await asyncio.gather(*(worker() for _ in range(min(_PARALLEL_ACTIONS, len(actions)))))
        updates: list[Observation] = []
        for result in results:
            if isinstance(result, Exception):
                raise result
            updates.extend(result)
        return updates, (first_start[0] if first_start else None)

    async def _carry_out(self, acting: _Acting, action: Action) -> list[Observation]:
        return await dispatch(action, acting)

    async def _input_env(self, owner: OwnerRef, start: StartTask) -> str:
        inline = json.dumps(start.inputData, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        if len(inline.encode("utf-8")) <= INPUT_ENV_LIMIT_BYTES:
            return inline
        context = TaskContext(workflow_id=owner.uid, task_id=start.taskId, task_ref=start.referenceTaskName,
                              task_name=start.taskDefName, retry_count=start.retryCount, iteration=start.iteration)
        return await asyncio.to_thread(encode_task_input, start.inputData, context, self.settings.payload_settings,
                                       INPUT_ENV_LIMIT_BYTES)

    async def start_job(self, owner: OwnerRef, start: StartTask, blueprint: Blueprint, now: int,
                        known: frozenset[str] = frozenset()) -> list[TaskUpdate]:
        """Create the attempt's Job, unless it is in ``known`` (see :meth:`known_jobs`)."""
        task_def = start.taskDef or blueprint.task_def(start.taskDefName)
        try:
            input_env = await self._input_env(owner, start)
        except Exception as err:  # no payload storage, or it failed: the attempt cannot start
            terminal = getattr(err, "terminal", True)
            size = len(json.dumps(start.inputData, default=str))
            reason = (f"the task input is {size} bytes, more than the {INPUT_ENV_LIMIT_BYTES} an environment variable "
                      f"carries, and it could not be stored externally: {err}")
            if not terminal:
                raise TransientError(reason) from err
            return [TaskUpdate(taskId=start.taskId, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
                               reasonForIncompletion=reason)]
        try:
            job = build_job_for_attempt(owner, start, task_def, input_env, now, self.settings.job_options)
        except AttemptSpecError as err:
            return [TaskUpdate(taskId=start.taskId, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
                               reasonForIncompletion=str(err))]
        name = job["metadata"]["name"]
        if name in known:
            # Created by an earlier reconcile whose status write never came (it failed after its creates):
            # no request. Like AlreadyExists, the Job may have run meanwhile: read it at once.
            self.metrics.job_creates.labels("known").inc()
            self.found_existing.add(owner.uid)
            return []
        try:
            created = await self.api.create(KubeClient.job_path(owner.namespace), job, f"job {owner.namespace}/{name}")
            self.metrics.job_creates.labels("created" if created is not None else "existed").inc()
            self.created.setdefault(owner.uid, set()).add(name)
            if created is None:
                self.found_existing.add(owner.uid)
        except Invalid as err:
            self.metrics.job_creates.labels("rejected").inc()
            return [TaskUpdate(taskId=start.taskId, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
                               reasonForIncompletion=f"the attempt's Job was rejected: {err.api_message}")]
        return []

    def known_jobs(self, owner: OwnerRef) -> frozenset[str]:
        """The Jobs of ``owner`` that exist already: those this process created (no status records them yet) and
        those the Job watch shows."""
        return frozenset(self.created.get(owner.uid, ())) | {job.name for job in
                                                              self.view.jobs_of(owner.namespace, owner.uid)}

    async def _create_or_get(self, path: str, body: Mapping[str, Any], what: str) -> dict[str, Any]:
        created = await self.api.create(path, body, what)
        if created is not None:
            return created
        found = await self.api.get(f"{path}/{body['metadata']['name']}", what)
        if found is None:
            raise TransientError(f"{what} exists and then does not (deleted meanwhile?)")
        return found

    async def start_child(self, owner: OwnerRef, action: StartSubWorkflow) -> list[TaskUpdate]:
        depth = sub_workflow_depth(self.workflow_object((owner.namespace, owner.name)) or {}) + 1
        limit = self.settings.max_sub_workflow_depth
        if depth > limit:
            reason = sub_workflow_depth_reason(action.name, depth, limit,
                                               "operator flag --max-sub-workflow-depth, chart value "
                                               "maxSubWorkflowDepth")
            self.events.record(owner, "Warning", "SubWorkflowDepthLimit", reason)
            return [TaskUpdate(taskId=action.taskId, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
                               reasonForIncompletion=reason)]
        body = build_child_workflow(owner, action, depth)
        what = f"child workflow {owner.namespace}/{body['metadata']['name']}"
        try:
            child = await self._create_or_get(KubeClient.workflow_path(owner.namespace), body, what)
        except (Invalid, TransientApiError) as err:
            # A ResourceQuota on Workflows (count/workflows.kondukt.io) bounds a tree of sub-workflows: waiting
            # for room would wait for ever when the room is held by this workflow's own children (deleted only
            # with it), so the task FAILS, as Conductor fails a sub-workflow it cannot start (its retries apply).
            if isinstance(err, TransientApiError) and not exceeded_quota(err):
                raise
            return [TaskUpdate(taskId=action.taskId, status=TaskStatus.FAILED,
                               reasonForIncompletion=f"the sub workflow could not be created: {err.api_message}")]
        return [TaskUpdate(taskId=action.taskId, subWorkflowId=str(child["metadata"]["uid"]), started=True)]

    async def start_workflow(self, owner: OwnerRef, action: StartWorkflow) -> list[Observation]:
        depth = sub_workflow_depth(self.workflow_object((owner.namespace, owner.name)) or {}) + 1
        limit = self.settings.max_sub_workflow_depth
        if depth > limit:
            reason = sub_workflow_depth_reason(action.name, depth, limit, "operator flag --max-sub-workflow-depth, "
                                               "chart value maxSubWorkflowDepth", started=True)
            self.events.record(owner, "Warning", "SubWorkflowDepthLimit", reason)
            if action.taskId:
                return [TaskUpdate(taskId=action.taskId, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
                                   reasonForIncompletion=reason)]
            return []
        if action.taskId and not action.definition and \
                await self.find_workflow_def(owner.namespace, action.name, action.version) is None:
            # As Conductor's StartWorkflow: a request naming no definition FAILS the task (retriable).
            which = f"{action.name!r} version {action.version}" if action.version is not None else repr(action.name)
            return [TaskUpdate(taskId=action.taskId, status=TaskStatus.FAILED,
                               reasonForIncompletion=f"no WorkflowDef {which} in namespace {owner.namespace}")]
        body = build_started_workflow(owner, action, depth)
        what = f"workflow {owner.namespace}/{body['metadata']['name']}"
        try:
            started = await self._create_or_get(KubeClient.workflow_path(owner.namespace), body, what)
        except (Invalid, TransientApiError) as err:
            if isinstance(err, TransientApiError) and not exceeded_quota(err):
                raise  # retried; a quota refusal is final here, as for a sub-workflow (start_child)
            reason = f"the workflow {action.name!r} could not be started: {err.api_message}"
            if action.taskId:
                return [TaskUpdate(taskId=action.taskId, status=TaskStatus.FAILED, reasonForIncompletion=reason)]
            self.events.record(owner, "Warning", "FailureWorkflowNotStarted", reason)
            return []
        uid = str(started["metadata"]["uid"])
        if action.purpose == "failureWorkflow":
            self.events.record(owner, "Normal", "FailureWorkflowStarted",
                               f"failureWorkflow {action.name} started as {started['metadata']['name']}")
        if action.taskId:
            return [TaskUpdate(taskId=action.taskId, status=TaskStatus.COMPLETED, outputData={"workflowId": uid})]
        return [FailureWorkflowStarted(workflowId=uid)]

    def call_http(self, owner: OwnerRef, action: CallHttp) -> None:
        key = (owner.uid, action.taskId)
        if key in self.http or action.taskId in self.results.get(owner.uid, {}) or \
                action.taskId in self.http_done.get(owner.uid, set()):
            return  # in flight, or done (a stale state must not send a request twice)
        wf_key = (owner.namespace, owner.name)

        async def perform() -> None:
            if not self.leading():
                self.http.pop(key, None)  # leadership lost meanwhile: the leader sends it
                return
            if self._session is None or self._session.closed:
                self._session = checked_session(self.settings.egress)
            try:
                update = await perform_http_task(action.taskId, action.request, action.timeoutSeconds,
                                                 self._session, self.settings.egress)
            finally:
                self.http.pop(key, None)
            self.results.setdefault(owner.uid, {})[action.taskId] = update
            self.http_done.setdefault(owner.uid, set()).add(action.taskId)
            self.wake(wf_key)

        self.http[key] = asyncio.get_running_loop().create_task(perform(), name=f"http-{action.taskId}")

    def evaluate_script(self, owner: OwnerRef, action: EvaluateScript) -> None:
        """Hand the evaluation to the pool; its result wakes the workflow. No reconcile ever waits for it."""
        key = (owner.uid, action.taskId)
        if key in self.evaluations or action.taskId in self.results.get(owner.uid, {}):
            return
        wf_key = (owner.namespace, owner.name)

        async def evaluate() -> None:
            try:
                update = await self.scripts.evaluate(action, owner.namespace)  # namespaces take turns
            finally:
                self.evaluations.pop(key, None)
            self.metrics.script_evaluations.labels(_evaluation_outcome(update)).inc()
            if update.status is not TaskStatus.COMPLETED:
                logger.info("workflow %s/%s: %s", owner.namespace, owner.name, update.reasonForIncompletion)
            self.results.setdefault(owner.uid, {})[action.taskId] = update
            self.wake(wf_key)

        self.evaluations[key] = asyncio.get_running_loop().create_task(evaluate(), name=f"script-{action.taskId}")

    async def cancel(self, owner: OwnerRef, action: CancelTask) -> None:
        namespace = owner.namespace
        if action.taskType == TaskType.SUB_WORKFLOW.value:
            name = names.child_workflow_name(owner.name, owner.uid, action.referenceTaskName, action.taskId)
            with contextlib.suppress(NotFound):
                await self.api.merge_patch(KubeClient.workflow_path(namespace, name),
                                           {"spec": {"terminate": {"reason": action.reason or "parent canceled"}}},
                                           f"child workflow {namespace}/{name}")
        elif action.taskType == TaskType.HTTP.value:
            task = self.http.pop((owner.uid, action.taskId), None)
            if task is not None:
                task.cancel()
        elif action.taskType == TaskType.JSON_JQ_TRANSFORM.value:
            evaluation = self.evaluations.pop((owner.uid, action.taskId), None)
            if evaluation is not None:
                evaluation.cancel()  # withdrawn from the queue, or its process killed
        elif action.taskType == TaskType.START_WORKFLOW.value:
            return
        else:
            name = names.job_name(owner.name, owner.uid, action.referenceTaskName, action.taskId)
            await self.api.delete(KubeClient.job_path(namespace, name), f"job {namespace}/{name}")
