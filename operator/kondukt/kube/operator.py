"""The Kopf operator: settings, watches and the handlers that feed the reconcile loop.

Kopf does what it is best at — watching (with reconnects and resourceVersion bookkeeping), in-memory
indexes, credentials — and nothing else: every handler here is thin and only does I/O-free routing.

- ``kopf.index`` on child Workflows, TaskDefs and WorkflowDefs feeds :mod:`kondukt.kube.cache`; Kopf holds
  every other handler back until their first listing is complete.
- ``kopf.on.event`` on Workflows only *enqueues* the workflow's key (and its parent's) into the work queue
  (:class:`~kondukt.kube.workqueue.WorkQueue`: one reconcile at a time per workflow, bursts coalesced, many
  workflows in parallel); a new TaskDef / WorkflowDef wakes workflows waiting for it and has the definitions'
  health checked (:mod:`kondukt.kube.definitions`: their status, and the WorkflowDefs naming them).
- The Jobs and pods of attempts — by far the most events — are watched by lightweight informers
  (:mod:`kondukt.kube.informer`, server-side label selector) instead of Kopf's per-object machinery; their
  changes wake the owning workflow the same way, and a finished attempt also wakes the workflows a
  ``concurrentExecLimit`` held back. The work queue starts once their first listing is indexed.
- Kopf's own bookkeeping never reaches the user-visible ``status``: progress and diff-base live in
  annotations under ``kopf.kondukt.io`` (and the handlers used here need neither), Kopf's own Events are
  limited to warnings, and no finalizers are added (children and Jobs go with their Workflow through owner
  references).
- ``kopf.on.event`` on CronWorkflows feeds their own controller (:mod:`kondukt.kube.cronworkflows`); a
  change of a Workflow a CronWorkflow owns (one of its runs) wakes that CronWorkflow.
- HA: with ``--lease NAME`` the replicas elect a leader through a Kubernetes Lease
  (:mod:`kondukt.kube.leader`, client-go's semantics). Every replica watches and keeps its caches warm; only
  the leader reconciles — the work queue's gate (``Reconciler.leading``) and the API client's fence (no
  write leaves a replica that does not lead) both ask the elector. Kopf's own peering is off (Kopf runs
  standalone): it pauses replicas by observation, which is no lock.

Never put logic here that belongs to the reconcile (:mod:`kondukt.kube.reconcile`) or the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import secrets
import socket
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from kondukt.archive.errors import ArchiveError
from kondukt.archive.store import ArchiveStore
from kondukt.engine.models import TTLStrategy
from kondukt.engine.payloads import DEFAULT_INLINE_VALUE_BYTES
from kondukt.kube import cache
from kondukt.kube import resources as r
from kondukt.kube.builders import JobOptions
from kondukt.kube.claims import LimitClaims
from kondukt.kube.cronworkflows import CronWorkflows
from kondukt.kube.definitions import DefinitionHealth, index_references
from kondukt.kube.events import EventRecorder
from kondukt.kube.informer import IndexStore, Informer
from kondukt.kube.kubeapi import KubeClient, TransientApiError, load_configuration
from kondukt.kube.leader import LeaderElector, LeaseTiming
from kondukt.kube.metrics import Metrics
from kondukt.kube.reconcile import Reconciler, ReconcileSettings
from kondukt.kube.schedule import owner_cron_name
from kondukt.kube.shards import ShardManager
from kondukt.kube.status import DEFAULT_COMPRESS_OVER_BYTES
from kondukt.limits import DEFAULT_MAX_SUB_WORKFLOW_DEPTH
from kondukt.scriptpool import ScriptLimits
from kondukt_workers.egress import EgressPolicy, policy_environ, system_resolver
from kondukt_workers.settings import Settings as WorkerSettings

logger = logging.getLogger("kondukt.operator")

#: How soon a pod that started running wakes its workflow (see Controller.on_attempt), at the least.
STARTED_DEBOUNCE_SECONDS = 0.2

#: How often the archive's retention period is applied (see Controller._prune_archive).
ARCHIVE_PRUNE_INTERVAL_SECONDS = 600.0

#: Kopf's indexes (the Jobs and pods indexes are the informers' stores).
INDEX_IDS = (cache.CHILDREN_INDEX, cache.TASKDEFS_INDEX, cache.WORKFLOWDEFS_INDEX, cache.REFERENCES_INDEX)


@dataclass(frozen=True)
class OperatorOptions:
    """Everything ``kondukt operator`` can be told (see :mod:`kondukt.cli.operator`)."""

    namespaces: tuple[str, ...] = ()
    kubeconfig: str | None = None
    context: str | None = None
    standalone: bool = False
    #: Leader election: the Lease the replicas share (None: one replica, no election) and where it lives.
    lease_name: str | None = None
    lease_namespace: str | None = None
    lease_timing: LeaseTiming = field(default_factory=LeaseTiming)
    #: Shards of the Workflows (> 1: one Lease each, see :mod:`kondukt.kube.shards`; needs lease_name).
    shards: int = 1
    metrics_port: int = 0
    metrics_address: str = "0.0.0.0"
    liveness_endpoint: str | None = None
    log_level: str = "INFO"
    job_ttl_seconds: int = 600
    default_worker_image: str | None = None
    worker_service_account: str | None = None
    worker_env: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    workers: int = 16
    compress_over_bytes: int = DEFAULT_COMPRESS_OVER_BYTES
    definition_grace_seconds: float = 15.0
    #: Status writes of progress alone wait this long after a workflow's previous write (see ReconcileSettings).
    status_coalesce_seconds: float = 1.0
    script_limits: ScriptLimits = field(default_factory=ScriptLimits)
    inline_value_bytes: int = DEFAULT_INLINE_VALUE_BYTES
    max_sub_workflow_depth: int = DEFAULT_MAX_SUB_WORKFLOW_DEPTH
    #: The egress policy's inputs (``--egress-allow``, ``--egress-deny``, ``--service-cidr``,
    #: ``--pod-cidr``); the API server's addresses are added by :func:`egress_policy`.
    egress_allow: tuple[str, ...] = ()
    egress_deny: tuple[str, ...] = ()
    service_cidrs: tuple[str, ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    #: The TTL of finished Workflows whose spec has none (``--ttl-after-*``); None: they stay.
    default_ttl: TTLStrategy | None = None
    #: The workflow archive's connection string (``--archive``, from ``$KONDUKT_ARCHIVE_DSN``); None: no archive.
    archive_dsn: str | None = field(default=None, repr=False)
    #: Archived workflows older than this many days are removed (0: kept for ever).
    archive_retention_days: float = 0.0


def started_debounce(options: OperatorOptions) -> float:
    """How soon a pod that started running wakes its workflow: no sooner than a status write of that progress
    alone may be made (``--status-coalesce-seconds``), so a quick attempt's start and end cost one reconcile."""
    return max(STARTED_DEBOUNCE_SECONDS, options.status_coalesce_seconds)


def api_server_addresses(server: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The API server's addresses: its URL's host resolved now, and the in-cluster service's address
    (``KUBERNETES_SERVICE_HOST``). A name that does not resolve adds nothing (it is checked again as
    a name whenever a task uses it)."""
    env = os.environ if environ is None else environ
    hosts = [urllib.parse.urlsplit(server).hostname or "", env.get("KUBERNETES_SERVICE_HOST", "")]
    found: list[str] = []
    for host in filter(None, hosts):
        try:
            addresses = system_resolver(host, 443)
        except OSError:
            continue
        found += [a.split("%", 1)[0] for a in addresses if a.split("%", 1)[0] not in found]
    return found


def egress_policy(options: OperatorOptions, api_server: list[str]) -> EgressPolicy:
    """The cluster policy of HTTP tasks and task pods. Raises ValueError naming a bad setting."""
    return EgressPolicy.cluster(service_cidrs=options.service_cidrs, pod_cidrs=options.pod_cidrs,
                                api_server=api_server, deny=options.egress_deny, allow=options.egress_allow)


class EventOnlyDiffBase(kopf.AnnotationsDiffBaseStorage):
    """Kopf's diff base (in annotations under ``kopf.kondukt.io``), never built: Kondukt has no change handlers.

    Kopf builds an object's "essence" on every event to detect changes for ``on.create/update/...``
    handlers — even when, as here, only ``on.event`` and index handlers exist — starting with a deep copy
    of the whole body (a pod's spec, managedFields, a big workflow's status). That copy was the
    operator's largest CPU cost under load, for a result nobody reads. Should a change handler ever be
    registered, drop this class (``build`` must then return the real essence).
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return {}


class Controller:
    """The operator's moving parts, created before Kopf starts and started by its startup handler."""

    #: See started_debounce (set from the options in __init__).
    started_debounce: float = STARTED_DEBOUNCE_SECONDS

    def __init__(self, options: OperatorOptions, api: KubeClient) -> None:
        self.options = options
        self.api = api
        self.started_debounce = started_debounce(options)
        self.metrics = Metrics()
        self.events = EventRecorder(api, self.metrics)
        self.indices: dict[str, Any] = {}
        self.egress = egress_policy(options, api_server_addresses(api.server))
        settings = ReconcileSettings(
            job_options=JobOptions(
                ttl_seconds_after_finished=options.job_ttl_seconds,
                default_image=options.default_worker_image,
                default_service_account=options.worker_service_account,
                worker_env=options.worker_env,
                egress_env=tuple(policy_environ(self.egress)),
            ),
            egress=self.egress,
            compress_over_bytes=options.compress_over_bytes,
            definition_grace_seconds=options.definition_grace_seconds,
            # A result's payload pointer comes from a task's pod: read it under the same policy (no
            # file:// of the operator's own files, no metadata endpoint).
            payload_settings=dataclasses.replace(WorkerSettings.from_environ(), egress=self.egress),
            script_limits=options.script_limits,
            inline_value_bytes=options.inline_value_bytes,
            max_sub_workflow_depth=options.max_sub_workflow_depth,
            default_ttl=options.default_ttl,
            status_coalesce_ms=int(options.status_coalesce_seconds * 1000),
        )
        #: Set when Kopf calls its first event handler: Kopf does that only once every Kopf index (TaskDefs,
        #: WorkflowDefs, children) has its initial listing, and no reconcile may read them before.
        self.kopf_indexed = asyncio.Event()
        self.reconciler = Reconciler(api, cache.ClusterView(self.indices), settings, self.metrics, self.events,
                                     workers=options.workers, ready=self.kopf_indexed)
        #: The TaskDefs' and WorkflowDefs' status (their health, checked against each other).
        self.definitions = DefinitionHealth(api, self.reconciler.view, self.reconciler.observer.task_defs,
                                            ready=self.kopf_indexed)
        #: CronWorkflows: their own queue, started with the reconciler (see kondukt.kube.cronworkflows).
        self.crons = CronWorkflows(api, self.events, ready=self.kopf_indexed)
        #: The leader election (None: a single replica that always acts); see run_operator_async.
        self.elector: LeaderElector | None = None
        #: With --shards above 1: the shards this replica holds (then ``elector`` is None).
        self.shards: ShardManager | None = None
        api.on_error = self.on_api_error
        api.on_done = self.on_api_done
        self.job_store: IndexStore[cache.JobRecord] = IndexStore()
        self.pod_store: IndexStore[cache.PodRecord] = IndexStore()
        self.informers = self._informers()
        #: The workflow archive (None: off) and the task that applies its retention period.
        self.archive: ArchiveStore | None = None
        if options.archive_dsn:
            self.archive = ArchiveStore(options.archive_dsn)
            self.reconciler.retention.archive = self.archive
        self._pruner: asyncio.Task[None] | None = None

    def _informers(self) -> list[Informer]:
        namespaces: list[str | None] = list(self.options.namespaces) or [None]
        selector = r.LABEL_WORKFLOW_UID  # exists: only Kondukt's attempts
        informers = []
        for namespace in namespaces:
            scope = f"/namespaces/{namespace}" if namespace else ""
            informers.append(Informer(self.api, f"/apis/batch/v1{scope}/jobs", label_selector=selector,
                                      index=cache.index_job, store=self.job_store, on_change=self.on_job_change,
                                      what=f"Jobs{' in ' + namespace if namespace else ''}",
                                      on_restart=self._restart_counter("jobs")))
            informers.append(Informer(self.api, f"/api/v1{scope}/pods", label_selector=selector,
                                      index=cache.index_pod, store=self.pod_store, on_change=self.on_pod_change,
                                      what=f"pods{' in ' + namespace if namespace else ''}",
                                      on_restart=self._restart_counter("pods")))
        return informers

    def _restart_counter(self, resource: str) -> Callable[[str], None]:
        def restarted(reason: str) -> None:
            self.metrics.watch_restarts.labels(resource, reason).inc()
        return restarted

    def on_api_done(self, method: str, seconds: float) -> None:
        self.metrics.api_request_duration.labels(method).observe(seconds)

    def on_api_error(self, error: TransientApiError) -> None:
        """Count a transient API failure (``kondukt_api_errors_total{code}``)."""
        self.metrics.api_errors.labels(str(error.status)).inc()

    async def start(self, indices: Mapping[str, Any]) -> None:
        self.indices.update(indices)
        self.indices[cache.JOBS_INDEX] = self.job_store
        self.indices[cache.PODS_INDEX] = self.pod_store
        for informer in self.informers:
            informer.start()
        for informer in self.informers:  # reconcile only once every attempt is known
            await informer.synced.wait()
        self.events.start()
        await self.reconciler.start()
        await self.definitions.start()
        await self.crons.start()
        if self.options.metrics_port:
            self.metrics.serve(self.options.metrics_port, self.options.metrics_address)
        if self.elector is not None:  # campaign only with warm caches: a new leader acts at once
            self.elector.start()
        if self.archive is not None:
            self._pruner = asyncio.create_task(self._prune_archive(self.archive), name="kondukt-archive")
        if self.shards is not None:
            self.shards.start()

    async def stop(self) -> None:
        if self.elector is not None:
            await self.elector.stop()  # stop acting first: every write is refused from here on
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        if self.shards is not None:
            await self.shards.stop()
        for informer in self.informers:
            await informer.stop()
        await self.reconciler.stop()
        await self.definitions.stop()
        await self.crons.stop()
        await self.events.stop()
        if self.elector is not None:  # nothing acts any more: hand the Lease over to a standby now
            await self.elector.release()
            await self.elector.api.close()
        if self.archive is not None:
            await self.archive.close()
        if self.shards is not None:  # the same for every shard held: the others take them at their next round
            await self.shards.release()
            await self.shards.api.close()
        await self.api.close()

    async def _prune_archive(self, archive: ArchiveStore) -> None:
        """Connect to the archive at once (its migrations, ``kondukt_archive_up``), then apply its retention
        period every ARCHIVE_PRUNE_INTERVAL_SECONDS: the replica that acts deletes the rows finished longer ago
        (idempotent: two replicas doing it at once delete nothing twice)."""
        try:
            version = await archive.schema_version()
        except ArchiveError as err:
            self.metrics.archive_up.set(0)
            logger.warning("workflow archive: %s (finished workflows wait for it; retrying)", err)
        else:
            self.metrics.archive_up.set(1)
            logger.info("workflow archive: connected, schema version %d", version)
        while self.options.archive_retention_days > 0:
            if self.reconciler.leading is None or self.reconciler.leading():
                cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=self.options.archive_retention_days)
                try:
                    pruned = await archive.prune(cutoff)
                except ArchiveError as err:
                    logger.warning("archive retention: %s (trying again later)", err)
                else:
                    self.metrics.archive_pruned.inc(pruned)
                    if pruned:
                        logger.info("archive retention: removed %d workflows finished before %s", pruned,
                                    cutoff.isoformat(timespec="seconds"))
            await asyncio.sleep(ARCHIVE_PRUNE_INTERVAL_SECONDS)

    # ------------------------------------------------------------------------------------ routing
    def on_workflow(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        self.kopf_indexed.set()
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if event_type == "DELETED":
            self.reconciler.forget(key, str(meta.get("uid")), deleted=True)
        elif self.reconciler.observe(body):
            self.reconciler.enqueue(key)
        parent = cache.owner_workflow_name(body)
        if parent is not None:
            self.reconciler.enqueue((key[0], parent))
        cron = owner_cron_name(body)
        if cron is not None:
            self.crons.on_run_changed(event_type, body, cron)

    def on_cron_workflow(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        self.kopf_indexed.set()
        self.crons.on_event(event_type, body)

    def stand_by(self) -> None:
        self.reconciler.stand_by()
        self.crons.stand_by()

    def on_job_change(self, event_type: str, now: Mapping[Any, Any], before: Mapping[Any, Any]) -> None:
        record = next(iter(now.values()), None) or next(iter(before.values()), None)
        if record is None or (event_type != "DELETED" and now == before):
            return
        if event_type != "DELETED" and self._told_by_its_pod(record):
            return
        self.on_attempt(record.namespace, record.workflow_name, record.task_def,
                        finished=event_type == "DELETED" or record.finished)

    def _told_by_its_pod(self, job: cache.JobRecord) -> bool:
        """Whether a Job that just succeeded says nothing its pod has not said: the Job controller marks it
        Complete about a second after the pod terminated, and that termination (the attempt's result) already
        woke the workflow and the limits' waiters. Waking them again costs a reconcile that finds nothing new
        (for a 1,000-task workflow, one that reads every task), and in a fan-out it can hold the join back.
        A failed or deleted Job, or one whose pod the cache does not hold terminated, still wakes them."""
        if not job.succeeded or job.failed or job.deleting:
            return False
        key = ("job", job.namespace, job.name)
        return key in self.pod_store and any(pod.terminated for pod in self.pod_store[key])

    def on_pod_change(self, event_type: str, now: Mapping[Any, Any], before: Mapping[Any, Any]) -> None:
        record = next(iter(now.values()), None) or next(iter(before.values()), None)
        if record is None or (event_type != "DELETED" and now == before):
            return
        if event_type != "DELETED" and (record.started or record.terminated):
            was = next(iter(before.values()), None)
            seen = self.reconciler.observer.seen
            now_ms = self.reconciler.clock()
            if record.started and (was is None or not was.started):
                seen(record.workflow_uid, record.task_id, ended=False, at_ms=now_ms)
            if record.terminated and (was is None or not was.terminated):
                seen(record.workflow_uid, record.task_id, ended=True, at_ms=now_ms)
        self.on_attempt(record.namespace, record.workflow_name, record.task_def,
                        finished=event_type == "DELETED" or record.terminated, started=record.started)

    def on_attempt(self, namespace: str, workflow: str, task_def: str, *, finished: bool,
                   started: bool = False) -> None:
        """A Job or pod of a task attempt changed: wake its workflow when that matters to it.

        A finished (or deleted) attempt wakes its workflow at once, and the workflows a limit held back.
        A pod that just started running is news too, but less urgent: its workflow is woken within
        ``started_debounce`` so that a quick attempt's start and end cost one reconcile, not two.
        Everything else (a Job created, a pod scheduled) changes nothing the workflow records.
        """
        if workflow:
            key = (namespace, workflow)
            if finished:
                self.reconciler.enqueue(key)
            elif started:
                self.reconciler.queue.add_soon(key, self.started_debounce)
        if task_def and finished:
            self.reconciler.wake_waiters(namespace, task_def)

    def on_definition(self, plural: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A TaskDef or WorkflowDef changed: wake the Workflows waiting for definitions, check its health
        and that of the WorkflowDefs naming it."""
        self.kopf_indexed.set()
        namespace = str((body.get("metadata") or {}).get("namespace"))
        self.reconciler.wake_definition_waiters(namespace)
        self.definitions.observe(plural, event_type, body)

    def lead(self, shard: int | None = None) -> None:
        """This replica just became the leader (of ``shard``): reconcile every Workflow (of that shard), and check
        every definition and CronWorkflow (the leader's work, or shard 0's holder's)."""
        self.reconciler.lead(shard)
        if shard is None or shard == 0:
            self.definitions.lead()
            self.crons.lead()


def build_registry(controller: Controller) -> kopf.OperatorRegistry:
    """Kopf's handlers, on a registry of their own (several operators may share a process in tests)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        connection = await controller.api.connection()
        token = await controller.api.token()
        return kopf.ConnectionInfo(
            server=connection.server,
            ca_path=connection.ca_file,
            insecure=not connection.verify,
            token=token.split(" ", 1)[1] if token and token.lower().startswith("bearer ") else token,
            certificate_path=connection.cert_file,
            private_key_path=connection.key_file,
        )

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=r.KOPF_ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = EventOnlyDiffBase(prefix=r.KOPF_ANNOTATION_PREFIX)
        settings.posting.level = logging.WARNING  # Kopf's own Events: warnings and errors only
        settings.watching.server_timeout = 600
        settings.watching.client_timeout = 660
        settings.watching.connect_timeout = 30
        settings.networking.request_timeout = 60
        await controller.start({name: kwargs[name] for name in INDEX_IDS})

    @kopf.on.cleanup(registry=registry)
    async def shutdown(**_: Any) -> None:
        await controller.stop()

    # -------------------------------------------------------------------------------- indexes
    @kopf.index(r.GROUP, r.VERSION, r.WORKFLOW_PLURAL, labels={r.LABEL_PARENT_UID: kopf.PRESENT},
                id=cache.CHILDREN_INDEX, registry=registry)
    async def kondukt_children(body: kopf.Body, **_: Any) -> dict[tuple[str, ...], cache.ChildRecord]:
        return cache.index_child(body)

    @kopf.index(r.GROUP, r.VERSION, r.TASKDEF_PLURAL, id=cache.TASKDEFS_INDEX, registry=registry)
    async def kondukt_taskdefs(body: kopf.Body, **_: Any) -> dict[tuple[str, ...], cache.TaskDefRecord]:
        return cache.index_taskdef(body)

    @kopf.index(r.GROUP, r.VERSION, r.WORKFLOWDEF_PLURAL, id=cache.WORKFLOWDEFS_INDEX, registry=registry)
    async def kondukt_workflowdefs(body: kopf.Body, **_: Any) -> dict[tuple[str, ...], cache.WorkflowDefRecord]:
        return cache.index_workflowdef(body)

    # ------------------------------------------------------------------------ event routing
    @kopf.on.event(r.GROUP, r.VERSION, r.WORKFLOW_PLURAL, registry=registry)
    async def workflow_changed(event: Mapping[str, Any], **_: Any) -> None:
        controller.on_workflow(event.get("type"), event["object"])

    @kopf.index(r.GROUP, r.VERSION, r.WORKFLOWDEF_PLURAL, id=cache.REFERENCES_INDEX, registry=registry)
    async def kondukt_references(body: kopf.Body, **_: Any) -> dict[tuple[str, ...], str]:
        return index_references(body)
    @kopf.on.event(r.GROUP, r.VERSION, r.CRONWORKFLOW_PLURAL, registry=registry)
    async def cronworkflow_changed(event: Mapping[str, Any], **_: Any) -> None:
        controller.on_cron_workflow(event.get("type"), event["object"])

    @kopf.on.event(r.GROUP, r.VERSION, r.TASKDEF_PLURAL, registry=registry)
    async def taskdef_changed(event: Mapping[str, Any], **_: Any) -> None:
        controller.on_definition(r.TASKDEF_PLURAL, event.get("type"), event["object"])

    @kopf.on.event(r.GROUP, r.VERSION, r.WORKFLOWDEF_PLURAL, registry=registry)
    async def workflowdef_changed(event: Mapping[str, Any], **_: Any) -> None:
        controller.on_definition(r.WORKFLOWDEF_PLURAL, event.get("type"), event["object"])

    return registry


def configure_logging(level: str) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger().setLevel(numeric)
    # Kopf logs every handler call at INFO ("Handler ... succeeded"): with thousands of pod events that
    # drowns what matters. Its per-object messages show from WARNING unless we are debugging.
    for name in ("kopf.objects", "kopf.activities"):
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def run_operator_async(
    options: OperatorOptions,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run the operator until ``stop_flag`` is set (or SIGINT/SIGTERM when in the main thread)."""
    configuration = await load_configuration(options.kubeconfig, options.context)
    api = KubeClient(configuration)
    controller = Controller(options, api)
    registry = build_registry(controller)
    identity = replica_identity()
    if options.lease_name and not options.standalone:
        namespace = options.lease_namespace or os.environ.get("POD_NAMESPACE")
        if not namespace:
            raise ValueError("leader election needs the Lease's namespace: --lease-namespace or $POD_NAMESPACE")
        timing = options.lease_timing
        if options.shards > 1:
            shards = ShardManager(
                KubeClient(configuration, timeout=timing.request_timeout, connections=8),
                namespace=namespace, base=options.lease_name, shards=options.shards, identity=identity, timing=timing,
                metrics=controller.metrics, on_started=controller.lead, on_stopped=controller.reconciler.stand_by,
            )
            shards.api.on_error = controller.on_api_error
            controller.shards = shards
            controller.reconciler.leading = shards.may_act
            controller.reconciler.shard_of = shards.shard_of
            controller.reconciler.claims = LimitClaims(api, identity)
            controller.definitions.leading = lambda: shards.holds(0)  # definitions' health: shard 0's holder
            controller.crons.leading = lambda: shards.holds(0)  # CronWorkflows too
            api.fence = shards.may_act
            mode = (f"{options.shards} shards on leases {namespace}/{options.lease_name}-shard-<i>-of-{options.shards} as {identity} (lease "
                    f"{timing.lease_duration}s, renew deadline {timing.renew_deadline:g}s, retry {timing.retry_period:g}s)")
        else:
            elector = LeaderElector(
                KubeClient(configuration, timeout=timing.request_timeout, connections=4),
                namespace=namespace, name=options.lease_name, identity=identity, timing=timing,
                metrics=controller.metrics, on_started=controller.lead, on_stopped=controller.stand_by,
            )
            elector.api.on_error = controller.on_api_error
            controller.elector = elector
            controller.reconciler.leading = elector.is_leader
            controller.definitions.leading = elector.is_leader
            controller.crons.leading = elector.is_leader
            api.fence = elector.is_leader
            mode = (f"leader election on lease {namespace}/{options.lease_name} as {identity} (lease "
                    f"{timing.lease_duration}s, renew deadline {timing.renew_deadline:g}s, retry {timing.retry_period:g}s)")
    else:
        mode = "standalone (one replica, no leader election)"
    logger.info(
        "kondukt operator starting: %s, %s",
        f"namespaces {', '.join(options.namespaces)}" if options.namespaces else "all namespaces", mode,
    )
    logger.info("HTTP tasks and task pods: %s", controller.egress.describe())
    if controller.archive is not None:
        keep = (f"kept {options.archive_retention_days:g} days" if options.archive_retention_days > 0
                else "kept for ever")
        logger.info("workflow archive: on (PostgreSQL, %s); finished workflows are deleted only once archived", keep)
    await kopf.operator(
        registry=registry,
        identity=identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
        standalone=True,  # Kopf's peering stays off: the Lease decides who acts
        clusterwide=not options.namespaces,
        namespaces=list(options.namespaces),
        liveness_endpoint=options.liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def replica_identity() -> str:
    """This replica's name in the Lease: its pod (``$POD_ID``) or host, and a random suffix (client-go's
    ``hostname_uuid``), so a restarted container is a new candidate and never mistakes the Lease of its
    dead predecessor for its own."""
    base = os.environ.get("POD_ID") or socket.gethostname()
    return f"{base}_{secrets.token_hex(4)}"


def run_operator(options: OperatorOptions) -> int:
    """Run the operator in the foreground (``kondukt operator``); returns the exit code."""
    configure_logging(options.log_level)
    asyncio.run(run_operator_async(options))
    return 0
