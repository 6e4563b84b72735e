"""One level-based reconcile of one Workflow: observe, ``decide``, act, write ``status``.

The work queue calls :meth:`Reconciler.reconcile` with a ``(namespace, name)`` key, one at a time per key.
Every decision is derived again from what is stored and observed — the Workflow read fresh from the API,
its Jobs, pods and children from the informer caches, the TaskDefs and the WorkflowDef snapshot — so an
operator that restarts continues exactly where the last one stopped. Nothing lives only in memory
except caches, in-flight HTTP requests and script evaluations (a JSON_JQ_TRANSFORM's jq program runs in the
:class:`~kondukt.scriptpool.ScriptPool`'s processes, never here; one found IN_PROGRESS with no evaluation
running — after a restart — is evaluated again: it is pure).

Order of a reconcile, and why (kill-safety, DESIGN §11):

1. read the Workflow; build observations: operations (``spec.suspend`` / ``spec.terminate`` edges and
   ``ops.kondukt.io/*`` annotations, each applied once through the engine's nonce record), task updates
   (``kube.attempts``), the namespace's load for concurrency and rate limits;
2. ``decide``; carry out its actions *before* anything is persisted, idempotently (deterministic names:
   AlreadyExists means done; a Job is never created twice for one attempt);
3. feed results known right away (a started workflow's id, a rejected Job) back to ``decide`` (a few
   rounds at most);
4. write ``status`` with PUT on the status subresource and the resourceVersion read in step 1 (409: someone
   else moved it — requeue; nothing done in step 2 is lost or repeated, because it is all idempotent);
5. Events for the transitions, metrics, and the exact timer at ``decision.wakeAt``.

A killed operator loses at most the work of step 2 that was not persisted: the next reconcile decides the
same actions again (the engine's task ids are deterministic) and finds them already done.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import pydantic

from kondukt.driver.dispatch import dispatch
from kondukt.driver.http import checked_session, perform_http_task
from kondukt.driver.limits import INPUT_ENV_LIMIT_BYTES
from kondukt.driver.load import is_limited, rate_window_ms, task_load
from kondukt.engine import decide, new_workflow
from kondukt.engine.decision import (
    Action,
    CallHttp,
    CancelTask,
    EvaluateScript,
    FailureWorkflowStarted,
    Load,
    Observation,
    Operation,
    OperationKind,
    StartSubWorkflow,
    StartTask,
    StartWorkflow,
    TaskLoad,
    TaskTransition,
    TaskUpdate,
)
from kondukt.engine.models import (
    Blueprint,
    PayloadLimits,
    Task,
    TaskDef,
    TaskStatus,
    TaskType,
    Workflow,
    WorkflowDef,
    WorkflowSpec,
    WorkflowStatus,
    WorkflowTask,
)
from kondukt.engine.payloads import DEFAULT_INLINE_VALUE_BYTES, MAX_STORED_VALUE_BYTES, json_size, size_text
from kondukt.engine.validation import problems_from_validation_error, validate
from kondukt.errors import ManifestError
from kondukt.kube import attempts, names, opsannotations
from kondukt.kube import resources as r
from kondukt.kube.builders import (
    AttemptSpecError,
    JobOptions,
    OwnerRef,
    build_child_workflow,
    build_job_for_attempt,
    build_started_workflow,
    sub_workflow_depth,
)
from kondukt.kube.cache import (
    ClusterView,
    TaskDefRecord,
    WorkflowDefRecord,
    parse_time_ms,
    pick_workflow_def,
    workflowdef_record,
)
from kondukt.kube.events import EventRecorder, describe_transition, describe_workflow
from kondukt.kube.kubeapi import Conflict, Invalid, KubeClient, NotFound, TooLarge, TransientApiError
from kondukt.kube.metrics import Metrics
from kondukt.kube.status import (
    DEFAULT_COMPRESS_OVER_BYTES,
    WORKFLOW_KEY,
    StatusError,
    StoredStatus,
    TaskEncoder,
    build_status,
    build_waiting_status,
    read_status,
)
from kondukt.kube.workqueue import WorkQueue
from kondukt.limits import DEFAULT_MAX_SUB_WORKFLOW_DEPTH, check_nesting, sub_workflow_depth_reason
from kondukt.scriptpool import ScriptLimits, ScriptPool
from kondukt_workers.context import TaskContext
from kondukt_workers.egress import EgressPolicy
from kondukt_workers.payloads import encode_task_input, resolve_result_payload
from kondukt_workers.storage import StorageError, read_uri, write_uri

logger = logging.getLogger(__name__)

WorkflowKey = tuple[str, str]

_TERMINAL_PHASES: Final = frozenset(s.value for s in WorkflowStatus if s.terminal)
_PARALLEL_ACTIONS: Final = 32
#: See the status write in Reconciler.reconcile: how long a workflow's news is gathered, per task.
HOLD_SECONDS_PER_TASK: Final = 0.0001


class TransientError(Exception):
    """Something outside the operator is not ready (storage down, API throttling): retry with backoff."""


@dataclass(frozen=True)
class ReconcileSettings:
    job_options: JobOptions = field(default_factory=JobOptions)
    compress_over_bytes: int = DEFAULT_COMPRESS_OVER_BYTES
    #: How long a new Workflow waits for its WorkflowDef / TaskDefs to appear (GitOps tools apply them
    #: together with it, and watches deliver them in any order) before it fails.
    definition_grace_seconds: float = 15.0
    job_missing_grace_ms: int = attempts.JOB_MISSING_GRACE_MS
    max_rounds: int = 16
    #: Worker settings (external payload storage) for large inputs and offloaded results.
    payload_settings: Any = None
    #: Limits and size of the process pool that evaluates jq programs.
    script_limits: ScriptLimits = field(default_factory=ScriptLimits)
    #: A task input or output, or the variables, larger than this (compact JSON) does not stay in the Workflow's
    #: status: it goes to external payload storage when that is configured, else its task FAILS.
    inline_value_bytes: int = DEFAULT_INLINE_VALUE_BYTES
    #: How deep SUB_WORKFLOW children may nest (``--max-sub-workflow-depth``): a task that would start a
    #: child deeper fails terminally, so a workflow that starts itself ends instead of filling the cluster.
    max_sub_workflow_depth: int = DEFAULT_MAX_SUB_WORKFLOW_DEPTH
    #: Where HTTP tasks may connect (the operator's --egress-* flags); task pods get the same policy.
    egress: EgressPolicy = field(default_factory=EgressPolicy.cluster)

    def payload_limits(self) -> PayloadLimits:
        """What the engine may keep: with payload storage, up to Conductor's maximum payload (larger values are
        stored outside the status); without, no more than a value the status holds inline."""
        if getattr(self.payload_settings, "payload_bucket", None):
            return PayloadLimits(maxValueBytes=max(MAX_STORED_VALUE_BYTES, self.inline_value_bytes),
                                 hint="the largest payload Kondukt stores")
        return PayloadLimits(maxValueBytes=self.inline_value_bytes,
                             hint="larger values need external payload storage (KONDUKT_PAYLOAD_BUCKET on the operator)")


@dataclass
class _Memo:
    """What the reconciler remembers about one Workflow between reconciles (a cache, never the truth)."""

    resource_version: str
    stored: StoredStatus
    encoder: TaskEncoder = field(default_factory=TaskEncoder)
    definition_dump: dict[str, Any] | None = None
    warned: set[str] = field(default_factory=set)
    #: Values stored in external payload storage rather than in the status (see kube.status.POINTERS).
    external: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The value objects already measured for offloading (immutable: the same object, the same size).
    measured: dict[tuple[str, str], Any] = field(default_factory=dict)


@dataclass
class _Outcome:
    """What a reconcile did, for the caller's bookkeeping."""

    wake_at_ms: int | None = None
    waiting_on: tuple[str, ...] = ()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _newer(current: Any, candidate: Any) -> bool:
    """Whether resourceVersion ``candidate`` is newer than ``current`` (etcd revisions; unreadable: newer
    unless equal)."""
    try:
        return int(candidate) > int(current)
    except (TypeError, ValueError):
        return bool(candidate != current)


def _simple_task_names(tasks: Iterable[WorkflowTask]) -> set[str]:
    found: set[str] = set()
    for task in tasks:
        if task.type == TaskType.SIMPLE.value and task.taskDefinition is None:
            found.add(task.name)
        for nested in task.children():
            found |= _simple_task_names(nested)
    return found


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

    reconciler: Reconciler
    owner: OwnerRef
    blueprint: Blueprint
    now: int

    async def start_task(self, action: StartTask) -> list[Observation]:
        return [*await self.reconciler._start_job(self.owner, action, self.blueprint, self.now)]

    async def start_sub_workflow(self, action: StartSubWorkflow) -> list[Observation]:
        return [*await self.reconciler._start_child(self.owner, action)]

    async def start_workflow(self, action: StartWorkflow) -> list[Observation]:
        return await self.reconciler._start_workflow(self.owner, action)

    async def call_http(self, action: CallHttp) -> list[Observation]:
        self.reconciler._call_http(self.owner, action)
        return []

    async def evaluate_script(self, action: EvaluateScript) -> list[Observation]:
        self.reconciler._evaluate_script(self.owner, action)
        return []

    async def cancel_task(self, action: CancelTask) -> list[Observation]:
        await self.reconciler._cancel(self.owner, action)
        return []


class Reconciler:
    """Reconciles Workflows; owns the in-memory helpers (reservations, waiters, in-flight HTTP and scripts)."""

    def __init__(
        self,
        api: KubeClient,
        view: ClusterView,
        settings: ReconcileSettings,
        metrics: Metrics,
        events: EventRecorder,
        clock: Callable[[], int] = _now_ms,
        workers: int = 16,
        ready: asyncio.Event | None = None,
    ) -> None:
        self.api = api
        self.view = view
        self.settings = settings
        self.metrics = metrics
        self.events = events
        self.clock = clock
        self.queue: WorkQueue[WorkflowKey] = WorkQueue(self.run, workers=workers, on_depth=metrics.queue_depth.set,
                                                       ready=ready)
        #: Whether this replica may act now (it holds the operator's Lease); None: always (one replica).
        self.leading: Callable[[], bool] | None = None
        self._memos: dict[str, _Memo] = {}
        #: Jobs created for limited TaskDefs that the Job watch has not shown yet: (ns, def) -> job -> ms.
        self._reservations: dict[tuple[str, str], dict[str, int]] = {}
        #: Workflows held back by a concurrentExecLimit: (ns, def) -> keys to wake when a slot frees.
        self._waiters: dict[tuple[str, str], set[WorkflowKey]] = {}
        #: Workflows waiting for their WorkflowDef / TaskDefs to appear, by namespace.
        self._waiting_for_definitions: dict[str, set[WorkflowKey]] = {}
        self._objects: dict[WorkflowKey, dict[str, Any]] = {}
        self._http: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._http_done: dict[str, set[str]] = {}
        #: Results of the attempts the operator carries out itself (HTTP, scripts), by workflow uid, until the
        #: status that records them is written.
        self._results: dict[str, dict[str, TaskUpdate]] = {}
        self._http_session: aiohttp.ClientSession | None = None
        self.scripts = ScriptPool(settings.script_limits)
        self.payload_limits = settings.payload_limits()
        self._scripts: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._taskdef_cache: dict[str, tuple[tuple[tuple[str, str], ...], dict[str, TaskDef]]] = {}

    # ------------------------------------------------------------------------------- entry points
    def enqueue(self, key: WorkflowKey) -> None:
        self.queue.add(key)

    def observe(self, obj: Mapping[str, Any]) -> bool:
        """Remember the newest version of a Workflow seen (watch event or our own write): an informer cache.

        A reconcile starts from it instead of a GET. When it is stale after all, the status write fails
        with a conflict (resourceVersion) and the next reconcile reads the object fresh; every action taken
        from a stale state is idempotent (deterministic names), so nothing is done twice.

        Returns whether ``obj`` is news: not when its version is already known — in particular the watch's
        echo of the status this operator just wrote, which would otherwise cost a reconcile that finds
        nothing to do (for a workflow with thousands of tasks, a costly one).
        """
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        current = self._objects.get(key)
        if current is not None and not _newer((current.get("metadata") or {}).get("resourceVersion"),
                                              meta.get("resourceVersion")):
            return False
        self._objects[key] = dict(obj)
        return True

    def wake_waiters(self, namespace: str, task_def: str) -> None:
        """An attempt of ``task_def`` finished: the workflows its limit held back may go on."""
        for key in self._waiters.pop((namespace, task_def), set()):
            self.queue.add(key)

    def wake_definition_waiters(self, namespace: str) -> None:
        for key in self._waiting_for_definitions.pop(namespace, set()):
            self.queue.add(key)

    def forget(self, key: WorkflowKey, uid: str | None = None, *, deleted: bool = False) -> None:
        """The Workflow is gone (or finished): drop timers, memo, in-flight HTTP requests and evaluations."""
        self.queue.cancel_timer(key)
        if deleted:
            self._objects.pop(key, None)
        if uid is not None:
            self._http_done.pop(uid, None)
            self._memos.pop(uid, None)
            self._results.pop(uid, None)
            for http_key in [k for k in self._http if k[0] == uid]:
                self._http.pop(http_key).cancel()
            for script_key in [k for k in self._scripts if k[0] == uid]:
                self._scripts.pop(script_key).cancel()

    def lead(self) -> None:
        """This replica just became the leader: reconcile every Workflow it knows (its watches kept the
        cache current while it stood by; whatever the last leader left half done is found and finished)."""
        for key in list(self._objects):
            self.queue.add(key)

    def stand_by(self) -> None:
        """This replica stopped leading: drop its timers, in-flight HTTP tasks and jq evaluations, and the
        results not yet written. What they would have done is the leader's now; it finds it again from the
        Workflows' status. The API client's fence already refuses every write of a reconcile still running."""
        for key in list(self._objects):
            self.queue.cancel_timer(key)
        for task in [*self._http.values(), *self._scripts.values()]:
            task.cancel()
        self._http.clear()
        self._scripts.clear()
        self._http_done.clear()
        self._results.clear()

    async def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()
        for task in [*self._http.values(), *self._scripts.values()]:
            task.cancel()
        await self.scripts.close()
        if self._http_session is not None:
            await self._http_session.close()

    async def run(self, key: WorkflowKey) -> None:
        """The work queue's handler: one reconcile, with error classification and retries."""
        if self.leading is not None and not self.leading():
            self.queue.cancel_timer(key)  # a standby replica: the leader has this workflow
            return
        started = time.perf_counter()
        result = "ok"
        try:
            outcome = await self.reconcile(key)
            self.queue.forget(key)
            if outcome is not None:
                self._schedule(key, outcome)
        except Conflict:
            result = "conflict"
            self.metrics.reconcile_errors.labels("conflict").inc()
            self._objects.pop(key, None)  # read it fresh next time
            self.queue.add(key)
        except (TransientApiError, TransientError) as err:
            result = "retry"
            self.metrics.reconcile_errors.labels("transient").inc()
            asked = err.retry_after if isinstance(err, TransientApiError) else None
            delay = self.queue.add_rate_limited(key, at_least=asked or 0.0)
            if asked:
                self.metrics.api_retry_after.inc(asked)
            logger.warning("workflow %s/%s: %s (retrying in %.2fs%s)", key[0], key[1], err, delay,
                           f", the server asked Retry-After {asked:g}s" if asked else "")
        finally:
            self.metrics.reconcile_duration.labels(result).observe(time.perf_counter() - started)

    def _schedule(self, key: WorkflowKey, outcome: _Outcome) -> None:
        if outcome.wake_at_ms is not None:
            loop = asyncio.get_running_loop()
            delay = (outcome.wake_at_ms - self.clock()) / 1000.0
            self.queue.add_at(key, loop.time() + max(0.0, delay))
        else:
            self.queue.cancel_timer(key)
        for task_def in outcome.waiting_on:
            self._waiters.setdefault((key[0], task_def), set()).add(key)

    # ------------------------------------------------------------------------------------ reconcile
    async def reconcile(self, key: WorkflowKey) -> _Outcome | None:
        namespace, name = key
        reconcile_started = time.perf_counter()
        woke = self.queue.last_wait(key)
        obj = self._objects.get(key)
        if obj is None:
            obj = await self.api.get(KubeClient.workflow_path(namespace, name), f"workflow {namespace}/{name}")
            if obj is None:
                self.forget(key, deleted=True)
                return None
            self.observe(obj)
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid"))
        if meta.get("deletionTimestamp"):
            self.forget(key, uid)
            return None
        owner = OwnerRef(name=name, namespace=namespace, uid=uid)
        generation = int(meta.get("generation") or 1)
        raw_status = obj.get("status") or {}
        annotations = meta.get("annotations") or {}
        if self._settled(raw_status, annotations, generation):
            self.forget(key, uid)
            return None

        memo = self._memos.get(uid)
        if memo is None or memo.resource_version != meta.get("resourceVersion"):
            try:
                stored = read_status(raw_status)
                stored = await self._fetch_external(stored)
            except StatusError as err:
                return await self._fail_unstarted(obj, owner, "StatusUnreadable",
                                                  f"the Workflow's status cannot be read: {err}", None)
            memo = _Memo(resource_version=str(meta.get("resourceVersion")), stored=stored,
                         encoder=memo.encoder if memo else TaskEncoder(),
                         definition_dump=memo.definition_dump if memo else None,
                         warned=memo.warned if memo else set(),
                         external={k: dict(v) for k, v in stored.external.items()},
                         measured=memo.measured if memo else {})
            self._memos[uid] = memo
        stored = memo.stored
        raw_spec = dict(obj.get("spec") or {})
        if isinstance(raw_spec.get("definition"), dict) and not raw_spec["definition"].get("name"):
            raw_spec["definition"] = {**raw_spec["definition"], "name": name}  # defaults to metadata.name
        if stored.workflow is None:
            try:  # what the API server took may still nest too deep for the engine's recursive walks
                check_nesting(raw_spec, "spec")
            except ManifestError as err:
                return await self._fail_unstarted(obj, owner, "InvalidSpec", f"invalid {err}", memo)
        try:
            spec = WorkflowSpec.model_validate(raw_spec)
        except pydantic.ValidationError as err:
            problems = problems_from_validation_error(err, "spec", raw_spec)
            text = "; ".join(str(p) for p in problems[:5]) or str(err)
            return await self._fail_unstarted(obj, owner, "InvalidSpec", f"invalid spec: {text}", memo)

        now = self.clock()
        reason_override: str | None = None
        definition: WorkflowDef | None
        if stored.workflow is None:
            started = await self._start(obj, owner, spec, now, memo)
            if started is None:
                return _Outcome(wake_at_ms=self._definition_deadline(obj))
            workflow, start_definition, reason_override = started
            if start_definition is None or workflow.status.terminal:
                return await self._write_failed_start(obj, owner, workflow, start_definition,
                                                      reason_override or "Failed", memo)
            definition = start_definition
        else:
            workflow = stored.workflow
            definition = stored.definition or await self._definition_again(namespace, spec, name)
        if definition is None:
            return await self._fail_unstarted(obj, owner, "DefinitionLost",
                                              "the status has no definition snapshot and the WorkflowDef is gone",
                                              memo)
        task_defs = self._task_defs(namespace)
        blueprint = Blueprint(workflow=definition, taskDefs=task_defs, payloadLimits=self.payload_limits)

        operations, observed_suspend, observed_terminate = self._operations(obj, spec, stored, workflow, memo, owner)
        extra_wakes: list[int] = []
        updates = await self._task_updates(owner, workflow, blueprint, now, extra_wakes)
        observations: list[Observation] = [*operations, *updates, self._load(namespace, task_defs, now)]

        transitions: list[TaskTransition] = []
        changed = False
        wake_at: int | None = None
        waiting_on: tuple[str, ...] = ()
        first_start_done: float | None = None
        consumed = {u.taskId for u in updates if u.taskId in self._results.get(uid, {})}
        for _round in range(self.settings.max_rounds):
            decision = decide(blueprint, workflow, observations, now)
            for message in decision.messages:
                logger.info("workflow %s/%s: %s", namespace, name, message)
            self._reserve(namespace, owner, decision.actions, task_defs, now)
            immediate, first_done = await self._act(owner, decision.actions, blueprint, now)
            if first_done is not None and first_start_done is None:
                first_start_done = first_done
            workflow = decision.workflow
            changed = changed or decision.changed
            transitions.extend(decision.transitions)
            wake_at, waiting_on = decision.wakeAt, decision.waitingOn
            if not immediate:
                break
            now = self.clock()
            observations = [*immediate, self._load(namespace, task_defs, now)]
        else:
            wake_at = now  # more immediate results than rounds: come back at once

        settled = (
            not changed and stored.workflow is not None and raw_status.get("phase") is not None
            and stored.observed_generation == generation and stored.observed_suspend == observed_suspend
            and bool(raw_status.get("observedTerminate")) == observed_terminate
        )
        if not settled:
            try:
                await self._offload(owner, workflow, memo)
            except StorageError as err:
                if not err.terminal:
                    raise TransientError(f"external payload storage: {err}") from err
                return await self._fail_slimmed(obj, owner, workflow, definition, memo, observed_suspend,
                                                observed_terminate, "PayloadNotStored",
                                                f"a value too large for the Workflow's status could not be stored "
                                                f"in external payload storage: {err}")
        status = raw_status if settled else build_status(
            workflow, definition, generation=generation, observed_suspend=observed_suspend,
            previous_conditions=stored.conditions, now=dt.datetime.now(dt.UTC),
            job_name=lambda task: self._job_name_of(owner, task), encoder=memo.encoder,
            definition_snapshot=memo.definition_dump, reason_override=reason_override,
            compress_over_bytes=self.settings.compress_over_bytes, external=memo.external,
        )
        if not settled:
            status["observedTerminate"] = observed_terminate
        if memo.definition_dump is None and "definition" in status:
            memo.definition_dump = status["definition"]
        if status != raw_status:
            try:
                written = await self.api.replace_status(namespace, name, str(meta.get("resourceVersion")), status)
            except TooLarge as err:
                return await self._fail_too_large(obj, owner, workflow, definition, status, err, memo,
                                                  observed_suspend, observed_terminate)
            self.observe(written)
            self.metrics.status_bytes.set(len(json.dumps(status, separators=(",", ":"))))
            memo.resource_version = str((written.get("metadata") or {}).get("resourceVersion"))
            memo.stored = StoredStatus(
                workflow=workflow, definition=definition, observed_suspend=observed_suspend,
                observed_generation=generation, conditions=tuple(status["conditions"]),
                phase=status["phase"], extra={"observedTerminate": observed_terminate},
                external={k: dict(v) for k, v in memo.external.items()},
            )
            self._after_write(owner, stored.workflow, workflow, transitions)
            # A big workflow's status costs time to encode and to store: gather what happens next for a
            # moment (0.1 ms per task: 2,000 tasks, 0.2 s) rather than write it again for every event.
            self.queue.hold(key, len(workflow.tasks) * HOLD_SECONDS_PER_TASK)
        results = self._results.get(uid)
        if results is not None:
            for task_id in consumed:
                results.pop(task_id, None)
        if first_start_done is not None and woke is not None:
            self.metrics.step_latency.observe(woke + (first_start_done - reconcile_started))
        if workflow.status.terminal:
            self._memos.pop(uid, None)
            return _Outcome()
        if extra_wakes:
            wake_at = min([*extra_wakes, *([wake_at] if wake_at is not None else [])])
        return _Outcome(wake_at_ms=wake_at, waiting_on=waiting_on)

    @staticmethod
    def _settled(raw_status: Mapping[str, Any], annotations: Mapping[str, str], generation: int) -> bool:
        """A finished workflow with nothing new to apply: skip it without decoding its tasks."""
        if raw_status.get("phase") not in _TERMINAL_PHASES:
            return False
        return not opsannotations.has_unapplied(annotations, set(raw_status.get("appliedOperations") or []))

    # ------------------------------------------------------------------------------ starting a run
    def _definition_deadline(self, obj: Mapping[str, Any]) -> int:
        created = parse_time_ms((obj.get("metadata") or {}).get("creationTimestamp"))
        return created + int(self.settings.definition_grace_seconds * 1000)

    def _young(self, obj: Mapping[str, Any]) -> bool:
        return self.clock() < self._definition_deadline(obj)

    async def _find_workflow_def(self, namespace: str, name: str, version: int | None) -> WorkflowDefRecord | None:
        found = pick_workflow_def(self.view.workflow_defs(namespace, name), version)
        if found is not None:
            return found
        # Not in the cache: ask the API once (the cache may be a moment behind a kubectl apply).
        path = f"/apis/{r.GROUP}/{r.VERSION}/namespaces/{namespace}/{r.WORKFLOWDEF_PLURAL}"
        items = await self.api.list_items(path, f"WorkflowDefs in {namespace}")
        records = [workflowdef_record(item) for item in items]
        return pick_workflow_def([rec for rec in records if rec.name == name], version)

    async def _definition_again(self, namespace: str, spec: WorkflowSpec, name: str) -> WorkflowDef | None:
        if spec.definition is not None:
            return spec.definition
        if spec.workflowDefRef is None:
            return None
        record = await self._find_workflow_def(namespace, spec.workflowDefRef.name, spec.workflowDefRef.version)
        return record.definition if record is not None else None

    async def _start(
        self, obj: Mapping[str, Any], owner: OwnerRef, spec: WorkflowSpec, now: int, memo: _Memo
    ) -> tuple[Workflow, WorkflowDef | None, str | None] | None:
        """The initial state of a new run; None while it waits for its definitions to appear.

        A run that cannot start comes back FAILED, with its definition (if any) and a condition reason.
        """
        namespace = owner.namespace
        definition: WorkflowDef | None
        if spec.definition is not None:
            definition = spec.definition
        elif spec.workflowDefRef is not None:
            ref = spec.workflowDefRef
            record = await self._find_workflow_def(namespace, ref.name, ref.version)
            version = f" version {ref.version}" if ref.version is not None else ""
            if record is None:
                message = f"WorkflowDef {ref.name!r}{version} not found in namespace {namespace}"
                if self._young(obj):
                    await self._wait_for_definitions(obj, owner, "WorkflowDefNotFound", message + " (waiting)", memo)
                    return None
                return self._failed_start(owner, spec, now, message, "WorkflowDefNotFound", None)
            if record.definition is None:
                return self._failed_start(owner, spec, now, record.problem or "invalid WorkflowDef",
                                          "InvalidDefinition", None)
            definition = record.definition
        else:
            return self._failed_start(owner, spec, now, "spec needs workflowDefRef or definition", "InvalidSpec", None)

        task_defs = self._task_defs(namespace)
        missing = sorted(_simple_task_names(definition.tasks) - set(task_defs))
        if missing and self._young(obj):
            await self._wait_for_definitions(
                obj, owner, "TaskDefNotFound",
                f"waiting for TaskDef(s) {', '.join(missing)} in namespace {namespace}", memo,
            )
            return None
        blueprint = Blueprint(workflow=definition, taskDefs=task_defs)
        problems = validate(blueprint)
        if problems:
            shown = "; ".join(str(p) for p in problems[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            reason = "TaskDefNotFound" if missing else "InvalidDefinition"
            return self._failed_start(owner, spec, now, f"invalid workflow definition: {shown}{more}", reason,
                                      definition)
        workflow = new_workflow(
            blueprint, owner.uid, spec.input, now, correlation_id=spec.correlationId,
            parent_workflow_id=spec.parentWorkflowId, parent_workflow_task_id=spec.parentWorkflowTaskId,
        )
        return workflow, definition, None

    def _failed_start(
        self, owner: OwnerRef, spec: WorkflowSpec, now: int, message: str, reason: str,
        definition: WorkflowDef | None,
    ) -> tuple[Workflow, WorkflowDef | None, str | None]:
        workflow = Workflow(
            workflowId=owner.uid, workflowName=definition.name if definition else "", status=WorkflowStatus.FAILED,
            input=dict(spec.input), reasonForIncompletion=message, startTime=now, endTime=now, updateTime=now,
            correlationId=spec.correlationId, parentWorkflowId=spec.parentWorkflowId,
            parentWorkflowTaskId=spec.parentWorkflowTaskId,
        )
        logger.warning("workflow %s/%s cannot start: %s", owner.namespace, owner.name, message)
        return workflow, definition, reason

    async def _write_failed_start(
        self, obj: Mapping[str, Any], owner: OwnerRef, workflow: Workflow, definition: WorkflowDef | None,
        reason: str, memo: _Memo,
    ) -> _Outcome:
        meta = obj.get("metadata") or {}
        status = build_status(workflow, definition, generation=int(meta.get("generation") or 1),
                              observed_suspend=False, previous_conditions=memo.stored.conditions,
                              now=dt.datetime.now(dt.UTC), reason_override=reason,
                              compress_over_bytes=self.settings.compress_over_bytes)
        try:
            await self.api.replace_status(owner.namespace, owner.name, str(meta.get("resourceVersion")), status)
        except TooLarge:  # the copy of a huge spec.input (or definition): the spec keeps them anyway
            for key in ("input", "definition"):
                status.pop(key, None)
            await self.api.replace_status(owner.namespace, owner.name, str(meta.get("resourceVersion")), status)
        self.events.record(owner, "Warning", reason, workflow.reasonForIncompletion or reason)
        self.metrics.workflows.labels(workflow.status.value).inc()
        self._memos.pop(owner.uid, None)
        self._waiting_for_definitions.get(owner.namespace, set()).discard((owner.namespace, owner.name))
        return _Outcome()

    async def _wait_for_definitions(
        self, obj: Mapping[str, Any], owner: OwnerRef, reason: str, message: str, memo: _Memo
    ) -> None:
        self._waiting_for_definitions.setdefault(owner.namespace, set()).add((owner.namespace, owner.name))
        meta = obj.get("metadata") or {}
        status = build_waiting_status(reason, message, generation=int(meta.get("generation") or 1),
                                      previous_conditions=memo.stored.conditions, now=dt.datetime.now(dt.UTC))
        if status != (obj.get("status") or {}):
            written = await self.api.replace_status(owner.namespace, owner.name, str(meta.get("resourceVersion")),
                                                    status)
            self.observe(written)
            memo.resource_version = str((written.get("metadata") or {}).get("resourceVersion"))
            memo.stored = StoredStatus(workflow=None, definition=None, conditions=tuple(status["conditions"]))

    async def _fail_unstarted(
        self, obj: Mapping[str, Any], owner: OwnerRef, reason: str, message: str, memo: _Memo | None
    ) -> _Outcome:
        """End a Workflow FAILED when its status or spec cannot be used at all."""
        meta = obj.get("metadata") or {}
        now = self.clock()
        workflow = Workflow(workflowId=owner.uid, status=WorkflowStatus.FAILED, reasonForIncompletion=message,
                            startTime=now, endTime=now, updateTime=now)
        status = build_status(workflow, None, generation=int(meta.get("generation") or 1), observed_suspend=False,
                              previous_conditions=(), now=dt.datetime.now(dt.UTC), reason_override=reason)
        await self.api.replace_status(owner.namespace, owner.name, str(meta.get("resourceVersion")), status)
        self.events.record(owner, "Warning", reason, message)
        self.metrics.workflows.labels("FAILED").inc()
        self._memos.pop(owner.uid, None)
        return _Outcome()

    # ------------------------------------------------------------------------------- observations
    def _task_defs(self, namespace: str) -> dict[str, TaskDef]:
        records: list[TaskDefRecord] = self.view.task_defs(namespace)
        signature = tuple(sorted((rec.resource_name, rec.resource_version) for rec in records))
        cached = self._taskdef_cache.get(namespace)
        if cached is not None and cached[0] == signature:
            return cached[1]
        by_name: dict[str, TaskDef] = {}
        for rec in sorted(records, key=lambda rec: rec.resource_name):
            if rec.task_def is None:
                logger.warning("%s", rec.problem)
                continue
            if rec.name in by_name:
                logger.warning("namespace %s has several TaskDefs named %r; using %s", namespace, rec.name,
                               rec.resource_name)
            by_name.setdefault(rec.name, rec.task_def)
        self._taskdef_cache[namespace] = (signature, by_name)
        return by_name

    def _operations(
        self, obj: Mapping[str, Any], spec: WorkflowSpec, stored: StoredStatus, workflow: Workflow, memo: _Memo,
        owner: OwnerRef,
    ) -> tuple[list[Operation], bool, bool]:
        """Spec edges and annotation requests not applied yet, as engine Operations."""
        meta = obj.get("metadata") or {}
        generation = int(meta.get("generation") or 1)
        applied = set(workflow.appliedOperations)
        ops: list[Operation] = []
        observed_suspend = stored.observed_suspend
        observed_terminate = bool(stored.extra.get("observedTerminate")) or bool(
            (obj.get("status") or {}).get("observedTerminate"))
        if spec.terminate is not None and not observed_terminate:
            ops.append(Operation(op=OperationKind.TERMINATE, nonce=f"spec.terminate@{generation}",
                                 reason=spec.terminate.reason))
            observed_terminate = True
        if spec.suspend != observed_suspend:
            ops.append(Operation(op=OperationKind.PAUSE if spec.suspend else OperationKind.RESUME,
                                 nonce=f"spec.suspend={str(spec.suspend).lower()}@{generation}"))
            observed_suspend = spec.suspend
        requested: list[tuple[int, Operation]] = []
        for key, op_name, value in opsannotations.operation_annotations(meta.get("annotations") or {}):
            try:
                operation = opsannotations.decode(op_name, value)
            except (ValueError, pydantic.ValidationError) as err:
                warned = f"{key}={value}"
                if warned not in memo.warned:
                    memo.warned.add(warned)
                    self.events.record(owner, "Warning", "InvalidOperation",
                                       f"annotation {key} is not a valid operation request: {err}")
                continue
            if operation.nonce in applied:
                continue
            requested.append((opsannotations.apply_rank(op_name), operation))
            self.events.record(owner, "Normal", "OperationRequested", f"{op_name} ({operation.nonce})")
        ops.extend(op for _, op in sorted(requested, key=lambda pair: pair[0]))
        return ops, observed_suspend, observed_terminate

    async def _task_updates(
        self, owner: OwnerRef, workflow: Workflow, blueprint: Blueprint, now: int, extra_wakes: list[int]
    ) -> list[TaskUpdate]:
        """News about every dispatched, unfinished attempt."""
        active = [t for t in workflow.tasks if t.dispatched and not t.status.terminal]
        known = self._results.get(owner.uid, {})
        updates: list[TaskUpdate] = list(known.values())
        if not active:
            return updates
        namespace, uid = owner.namespace, owner.uid
        jobs = {job.task_id: job for job in self.view.jobs_of(namespace, uid)}
        pods: dict[str, list[Any]] = {}
        for pod in self.view.pods_of(namespace, uid):
            pods.setdefault(pod.task_id, []).append(pod)
        # Attempts with news: a pod that runs or ended, a Job that ended, a Job not seen (yet, or any more).
        newsworthy = {task_id for task_id, found in pods.items() if any(p.started for p in found)}
        newsworthy.update(task_id for task_id, job in jobs.items() if job.finished)
        children = {child.parent_task_id: child for child in self.view.children_of(namespace, uid)}
        grace = self.settings.job_missing_grace_ms
        for task in active:
            if task.taskId in known:
                continue
            if task.taskType == TaskType.JSON_JQ_TRANSFORM.value:
                evaluation = EvaluateScript.for_task(task)
                if evaluation is not None and (uid, task.taskId) not in self._scripts:
                    self._evaluate_script(owner, evaluation)  # lost with a restart: evaluate it again (pure)
            elif task.taskType == TaskType.HTTP.value:
                if (uid, task.taskId) not in self._http:
                    updates.append(TaskUpdate(
                        taskId=task.taskId, status=TaskStatus.FAILED,
                        reasonForIncompletion="the operator restarted while this HTTP request was in flight; it "
                        "may or may not have reached the server",
                    ))
            elif task.taskType == TaskType.SUB_WORKFLOW.value:
                update = await self._observe_child(owner, task, children.get(task.taskId), now, extra_wakes)
                if update is not None:
                    updates.append(update)
            elif task.taskType == TaskType.START_WORKFLOW.value:
                update = await self._observe_started(owner, task)
                if update is not None:
                    updates.append(update)
            elif task.taskId in newsworthy or task.taskId not in jobs:
                if not attempts.runs_as_job(task):
                    continue
                task_def = blueprint.task_def(task.taskDefName)
                observed = attempts.observe_job_attempt(
                    task, jobs.get(task.taskId), pods.get(task.taskId, []), now,
                    timeout_seconds=task_def.timeoutSeconds if task_def else None, grace_ms=grace,
                )
                if observed.missing:
                    job_name = names.job_name(owner.name, uid, task.referenceTaskName, task.taskId)
                    found = await self.api.get(KubeClient.job_path(namespace, job_name), f"job {namespace}/{job_name}")
                    if found is None:
                        updates.append(attempts.job_missing(task, job_name))
                elif observed.result is not None:
                    updates.append(await self._resolved(observed.result))
                elif task.taskId not in jobs:
                    extra_wakes.append((task.updateTime or task.scheduledTime) + grace + 1)
        return updates

    async def _resolved(self, result: attempts.AttemptResult) -> TaskUpdate:
        """Fetch an offloaded result (``externalOutputPayloadStoragePath``)."""
        if result.external_output is None:
            return result.update
        pointer = result.external_output
        try:
            resolved = await asyncio.to_thread(
                resolve_result_payload, {attempts.OUTPUT_POINTER: pointer}, self.settings.payload_settings
            )
        except StorageError as err:
            if not err.terminal:
                raise TransientError(f"cannot read the task result {pointer}: {err}") from err
            return TaskUpdate(taskId=result.update.taskId, status=TaskStatus.FAILED,
                              reasonForIncompletion=f"cannot read the task result {pointer}: {err}")
        except Exception as err:  # a malformed payload is the task's failure, not the operator's
            return TaskUpdate(taskId=result.update.taskId, status=TaskStatus.FAILED,
                              reasonForIncompletion=f"cannot read the task result {pointer}: {err}")
        output = resolved.get("outputData")
        return result.update.model_copy(update={"outputData": output if isinstance(output, dict) else {}})

    async def _observe_child(
        self, owner: OwnerRef, task: Task, child: Any, now: int, extra_wakes: list[int]
    ) -> TaskUpdate | None:
        if child is not None:
            return attempts.observe_child(task, child)
        grace = self.settings.job_missing_grace_ms
        if now - (task.updateTime or task.scheduledTime) <= grace:
            extra_wakes.append((task.updateTime or task.scheduledTime) + grace + 1)
            return None
        name = names.child_workflow_name(owner.name, owner.uid, task.referenceTaskName, task.taskId)
        found = await self.api.get(KubeClient.workflow_path(owner.namespace, name), f"workflow {owner.namespace}/{name}")
        if found is not None:
            return None
        return TaskUpdate(taskId=task.taskId, status=TaskStatus.FAILED,
                          reasonForIncompletion=f"the child workflow {name} disappeared before it finished")

    async def _observe_started(self, owner: OwnerRef, task: Task) -> TaskUpdate | None:
        """A START_WORKFLOW attempt left unfinished (by a crash between create and status write)."""
        request = task.inputData.get("startWorkflow")
        request_name = request.get("name") if isinstance(request, dict) else None
        if not request_name:
            return None
        name = names.started_workflow_name(str(request_name), owner.uid, task.taskId)
        found = await self.api.get(KubeClient.workflow_path(owner.namespace, name), f"workflow {owner.namespace}/{name}")
        if found is None:
            return TaskUpdate(taskId=task.taskId, status=TaskStatus.FAILED,
                              reasonForIncompletion="the workflow this task was starting was not created")
        return TaskUpdate(taskId=task.taskId, status=TaskStatus.COMPLETED,
                          outputData={"workflowId": (found.get("metadata") or {}).get("uid")})

    def _pod_finished(self, namespace: str, job_name: str) -> bool:
        return any(pod.terminated for pod in self.view.pods_of_job(namespace, job_name))

    def _load(self, namespace: str, task_defs: Mapping[str, TaskDef], now: int) -> Load:
        """How busy each limited TaskDef is across the namespace, from the Jobs that exist."""
        by_def: dict[str, TaskLoad] = {}
        for name, task_def in task_defs.items():
            if not is_limited(task_def):
                continue
            jobs = self.view.jobs_of_task_def(namespace, name)
            seen = {job.name for job in jobs}
            reserved = self._reservations.get((namespace, name), {})
            for job_name in [j for j, at in reserved.items() if j in seen or now - at > 120_000]:
                reserved.pop(job_name, None)
            running = sum(1 for job in jobs if not job.finished and not self._pod_finished(namespace, job.name))
            running += len(reserved)
            starts = [job.dispatched_at_ms for job in jobs] + list(reserved.values())
            by_def[name] = task_load(running, starts, rate_window_ms(task_def), now)
        return Load(byTaskDef=by_def)

    def _reserve(self, namespace: str, owner: OwnerRef, actions: Sequence[Action],
                 task_defs: Mapping[str, TaskDef], now: int) -> None:
        """Count Jobs about to be created against their limits at once (before any await)."""
        for action in actions:
            if isinstance(action, StartTask) and is_limited(task_defs.get(action.taskDefName)):
                job_name = names.job_name(owner.name, owner.uid, action.referenceTaskName, action.taskId)
                self._reservations.setdefault((namespace, action.taskDefName), {})[job_name] = now

    @staticmethod
    def _job_name_of(owner: OwnerRef, task: Task) -> str | None:
        if task.dispatched and attempts.runs_as_job(task):
            return names.job_name(owner.name, owner.uid, task.referenceTaskName, task.taskId)
        return None

    # ------------------------------------------------------------------------------------- actions
    async def _act(
        self, owner: OwnerRef, actions: Sequence[Action], blueprint: Blueprint, now: int
    ) -> tuple[list[Observation], float | None]:
        """Carry out ``actions`` (concurrently, bounded); results known at once come back as observations."""
        if not actions:
            return [], None
        gate = asyncio.Semaphore(_PARALLEL_ACTIONS)
        first_start: list[float] = []

        async def one(action: Action) -> list[Observation]:
            async with gate:
                updates = await self._carry_out(owner, action, blueprint, now)
                if isinstance(action, StartTask | StartSubWorkflow) and not first_start:
                    first_start.append(time.perf_counter())
                return updates

        results = await asyncio.gather(*(one(a) for a in actions), return_exceptions=True)
        updates: list[Observation] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            updates.extend(result)
        return updates, (first_start[0] if first_start else None)

    async def _carry_out(self, owner: OwnerRef, action: Action, blueprint: Blueprint, now: int
                         ) -> list[Observation]:
        return await dispatch(action, _Acting(self, owner, blueprint, now))

    async def _input_env(self, owner: OwnerRef, start: StartTask) -> str:
        inline = json.dumps(start.inputData, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        if len(inline.encode("utf-8")) <= INPUT_ENV_LIMIT_BYTES:
            return inline
        context = TaskContext(workflow_id=owner.uid, task_id=start.taskId, task_ref=start.referenceTaskName,
                              task_name=start.taskDefName, retry_count=start.retryCount, iteration=start.iteration)
        return await asyncio.to_thread(encode_task_input, start.inputData, context, self.settings.payload_settings,
                                       INPUT_ENV_LIMIT_BYTES)

    async def _start_job(self, owner: OwnerRef, start: StartTask, blueprint: Blueprint, now: int) -> list[TaskUpdate]:
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
        try:
            created = await self.api.create(KubeClient.job_path(owner.namespace), job, f"job {owner.namespace}/{name}")
            self.metrics.job_creates.labels("created" if created is not None else "existed").inc()
        except Invalid as err:
            self.metrics.job_creates.labels("rejected").inc()
            return [TaskUpdate(taskId=start.taskId, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
                               reasonForIncompletion=f"the attempt's Job was rejected: {err.api_message}")]
        return []

    async def _create_or_get(self, path: str, body: Mapping[str, Any], what: str) -> dict[str, Any]:
        created = await self.api.create(path, body, what)
        if created is not None:
            return created
        found = await self.api.get(f"{path}/{body['metadata']['name']}", what)
        if found is None:
            raise TransientError(f"{what} exists and then does not (deleted meanwhile?)")
        return found

    async def _start_child(self, owner: OwnerRef, action: StartSubWorkflow) -> list[TaskUpdate]:
        depth = sub_workflow_depth(self._objects.get((owner.namespace, owner.name)) or {}) + 1
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
        except Invalid as err:
            return [TaskUpdate(taskId=action.taskId, status=TaskStatus.FAILED,
                               reasonForIncompletion=f"the sub workflow could not be created: {err.api_message}")]
        return [TaskUpdate(taskId=action.taskId, subWorkflowId=str(child["metadata"]["uid"]), started=True)]

    async def _start_workflow(self, owner: OwnerRef, action: StartWorkflow) -> list[Observation]:
        depth = sub_workflow_depth(self._objects.get((owner.namespace, owner.name)) or {}) + 1
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
                await self._find_workflow_def(owner.namespace, action.name, action.version) is None:
            # As Conductor's StartWorkflow: a request naming no definition FAILS the task (retriable).
            which = f"{action.name!r} version {action.version}" if action.version is not None else repr(action.name)
            return [TaskUpdate(taskId=action.taskId, status=TaskStatus.FAILED,
                               reasonForIncompletion=f"no WorkflowDef {which} in namespace {owner.namespace}")]
        body = build_started_workflow(owner, action, depth)
        what = f"workflow {owner.namespace}/{body['metadata']['name']}"
        try:
            started = await self._create_or_get(KubeClient.workflow_path(owner.namespace), body, what)
        except Invalid as err:
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

    def _call_http(self, owner: OwnerRef, action: CallHttp) -> None:
        key = (owner.uid, action.taskId)
        if key in self._http or action.taskId in self._results.get(owner.uid, {}) or \
                action.taskId in self._http_done.get(owner.uid, set()):
            return  # in flight, or done (a stale state must not send a request twice)
        wf_key = (owner.namespace, owner.name)

        async def perform() -> None:
            if self.leading is not None and not self.leading():
                self._http.pop(key, None)  # leadership lost meanwhile: the leader sends it
                return
            if self._http_session is None or self._http_session.closed:
                self._http_session = checked_session(self.settings.egress)
            try:
                update = await perform_http_task(action.taskId, action.request, action.timeoutSeconds,
                                                 self._http_session, self.settings.egress)
            finally:
                self._http.pop(key, None)
            self._results.setdefault(owner.uid, {})[action.taskId] = update
            self._http_done.setdefault(owner.uid, set()).add(action.taskId)
            self.queue.add(wf_key)

        self._http[key] = asyncio.get_running_loop().create_task(perform(), name=f"http-{action.taskId}")

    def _evaluate_script(self, owner: OwnerRef, action: EvaluateScript) -> None:
        """Hand the evaluation to the pool; its result wakes the workflow. No reconcile ever waits for it."""
        key = (owner.uid, action.taskId)
        if key in self._scripts or action.taskId in self._results.get(owner.uid, {}):
            return
        wf_key = (owner.namespace, owner.name)

        async def evaluate() -> None:
            try:
                update = await self.scripts.evaluate(action, owner.namespace)  # namespaces take turns
            finally:
                self._scripts.pop(key, None)
            self.metrics.script_evaluations.labels(_evaluation_outcome(update)).inc()
            if update.status is not TaskStatus.COMPLETED:
                logger.info("workflow %s/%s: %s", owner.namespace, owner.name, update.reasonForIncompletion)
            self._results.setdefault(owner.uid, {})[action.taskId] = update
            self.queue.add(wf_key)

        self._scripts[key] = asyncio.get_running_loop().create_task(evaluate(), name=f"script-{action.taskId}")

    async def _cancel(self, owner: OwnerRef, action: CancelTask) -> None:
        namespace = owner.namespace
        if action.taskType == TaskType.SUB_WORKFLOW.value:
            name = names.child_workflow_name(owner.name, owner.uid, action.referenceTaskName, action.taskId)
            with contextlib.suppress(NotFound):
                await self.api.merge_patch(KubeClient.workflow_path(namespace, name),
                                           {"spec": {"terminate": {"reason": action.reason or "parent canceled"}}},
                                           f"child workflow {namespace}/{name}")
        elif action.taskType == TaskType.HTTP.value:
            task = self._http.pop((owner.uid, action.taskId), None)
            if task is not None:
                task.cancel()
        elif action.taskType == TaskType.JSON_JQ_TRANSFORM.value:
            evaluation = self._scripts.pop((owner.uid, action.taskId), None)
            if evaluation is not None:
                evaluation.cancel()  # withdrawn from the queue, or its process killed
        elif action.taskType == TaskType.START_WORKFLOW.value:
            return
        else:
            name = names.job_name(owner.name, owner.uid, action.referenceTaskName, action.taskId)
            await self.api.delete(KubeClient.job_path(namespace, name), f"job {namespace}/{name}")

    # ---------------------------------------------------------------------- values outside the status
    def _payload_uri(self, owner: OwnerRef, key: str, name: str) -> str:
        settings = self.settings.payload_settings
        prefix = str(getattr(settings, "payload_prefix", "") or "")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return f"s3://{settings.payload_bucket}/{prefix}{owner.uid}/status/{key or 'workflow'}-{name}.json"

    async def _offload(self, owner: OwnerRef, workflow: Workflow, memo: _Memo) -> None:
        """Store every task input / output and the workflow's input / output too large for the status in
        external payload storage (when configured); ``memo.external`` then names them for build_status."""
        settings = self.settings.payload_settings
        if not getattr(settings, "payload_bucket", None):
            return
        limit = self.settings.inline_value_bytes
        values: list[tuple[str, str, Any]] = [(WORKFLOW_KEY, "output", workflow.output),
                                              (WORKFLOW_KEY, "input", workflow.input)]
        for task in workflow.tasks:
            values += [(task.taskId, "outputData", task.outputData), (task.taskId, "inputData", task.inputData)]
        for key, name, value in values:
            if memo.measured.get((key, name)) is value:
                continue  # this very value was measured (and stored when it had to be) already
            stored = memo.external.get(key, {})
            if value and json_size(value) > limit:
                uri = self._payload_uri(owner, key, name)
                data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
                await asyncio.to_thread(write_uri, uri, data, "application/json", settings=settings)
                memo.external.setdefault(key, {})[name] = uri
            elif name in stored:
                memo.external[key] = {k: v for k, v in stored.items() if k != name}
            memo.measured[(key, name)] = value

    async def _fetch_external(self, stored: StoredStatus) -> StoredStatus:
        """The status's workflow with the values stored outside it read back (see kube.status.POINTERS)."""
        if not stored.external or stored.workflow is None:
            return stored
        settings = self.settings.payload_settings

        def fetch(uri: str) -> Any:
            return json.loads(read_uri(uri, max_bytes=2 * MAX_STORED_VALUE_BYTES, settings=settings))

        values: dict[tuple[str, str], Any] = {}
        for key, fields in stored.external.items():
            for name, uri in fields.items():
                try:
                    values[(key, name)] = await asyncio.to_thread(fetch, uri)
                except StorageError as err:
                    if not err.terminal:
                        raise TransientError(f"reading {uri}: {err}") from err
                    raise StatusError(f"the value stored at {uri} cannot be read: {err}") from err
                except ValueError as err:
                    raise StatusError(f"the value stored at {uri} is not JSON: {err}") from err
        workflow = stored.workflow
        tasks = [task.model_copy(update={name: values[(task.taskId, name)]
                                         for name in stored.external.get(task.taskId, {})})
                 if task.taskId in stored.external else task for task in workflow.tasks]
        top = {name: values[(WORKFLOW_KEY, name)] for name in stored.external.get(WORKFLOW_KEY, {})}
        return dataclasses.replace(stored, workflow=workflow.model_copy(update={"tasks": tasks, **top}))

    async def _fail_too_large(
        self, obj: Mapping[str, Any], owner: OwnerRef, workflow: Workflow, definition: WorkflowDef | None,
        refused: Mapping[str, Any], err: TooLarge, memo: _Memo, observed_suspend: bool, observed_terminate: bool,
    ) -> _Outcome:
        """The API refused the status for its size: end the workflow FAILED with a short status saying why.

        Retrying the same write would fail for ever, with nothing to see in ``kubectl get wf``. What still runs
        is stopped; the written status keeps every task's status and reason but no inputs, outputs or variables
        (they are what made it too large).
        """
        size = json_size(refused)
        reason = (f"the Workflow's status would be {size_text(size)}, more than the API server stores "
                  f"({' '.join(err.api_message.split())[:160]}); the workflow cannot go on")
        return await self._fail_slimmed(obj, owner, workflow, definition, memo, observed_suspend, observed_terminate,
                                        "StatusTooLarge", reason)

    async def _fail_slimmed(
        self, obj: Mapping[str, Any], owner: OwnerRef, workflow: Workflow, definition: WorkflowDef | None,
        memo: _Memo, observed_suspend: bool, observed_terminate: bool, condition: str, reason: str,
    ) -> _Outcome:
        """End the workflow FAILED with ``reason`` in a status without inputs, outputs or variables."""
        logger.warning("workflow %s/%s: %s", owner.namespace, owner.name, reason)
        now = self.clock()
        for task in workflow.tasks:
            if task.dispatched and not task.status.terminal:
                with contextlib.suppress(Exception):  # best effort: the owner reference cleans up the rest
                    await self._cancel(owner, CancelTask(taskId=task.taskId, referenceTaskName=task.referenceTaskName,
                                                         taskType=task.taskType, subWorkflowId=task.subWorkflowId,
                                                         reason="the workflow's status is too large"))
        tasks = [t.model_copy(update={"inputData": {}, "outputData": {}} if t.status.terminal else
                              {"inputData": {}, "outputData": {}, "status": TaskStatus.CANCELED, "endTime": now})
                 for t in workflow.tasks]
        failed = workflow.model_copy(update={
            "status": WorkflowStatus.FAILED, "reasonForIncompletion": reason, "endTime": now, "updateTime": now,
            "input": {}, "output": {}, "variables": {}, "tasks": tasks})
        meta = obj.get("metadata") or {}
        status = build_status(failed, definition, generation=int(meta.get("generation") or 1),
                              observed_suspend=observed_suspend, previous_conditions=memo.stored.conditions,
                              now=dt.datetime.now(dt.UTC), reason_override=condition,
                              compress_over_bytes=self.settings.compress_over_bytes)
        status["observedTerminate"] = observed_terminate
        version = str(meta.get("resourceVersion"))
        try:
            await self.api.replace_status(owner.namespace, owner.name, version, status)
        except TooLarge:  # even so (a huge definition): the bare minimum
            for key in ("tasks", "tasksCompressed", "definition", "outputCompressed"):
                status.pop(key, None)
            await self.api.replace_status(owner.namespace, owner.name, version, status)
        self.events.record(owner, "Warning", condition, reason)
        self.metrics.workflows.labels(WorkflowStatus.FAILED.value).inc()
        self._objects.pop((owner.namespace, owner.name), None)
        self._memos.pop(owner.uid, None)
        return _Outcome()

    # ------------------------------------------------------------------------------- after a write
    def _after_write(self, owner: OwnerRef, before: Workflow | None, after: Workflow,
                     transitions: Sequence[TaskTransition]) -> None:
        by_id = {t.taskId: t for t in after.tasks} if transitions else {}
        for transition in transitions:
            kind, reason, message = describe_transition(transition)
            self.events.record(owner, kind, reason, message)
            if not transition.toStatus.terminal:
                continue
            self.metrics.tasks.labels(transition.taskType, transition.toStatus.value).inc()
            task = by_id.get(transition.taskId)
            if task is not None and task.startTime and task.endTime:
                self.metrics.task_duration.labels(transition.toStatus.value).observe(
                    max(0, task.endTime - task.startTime) / 1000)
        previous = before.status if before is not None else None
        if after.status is not previous:
            kind, reason, message = describe_workflow(after.status, after.reasonForIncompletion)
            self.events.record(owner, kind, reason, message)
            if after.status.terminal:
                self.metrics.workflows.labels(after.status.value).inc()
                if after.startTime and after.endTime:
                    self.metrics.workflow_duration.labels(after.status.value).observe(
                        max(0, after.endTime - after.startTime) / 1000)
