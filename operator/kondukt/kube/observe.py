"""What a reconcile observes before it calls ``decide`` (step 1 of :mod:`kondukt.kube.reconcile`).

The TaskDefs of a namespace (from the informer's cache, decoded once per change), the operations asked
for (``spec.suspend`` / ``spec.terminate`` edges and ``ops.kondukt.io/*`` annotations, each applied once
through the engine's nonce record), and the news about every attempt in flight: a Job and its pods
(:mod:`kondukt.kube.attempts`), a child Workflow, a started Workflow, an HTTP request or a jq evaluation
of the operator's own (:class:`~kondukt.kube.actions.Actor`). A missing Job or child gets a grace period
before it counts as lost (the watch may be behind a create).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pydantic

from kondukt.engine.decision import EvaluateScript, Operation, OperationKind, TaskUpdate
from kondukt.engine.models import Blueprint, Task, TaskDef, TaskStatus, TaskType, Workflow, WorkflowSpec
from kondukt.kube import attempts, names, opsannotations
from kondukt.kube import resources as r
from kondukt.kube.actions import Actor
from kondukt.kube.builders import OwnerRef
from kondukt.kube.cache import ClusterView, TaskDefRecord
from kondukt.kube.events import EventRecorder
from kondukt.kube.kubeapi import KubeClient
from kondukt.kube.memo import Memo, ReconcileSettings, TransientError
from kondukt.kube.status import StoredStatus
from kondukt_workers.payloads import resolve_result_payload
from kondukt_workers.storage import StorageError

logger = logging.getLogger(__name__)

#: Up to this many Jobs missing from the cache are looked up one GET each; more, with one LIST (names only).
CONFIRM_ONE_BY_ONE = 4


class Observer:
    """Gathers a workflow's observations for the :class:`~kondukt.kube.reconcile.Reconciler`."""

    def __init__(self, api: KubeClient, view: ClusterView, settings: ReconcileSettings, events: EventRecorder,
                 actor: Actor) -> None:
        self.api = api
        self.view = view
        self.settings = settings
        self.events = events
        self.actor = actor
        self._taskdef_cache: dict[str, tuple[tuple[tuple[str, str], ...], dict[str, TaskDef]]] = {}
        #: workflow uid -> task id -> when (ms) a GET found the attempt's Job that the cache did not show yet.
        #: A Job created late in a big fork (or a lagging watch) is asked about once per grace period, not
        #: in every reconcile until the watch delivers it.
        self._found_jobs: dict[str, dict[str, int]] = {}
        #: workflow uid -> (task id, ended) -> when (ms) this process first saw the attempt start or end, until a
        #: status write records it: a write deferred (``status_coalesce_ms``) records the time the news came, not
        #: the time of the write (a concurrency limit's next attempt may start in between).
        self._first_seen: dict[str, dict[tuple[str, bool], int]] = {}

    def forget(self, uid: str) -> None:
        """The workflow is gone or finished: drop what was remembered about its attempts."""
        self._found_jobs.pop(uid, None)
        self._first_seen.pop(uid, None)

    def seen(self, uid: str, task_id: str, *, ended: bool, at_ms: int) -> None:
        """The watch shows an attempt that started or ended (called as its event arrives, before any reconcile it
        wakes): its start or end is recorded at this time, so an attempt a limit let start in a reconcile woken by
        this very event never starts before the recorded end of the one it waited for."""
        self._first_seen.setdefault(uid, {}).setdefault((task_id, ended), at_ms)

    def recorded(self, uid: str, workflow: Workflow) -> None:
        """The workflow's status was written: the starts and ends it recorded need no first-seen time any more."""
        seen = self._first_seen.get(uid)
        if not seen:
            return
        state = {t.taskId: t.status for t in workflow.tasks}
        for task_id, ended in list(seen):
            status = state.get(task_id)
            if status is not None and (status.terminal if ended else status is not TaskStatus.SCHEDULED):
                del seen[(task_id, ended)]
        if not seen:
            del self._first_seen[uid]

    def task_defs(self, namespace: str) -> dict[str, TaskDef]:
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

    def operations(
        self, obj: Mapping[str, Any], spec: WorkflowSpec, stored: StoredStatus, workflow: Workflow, memo: Memo,
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

    async def task_updates(
        self, owner: OwnerRef, workflow: Workflow, blueprint: Blueprint, now: int, extra_wakes: list[int]
    ) -> list[TaskUpdate]:
        """News about every dispatched, unfinished attempt, each at the time this process first saw it."""
        updates = await self._task_updates(owner, workflow, blueprint, now, extra_wakes)
        if not updates:
            return updates
        seen = self._first_seen.setdefault(owner.uid, {})
        stamped = []
        for update in updates:
            if update.at is None and (update.started or update.status is not None):
                key = (update.taskId, update.status is not None and update.status.terminal)
                update = update.model_copy(update={"at": seen.setdefault(key, now)})
            stamped.append(update)
        return stamped

    async def _task_updates(
        self, owner: OwnerRef, workflow: Workflow, blueprint: Blueprint, now: int, extra_wakes: list[int]
    ) -> list[TaskUpdate]:
        active = [t for t in workflow.tasks if t.dispatched and not t.status.terminal]
        known = self.actor.results.get(owner.uid, {})
        updates: list[TaskUpdate] = list(known.values())
        found_before = self._found_jobs.pop(owner.uid, {})
        if not active:
            return updates
        found_jobs = {t.taskId: found_before[t.taskId] for t in active if t.taskId in found_before}
        if found_jobs:
            self._found_jobs[owner.uid] = found_jobs
        namespace, uid = owner.namespace, owner.uid
        # Only the unfinished attempts' Jobs and pods matter: late in a big fork almost all have ended.
        active_ids = {t.taskId for t in active}
        jobs = {job.task_id: job for job in self.view.jobs_of(namespace, uid) if job.task_id in active_ids}
        pods: dict[str, list[Any]] = {}
        for pod in self.view.pods_of(namespace, uid):
            if pod.task_id in active_ids:
                pods.setdefault(pod.task_id, []).append(pod)
        # Attempts with news: a pod that runs or ended, a Job that ended, a Job not seen (yet, or any more).
        newsworthy = {task_id for task_id, found in pods.items() if any(p.started for p in found)}
        newsworthy.update(task_id for task_id, job in jobs.items() if job.finished)
        children = {child.parent_task_id: child for child in self.view.children_of(namespace, uid)}
        grace = self.settings.job_missing_grace_ms
        unconfirmed: list[Task] = []
        for task in active:
            if task.taskId in known:
                continue
            if task.taskType == TaskType.JSON_JQ_TRANSFORM.value:
                evaluation = EvaluateScript.for_task(task)
                if evaluation is not None and (uid, task.taskId) not in self.actor.evaluations:
                    self.actor.evaluate_script(owner, evaluation)  # lost with a restart: evaluate it again (pure)
            elif task.taskType == TaskType.HTTP.value:
                if (uid, task.taskId) not in self.actor.http:
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
                    if now - found_jobs.get(task.taskId, now - grace - 1) <= grace:
                        continue  # it existed a moment ago; the watch has not delivered it yet
                    unconfirmed.append(task)
                elif observed.result is not None:
                    updates.append(await self._resolved(observed.result))
                elif task.taskId not in jobs:
                    extra_wakes.append((task.updateTime or task.scheduledTime) + grace + 1)
        if unconfirmed:
            updates += await self._confirm_missing(owner, unconfirmed, now, extra_wakes)
        return updates

    async def _confirm_missing(self, owner: OwnerRef, tasks: list[Task], now: int,
                               extra_wakes: list[int]) -> list[TaskUpdate]:
        """Attempts whose Job the cache has not shown for longer than the grace period: the API is asked whether
        the Jobs exist — a GET each when they are few, else one LIST of the workflow's Jobs (names only, in
        pages). In a big fork the watch can lag behind thousands of Job creates at once (the API server busy
        creating their pods), and a GET per Job, one after another, would hold the reconcile for thousands of
        round trips while nothing else of the workflow moves. A Job found is not asked about again for a grace
        period; an attempt whose Job is not there fails ("disappeared")."""
        namespace, uid = owner.namespace, owner.uid
        job_names = {t.taskId: names.job_name(owner.name, uid, t.referenceTaskName, t.taskId) for t in tasks}
        existing: set[str] = set()
        if len(tasks) <= CONFIRM_ONE_BY_ONE:
            for job_name in job_names.values():
                if await self.api.get(KubeClient.job_path(namespace, job_name), f"job {namespace}/{job_name}") is not None:
                    existing.add(job_name)
        else:
            existing = await self.api.list_names(KubeClient.job_path(namespace),
                                                 f"jobs of workflow {namespace}/{owner.name}",
                                                 label_selector=f"{r.LABEL_WORKFLOW_UID}={uid}")
        updates: list[TaskUpdate] = []
        for task in tasks:
            if job_names[task.taskId] in existing:
                self._found_jobs.setdefault(uid, {})[task.taskId] = now
            else:
                updates.append(attempts.job_missing(task, job_names[task.taskId]))
        if len(updates) < len(tasks):
            extra_wakes.append(now + self.settings.job_missing_grace_ms + 1)
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
