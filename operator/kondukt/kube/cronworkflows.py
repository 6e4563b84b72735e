"""The CronWorkflow controller: reads the clock, lists a CronWorkflow's runs, carries out the plan.

Every decision is :func:`kondukt.kube.schedule.plan_cron`'s (pure, unit-tested with fixed times); this
module only does the I/O around it, level-based like the Workflow reconcile:

- one reconcile at a time per CronWorkflow (its own :class:`~kondukt.kube.workqueue.WorkQueue`), woken by
  a change of the CronWorkflow, by a change of one of its runs (the operator routes Workflow events to the
  owner) and by an exact timer at the next scheduled time (re-armed at most an hour ahead, so a wall clock
  that jumps is read again soon);
- the runs are listed from the API server at each reconcile (a label selector on the CronWorkflow's uid):
  a CronWorkflow reconciles a few times per scheduled run, and a fresh list is never stale;
- starting a run is idempotent: its name is a function of the scheduled time, and AlreadyExists means a
  previous reconcile (maybe of an operator that died before writing the status) started it;
- a spec that cannot be used (a bad cron expression, an unknown time zone, a run the API server refuses)
  becomes ``Ready=False`` + ``Stalled=True`` and a Warning Event naming the field; the other CronWorkflows
  and every Workflow go on.

With several replicas only the leader reconciles (the writes are fenced by the same Lease as the Workflow
reconcile's); a new leader reconciles every CronWorkflow it knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from kondukt.kube import resources as r
from kondukt.kube import schedule as cron
from kondukt.kube.builders import OwnerRef
from kondukt.kube.events import EventRecorder
from kondukt.kube.kubeapi import ApiError, Invalid, KubeClient, NotFound, NotLeader, TransientApiError
from kondukt.kube.status import merge_conditions
from kondukt.kube.workqueue import WorkQueue

logger = logging.getLogger(__name__)

CronKey = tuple[str, str]

#: The longest a timer sleeps before the wall clock is read again.
MAX_SLEEP_SECONDS = 3600.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def cron_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    path = f"/apis/{r.GROUP}/{r.VERSION}/namespaces/{urllib.parse.quote(namespace)}/{r.CRONWORKFLOW_PLURAL}"
    if name:
        path += f"/{urllib.parse.quote(name)}"
    return path + f"/{subresource}" if subresource else path


def build_status(plan: cron.CronPlan, schedule: cron.Schedule | None, *, generation: int,
                 previous: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The CronWorkflow's status for a plan (None for a time means: remove it in the merge patch)."""
    def when(instant: dt.datetime | None) -> str | None:
        return cron.stamp(instant) if instant is not None else None

    return {
        "observedGeneration": generation,
        "schedule": "; ".join(schedule.expressions) if schedule is not None else None,
        "lastScheduleTime": when(plan.last_schedule),
        "nextScheduleTime": when(plan.next_schedule),
        "lastSuccessfulTime": when(plan.last_successful),
        "lastSkippedTime": when(plan.last_skipped),
        "active": [{"name": name} for name in plan.active],
        "activeCount": len(plan.active),
        "conditions": merge_conditions(plan.conditions, previous.get("conditions") or [], generation, now),
    }


class CronWorkflows:
    """Reconciles CronWorkflows: starts their runs on time, trims their history, writes their status."""

    def __init__(self, api: KubeClient, events: EventRecorder, *, clock: Callable[[], dt.datetime] = utc_now,
                 ready: asyncio.Event | None = None, workers: int = 2) -> None:
        self.api = api
        self.events = events
        self.clock = clock
        self.queue: WorkQueue[CronKey] = WorkQueue(self.run, workers=workers, ready=ready)
        #: Whether this replica may act now (it holds the Lease); None: always (one replica).
        self.leading: Callable[[], bool] | None = None
        self._objects: dict[CronKey, dict[str, Any]] = {}
        #: The phase of each run last seen (see on_run_changed).
        self._run_phases: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------------------------- entry points
    def on_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if event_type == "DELETED":
            self._objects.pop(key, None)
            self.queue.cancel_timer(key)
            return
        known = self._objects.get(key)
        if known is not None and not _newer((known.get("metadata") or {}).get("resourceVersion"),
                                            meta.get("resourceVersion")):
            return  # the watch's echo of our own status write, or an older version: nothing new
        self._objects[key] = dict(body)
        self.queue.add(key)

    def on_run_changed(self, event_type: str | None, run: Mapping[str, Any], cron_name: str) -> None:
        """A run (Workflow) of this CronWorkflow changed. Only a new phase (or a new or deleted run) can
        change the CronWorkflow's active runs, history or a pending run; a running workflow's progress
        updates do not wake it."""
        meta = run.get("metadata") or {}
        namespace = str(meta.get("namespace"))
        run_key = (namespace, str(meta.get("name")))
        phase = str((run.get("status") or {}).get("phase") or "")
        if event_type == "DELETED":
            self._run_phases.pop(run_key, None)
        elif self._run_phases.get(run_key) == phase:
            return
        else:
            self._run_phases[run_key] = phase
        self.queue.add((namespace, cron_name))

    def lead(self) -> None:
        for key in list(self._objects):
            self.queue.add(key)

    def stand_by(self) -> None:
        for key in list(self._objects):
            self.queue.cancel_timer(key)

    async def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()

    # ----------------------------------------------------------------------------------- reconcile
    async def run(self, key: CronKey) -> None:
        if self.leading is not None and not self.leading():
            self.queue.cancel_timer(key)
            return
        try:
            wake = await self.reconcile(key)
        except TransientApiError as err:
            delay = self.queue.add_rate_limited(key, at_least=err.retry_after or 0.0)
            logger.log(logging.INFO if isinstance(err, NotLeader) else logging.WARNING,  # a handover: expected
                       "cronworkflow %s/%s: %s (retrying in %.2fs)", key[0], key[1], err, delay)
            return
        except ApiError as err:  # e.g. a Conflict or a refused status: read it fresh and try again later
            self._objects.pop(key, None)
            delay = self.queue.add_rate_limited(key)
            logger.log(logging.INFO if isinstance(err, NotLeader) else logging.WARNING,  # a handover: expected
                       "cronworkflow %s/%s: %s (retrying in %.2fs)", key[0], key[1], err, delay)
            return
        self.queue.forget(key)
        if wake is None:
            self.queue.cancel_timer(key)
            return
        seconds = min(MAX_SLEEP_SECONDS, (wake - self.clock()).total_seconds())
        loop = asyncio.get_running_loop()
        self.queue.add_at(key, loop.time() + max(0.01, seconds))

    async def _body(self, key: CronKey) -> dict[str, Any] | None:
        body = self._objects.get(key)
        if body is None:
            body = await self.api.get(cron_path(*key), f"cronworkflow {key[0]}/{key[1]}")
            if body is not None:
                self._objects[key] = body
        return body

    async def reconcile(self, key: CronKey) -> dt.datetime | None:
        """One reconcile; returns when to reconcile again at the latest (None: only on news)."""
        body = await self._body(key)
        if body is None:
            return None
        namespace, name = key
        meta = body.get("metadata") or {}
        owner = OwnerRef(name=name, namespace=namespace, uid=str(meta.get("uid")), kind=r.CRONWORKFLOW_KIND)
        status: Mapping[str, Any] = body.get("status") or {}
        generation = int(meta.get("generation") or 0)
        now = self.clock()
        schedule: cron.Schedule | None = None
        try:
            spec = cron.parse_spec(body.get("spec"))
            schedule = cron.parse_schedule(spec)
        except cron.CronSpecError as err:
            plan = cron.plan_invalid(err, status)
            await self._write(key, body, plan, None, generation, now, owner)
            return None
        listed = await self.api.list_items(
            KubeClient.workflow_path(namespace), f"the runs of cronworkflow {namespace}/{name}",
            label_selector=f"{r.LABEL_CRON_UID}={meta.get('uid')}")
        runs = [cron.run_from_workflow(item) for item in listed]
        created = cron.parse_stamp(meta.get("creationTimestamp")) or now
        plan = cron.plan_cron(name, spec, schedule, created=created, status=status, runs=runs, now=now)
        for run in plan.terminate:
            await self._terminate(namespace, run, name)
        if plan.start is not None:
            refused = await self._start(body, plan.start)
            if refused is not None:
                plan = _refused(plan, refused)
        for run in plan.delete:
            await self.api.delete(KubeClient.workflow_path(namespace, run), f"workflow {namespace}/{run}")
        await self._write(key, body, plan, schedule, generation, now, owner)
        return plan.wake_at

    async def _terminate(self, namespace: str, run: str, cron_name: str) -> None:
        reason = f"replaced by the next run of cronworkflow {cron_name} (concurrencyPolicy Replace)"
        with contextlib.suppress(NotFound):  # gone already: nothing left to replace
            await self.api.merge_patch(KubeClient.workflow_path(namespace, run),
                                       {"spec": {"terminate": {"reason": reason}}}, f"workflow {namespace}/{run}")

    async def _start(self, body: Mapping[str, Any], scheduled: dt.datetime) -> str | None:
        """Create the run of ``scheduled``; None when it exists now, else why the API server refused it."""
        run = cron.build_run(body, scheduled)
        namespace, run_name = run["metadata"]["namespace"], run["metadata"]["name"]
        try:
            created = await self.api.create(KubeClient.workflow_path(namespace), run, f"workflow {namespace}/{run_name}")
        except Invalid as err:
            return f"the run {run_name} was refused: {err.api_message}"
        if created is None:
            logger.info("cronworkflow run %s/%s already exists (started before)", namespace, run_name)
        else:
            logger.info("cronworkflow run %s/%s started for %s", namespace, run_name, cron.stamp(scheduled))
        return None

    async def _write(self, key: CronKey, body: Mapping[str, Any], plan: cron.CronPlan,
                     schedule: cron.Schedule | None, generation: int, now: dt.datetime, owner: OwnerRef) -> None:
        previous: Mapping[str, Any] = body.get("status") or {}
        status = build_status(plan, schedule, generation=generation, previous=previous, now=now)
        said = {c.get("type"): c for c in previous.get("conditions") or [] if isinstance(c, Mapping)}
        for event in plan.events:
            if event.reason in ("InvalidSpec", "RunRefused"):  # said once per problem, not per reconcile
                ready = said.get("Ready") or {}
                if ready.get("reason") == event.reason and ready.get("message") == event.message:
                    continue
            self.events.record(owner, event.type, event.reason, event.message)
        if all(previous.get(k) == v for k, v in status.items() if v is not None) and not any(
                k in previous for k, v in status.items() if v is None):
            return
        patched = await self.api.merge_patch(cron_path(*key, subresource="status"), {"status": status},
                                             f"cronworkflow {key[0]}/{key[1]} status")
        self._objects[key] = patched


def _newer(known: Any, seen: Any) -> bool:
    """Whether resourceVersion ``seen`` is newer than ``known`` (opaque strings: different = newer, unless
    both are numbers, as the API server's are in practice)."""
    if str(known).isdigit() and str(seen).isdigit():
        return int(seen) > int(known)
    return bool(known != seen)


def _refused(plan: cron.CronPlan, reason: str) -> cron.CronPlan:
    """The plan after the API server refused its run: the time counts as handled, Ready=False says why."""
    return dataclasses.replace(
        plan,
        active=tuple(n for n in plan.active if n != plan.start_name),
        conditions=(("Ready", "False", "RunRefused", reason), ("Stalled", "True", "RunRefused", reason)),
        events=(*plan.events, cron.CronEvent("Warning", "RunRefused", reason)),
    )
