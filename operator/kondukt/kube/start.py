"""Starting a Workflow's run, and ending FAILED a Workflow that cannot run at all.

A new Workflow's first reconcile finds its definition (inline, or the WorkflowDef it names: from the
informer's cache, else from the API once) and the TaskDefs its SIMPLE tasks need, validates them and
builds the engine's initial state. GitOps tools apply a Workflow together with its definitions and the
watches deliver them in any order, so a missing definition is waited for (a waiting status, a wake-up
when definitions appear, a deadline) before the run fails. A run that cannot start, and a Workflow whose
status or spec cannot be used, is written FAILED here with a condition reason and an Event.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kondukt.engine import new_workflow
from kondukt.engine.models import (
    Blueprint,
    TaskDef,
    TaskType,
    Workflow,
    WorkflowDef,
    WorkflowSpec,
    WorkflowStatus,
    WorkflowTask,
)
from kondukt.engine.validation import validate
from kondukt.kube import resources as r
from kondukt.kube.builders import OwnerRef
from kondukt.kube.cache import (
    ClusterView,
    WorkflowDefRecord,
    parse_time_ms,
    pick_workflow_def,
    workflowdef_record,
)
from kondukt.kube.events import EventRecorder
from kondukt.kube.kubeapi import KubeClient, TooLarge
from kondukt.kube.memo import Memo, Outcome, WorkflowKey
from kondukt.kube.metrics import Metrics
from kondukt.kube.status import StoredStatus, build_status, build_waiting_status

logger = logging.getLogger(__name__)


def simple_task_names(tasks: Iterable[WorkflowTask]) -> set[str]:
    found: set[str] = set()
    for task in tasks:
        if task.type == TaskType.SIMPLE.value and task.taskDefinition is None:
            found.add(task.name)
        for nested in task.children():
            found |= simple_task_names(nested)
    return found


class Starter:
    """Starts runs for the :class:`~kondukt.kube.reconcile.Reconciler` (it owns the collaborators; this
    keeps the Workflows waiting for their definitions, by namespace)."""

    def __init__(
        self,
        api: KubeClient,
        view: ClusterView,
        events: EventRecorder,
        metrics: Metrics,
        clock: Callable[[], int],
        definition_grace_seconds: float,
        compress_over_bytes: int,
        task_defs: Callable[[str], dict[str, TaskDef]],
        observe: Callable[[Mapping[str, Any]], bool],
        memos: dict[str, Memo],
    ) -> None:
        self.api = api
        self.view = view
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.definition_grace_seconds = definition_grace_seconds
        self.compress_over_bytes = compress_over_bytes
        self.task_defs = task_defs
        self.observe = observe
        self.memos = memos
        #: Workflows waiting for their WorkflowDef / TaskDefs to appear, by namespace.
        self.waiting: dict[str, set[WorkflowKey]] = {}

    def waiters(self, namespace: str) -> set[WorkflowKey]:
        """The Workflows of ``namespace`` waiting for definitions (forgotten: they are reconciled now)."""
        return self.waiting.pop(namespace, set())

    def definition_deadline(self, obj: Mapping[str, Any]) -> int:
        created = parse_time_ms((obj.get("metadata") or {}).get("creationTimestamp"))
        return created + int(self.definition_grace_seconds * 1000)

    def young(self, obj: Mapping[str, Any]) -> bool:
        return self.clock() < self.definition_deadline(obj)

    async def find_workflow_def(self, namespace: str, name: str, version: int | None) -> WorkflowDefRecord | None:
        found = pick_workflow_def(self.view.workflow_defs(namespace, name), version)
        if found is not None:
            return found
        # Not in the cache: ask the API once (the cache may be a moment behind a kubectl apply).
        path = f"/apis/{r.GROUP}/{r.VERSION}/namespaces/{namespace}/{r.WORKFLOWDEF_PLURAL}"
        items = await self.api.list_items(path, f"WorkflowDefs in {namespace}")
        records = [workflowdef_record(item) for item in items]
        return pick_workflow_def([rec for rec in records if rec.name == name], version)

    async def definition_again(self, namespace: str, spec: WorkflowSpec, name: str) -> WorkflowDef | None:
        if spec.definition is not None:
            return spec.definition
        if spec.workflowDefRef is None:
            return None
        record = await self.find_workflow_def(namespace, spec.workflowDefRef.name, spec.workflowDefRef.version)
        return record.definition if record is not None else None

    async def start(
        self, obj: Mapping[str, Any], owner: OwnerRef, spec: WorkflowSpec, now: int, memo: Memo
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
            record = await self.find_workflow_def(namespace, ref.name, ref.version)
            version = f" version {ref.version}" if ref.version is not None else ""
            if record is None:
                message = f"WorkflowDef {ref.name!r}{version} not found in namespace {namespace}"
                if self.young(obj):
                    await self.wait_for_definitions(obj, owner, "WorkflowDefNotFound", message + " (waiting)", memo)
                    return None
                return self.failed_start(owner, spec, now, message, "WorkflowDefNotFound", None)
            if record.definition is None:
                return self.failed_start(owner, spec, now, record.problem or "invalid WorkflowDef",
                                          "InvalidDefinition", None)
            definition = record.definition
        else:
            return self.failed_start(owner, spec, now, "spec needs workflowDefRef or definition", "InvalidSpec", None)

        task_defs = self.task_defs(namespace)
        missing = sorted(simple_task_names(definition.tasks) - set(task_defs))
        if missing and self.young(obj):
            await self.wait_for_definitions(
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
            return self.failed_start(owner, spec, now, f"invalid workflow definition: {shown}{more}", reason,
                                      definition)
        workflow = new_workflow(
            blueprint, owner.uid, spec.input, now, correlation_id=spec.correlationId,
            parent_workflow_id=spec.parentWorkflowId, parent_workflow_task_id=spec.parentWorkflowTaskId,
        )
        return workflow, definition, None

    def failed_start(
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

    async def write_failed_start(
        self, obj: Mapping[str, Any], owner: OwnerRef, workflow: Workflow, definition: WorkflowDef | None,
        reason: str, memo: Memo,
    ) -> Outcome:
        meta = obj.get("metadata") or {}
        status = build_status(workflow, definition, generation=int(meta.get("generation") or 1),
                              observed_suspend=False, previous_conditions=memo.stored.conditions,
                              now=dt.datetime.now(dt.UTC), reason_override=reason,
                              compress_over_bytes=self.compress_over_bytes)
        try:
            await self.api.replace_status(owner.namespace, owner.name, str(meta.get("resourceVersion")), status)
        except TooLarge:  # the copy of a huge spec.input (or definition): the spec keeps them anyway
            for key in ("input", "definition"):
                status.pop(key, None)
            await self.api.replace_status(owner.namespace, owner.name, str(meta.get("resourceVersion")), status)
        self.events.record(owner, "Warning", reason, workflow.reasonForIncompletion or reason)
        self.metrics.workflows.labels(workflow.status.value).inc()
        self.memos.pop(owner.uid, None)
        self.waiting.get(owner.namespace, set()).discard((owner.namespace, owner.name))
        return Outcome()

    async def wait_for_definitions(
        self, obj: Mapping[str, Any], owner: OwnerRef, reason: str, message: str, memo: Memo
    ) -> None:
        self.waiting.setdefault(owner.namespace, set()).add((owner.namespace, owner.name))
        meta = obj.get("metadata") or {}
        status = build_waiting_status(reason, message, generation=int(meta.get("generation") or 1),
                                      previous_conditions=memo.stored.conditions, now=dt.datetime.now(dt.UTC))
        if status != (obj.get("status") or {}):
            written = await self.api.replace_status(owner.namespace, owner.name, str(meta.get("resourceVersion")),
                                                    status)
            self.observe(written)
            memo.resource_version = str((written.get("metadata") or {}).get("resourceVersion"))
            memo.stored = StoredStatus(workflow=None, definition=None, conditions=tuple(status["conditions"]))

    async def fail_unstarted(
        self, obj: Mapping[str, Any], owner: OwnerRef, reason: str, message: str, memo: Memo | None
    ) -> Outcome:
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
        self.memos.pop(owner.uid, None)
        return Outcome()
