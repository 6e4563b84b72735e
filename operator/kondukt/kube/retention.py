"""Retention of finished Workflows: archive them (when the archive is on), then delete them after their TTL.

Why: at hundreds of workflows a minute, finished Workflows (and their Jobs' owner chain) would fill etcd.
Argo's answer, which Kondukt follows: ``spec.ttlStrategy`` (``secondsAfterCompletion``,
``secondsAfterSuccess``, ``secondsAfterFailure``; the most specific wins) or the operator's default
(``--ttl-after-*``, chart value ``ttlStrategy``), and a workflow archive in PostgreSQL (``kondukt.archive``).

The reconcile hands every finished Workflow to :meth:`Retention.settle` (through the same work queue, so
exactly the replica that acts on a workflow settles it). Order, and why:

1. archive first (archive on): the Workflow is upserted by uid, then its ``Archived`` condition is written —
   a restart between the two archives it once more into the same row, never twice. The database down: the
   condition says ``ArchiveUnavailable`` (once, not at every retry), ``kondukt_archive_pending`` counts the
   workflow, and the reconcile is retried with the work queue's backoff; the workflow is never deleted
   before it is archived;
2. TTL: a SUB_WORKFLOW child has none of its own — it goes with its parent (owner reference, the garbage
   collector deletes it in the background); the parent waits for its children to be archived too. Not due
   yet: the work queue's exact timer brings it back at the time; due: DELETE with the uid as precondition.

Time is the operator's (the reconciler's clock), never the engine's: the engine has no clock.
Pure helpers (what the TTL is, when it is due, the archive record) are module functions, tested alone.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import pydantic

from kondukt.archive.errors import ArchiveError
from kondukt.archive.records import ArchivedWorkflow
from kondukt.engine.models import TTLStrategy
from kondukt.kube import resources as r
from kondukt.kube.builders import OwnerRef
from kondukt.kube.cache import ClusterView
from kondukt.kube.events import EventRecorder
from kondukt.kube.kubeapi import Conflict, KubeClient, NotFound
from kondukt.kube.memo import Outcome, TransientError
from kondukt.kube.metrics import Metrics
from kondukt.kube.status import StatusError, merge_conditions, output_from_status, tasks_from_status

logger = logging.getLogger(__name__)

TERMINAL_PHASES: Final = frozenset({"COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED"})
ARCHIVED_CONDITION: Final = "Archived"
#: Annotations that never reach the archive: Kopf's bookkeeping and kubectl's copy of the whole manifest.
_DROPPED_ANNOTATIONS: Final = ("kubectl.kubernetes.io/last-applied-configuration",)


class ArchiveWriter(Protocol):
    """What retention needs of the archive (:class:`kondukt.archive.store.ArchiveStore` has it)."""

    async def archive(self, record: ArchivedWorkflow) -> None: ...


# ------------------------------------------------------------------------------------------------ pure
def ttl_strategy(obj: Mapping[str, Any], default: TTLStrategy | None) -> TTLStrategy | None:
    """The Workflow's ``spec.ttlStrategy`` when it has one (even empty: then it stays), else ``default``."""
    raw = (obj.get("spec") or {}).get("ttlStrategy")
    if raw is None:
        return default
    try:
        return TTLStrategy.model_validate(raw)
    except pydantic.ValidationError:  # the CRD's schema refuses this; an old object may still have it
        return default


def ttl_seconds(strategy: TTLStrategy | None, phase: str | None) -> int | None:
    """Argo's precedence: secondsAfterSuccess (COMPLETED) or secondsAfterFailure (the other terminal phases),
    else secondsAfterCompletion; None: keep it."""
    if strategy is None or phase not in TERMINAL_PHASES:
        return None
    specific = strategy.secondsAfterSuccess if phase == "COMPLETED" else strategy.secondsAfterFailure
    return specific if specific is not None else strategy.secondsAfterCompletion


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in status.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == kind:
            return condition
    return None


def _parse_stamp_ms(stamp: Any) -> int | None:
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        return int(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def finished_ms(obj: Mapping[str, Any]) -> int | None:
    """When the workflow ended (ms since the epoch): ``status.endTime``, else when its Ready condition
    last changed (a workflow that failed before it started has no endTime)."""
    status = obj.get("status") or {}
    end = status.get("endTime")
    if isinstance(end, int) and not isinstance(end, bool) and end > 0:
        return end
    ready = _condition(status, "Ready")
    return _parse_stamp_ms(ready.get("lastTransitionTime")) if ready else None


def is_child(obj: Mapping[str, Any]) -> bool:
    """A SUB_WORKFLOW child: it goes with its parent (owner reference), it has no TTL of its own."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return r.LABEL_PARENT_UID in labels


def deletion_due_ms(obj: Mapping[str, Any], default: TTLStrategy | None) -> int | None:
    """When the finished Workflow is to be deleted (ms since the epoch); None: never by its TTL."""
    if is_child(obj):
        return None
    phase = (obj.get("status") or {}).get("phase")
    seconds = ttl_seconds(ttl_strategy(obj, default), phase)
    end = finished_ms(obj)
    if seconds is None or end is None:
        return None
    return end + seconds * 1000


def is_archived(status: Mapping[str, Any]) -> bool:
    condition = _condition(status, ARCHIVED_CONDITION)
    return condition is not None and condition.get("status") == "True"


def with_archived_condition(status: Mapping[str, Any], state: str, reason: str, message: str, generation: int,
                            now: dt.datetime) -> dict[str, Any]:
    """``status`` with its ``Archived`` condition set (the others kept as they are)."""
    previous = [c for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    archived = merge_conditions([(ARCHIVED_CONDITION, state, reason, message)], previous, generation, now)
    others = [dict(c) for c in previous if c.get("type") != ARCHIVED_CONDITION]
    return {**status, "conditions": [*others, *archived]}


def _time(ms: Any) -> dt.datetime | None:
    if isinstance(ms, int) and not isinstance(ms, bool) and ms > 0:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return None


def archive_record(obj: Mapping[str, Any]) -> ArchivedWorkflow:
    """What the archive keeps of a finished Workflow: the object with its task list and output decoded,
    without managedFields, kubectl's last-applied copy or Kopf's bookkeeping. Raises StatusError when the
    status cannot be decoded."""
    meta = obj.get("metadata") or {}
    status = dict(obj.get("status") or {})
    tasks = tasks_from_status(status)
    output = output_from_status(status)
    status.pop("tasksCompressed", None)
    status.pop("outputCompressed", None)
    status["tasks"] = tasks
    if output or "output" in status:
        status["output"] = output
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k not in _DROPPED_ANNOTATIONS and not k.startswith(r.KOPF_ANNOTATION_PREFIX)}
    kept_meta = {k: meta[k] for k in ("name", "namespace", "uid", "labels", "creationTimestamp", "ownerReferences",
                                      "generation") if k in meta}
    if annotations:
        kept_meta["annotations"] = annotations
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    end = finished_ms(obj)
    created = _parse_stamp_ms(meta.get("creationTimestamp"))
    version = status.get("workflowVersion")
    return ArchivedWorkflow(
        uid=str(meta.get("uid")),
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        phase=str(status.get("phase")),
        finished_at=_time(end) or dt.datetime.now(dt.UTC),
        definition_name=status.get("workflowName") if isinstance(status.get("workflowName"), str) else None,
        definition_version=version if isinstance(version, int) and not isinstance(version, bool) else None,
        parent_uid=labels.get(r.LABEL_PARENT_UID),
        labels=labels,
        created_at=_time(created),
        started_at=_time(status.get("startTime")),
        workflow={"apiVersion": r.API_VERSION, "kind": r.WORKFLOW_KIND, "metadata": kept_meta,
                  "spec": dict(obj.get("spec") or {}), "status": status},
    )


# ------------------------------------------------------------------------------------------------ I/O
class Retention:
    """Archives finished Workflows and deletes them when their TTL has run out (see the module docstring)."""

    def __init__(self, api: KubeClient, view: ClusterView, metrics: Metrics, events: EventRecorder,
                 clock: Callable[[], int], observe: Callable[[Mapping[str, Any]], bool],
                 default_ttl: TTLStrategy | None = None, archive: ArchiveWriter | None = None) -> None:
        self.api = api
        self.view = view
        self.metrics = metrics
        self.events = events
        self.clock = clock
        self.observe = observe
        self.default_ttl = default_ttl
        self.archive = archive
        #: uids of finished workflows the archive could not take yet (``kondukt_archive_pending``).
        self._pending: set[str] = set()

    def wants(self, obj: Mapping[str, Any]) -> bool:
        """Whether a finished Workflow still has something to do here (be archived, or be deleted)."""
        status = obj.get("status") or {}
        if status.get("phase") not in TERMINAL_PHASES:
            return False
        if self.archive is not None and not is_archived(status):
            return True
        return deletion_due_ms(obj, self.default_ttl) is not None

    def forget(self, uid: str) -> None:
        if uid in self._pending:
            self._pending.discard(uid)
            self.metrics.archive_pending.set(len(self._pending))

    async def settle(self, obj: Mapping[str, Any], owner: OwnerRef) -> Outcome | None:
        """Archive (when on), then delete when due. Returns when to come back (None: nothing left to do, or
        an event will bring it back).
        Raises :class:`TransientError` while the archive is unavailable (the work queue retries with backoff)."""
        if self.archive is not None and not is_archived(obj.get("status") or {}):
            obj = await self._archive(obj, owner)
        due = deletion_due_ms(obj, self.default_ttl)
        if due is None:
            return None
        if self.clock() < due:
            return Outcome(wake_at_ms=due)
        if self.archive is not None:
            waiting = [c.name for c in self.view.children_of(owner.namespace, owner.uid) if not c.archived]
            if waiting:  # a child's Archived condition wakes this parent (its watch event enqueues the parent)
                logger.info("workflow %s/%s: its TTL ran out; deleting it once its children %s are archived",
                            owner.namespace, owner.name, ", ".join(sorted(waiting)[:5]))
                return None
        await self._delete(owner)
        return None

    async def _archive(self, obj: Mapping[str, Any], owner: OwnerRef) -> Mapping[str, Any]:
        assert self.archive is not None
        try:
            record = archive_record(obj)
        except StatusError as err:  # nothing a retry changes: archive what is readable, say so
            logger.warning("workflow %s/%s: archiving it without its task list: %s", owner.namespace, owner.name, err)
            bare = {**obj, "status": {k: v for k, v in (obj.get("status") or {}).items()
                                      if k not in ("tasksCompressed", "outputCompressed")}}
            record = archive_record(bare)
        try:
            await self.archive.archive(record)
        except ArchiveError as err:
            self.metrics.archive_writes.labels("failed").inc()
            self.metrics.archive_up.set(0)
            if owner.uid not in self._pending:
                self._pending.add(owner.uid)
                self.metrics.archive_pending.set(len(self._pending))
            status = obj.get("status") or {}
            message = (f"the workflow archive cannot be written ({err}); archiving and deletion wait, "
                       f"retrying with backoff")
            current = _condition(status, ARCHIVED_CONDITION)
            if current is None or current.get("reason") != "ArchiveUnavailable":
                await self._write_condition(obj, owner, "False", "ArchiveUnavailable", message)
                self.events.record(owner, "Warning", "ArchiveUnavailable", message)
            raise TransientError(f"archive: {err}") from None
        self.metrics.archive_writes.labels("archived").inc()
        self.metrics.archive_up.set(1)
        self.forget(owner.uid)
        written = await self._write_condition(obj, owner, "True", "Archived", "archived in the workflow archive")
        logger.info("workflow %s/%s archived", owner.namespace, owner.name)
        return written

    async def _write_condition(self, obj: Mapping[str, Any], owner: OwnerRef, state: str, reason: str,
                               message: str) -> Mapping[str, Any]:
        """Write the Archived condition (PUT with the resourceVersion read: a Conflict requeues the reconcile,
        which archives again — into the same row)."""
        meta = obj.get("metadata") or {}
        status = with_archived_condition(obj.get("status") or {}, state, reason, message,
                                         int(meta.get("generation") or 1), dt.datetime.now(dt.UTC))
        written = await self.api.replace_status(owner.namespace, owner.name, str(meta.get("resourceVersion")),
                                                status)
        self.observe(written)
        return written

    async def _delete(self, owner: OwnerRef) -> None:
        """DELETE the Workflow (only this uid: a new Workflow of the same name is not touched); its Jobs and
        children go with it through their owner references."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background",
                "preconditions": {"uid": owner.uid}}
        what = f"workflow {owner.namespace}/{owner.name}"
        try:
            await self.api.request("DELETE", KubeClient.workflow_path(owner.namespace, owner.name), body=body,
                                   what=what)
        except (NotFound, Conflict):  # gone already, or another Workflow of that name now
            return
        self.metrics.workflows_deleted.inc()
        logger.info("workflow %s/%s deleted: its TTL ran out", owner.namespace, owner.name)
