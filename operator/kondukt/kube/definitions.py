"""TaskDefs and WorkflowDefs report their health: the checks admission cannot do, in their ``status``.

The CRD schemas and CEL rules check each definition alone. What needs other objects is checked here, by
the operator, from its caches: a WorkflowDef's SIMPLE tasks name TaskDefs that exist; its SUB_WORKFLOW
tasks name WorkflowDefs (name and version) that exist; its ``failureWorkflow`` exists; and, once all
references resolve, the engine's full validation (:func:`kondukt.engine.validation.validate`, what a run
would hit at its start) passes. A TaskDef is checked alone (its fields the engine validates).

The result is ``status.observedGeneration`` and the conditions of :mod:`kondukt.kube.conditions`:

- ``Ready=True`` when the definition can run;
- ``Ready=False`` naming each missing reference (``TaskDefNotFound`` / ``WorkflowDefNotFound``) — a GitOps
  tool applies a repository's objects in any order, so this is waited out, not a failure (kstatus:
  InProgress);
- ``Ready=False`` and ``Stalled=True`` (``InvalidDefinition``) when only a change of the definition helps
  (kstatus: Failed).

A definition is checked again whenever it changes and whenever something it references appears, changes
or disappears: the WorkflowDefs' references are a Kopf index (referenced name -> referrers,
:func:`index_references`), so a TaskDef created later makes the WorkflowDefs naming it Ready without
anyone touching them. Checks run on a work queue of their own (one at a time per definition), only on
the leader, and write only when the status would change. Deciding is pure (:func:`taskdef_health`,
:func:`workflowdef_health`, :func:`definition_status`); :class:`DefinitionHealth` is the thin I/O around it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from kondukt.engine.models import Blueprint, TaskDef, TaskType, WorkflowDef, WorkflowTask
from kondukt.engine.validation import validate, validate_task_def, walk_tasks
from kondukt.kube import conditions
from kondukt.kube import resources as r
from kondukt.kube.cache import (
    ClusterView,
    TaskDefRecord,
    WorkflowDefRecord,
    pick_workflow_def,
    taskdef_record,
    workflowdef_record,
)
from kondukt.kube.kubeapi import ApiError, Conflict, KubeClient, NotFound, NotLeader, TransientApiError
from kondukt.kube.workqueue import WorkQueue

logger = logging.getLogger(__name__)

#: A definition's key: (plural, namespace, resource name).
DefinitionKey = tuple[str, str, str]

#: How many problems a message lists (the rest are counted).
SHOWN_PROBLEMS: Final = 5
MAX_MESSAGE: Final = 1000


@dataclass(frozen=True)
class Health:
    """What a definition's check found: whether it is Ready, why (a CamelCase reason), and what to do."""

    ready: bool
    reason: str
    message: str
    #: Only a change of the definition itself helps (kstatus: Failed).
    stalled: bool = False


# ------------------------------------------------------------------------------------- references
def _sub_workflow(task: WorkflowTask) -> tuple[str, int | None] | None:
    """The WorkflowDef (name, version) a SUB_WORKFLOW task names; None for an inline definition."""
    params = task.subWorkflowParam
    if task.type != TaskType.SUB_WORKFLOW.value or params is None or params.workflowDefinition is not None:
        return None
    return (params.name, params.version) if params.name else None


def referenced_task_defs(definition: WorkflowDef) -> Iterator[tuple[str, WorkflowTask]]:
    """(TaskDef name, task) for every SIMPLE task without an inline taskDefinition, nested ones included."""
    for _, task in walk_tasks(definition.tasks):
        if task.type == TaskType.SIMPLE.value and task.taskDefinition is None and task.name:
            yield task.name, task


def referenced_workflow_defs(definition: WorkflowDef) -> Iterator[tuple[str, int | None, WorkflowTask | None]]:
    """(WorkflowDef name, version, the SUB_WORKFLOW task or None for the failureWorkflow)."""
    for _, task in walk_tasks(definition.tasks):
        named = _sub_workflow(task)
        if named is not None:
            yield named[0], named[1], task
    if definition.failureWorkflow:
        yield definition.failureWorkflow, None, None


def index_references(body: Mapping[str, Any]) -> dict[tuple[str, ...], str]:
    """A WorkflowDef under every name it references: ``("td", ns, TaskDef name)`` and ``("wd", ns,
    WorkflowDef name)`` -> its resource name (Kopf index: referenced name -> referrers)."""
    record = workflowdef_record(body)
    if record.definition is None:
        return {}
    keys: dict[tuple[str, ...], str] = {}
    for name, _ in referenced_task_defs(record.definition):
        keys[("td", record.namespace, name)] = record.resource_name
    for name, _, _ in referenced_workflow_defs(record.definition):
        keys[("wd", record.namespace, name)] = record.resource_name
    return keys


# ------------------------------------------------------------------------------------------ checks
def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:SHOWN_PROBLEMS])
    more = f" (and {len(items) - SHOWN_PROBLEMS} more)" if len(items) > SHOWN_PROBLEMS else ""
    text = shown + more
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def taskdef_health(record: TaskDefRecord) -> Health:
    """A TaskDef alone: its spec reads as a TaskDef and passes the engine's checks."""
    if record.task_def is None:
        return Health(False, "InvalidDefinition", record.problem or "invalid TaskDef", stalled=True)
    problems = validate_task_def(record.task_def)
    if problems:
        return Health(False, "InvalidDefinition", _listed([f"spec.{p}" for p in problems]), stalled=True)
    return Health(True, "Ready", f"TaskDef {record.name!r} can be used")


def workflowdef_health(record: WorkflowDefRecord, view: ClusterView, task_defs: Mapping[str, TaskDef]) -> Health:
    """A WorkflowDef against what the namespace holds: ``task_defs`` (the usable TaskDefs by Conductor
    name) and the WorkflowDefs in ``view``. Missing references first (they may still appear), then the
    engine's validation of the whole definition."""
    definition = record.definition
    if definition is None:
        return Health(False, "InvalidDefinition", record.problem or "invalid WorkflowDef", stalled=True)
    namespace = record.namespace
    present = {rec.name: rec for rec in view.task_defs(namespace)}
    missing: list[str] = []
    reasons: list[str] = []
    for name, task in referenced_task_defs(definition):
        if name in task_defs:
            continue
        found = present.get(name)
        what = (f"TaskDef {name!r} is invalid ({found.problem})" if found is not None and found.problem
                else f"TaskDef {name!r} not found")
        missing.append(f"task {task.taskReferenceName!r}: {what}")
        reasons.append("TaskDefNotFound")
    for name, version, sub in referenced_workflow_defs(definition):
        if pick_workflow_def(view.workflow_defs(namespace, name), version) is not None:
            continue
        wanted = f"WorkflowDef {name!r}" + (f" version {version}" if version is not None else "")
        place = f"task {sub.taskReferenceName!r}" if sub is not None else "failureWorkflow"
        missing.append(f"{place}: {wanted} not found")
        reasons.append("WorkflowDefNotFound")
    if missing:
        reason = reasons[0] if len(set(reasons)) == 1 else "ReferencesNotFound"
        return Health(False, reason, f"{_listed(missing)} in namespace {namespace}")
    problems = validate(Blueprint(workflow=definition, taskDefs=dict(task_defs)))
    if problems:
        return Health(False, "InvalidDefinition", _listed([str(p) for p in problems]), stalled=True)
    return Health(True, "Ready", f"every reference of WorkflowDef {record.name!r} version {record.version} resolves")


def definition_status(health: Health, generation: int, previous: Mapping[str, Any] | None,
                      now: dt.datetime) -> dict[str, Any]:
    """The ``status`` of a definition whose check found ``health``."""
    wanted = conditions.health(ready="True" if health.ready else "False", reason=health.reason,
                               message=health.message, stalled=health.stalled)
    before = (previous or {}).get("conditions") or []
    return {"observedGeneration": generation, "conditions": conditions.merge(wanted, before, generation, now)}


def status_changed(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    current = current or {}
    return current.get("observedGeneration") != wanted["observedGeneration"] or not conditions.same(
        current.get("conditions"), wanted["conditions"])


# ------------------------------------------------------------------------------------------ the I/O
def _name_of(body: Mapping[str, Any]) -> str:
    """The Conductor name: ``spec.name``, defaulting to ``metadata.name``."""
    spec = body.get("spec")
    name = spec.get("name") if isinstance(spec, Mapping) else None
    return str(name or (body.get("metadata") or {}).get("name"))


class DefinitionHealth:
    """Keeps the definitions' status true: a work queue of definition keys, fed by their watch events."""

    def __init__(self, api: KubeClient, view: ClusterView, task_defs: Callable[[str], dict[str, TaskDef]],
                 *, ready: asyncio.Event | None = None, workers: int = 2,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.api = api
        self.view = view
        self.task_defs = task_defs
        self.clock = clock
        #: Whether this replica may write now (it holds the Lease); None: always.
        self.leading: Callable[[], bool] | None = None
        self.queue: WorkQueue[DefinitionKey] = WorkQueue(self.check, workers=workers, ready=ready)
        self._bodies: dict[DefinitionKey, Mapping[str, Any]] = {}
        self._names: dict[DefinitionKey, str] = {}  # the Conductor name each was last seen under

    def observe(self, plural: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A TaskDef or WorkflowDef changed (or went): check it, and every WorkflowDef naming it."""
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace"))
        key = (plural, namespace, str(meta.get("name")))
        name = _name_of(body)
        names = {name, self._names.get(key, name)}  # a renamed definition: the referrers of both names
        if event_type == "DELETED":
            self._bodies.pop(key, None)
            self._names.pop(key, None)
        else:
            self._bodies[key] = body
            self._names[key] = name
            self.queue.add(key)
        kind = "td" if plural == r.TASKDEF_PLURAL else "wd"
        for referenced in names:
            for referrer in self.view.referrers(namespace, kind, referenced):
                self.queue.add((r.WORKFLOWDEF_PLURAL, namespace, referrer))

    def lead(self) -> None:
        """This replica just became the leader: check every definition it knows."""
        for key in list(self._bodies):
            self.queue.add(key)

    async def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()

    def health(self, plural: str, body: Mapping[str, Any]) -> Health:
        if plural == r.TASKDEF_PLURAL:
            return taskdef_health(taskdef_record(body))
        record = workflowdef_record(body)
        return workflowdef_health(record, self.view, self.task_defs(record.namespace))

    async def check(self, key: DefinitionKey) -> None:
        """The work queue's handler: compute the definition's health, write its status if it changed."""
        if self.leading is not None and not self.leading():
            return
        body = self._bodies.get(key)
        if body is None:
            return
        plural, namespace, name = key
        meta = body.get("metadata") or {}
        status = definition_status(self.health(plural, body), int(meta.get("generation") or 1),
                                   body.get("status"), self.clock())
        if not status_changed(body.get("status"), status):
            return
        path = f"/apis/{r.GROUP}/{r.VERSION}/namespaces/{namespace}/{plural}/{name}/status"
        patch = {"metadata": {"resourceVersion": str(meta.get("resourceVersion", ""))}, "status": status}
        try:
            written = await self.api.merge_patch(path, patch, f"{plural} {namespace}/{name} status")
        except (Conflict, NotFound):
            return  # it moved on (its watch event brings the newer version and checks again) or is gone
        except TransientApiError as err:
            delay = self.queue.add_rate_limited(key, at_least=err.retry_after or 0.0)
            logger.log(logging.INFO if isinstance(err, NotLeader) else logging.WARNING,  # a handover: expected
                       "%s %s/%s: writing its status failed (%s); again in %.1fs", plural, namespace, name, err, delay)
            return
        except ApiError as err:
            logger.warning("%s %s/%s: its status could not be written: %s", plural, namespace, name, err)
            return
        self.queue.forget(key)
        if self._bodies.get(key) is body:  # the watch's echo brings the same; this spares a re-check of it
            self._bodies[key] = written
