"""The records the reconcile reads besides the Workflow: Jobs, pods, child Workflows, TaskDefs, WorkflowDefs.

Each ``index_*`` function turns one object into small immutable records under a few keys. Two kinds of
watch keep them current, replacing an object's records on every event and dropping them when it is deleted:
the lightweight informers of :mod:`kondukt.kube.informer` for the attempts' Jobs and pods (the busiest
kinds), and Kopf's indexes (``kopf.index``) for child Workflows, TaskDefs and WorkflowDefs (and the
names WorkflowDefs reference, for :mod:`kondukt.kube.definitions`). The work queue
starts only once the first listing of every kind is indexed, so the first reconcile after a start never
mistakes "not listed yet" for "gone". :class:`ClusterView` is the reconcile's read-only access to them.

The records hold only what the operator needs (a Job's conditions, a pod's termination message, a
child's phase and output), so memory stays small with thousands of attempts. Nothing here talks to the
API or decides anything.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pydantic

from kondukt.engine.models import TaskDef, WorkflowDef
from kondukt.kube import resources as r
from kondukt.kube.status import StatusError, output_from_status

logger = logging.getLogger(__name__)

# Index ids (Kopf passes each index to handlers under this name).
JOBS_INDEX = "kondukt_jobs"
PODS_INDEX = "kondukt_pods"
CHILDREN_INDEX = "kondukt_children"
TASKDEFS_INDEX = "kondukt_taskdefs"
WORKFLOWDEFS_INDEX = "kondukt_workflowdefs"
#: WorkflowDefs by the names they reference (kondukt.kube.definitions.index_references).
REFERENCES_INDEX = "kondukt_references"


# ------------------------------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class JobRecord:
    """One task attempt's Job, as far as the operator cares (slots, and the strings every attempt of a workflow
    shares interned: a 10,000-branch fork keeps 10,000 of these and 10,000 pod records)."""

    name: str
    namespace: str
    workflow_name: str
    workflow_uid: str
    task_id: str
    task_def: str
    dispatched_at_ms: int
    succeeded: bool = False
    failed: bool = False
    failure_reason: str | None = None
    failure_message: str | None = None
    deleting: bool = False

    @property
    def finished(self) -> bool:
        return self.succeeded or self.failed or self.deleting


@dataclass(frozen=True, slots=True)
class PodRecord:
    """The pod of an attempt: whether its worker started, and its termination state and message."""

    name: str
    namespace: str
    job_name: str
    workflow_name: str
    workflow_uid: str
    task_id: str
    phase: str
    task_def: str = ""
    started: bool = False
    terminated: bool = False
    exit_code: int | None = None
    termination_reason: str | None = None
    message: str | None = None
    waiting_reason: str | None = None
    waiting_message: str | None = None
    deleting: bool = False


@dataclass(frozen=True)
class ChildRecord:
    """A Workflow started by another one (SUB_WORKFLOW child): its progress, for its parent."""

    name: str
    namespace: str
    uid: str
    parent_uid: str
    parent_name: str
    parent_task_id: str
    phase: str | None
    output: Mapping[str, Any] = field(default_factory=dict, compare=False)
    reason: str | None = None
    resource_version: str = ""
    #: Its ``Archived`` condition is True (the parent's TTL waits for this when the archive is on).
    archived: bool = False


@dataclass(frozen=True)
class TaskDefRecord:
    namespace: str
    resource_name: str
    name: str
    resource_version: str
    task_def: TaskDef | None = field(compare=False)
    problem: str | None = None


@dataclass(frozen=True)
class WorkflowDefRecord:
    namespace: str
    resource_name: str
    name: str
    version: int
    resource_version: str
    definition: WorkflowDef | None = field(compare=False)
    problem: str | None = None


# ----------------------------------------------------------------------------------------- helpers
def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _labels(body: Mapping[str, Any]) -> Mapping[str, str]:
    labels = _meta(body).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def _annotations(body: Mapping[str, Any]) -> Mapping[str, str]:
    annotations = _meta(body).get("annotations")
    return annotations if isinstance(annotations, Mapping) else {}


def _int(text: Any, default: int = 0) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def parse_time_ms(stamp: Any) -> int:
    """A Kubernetes timestamp (RFC 3339) in ms since the epoch; 0 when absent or unreadable."""
    if not isinstance(stamp, str) or not stamp:
        return 0
    try:
        return int(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return 0


def owner_workflow_name(body: Mapping[str, Any]) -> str | None:
    """The name of the Workflow that controls ``body`` (owner reference), if any."""
    for ref in _meta(body).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("kind") == r.WORKFLOW_KIND and str(
            ref.get("apiVersion", "")
        ).startswith(r.GROUP + "/"):
            return str(ref.get("name"))
    return None


# -------------------------------------------------------------------------------- index functions
def job_record(body: Mapping[str, Any]) -> JobRecord | None:
    labels, annotations, meta = _labels(body), _annotations(body), _meta(body)
    uid = labels.get(r.LABEL_WORKFLOW_UID)
    task_id = annotations.get(r.ANNOTATION_TASK_ID)
    if not uid or not task_id:
        return None
    status = body.get("status") or {}
    succeeded = failed = False
    reason = message = None
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        kind = condition.get("type")
        if kind == "Complete":
            succeeded = True
        elif kind == "Failed":
            failed = True
            reason, message = condition.get("reason"), condition.get("message")
    return JobRecord(
        name=str(meta.get("name")),
        namespace=sys.intern(str(meta.get("namespace"))),
        workflow_name=sys.intern(annotations.get(r.ANNOTATION_WORKFLOW) or owner_workflow_name(body) or ""),
        workflow_uid=sys.intern(uid),
        task_id=task_id,
        task_def=sys.intern(annotations.get(r.ANNOTATION_TASK_DEF) or labels.get(r.LABEL_TASK_DEF, "")),
        dispatched_at_ms=_int(annotations.get(r.ANNOTATION_DISPATCHED_AT))
        or parse_time_ms(meta.get("creationTimestamp")),
        succeeded=succeeded,
        failed=failed,
        failure_reason=reason,
        failure_message=message,
        deleting=bool(meta.get("deletionTimestamp")),
    )


def index_job(body: Mapping[str, Any]) -> dict[tuple[str, ...], JobRecord]:
    """Jobs by workflow (``("wf", ns, uid)``) and by TaskDef (``("td", ns, name)``, for limits)."""
    record = job_record(body)
    if record is None:
        return {}
    return {
        ("wf", record.namespace, record.workflow_uid): record,
        ("td", record.namespace, record.task_def): record,
    }


def pod_record(body: Mapping[str, Any]) -> PodRecord | None:
    labels, annotations, meta = _labels(body), _annotations(body), _meta(body)
    uid = labels.get(r.LABEL_WORKFLOW_UID)
    task_id = annotations.get(r.ANNOTATION_TASK_ID)
    job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
    if not uid or not task_id or not job:
        return None
    status = body.get("status") or {}
    started = terminated = False
    exit_code: int | None = None
    reason = message = waiting_reason = waiting_message = None
    for container in status.get("containerStatuses") or []:
        if container.get("name") != r.WORKER_CONTAINER:
            continue
        state = container.get("state") or {}
        if "running" in state:
            started = True
        if "terminated" in state:
            started = terminated = True
            done = state["terminated"] or {}
            exit_code = _int(done.get("exitCode"), 0)
            reason = done.get("reason")
            message = done.get("message")
        if "waiting" in state:
            waiting = state["waiting"] or {}
            waiting_reason, waiting_message = waiting.get("reason"), waiting.get("message")
    phase = str(status.get("phase") or "Pending")
    return PodRecord(
        name=str(meta.get("name")),
        namespace=sys.intern(str(meta.get("namespace"))),
        job_name=job,
        workflow_name=sys.intern(annotations.get(r.ANNOTATION_WORKFLOW, "")),
        workflow_uid=sys.intern(uid),
        task_id=task_id,
        phase=sys.intern(phase),
        task_def=sys.intern(annotations.get(r.ANNOTATION_TASK_DEF, "")),
        started=started,
        terminated=terminated and phase in ("Succeeded", "Failed"),
        exit_code=exit_code,
        termination_reason=reason,
        message=message,
        waiting_reason=waiting_reason,
        waiting_message=waiting_message,
        deleting=bool(meta.get("deletionTimestamp")),
    )


def index_pod(body: Mapping[str, Any]) -> dict[tuple[str, ...], PodRecord]:
    """Attempt pods by workflow (``("wf", ns, uid)``) and by Job (``("job", ns, name)``)."""
    record = pod_record(body)
    if record is None:
        return {}
    return {
        ("wf", record.namespace, record.workflow_uid): record,
        ("job", record.namespace, record.job_name): record,
    }


def child_record(body: Mapping[str, Any]) -> ChildRecord | None:
    labels, annotations, meta = _labels(body), _annotations(body), _meta(body)
    parent_uid = labels.get(r.LABEL_PARENT_UID)
    task_id = annotations.get(r.ANNOTATION_PARENT_TASK_ID)
    if not parent_uid or not task_id:
        return None
    status = body.get("status") or {}
    output: Any = status.get("output")
    if status.get("outputCompressed") and status.get("phase") in ("COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED"):
        try:
            output = output_from_status(status)
        except StatusError:
            output = {}
    return ChildRecord(
        name=str(meta.get("name")),
        namespace=str(meta.get("namespace")),
        uid=str(meta.get("uid")),
        parent_uid=parent_uid,
        parent_name=annotations.get(r.ANNOTATION_WORKFLOW) or owner_workflow_name(body) or "",
        parent_task_id=task_id,
        phase=status.get("phase"),
        output=output if isinstance(output, Mapping) else {},
        reason=status.get("reasonForIncompletion"),
        resource_version=str(meta.get("resourceVersion", "")),
        archived=any(isinstance(c, Mapping) and c.get("type") == "Archived" and c.get("status") == "True"
                     for c in status.get("conditions") or []),
    )


def index_child(body: Mapping[str, Any]) -> dict[tuple[str, ...], ChildRecord]:
    """Child Workflows by parent (``("wf", ns, parent uid)``)."""
    record = child_record(body)
    if record is None:
        return {}
    return {("wf", record.namespace, record.parent_uid): record}


def _problem_text(err: pydantic.ValidationError) -> str:
    first = err.errors()[0]
    place = ".".join(str(p) for p in first.get("loc", ())) or "spec"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"spec.{place}: {first.get('msg')}{more}"


def taskdef_record(body: Mapping[str, Any]) -> TaskDefRecord:
    meta = _meta(body)
    spec = dict(body.get("spec") or {})
    spec.setdefault("name", meta.get("name"))
    task_def: TaskDef | None = None
    problem = None
    try:
        task_def = TaskDef.model_validate(spec)
    except pydantic.ValidationError as err:
        problem = f"TaskDef {meta.get('name')}: {_problem_text(err)}"
    return TaskDefRecord(
        namespace=str(meta.get("namespace")),
        resource_name=str(meta.get("name")),
        name=str(spec.get("name")),
        resource_version=str(meta.get("resourceVersion", "")),
        task_def=task_def,
        problem=problem,
    )


def index_taskdef(body: Mapping[str, Any]) -> dict[tuple[str, ...], TaskDefRecord]:
    record = taskdef_record(body)
    return {("ns", record.namespace): record}


def workflowdef_record(body: Mapping[str, Any]) -> WorkflowDefRecord:
    meta = _meta(body)
    spec = dict(body.get("spec") or {})
    spec.setdefault("name", meta.get("name"))
    definition: WorkflowDef | None = None
    problem = None
    try:
        definition = WorkflowDef.model_validate(spec)
    except pydantic.ValidationError as err:
        problem = f"WorkflowDef {meta.get('name')}: {_problem_text(err)}"
    return WorkflowDefRecord(
        namespace=str(meta.get("namespace")),
        resource_name=str(meta.get("name")),
        name=str(spec.get("name")),
        version=definition.version if definition is not None else _int(spec.get("version"), 1),
        resource_version=str(meta.get("resourceVersion", "")),
        definition=definition,
        problem=problem,
    )


def index_workflowdef(body: Mapping[str, Any]) -> dict[tuple[str, ...], WorkflowDefRecord]:
    record = workflowdef_record(body)
    return {("name", record.namespace, record.name): record}


# ------------------------------------------------------------------------------------------ the view
class IndexLike(Protocol):
    """What Kopf's ``kopf.Index`` offers (and a plain dict of lists, in tests)."""

    def __contains__(self, key: object) -> bool: ...
    def __getitem__(self, key: Any) -> Iterable[Any]: ...


class ClusterView:
    """Read-only access to the indexes, shaped for the reconcile."""

    def __init__(self, indices: Mapping[str, IndexLike]) -> None:
        self._indices = indices

    def _get(self, index: str, key: tuple[str, ...]) -> Iterator[Any]:
        store = self._indices.get(index)
        if store is None or key not in store:
            return iter(())
        return iter(list(store[key]))

    def jobs_of(self, namespace: str, workflow_uid: str) -> list[JobRecord]:
        return list(self._get(JOBS_INDEX, ("wf", namespace, workflow_uid)))

    def jobs_of_task_def(self, namespace: str, task_def: str) -> list[JobRecord]:
        return list(self._get(JOBS_INDEX, ("td", namespace, task_def)))

    def pods_of(self, namespace: str, workflow_uid: str) -> list[PodRecord]:
        return list(self._get(PODS_INDEX, ("wf", namespace, workflow_uid)))

    def pods_of_job(self, namespace: str, job_name: str) -> list[PodRecord]:
        return list(self._get(PODS_INDEX, ("job", namespace, job_name)))

    def children_of(self, namespace: str, workflow_uid: str) -> list[ChildRecord]:
        return list(self._get(CHILDREN_INDEX, ("wf", namespace, workflow_uid)))

    def task_defs(self, namespace: str) -> list[TaskDefRecord]:
        return list(self._get(TASKDEFS_INDEX, ("ns", namespace)))

    def workflow_defs(self, namespace: str, name: str) -> list[WorkflowDefRecord]:
        return list(self._get(WORKFLOWDEFS_INDEX, ("name", namespace, name)))

    def referrers(self, namespace: str, kind: str, name: str) -> list[str]:
        """The WorkflowDefs (resource names) referencing the TaskDef (``kind`` "td") or WorkflowDef ("wd")
        called ``name``."""
        return sorted(set(self._get(REFERENCES_INDEX, (kind, namespace, name))))


def pick_workflow_def(records: Iterable[WorkflowDefRecord], version: int | None) -> WorkflowDefRecord | None:
    """The requested version, or the highest when ``version`` is None."""
    candidates = [rec for rec in records if version is None or rec.version == version]
    if not candidates:
        return None
    return max(candidates, key=lambda rec: (rec.version, rec.resource_name))
