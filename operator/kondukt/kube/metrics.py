"""The operator's Prometheus metrics, on their own registry (several operators may share a process in tests).

Names follow Prometheus conventions (``kondukt_`` prefix, ``_total`` counters, ``_seconds`` histograms):

- ``kondukt_workflows_total{outcome}``: workflows this operator saw end (COMPLETED, FAILED, ...);
- ``kondukt_workflow_duration_seconds{outcome}``: start to end of those workflows;
- ``kondukt_task_attempts_total{task_type,outcome}``: task attempts that ended;
- ``kondukt_task_duration_seconds{outcome}``: their start to end;
- ``kondukt_step_latency_seconds``: from the moment something woke a workflow (a Job finished, a timer
  fired) to the moment the next attempt's Job (or child) was created — the step latency the benchmarks measure;
- ``kondukt_reconcile_duration_seconds{result}`` and ``kondukt_reconcile_errors_total{kind}``;
- ``kondukt_workqueue_depth``: workflows waiting for a reconcile;
- ``kondukt_status_bytes``: size of the last status written (compactness of big workflows);
- ``kondukt_job_creates_total{result}``: created, existed (a replay after a crash or a conflict), known (not sent:
  created by an earlier reconcile whose status write never came, or already in the Job watch), rejected;
- ``kondukt_status_writes_deferred_total``: status writes of progress alone deferred to gather more into one
  (``--status-coalesce-seconds``);
- ``kondukt_events_dropped_total``: Events not posted because the queue was full;
- ``kondukt_leader{lease,identity}``: 1 while this replica holds the Lease and acts, 0 while it stands by
  (set once the replica has led; with ``--standalone`` there is no Lease and no series);
- ``kondukt_leaderships_total``: how often this replica became the leader (of a shard, with ``--shards``);
- ``kondukt_shards_held`` and ``kondukt_shard_replicas``: with ``--shards``, the shards this replica holds and
  the replicas it sees alive; ``kondukt_limit_claim_conflicts_total``: limit claims that met another replica's
  and were decided again (:mod:`kondukt.kube.claims`);
- ``kondukt_api_errors_total{code}``: API requests and watches of the operator's own client that failed
  transiently — ``code`` is the HTTP status (429 throttled, 5xx) or ``0`` for a timeout or a refused or
  broken connection (Kopf's watches of Workflows and definitions are not counted: Kopf retries them itself);
- ``kondukt_api_request_duration_seconds{method}``: the operator's own API requests (not watches), however
  they ended — a slow or stalled API server (etcd down behind it) shows here before anything fails;
- ``kondukt_api_retry_after_seconds_total``: seconds of waiting the API server asked for (``Retry-After``)
  and the reconciles honoured;
- ``kondukt_watch_restarts_total{resource,reason}``: the Job and pod informers' watches started over —
  ``expired`` (410 Gone, "too old resource version": listed again), ``error`` (broken or refused);
- ``kondukt_workflows_deleted_total``: finished Workflows deleted because their TTL ran out;
- ``kondukt_archive_writes_total{result}``: archive writes, ``archived`` or ``failed`` (retried with backoff);
- ``kondukt_archive_pending``: finished workflows waiting for the archive (it could not be written): their
  deletion waits too;
- ``kondukt_archive_up``: 1 when the last archive operation succeeded, 0 when it failed (database down);
- ``kondukt_archive_pruned_total``: archived workflows removed after the archive's retention period.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2, 5, 10)
_API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.workflows = Counter("kondukt_workflows_total", "Workflows that ended, by outcome.", ["outcome"],
                                 registry=r)
        self.workflow_duration = Histogram("kondukt_workflow_duration_seconds", "Workflow start to end.",
                                           ["outcome"], buckets=_DURATION_BUCKETS, registry=r)
        self.tasks = Counter("kondukt_task_attempts_total", "Task attempts that ended.", ["task_type", "outcome"],
                             registry=r)
        self.task_duration = Histogram("kondukt_task_duration_seconds", "Task attempt start to end.", ["outcome"],
                                       buckets=_DURATION_BUCKETS, registry=r)
        self.step_latency = Histogram("kondukt_step_latency_seconds",
                                      "From a workflow's wake-up (Job finished, timer) to its next Job created.",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.reconcile_duration = Histogram("kondukt_reconcile_duration_seconds", "One reconcile.", ["result"],
                                            buckets=_LATENCY_BUCKETS, registry=r)
        self.reconcile_errors = Counter("kondukt_reconcile_errors_total", "Reconciles that failed.", ["kind"],
                                        registry=r)
        self.queue_depth = Gauge("kondukt_workqueue_depth", "Workflows waiting for a reconcile.", registry=r)
        self.status_bytes = Gauge("kondukt_status_bytes", "Size of the last Workflow status written.", registry=r)
        self.status_writes_deferred = Counter(
            "kondukt_status_writes_deferred_total",
            "Status writes of progress alone deferred to gather more (--status-coalesce-seconds).", registry=r)
        self.job_creates = Counter("kondukt_job_creates_total",
                                   "Job creations by result: created, existed (an idempotent replay), known (not sent: it "
                                   "exists already), rejected.",
                                   ["result"], registry=r)
        self.script_evaluations = Counter(
            "kondukt_script_evaluations_total",
            "jq evaluations by outcome: completed, failed (a jq error), time_limit, memory_limit, died.",
            ["outcome"], registry=r)
        self.events_dropped = Counter("kondukt_events_dropped_total", "Events not posted (queue full).",
                                      registry=r)
        self.leader = Gauge("kondukt_leader", "1 while this replica holds the operator's Lease and acts, 0 while "
                            "it stands by.", ["lease", "identity"], registry=r)
        self.shards_held = Gauge("kondukt_shards_held", "Shards this replica holds (with --shards).", registry=r)
        self.shard_replicas = Gauge("kondukt_shard_replicas", "Operator replicas alive, as this replica sees "
                                    "their member Leases (with --shards).", registry=r)
        self.limit_claim_conflicts = Counter(
            "kondukt_limit_claim_conflicts_total", "Limit claims (rate, concurrency across shards) that met "
            "another replica's claim and were decided again.", registry=r)
        self.leaderships = Counter("kondukt_leaderships_total", "Times this replica became the leader.",
                                   registry=r)
        self.api_errors = Counter("kondukt_api_errors_total", "API calls that failed transiently, by HTTP status "
                                  "(0: timeout or connection refused/broken).", ["code"], registry=r)
        self.api_request_duration = Histogram("kondukt_api_request_duration_seconds",
                                              "The operator's API requests (not watches), by method.", ["method"],
                                              buckets=_API_BUCKETS, registry=r)
        self.api_retry_after = Counter("kondukt_api_retry_after_seconds_total",
                                       "Seconds of Retry-After asked by the API server and honoured.", registry=r)
        self.watch_restarts = Counter("kondukt_watch_restarts_total", "Informer watches started over: expired "
                                      "(410 Gone, listed again) or error.", ["resource", "reason"], registry=r)

        self.workflows_deleted = Counter("kondukt_workflows_deleted_total",
                                         "Finished Workflows deleted because their TTL ran out.", registry=r)
        self.archive_writes = Counter("kondukt_archive_writes_total", "Archive writes by result: archived, failed.",
                                      ["result"], registry=r)
        self.archive_pending = Gauge("kondukt_archive_pending", "Finished workflows waiting for the archive "
                                     "(their deletion waits too).", registry=r)
        self.archive_up = Gauge("kondukt_archive_up", "1 when the last archive operation succeeded, 0 when it "
                                "failed.", registry=r)
        self.archive_pruned = Counter("kondukt_archive_pruned_total", "Archived workflows removed after the "
                                      "archive's retention period.", registry=r)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Expose ``/metrics`` on ``address:port`` (a daemon thread; never blocks the event loop)."""
        start_http_server(port, addr=address, registry=self.registry)
