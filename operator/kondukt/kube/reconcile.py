"""One level-based reconcile of one Workflow: observe, ``decide``, act, write ``status``.

The work queue calls :meth:`Reconciler.reconcile` with a ``(namespace, name)`` key, one at a time per key.
Every decision is derived again from what is stored and observed — the Workflow read fresh from the API,
its Jobs, pods and children from the informer caches, the TaskDefs and the WorkflowDef snapshot — so an
operator that restarts continues exactly where the last one stopped. Nothing lives only in memory
except caches, in-flight HTTP requests and script evaluations (a JSON_JQ_TRANSFORM's jq program runs in the
:class:`~kondukt.scriptpool.ScriptPool`'s processes, never here; one found IN_PROGRESS with no evaluation
running — after a restart — is evaluated again: it is pure).

Order of a reconcile, and why (kill-safety):

1. read the Workflow; build observations: operations (``spec.suspend`` / ``spec.terminate`` edges and
   ``ops.kondukt.io/*`` annotations, each applied once through the engine's nonce record), task updates
   (``kube.attempts``), the namespace's load for concurrency and rate limits;
2. ``decide``; carry out its actions *before* anything is persisted, idempotently (deterministic names:
   AlreadyExists means done; a Job is never created twice for one attempt);
3. feed results known right away (a started workflow's id, a rejected Job) back to ``decide`` (a few
   rounds at most);
4. write ``status`` with PUT on the status subresource and the resourceVersion read in step 1 (409: someone
   else moved it — requeue; nothing done in step 2 is lost or repeated, because it is all idempotent);
5. Events for the transitions a person needs to see (:mod:`~kondukt.kube.events`), metrics, and the exact
   timer at ``decision.wakeAt``.

A finished Workflow with nothing new to apply skips all of this: it goes to retention
(:mod:`~kondukt.kube.retention`: archived when the archive is on, deleted when its ttlStrategy runs out).

A killed operator loses at most the work of step 2 that was not persisted: the next reconcile decides the
same actions again (the engine's task ids are deterministic) and finds them already done.

:meth:`Reconciler.reconcile` is these steps, one method each (``_read``: 1, ``_decide_and_act``: 2 and 3,
``_write_status``: 4, ``_follow_up``: 5), handing one ``_Pass`` along. What they use lives next door:
starting a run in :mod:`~kondukt.kube.start`, observations in :mod:`~kondukt.kube.observe`, carrying out
actions (and the HTTP requests and evaluations in flight) in :mod:`~kondukt.kube.actions`, values kept
outside the status in :mod:`~kondukt.kube.offload`, the shared settings and memo in :mod:`~kondukt.kube.memo`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pydantic

from kondukt.driver.load import is_limited, rate_window_ms
from kondukt.engine import decide
from kondukt.engine.decision import (
    CancelTask,
    Decision,
    Load,
    Observation,
    StartTask,
    TaskTransition,
)
from kondukt.engine.models import (
    Blueprint,
    Task,
    TaskDef,
    TaskStatus,
    Workflow,
    WorkflowDef,
    WorkflowSpec,
    WorkflowStatus,
)
from kondukt.engine.payloads import json_size, size_text
from kondukt.engine.validation import problems_from_validation_error
from kondukt.errors import ManifestError
from kondukt.kube import attempts, names, opsannotations
from kondukt.kube.actions import Actor
from kondukt.kube.builders import (
    OwnerRef,
)
from kondukt.kube.cache import (
    ClusterView,
)
from kondukt.kube.claims import Claim, LimitClaims, counted, pruned
from kondukt.kube.events import EventRecorder, describe_transition, describe_workflow
from kondukt.kube.kubeapi import Conflict, KubeClient, NotLeader, TooLarge, TransientApiError
from kondukt.kube.memo import Memo, Outcome, ReconcileSettings, TransientError, WorkflowKey
from kondukt.kube.metrics import Metrics
from kondukt.kube.observe import Observer
from kondukt.kube.offload import fetch_external, offload
from kondukt.kube.retention import Retention
from kondukt.kube.shards import acting_shard
from kondukt.kube.start import Starter
from kondukt.kube.status import (
    StatusError,
    StoredStatus,
    TaskEncoder,
    build_status,
    read_status,
)
from kondukt.kube.workqueue import WorkQueue
from kondukt.limits import check_nesting
from kondukt_workers.storage import StorageError

__all__ = ["HOLD_SECONDS_PER_TASK", "ReconcileSettings", "Reconciler", "TransientError"]

logger = logging.getLogger(__name__)

_TERMINAL_PHASES: Final = frozenset(s.value for s in WorkflowStatus if s.terminal)
#: See the status write in Reconciler.reconcile: how long a workflow's news is gathered, per task.
HOLD_SECONDS_PER_TASK: Final = 0.0001
#: How often one reconcile reads and claims a limited TaskDef's slots again when other replicas claim meanwhile.
CLAIM_TRIES: Final = 5


def _now_ms() -> int:
    return int(time.time() * 1000)


def _newer(current: Any, candidate: Any) -> bool:
    """Whether resourceVersion ``candidate`` is newer than ``current`` (etcd revisions; unreadable: newer
    unless equal)."""
    try:
        return int(candidate) > int(current)
    except (TypeError, ValueError):
        return bool(candidate != current)


@dataclass
class _Pass:
    """One reconcile's working state, handed from step to step (see :meth:`Reconciler.reconcile`)."""

    key: WorkflowKey
    obj: Mapping[str, Any]
    owner: OwnerRef
    generation: int
    raw_status: dict[str, Any]
    memo: Memo
    stored: StoredStatus
    workflow: Workflow
    definition: WorkflowDef
    reason_override: str | None
    task_defs: dict[str, TaskDef]
    blueprint: Blueprint
    observed_suspend: bool
    observed_terminate: bool
    now: int
    observations: list[Observation]
    extra_wakes: list[int]
    #: Results of the operator's own attempts (HTTP, scripts) fed to this pass: forgotten once written.
    consumed: set[str]
    woke: float | None
    reconcile_started: float
    changed: bool = False
    transitions: list[TaskTransition] = field(default_factory=list)
    wake_at: int | None = None
    waiting_on: tuple[str, ...] = ()
    first_start_done: float | None = None
    written: bool = False
    #: Whether this pass carried out actions (Jobs created, tasks canceled, ...) or applied operations: its status
    #: write is never deferred (see Reconciler._deferred_until).
    acted: bool = False
    operated: bool = False


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
        self._settings = settings
        self.metrics = metrics
        self.events = events
        self.clock = clock
        self.queue: WorkQueue[WorkflowKey] = WorkQueue(self.run, workers=workers, on_depth=metrics.queue_depth.set,
                                                       ready=ready)
        #: Whether this replica may act now (it holds the operator's Lease, or with shards the shard of the
        #: workflow being reconciled: :data:`~kondukt.kube.shards.acting_shard`); None: always (one replica).
        self.leading: Callable[[], bool] | None = None
        #: With shards: a workflow's shard from its uid (:func:`~kondukt.kube.shards.shard_of`).
        self.shard_of: Callable[[str], int] | None = None
        #: With shards: limits counted across replicas through claims (:mod:`kondukt.kube.claims`).
        self.claims: LimitClaims | None = None
        self._memos: dict[str, Memo] = {}
        #: When (clock ms) each workflow's status was last written by this process (uid -> ms).
        self._last_write_ms: dict[str, int] = {}
        #: Workflows held back by a concurrentExecLimit: (ns, def) -> keys to wake when a slot frees.
        self._waiters: dict[tuple[str, str], set[WorkflowKey]] = {}
        self._objects: dict[WorkflowKey, dict[str, Any]] = {}
        self.payload_limits = settings.payload_limits()
        self.actor = Actor(api, view, settings, metrics, events, self.queue.add,
                           lambda: self.leading is None or self.leading(), self._objects.get,
                           lambda namespace, name, version: self.starter.find_workflow_def(namespace, name, version))
        #: The pool that evaluates jq programs (the actor's).
        self.scripts = self.actor.scripts
        self.observer = Observer(api, view, settings, events, self.actor)
        self.starter = Starter(api, view, events, metrics, clock, settings.definition_grace_seconds,
                               settings.compress_over_bytes, self.observer.task_defs, self.observe, self._memos)
        #: Finished workflows: archived (when the operator has an archive), deleted after their TTL.
        self.retention = Retention(api, view, metrics, events, clock, self.observe, settings.default_ttl)

    @property
    def settings(self) -> ReconcileSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: ReconcileSettings) -> None:
        """New settings reach the helpers too (they keep a reference, not a copy)."""
        self._settings = settings
        self.actor.settings = settings
        self.observer.settings = settings
        self.starter.definition_grace_seconds = settings.definition_grace_seconds
        self.starter.compress_over_bytes = settings.compress_over_bytes
        self.retention.default_ttl = settings.default_ttl

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
        for key in self.starter.waiters(namespace):
            self.queue.add(key)

    def forget(self, key: WorkflowKey, uid: str | None = None, *, deleted: bool = False) -> None:
        """The Workflow is gone (or finished): drop timers, memo, in-flight HTTP requests and evaluations."""
        self.queue.cancel_timer(key)
        if deleted:
            self._objects.pop(key, None)
        if uid is not None:
            self._memos.pop(uid, None)
            self._last_write_ms.pop(uid, None)
            self.actor.forget(uid)
            self.observer.forget(uid)
            if deleted:
                self.retention.forget(uid)

    def _keys_of(self, shard: int | None) -> list[tuple[WorkflowKey, str]]:
        """The Workflows known (key, uid), all or those of ``shard``."""
        found = []
        for key, obj in list(self._objects.items()):
            uid = str((obj.get("metadata") or {}).get("uid"))
            if shard is None or self.shard_of is None or self.shard_of(uid) == shard:
                found.append((key, uid))
        return found

    def lead(self, shard: int | None = None) -> None:
        """This replica just became the leader (of ``shard``): reconcile every Workflow it knows (of that shard;
        its watches kept the cache current while it stood by; whatever the last holder left half done is found
        and finished)."""
        for key, _uid in self._keys_of(shard):
            self.queue.add(key)

    def stand_by(self, shard: int | None = None) -> None:
        """This replica stopped leading (``shard``): drop the timers, in-flight HTTP tasks and jq evaluations, and
        the results not yet written (of that shard's workflows). What they would have done is the new holder's
        now; it finds it again from the Workflows' status. The API client's fence already refuses every write of
        a reconcile still running."""
        if shard is None:
            for key in list(self._objects):
                self.queue.cancel_timer(key)
            self.actor.drop_all()
            return
        for key, uid in self._keys_of(shard):
            self.queue.cancel_timer(key)
            self.actor.forget(uid)

    async def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()
        await self.actor.close()

    async def run(self, key: WorkflowKey) -> None:
        """The work queue's handler: one reconcile, with error classification and retries."""
        if self.leading is not None and not self.leading():
            self.queue.cancel_timer(key)  # a standby replica: the leader has this workflow
            return
        started = time.perf_counter()
        result = "ok"
        shard_token = acting_shard.set(None)  # _read sets the workflow's shard: the fence checks every write
        try:
            outcome = await self.reconcile(key)
            self.queue.forget(key)
            # None: nothing more (the settled path included); an Outcome without a wake from a reconcile that
            # just ended the workflow: retention's turn (archive, TTL) comes at once.
            if outcome is not None and outcome.wake_at_ms is None and self._retention_next(key):
                outcome = Outcome(wake_at_ms=self.clock(), waiting_on=outcome.waiting_on)
            if outcome is not None:
                self._schedule(key, outcome)
        except Conflict:
            result = "conflict"
            self.metrics.reconcile_errors.labels("conflict").inc()
            self._objects.pop(key, None)  # read it fresh next time
            self.queue.add(key)
        except (TransientApiError, TransientError) as err:
            result = "retry"
            # NotLeader: this replica lost the workflow's shard (or the lease) mid-reconcile and its write was
            # fenced; the new holder carries on. Expected at every handover, so not a warning.
            handover = isinstance(err, NotLeader)
            self.metrics.reconcile_errors.labels("not_leader" if handover else "transient").inc()
            asked = err.retry_after if isinstance(err, TransientApiError) else None
            delay = self.queue.add_rate_limited(key, at_least=asked or 0.0)
            if asked:
                self.metrics.api_retry_after.inc(asked)
            logger.log(logging.INFO if handover else logging.WARNING, "workflow %s/%s: %s (retrying in %.2fs%s)",
                       key[0], key[1], err, delay, f", the server asked Retry-After {asked:g}s" if asked else "")
        finally:
            acting_shard.reset(shard_token)
            self.metrics.reconcile_duration.labels(result).observe(time.perf_counter() - started)

    def _schedule(self, key: WorkflowKey, outcome: Outcome) -> None:
        if outcome.wake_at_ms is not None:
            loop = asyncio.get_running_loop()
            delay = (outcome.wake_at_ms - self.clock()) / 1000.0
            self.queue.add_at(key, loop.time() + max(0.0, delay))
        else:
            self.queue.cancel_timer(key)
        for task_def in outcome.waiting_on:
            self._waiters.setdefault((key[0], task_def), set()).add(key)

    # ------------------------------------------------------------------------------------ reconcile
    async def reconcile(self, key: WorkflowKey) -> Outcome | None:
        """The five steps of the module docstring, in order; a step that ends the reconcile early returns
        its outcome (``None``: nothing to come back for)."""
        pass_ = await self._read(key)
        if not isinstance(pass_, _Pass):
            return pass_
        await self._decide_and_act(pass_)
        ended = await self._write_status(pass_)
        if ended is not None:
            return ended
        return self._follow_up(pass_)

    async def _read(self, key: WorkflowKey) -> _Pass | Outcome | None:
        """Step 1: the Workflow (cached, else read), its stored run (or a new one), and the observations."""
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
        if self.shard_of is not None:
            acting_shard.set(self.shard_of(uid))
            if self.leading is not None and not self.leading():
                self.queue.cancel_timer(key)  # another replica holds this workflow's shard, and its timers
                return None
        if meta.get("deletionTimestamp"):
            self.forget(key, uid)
            return None
        owner = OwnerRef(name=name, namespace=namespace, uid=uid)
        generation = int(meta.get("generation") or 1)
        raw_status = obj.get("status") or {}
        annotations = meta.get("annotations") or {}
        if self._settled(raw_status, annotations, generation):
            self.forget(key, uid)
            return await self.retention.settle(obj, owner)

        memo = self._memos.get(uid)
        if memo is None or memo.resource_version != meta.get("resourceVersion"):
            try:
                stored = read_status(raw_status)
                stored = await fetch_external(self.settings.payload_settings, stored)
            except StatusError as err:
                return await self.starter.fail_unstarted(obj, owner, "StatusUnreadable",
                                                         f"the Workflow's status cannot be read: {err}", None)
            memo = Memo(resource_version=str(meta.get("resourceVersion")), stored=stored,
                        encoder=memo.encoder if memo else TaskEncoder(),
                        definition_dump=memo.definition_dump if memo else None,
                        warned=memo.warned if memo else set(),
                        external={k: dict(v) for k, v in stored.external.items()},
                        measured=memo.measured if memo else {},
                        measured_tasks=memo.measured_tasks if memo else {}, spec=memo.spec if memo else None)
            self._memos[uid] = memo
        stored = memo.stored
        if memo.spec is not None and memo.spec[0] == generation and stored.workflow is not None:
            spec: WorkflowSpec = memo.spec[1]
        else:
            validated = await self._validated_spec(obj, owner, name, stored, memo)
            if not isinstance(validated, WorkflowSpec):
                return validated
            spec = validated
            memo.spec = (generation, spec)

        now = self.clock()
        reason_override: str | None = None
        definition: WorkflowDef | None
        if stored.workflow is None:
            started = await self.starter.start(obj, owner, spec, now, memo)
            if started is None:
                return Outcome(wake_at_ms=self.starter.definition_deadline(obj))
            workflow, start_definition, reason_override = started
            if start_definition is None or workflow.status.terminal:
                return await self.starter.write_failed_start(obj, owner, workflow, start_definition,
                                                             reason_override or "Failed", memo)
            definition = start_definition
        else:
            workflow = stored.workflow
            definition = stored.definition or await self.starter.definition_again(namespace, spec, name)
        if definition is None:
            return await self.starter.fail_unstarted(obj, owner, "DefinitionLost",
                                                     "the status has no definition snapshot and the WorkflowDef is "
                                                     "gone", memo)
        task_defs = self.observer.task_defs(namespace)
        blueprint = Blueprint(workflow=definition, taskDefs=task_defs, payloadLimits=self.payload_limits)

        operations, observed_suspend, observed_terminate = self.observer.operations(obj, spec, stored, workflow, memo, owner)
        extra_wakes: list[int] = []
        updates = await self.observer.task_updates(owner, workflow, blueprint, now, extra_wakes)
        return _Pass(
            key=key, obj=obj, owner=owner, generation=generation, raw_status=raw_status, memo=memo, stored=stored,
            workflow=workflow, definition=definition, reason_override=reason_override, task_defs=task_defs,
            blueprint=blueprint, observed_suspend=observed_suspend, observed_terminate=observed_terminate,
            now=now, observations=[*operations, *updates, self.actor.load(namespace, task_defs, now)],
            extra_wakes=extra_wakes, consumed={u.taskId for u in updates if u.taskId in self.actor.results.get(uid, {})},
            woke=woke, reconcile_started=reconcile_started, operated=bool(operations),
        )

    async def _validated_spec(self, obj: Mapping[str, Any], owner: OwnerRef, name: str, stored: StoredStatus,
                              memo: Memo) -> WorkflowSpec | Outcome | None:
        """The Workflow's spec, validated (a bad one ends the workflow FAILED: the outcome of that)."""
        raw_spec = dict(obj.get("spec") or {})
        if isinstance(raw_spec.get("definition"), dict) and not raw_spec["definition"].get("name"):
            raw_spec["definition"] = {**raw_spec["definition"], "name": name}  # defaults to metadata.name
        if stored.workflow is None:
            try:  # what the API server took may still nest too deep for the engine's recursive walks
                check_nesting(raw_spec, "spec")
            except ManifestError as err:
                return await self.starter.fail_unstarted(obj, owner, "InvalidSpec", f"invalid {err}", memo)
        try:
            spec = WorkflowSpec.model_validate(raw_spec)
        except pydantic.ValidationError as err:
            problems = problems_from_validation_error(err, "spec", raw_spec)
            text = "; ".join(str(p) for p in problems[:5]) or str(err)
            return await self.starter.fail_unstarted(obj, owner, "InvalidSpec", f"invalid spec: {text}", memo)
        return spec

    async def _decide_and_act(self, p: _Pass) -> None:
        """Steps 2 and 3: ``decide``, carry out its actions (before anything is persisted, idempotently), and
        feed the results known at once back to ``decide`` (``max_rounds`` at most)."""
        namespace, name = p.key
        for _round in range(self.settings.max_rounds):
            decision = decide(p.blueprint, p.workflow, p.observations, p.now)
            if self.claims is not None:
                decision = await self._claim_limits(p, decision)
            for message in decision.messages:
                logger.info("workflow %s/%s: %s", namespace, name, message)
            self.actor.reserve(namespace, p.owner, decision.actions, p.task_defs, p.now)
            immediate, first_done = await self.actor.act(p.owner, decision.actions, p.blueprint, p.now)
            if first_done is not None and p.first_start_done is None:
                p.first_start_done = first_done
            p.workflow = decision.workflow
            p.acted = p.acted or bool(decision.actions)
            p.changed = p.changed or decision.changed
            p.transitions.extend(decision.transitions)
            p.wake_at, p.waiting_on = decision.wakeAt, decision.waitingOn
            if not immediate:
                return
            p.now = self.clock()
            p.observations = [*immediate, self.actor.load(namespace, p.task_defs, p.now)]
        p.wake_at = p.now  # more immediate results than rounds: come back at once

    def _limited_starts(self, p: _Pass, decision: Decision) -> dict[str, list[str]]:
        """The Jobs ``decision`` creates for limited TaskDefs: TaskDef -> Job names."""
        starts: dict[str, list[str]] = {}
        for action in decision.actions:
            if isinstance(action, StartTask) and is_limited(p.task_defs.get(action.taskDefName)):
                starts.setdefault(action.taskDefName, []).append(
                    names.job_name(p.owner.name, p.owner.uid, action.referenceTaskName, action.taskId))
        return starts

    async def _claim_limits(self, p: _Pass, decision: Decision) -> Decision:
        """With shards: the Jobs of limited TaskDefs are claimed before they are created (:mod:`kondukt.kube.claims`):
        decide again with the load every replica's claims add, and store the claims guarded by the version
        read; another replica's claim meanwhile means reading and deciding again."""
        assert self.claims is not None
        namespace = p.key[0]
        starts = self._limited_starts(p, decision)
        if not starts:
            return decision
        own_dispatched = {name for task in p.workflow.tasks if (name := self._job_name_of(p.owner, task))}
        for _try in range(CLAIM_TRIES):
            read = {task_def: await self.claims.read(namespace, task_def) for task_def in starts}
            finished = {task_def: self.actor.finished_jobs(namespace, task_def) for task_def in read}
            claimed = {task_def: counted(claim_set.claims, finished[task_def], p.owner.uid, own_dispatched, p.now)
                       for task_def, claim_set in read.items()}
            observations: list[Observation] = [o for o in p.observations if not isinstance(o, Load)]
            observations.append(self.actor.load(namespace, p.task_defs, p.now, claimed))
            decision = decide(p.blueprint, p.workflow, observations, p.now)
            starts = self._limited_starts(p, decision)
            stored = set(starts) <= set(read)
            for task_def, jobs in starts.items():
                if not stored or not jobs:
                    break
                claim_set = read[task_def]
                kept = pruned(claim_set.claims, finished[task_def], rate_window_ms(p.task_defs.get(task_def)), p.now)
                kept.update({job: Claim(at_ms=p.now, workflow_uid=p.owner.uid) for job in jobs})
                stored = await self.claims.write(namespace, claim_set, kept)
            if stored:
                return decision
            self.metrics.limit_claim_conflicts.inc()
            if not starts:
                return decision
        raise TransientError(f"the limit claims of {', '.join(sorted(starts))} kept changing under other replicas")

    async def _write_status(self, p: _Pass) -> Outcome | None:
        """Step 4: values too large for the status to payload storage, then the status written with the
        resourceVersion read in step 1 (a conflict: requeued by :meth:`run`). An outcome ends the reconcile."""
        namespace, name = p.key
        workflow, memo, raw_status, stored = p.workflow, p.memo, p.raw_status, p.stored
        settled = (
            not p.changed and stored.workflow is not None and raw_status.get("phase") is not None
            and stored.observed_generation == p.generation and stored.observed_suspend == p.observed_suspend
            and bool(raw_status.get("observedTerminate")) == p.observed_terminate
        )
        deferred = None if settled else self._deferred_until(p)
        if deferred is not None:
            p.extra_wakes.append(deferred)
            self.metrics.status_writes_deferred.inc()
            return None
        if not settled:
            try:
                await offload(self.settings, p.owner, workflow, memo)
            except StorageError as err:
                if not err.terminal:
                    raise TransientError(f"external payload storage: {err}") from err
                return await self._fail_slimmed(p.obj, p.owner, workflow, p.definition, memo, p.observed_suspend,
                                                p.observed_terminate, "PayloadNotStored",
                                                f"a value too large for the Workflow's status could not be stored "
                                                f"in external payload storage: {err}")
        status = raw_status if settled else build_status(
            workflow, p.definition, generation=p.generation, observed_suspend=p.observed_suspend,
            previous_conditions=stored.conditions, now=dt.datetime.now(dt.UTC),
            job_name=lambda task: self._job_name_of(p.owner, task), encoder=memo.encoder,
            definition_snapshot=memo.definition_dump, reason_override=p.reason_override,
            compress_over_bytes=self.settings.compress_over_bytes, external=memo.external,
        )
        if not settled:
            status["observedTerminate"] = p.observed_terminate
        if memo.definition_dump is None and "definition" in status:
            memo.definition_dump = status["definition"]
        if status == raw_status:
            return None
        meta = p.obj.get("metadata") or {}
        try:
            written = await self.api.replace_status(namespace, name, str(meta.get("resourceVersion")), status)
        except TooLarge as err:
            return await self._fail_too_large(p.obj, p.owner, workflow, p.definition, status, err, memo,
                                              p.observed_suspend, p.observed_terminate)
        self.observe(written)
        self._last_write_ms[p.owner.uid] = self.clock()
        self.metrics.status_bytes.set(len(json.dumps(status, separators=(",", ":"))))
        memo.resource_version = str((written.get("metadata") or {}).get("resourceVersion"))
        memo.stored = StoredStatus(
            workflow=workflow, definition=p.definition, observed_suspend=p.observed_suspend,
            observed_generation=p.generation, conditions=tuple(status["conditions"]),
            phase=status["phase"], extra={"observedTerminate": p.observed_terminate},
            external={k: dict(v) for k, v in memo.external.items()},
        )
        p.written = True
        self.actor.recorded(p.owner.uid)
        self.observer.recorded(p.owner.uid, workflow)
        return None

    def _deferred_until(self, p: _Pass) -> int | None:
        """When to write a status that only records progress, if not now (clock ms; None: now).

        A wide fan-out's branches start and end one after another, each waking the workflow: written every time,
        its status (hundreds of KiB for 1,000 tasks) costs the API server and every watcher a large write per
        branch, and keeps the reconcile that must start the step after the join waiting behind it. Progress
        alone — tasks that started or finished while no task was added, nothing was started, canceled or ended,
        no operation applied, no result of the operator's own attempts consumed — waits until ``status_coalesce_ms`` after the
        workflow's previous write (this process's: after a restart the first is written at once). Nothing is lost
        meanwhile: every reconcile derives the same progress again from the stored status and the watches, so the
        write that comes (at the latest when the timer returned here fires) records it all, Events included, with
        each start and end at the time this process first saw it (:meth:`Observer.task_updates`).
        """
        window = self.settings.status_coalesce_ms
        stored = p.stored
        if window <= 0 or p.acted or p.operated or p.consumed or p.reason_override or stored.workflow is None:
            return None
        if p.workflow.status.terminal or p.workflow.status is not stored.workflow.status:
            return None
        if len(p.workflow.tasks) != len(stored.workflow.tasks):  # a task added (its times would be derived again)
            return None
        if stored.observed_generation != p.generation or stored.observed_suspend != p.observed_suspend \
                or bool(p.raw_status.get("observedTerminate")) != p.observed_terminate:
            return None
        last = self._last_write_ms.get(p.owner.uid)
        if last is None or p.now >= last + window:
            return None
        return last + window

    def _follow_up(self, p: _Pass) -> Outcome:
        """Step 5: Events and metrics for what was written, the results it recorded forgotten, and when to
        come back (the engine's ``wakeAt``, the TaskDefs whose limits hold the workflow back)."""
        if p.written:
            self._after_write(p.owner, p.stored.workflow, p.workflow, p.transitions)
            # A big workflow's status costs time to encode and to store: gather what happens next for a
            # moment (0.1 ms per task: 2,000 tasks, 0.2 s) rather than write it again for every event.
            self.queue.hold(p.key, len(p.workflow.tasks) * HOLD_SECONDS_PER_TASK)
        results = self.actor.results.get(p.owner.uid)
        if results is not None:
            for task_id in p.consumed:
                results.pop(task_id, None)
        if p.first_start_done is not None and p.woke is not None:
            self.metrics.step_latency.observe(p.woke + (p.first_start_done - p.reconcile_started))
        found_existing = p.owner.uid in self.actor.found_existing
        self.actor.found_existing.discard(p.owner.uid)
        if p.workflow.status.terminal:
            self._memos.pop(p.owner.uid, None)
            return Outcome()
        wake_at = p.wake_at
        if found_existing:
            # A Job this reconcile meant to create was already there, and may have started or finished
            # before the status recorded its attempt: no watch event will say so again, so the next
            # reconcile reads it, at once. Once: that reconcile creates nothing, so it finds nothing.
            p.extra_wakes.append(p.now)
        if p.extra_wakes:
            wake_at = min([*p.extra_wakes, *([wake_at] if wake_at is not None else [])])
        return Outcome(wake_at_ms=wake_at, waiting_on=p.waiting_on)

    def _retention_next(self, key: WorkflowKey) -> bool:
        """The reconcile just ended the workflow: its echo brings no reconcile (it is our own write), so come
        back at once for retention's part (archive, TTL) when it has one."""
        obj = self._objects.get(key)
        return obj is not None and self.retention.wants(obj)

    @staticmethod
    def _settled(raw_status: Mapping[str, Any], annotations: Mapping[str, str], generation: int) -> bool:
        """A finished workflow with nothing new to apply: skip it without decoding its tasks."""
        if raw_status.get("phase") not in _TERMINAL_PHASES:
            return False
        return not opsannotations.has_unapplied(annotations, set(raw_status.get("appliedOperations") or []))

    @staticmethod
    def _job_name_of(owner: OwnerRef, task: Task) -> str | None:
        if task.dispatched and attempts.runs_as_job(task):
            return names.job_name(owner.name, owner.uid, task.referenceTaskName, task.taskId)
        return None

    async def _fail_too_large(
        self, obj: Mapping[str, Any], owner: OwnerRef, workflow: Workflow, definition: WorkflowDef | None,
        refused: Mapping[str, Any], err: TooLarge, memo: Memo, observed_suspend: bool, observed_terminate: bool,
    ) -> Outcome:
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
        memo: Memo, observed_suspend: bool, observed_terminate: bool, condition: str, reason: str,
    ) -> Outcome:
        """End the workflow FAILED with ``reason`` in a status without inputs, outputs or variables."""
        logger.warning("workflow %s/%s: %s", owner.namespace, owner.name, reason)
        now = self.clock()
        for task in workflow.tasks:
            if task.dispatched and not task.status.terminal:
                with contextlib.suppress(Exception):  # best effort: the owner reference cleans up the rest
                    await self.actor.cancel(owner, CancelTask(taskId=task.taskId, referenceTaskName=task.referenceTaskName,
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
        return Outcome()

    # ------------------------------------------------------------------------------- after a write
    def _after_write(self, owner: OwnerRef, before: Workflow | None, after: Workflow,
                     transitions: Sequence[TaskTransition]) -> None:
        by_id = {t.taskId: t for t in after.tasks} if transitions else {}
        for transition in transitions:
            task = by_id.get(transition.taskId)
            described = describe_transition(transition, task.retryCount if task is not None else 0)
            if described is not None:
                self.events.record(owner, *described)
            if not transition.toStatus.terminal:
                continue
            self.metrics.tasks.labels(transition.taskType, transition.toStatus.value).inc()
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
