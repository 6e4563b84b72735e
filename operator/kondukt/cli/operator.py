"""``kondukt operator``: run the Kubernetes operator in the foreground.

Flags map one-to-one to :class:`~kondukt.kube.operator.OperatorOptions`; the Helm chart passes
``--lease`` (and its namespace and timing), ``--shards``, ``--log-level``, ``--metrics-port``, ``--default-worker-image``,
``--max-sub-workflow-depth`` and ``--namespace``. The operator itself (Kopf, the Kubernetes clients) is
imported only when the command runs. This module only parses arguments: it must never hold operator logic.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from kondukt.archive import DSN_ENV
from kondukt.archive.errors import ArchiveError
from kondukt.engine.models import TTLStrategy
from kondukt.engine.payloads import DEFAULT_INLINE_VALUE_BYTES
from kondukt.errors import KonduktUserError
from kondukt.kube.status import DEFAULT_COMPRESS_OVER_BYTES
from kondukt.limits import (
    DEFAULT_MAX_SUB_WORKFLOW_DEPTH,
    MAX_SUB_WORKFLOW_DEPTH_ENV,
    max_sub_workflow_depth_from_env,
)
from kondukt.scriptpool import (
    DEFAULT_MEMORY_LIMIT_BYTES,
    DEFAULT_TIME_LIMIT_SECONDS,
    DEFAULT_WORKERS,
    MIB,
    ScriptLimits,
    ScriptLimitsError,
)
from kondukt_workers.egress import split_list

#: Where ``kondukt operator --archive`` (and the CLI's ``--archived`` commands) find the archive's connection string.
ARCHIVE_DSN_ENV = DSN_ENV


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Configure ``kondukt operator``."""
    parser.description = (
        "Run Kondukt's operator: it executes Workflow resources, every task attempt as a Job, and "
        "records progress in each Workflow's status. Stops on SIGINT/SIGTERM."
    )
    parser.add_argument("-n", "--namespace", dest="namespaces", action="append", default=[], metavar="NS",
                        help="watch this namespace (repeatable); default: every namespace")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG / ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context")
    election = parser.add_mutually_exclusive_group()
    election.add_argument("--standalone", action="store_true",
                          help="no leader election: this process is the only replica (the default without --lease)")
    election.add_argument("--lease", metavar="NAME",
                          help="elect a leader among the replicas through this Lease (coordination.k8s.io); "
                          "only the leader acts, the others stand by")
    parser.add_argument("--shards", type=int, default=1, metavar="N",
                        help="split the Workflows into N shards, one Lease each (NAME-shard-<i>-of-<N>, with --lease): every "
                        "replica holds a fair share and acts on those only (default 1: one leader acts on all)")
    parser.add_argument("--lease-namespace", metavar="NS",
                        help="namespace of the Lease (default: $POD_NAMESPACE)")
    # Defaults (None here, so that parsing never imports the operator): client-go's 15 s / 10 s / 2 s.
    parser.add_argument("--lease-duration", type=int, metavar="SECONDS",
                        help="a standby takes the Lease over when its holder has not renewed it for this long "
                        "(default 15)")
    parser.add_argument("--lease-renew-deadline", type=float, metavar="SECONDS",
                        help="the leader stops acting when it could not renew the Lease for this long; shorter "
                        "than --lease-duration (default 10)")
    parser.add_argument("--lease-retry-period", type=float, metavar="SECONDS",
                        help="how often the leader renews the Lease and a standby tries to take it (default 2)")
    parser.add_argument("--metrics-port", type=int, default=8080, help="Prometheus /metrics port; 0 = off")
    parser.add_argument("--metrics-address", default="0.0.0.0", help="address the metrics server binds")
    parser.add_argument("--liveness", metavar="URL", help="Kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        type=str.upper)
    parser.add_argument("--default-worker-image", metavar="IMAGE",
                        help="image for TaskDefs whose template names none")
    parser.add_argument("--worker-service-account", metavar="NAME",
                        help="ServiceAccount of attempt pods whose TaskDef names none")
    parser.add_argument("--worker-env", type=_env_pair, action="append", default=[], metavar="NAME=VALUE",
                        help="environment for every worker (e.g. KONDUKT_PAYLOAD_BUCKET=...); repeatable")
    parser.add_argument("--job-ttl-seconds", type=int, default=600,
                        help="finished Jobs are deleted after this long (their results are in the status)")
    parser.add_argument("--workers", type=int, default=16, help="workflows reconciled in parallel")
    parser.add_argument("--compress-status-over", type=int, default=DEFAULT_COMPRESS_OVER_BYTES, metavar="BYTES",
                        help="store status.tasks compressed when their JSON is larger than this")
    parser.add_argument("--definition-grace-seconds", type=float, default=15.0,
                        help="how long a new Workflow waits for a missing WorkflowDef/TaskDef before failing")
    parser.add_argument("--status-coalesce-seconds", type=float, default=1.0, metavar="SECONDS",
                        help="a status write that only records progress (tasks started or finished) waits until "
                        "this long after the workflow's previous write, gathering what comes meanwhile (0: write "
                        "every change at once); starts, ends and operations are written at once")
    parser.add_argument("--status-value-limit", type=int, default=DEFAULT_INLINE_VALUE_BYTES // 1024, metavar="KIB",
                        help="a task input or output, or the variables, larger than this does not stay in the "
                        "Workflow's status: it goes to external payload storage (KONDUKT_PAYLOAD_BUCKET), else its "
                        "task FAILS naming the size")
    parser.add_argument("--script-time-limit", type=float, default=DEFAULT_TIME_LIMIT_SECONDS, metavar="SECONDS",
                        help="wall-clock limit of one JSON_JQ_TRANSFORM evaluation; its process is killed after it "
                        "and the task FAILS naming the limit")
    parser.add_argument("--script-memory-limit", type=int, default=DEFAULT_MEMORY_LIMIT_BYTES // MIB, metavar="MIB",
                        help="address-space limit (RLIMIT_AS) of each jq evaluation process, in MiB")
    parser.add_argument("--script-workers", type=int, default=DEFAULT_WORKERS, metavar="N",
                        help="jq evaluation processes at once (more requests wait, namespaces taking turns)")
    parser.add_argument("--max-sub-workflow-depth", type=int, default=None, metavar="N",
                        help="how deep SUB_WORKFLOW children may nest; a task that would start one deeper fails "
                        f"(default: ${MAX_SUB_WORKFLOW_DEPTH_ENV}, else {DEFAULT_MAX_SUB_WORKFLOW_DEPTH}, as Argo's "
                        "recursion limit)")
    retention = parser.add_argument_group(
        "retention of finished workflows",
        "The default of Workflows whose spec has no ttlStrategy (Argo's fields; the most specific wins). A "
        "SUB_WORKFLOW child is deleted with its parent; with an archive, nothing is deleted before it is archived.")
    retention.add_argument("--ttl-after-completion", type=int, metavar="SECONDS",
                           help="delete a finished Workflow this long after it ended (default: keep it)")
    retention.add_argument("--ttl-after-success", type=int, metavar="SECONDS",
                           help="delete a COMPLETED Workflow this long after it ended")
    retention.add_argument("--ttl-after-failure", type=int, metavar="SECONDS",
                           help="delete a FAILED, TIMED_OUT or TERMINATED Workflow this long after it ended")
    archive = parser.add_argument_group(
        "the workflow archive",
        f"Finished workflows are written to PostgreSQL before their TTL may delete them. The connection string "
        f"comes from ${ARCHIVE_DSN_ENV} only (the chart sets it from a Secret), never from a flag.")
    archive.add_argument("--archive", action="store_true",
                         help=f"archive finished workflows in the PostgreSQL database of ${ARCHIVE_DSN_ENV}")
    archive.add_argument("--archive-retention-days", type=float, default=0.0, metavar="DAYS",
                         help="remove archived workflows that finished longer ago than this (default 0: keep them)")
    egress = parser.add_argument_group(
        "egress of HTTP tasks and task pods",
        "By default an HTTP task (performed by the operator) and the workers' URI reader refuse link-local, "
        "loopback, unspecified, multicast and reserved addresses, the API server's addresses and the cluster's "
        "service and pod ranges (every private range while those are not given). See SECURITY.md.")
    egress.add_argument("--egress-allow", action="append", default=[], metavar="HOST|CIDR",
                        help="allow this host (exact, or *.suffix) or network despite the rules; repeatable, "
                        "or comma-separated")
    egress.add_argument("--egress-deny", action="append", default=[], metavar="CIDR",
                        help="refuse this network too; repeatable, or comma-separated")
    egress.add_argument("--service-cidr", action="append", default=[], metavar="CIDR",
                        help="the cluster's service range (e.g. 10.96.0.0/12); repeatable, or comma-separated")
    egress.add_argument("--pod-cidr", action="append", default=[], metavar="CIDR",
                        help="the cluster's pod range (e.g. 10.244.0.0/16); repeatable, or comma-separated")
    parser.set_defaults(func=run)


def _listed(values: list[str]) -> tuple[str, ...]:
    return tuple(part for value in values for part in split_list(value))


def default_ttl(args: argparse.Namespace) -> TTLStrategy | None:
    """The operator's default ttlStrategy from ``--ttl-after-*`` (None when none is given)."""
    values = {"secondsAfterCompletion": args.ttl_after_completion, "secondsAfterSuccess": args.ttl_after_success,
              "secondsAfterFailure": args.ttl_after_failure}
    for field, value in values.items():
        if value is not None and value < 0:
            flag = {"secondsAfterCompletion": "completion", "secondsAfterSuccess": "success",
                    "secondsAfterFailure": "failure"}[field]
            raise KonduktUserError(f"--ttl-after-{flag} must not be negative (got {value})")
    if all(value is None for value in values.values()):
        return None
    return TTLStrategy(**values)


def archive_dsn(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """The archive's connection string when ``--archive`` is given (checked, never echoed)."""
    if args.archive_retention_days < 0:
        raise KonduktUserError("--archive-retention-days must not be negative")
    if not args.archive:
        return None
    from kondukt.archive.store import check_dsn

    dsn = environ.get(ARCHIVE_DSN_ENV, "")
    if not dsn.strip():
        raise KonduktUserError(f"--archive needs the archive's connection string in ${ARCHIVE_DSN_ENV} "
                               "(the chart sets it from archive.secretName)")
    try:
        check_dsn(dsn)
    except ArchiveError as err:
        raise KonduktUserError(f"${ARCHIVE_DSN_ENV}: {err}") from None
    return dsn


def run(args: argparse.Namespace) -> int:
    from kondukt.kube.leader import LeaseTiming
    from kondukt.kube.operator import OperatorOptions, egress_policy, run_operator

    if args.workers < 1:
        raise KonduktUserError("--workers must be at least 1")
    if args.job_ttl_seconds < 0:
        raise KonduktUserError("--job-ttl-seconds must not be negative")
    if args.status_value_limit < 1:
        raise KonduktUserError("--status-value-limit must be at least 1 (KiB)")
    if not 0 <= args.status_coalesce_seconds <= 60:
        raise KonduktUserError(f"--status-coalesce-seconds must be between 0 and 60, got {args.status_coalesce_seconds:g}")
    try:
        script_limits = ScriptLimits(time_limit_seconds=args.script_time_limit,
                                     memory_limit_bytes=args.script_memory_limit * MIB, workers=args.script_workers)
    except ScriptLimitsError as err:
        raise KonduktUserError(str(err)) from None
    default = LeaseTiming()
    timing = LeaseTiming(
        lease_duration=default.lease_duration if args.lease_duration is None else args.lease_duration,
        renew_deadline=default.renew_deadline if args.lease_renew_deadline is None else args.lease_renew_deadline,
        retry_period=default.retry_period if args.lease_retry_period is None else args.lease_retry_period,
    )
    lease_namespace = args.lease_namespace or os.environ.get("POD_NAMESPACE") or None
    if args.shards < 1:
        raise KonduktUserError(f"--shards must be at least 1, got {args.shards}")
    if args.shards > 1 and not args.lease:
        raise KonduktUserError("--shards needs --lease NAME: the shards are Leases NAME-shard-<i>-of-<N>")
    if args.lease:
        problems = timing.problems()
        if not lease_namespace:
            problems.append("--lease needs the Lease's namespace: --lease-namespace (or $POD_NAMESPACE)")
        if problems:
            raise KonduktUserError("; ".join(problems))
    max_depth = args.max_sub_workflow_depth
    if max_depth is None:
        max_depth = max_sub_workflow_depth_from_env()
    elif max_depth < 0:
        raise KonduktUserError("--max-sub-workflow-depth must not be negative")
    options = OperatorOptions(
        namespaces=tuple(args.namespaces),
        kubeconfig=args.kubeconfig,
        context=args.context,
        standalone=args.standalone,
        lease_name=args.lease,
        lease_namespace=lease_namespace,
        lease_timing=timing,
        shards=args.shards,
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        liveness_endpoint=args.liveness,
        log_level=args.log_level,
        job_ttl_seconds=args.job_ttl_seconds,
        default_worker_image=args.default_worker_image,
        worker_service_account=args.worker_service_account,
        worker_env=tuple(args.worker_env),
        workers=args.workers,
        compress_over_bytes=args.compress_status_over,
        definition_grace_seconds=args.definition_grace_seconds,
        status_coalesce_seconds=args.status_coalesce_seconds,
        script_limits=script_limits,
        inline_value_bytes=args.status_value_limit * 1024,
        max_sub_workflow_depth=max_depth,
        egress_allow=_listed(args.egress_allow),
        egress_deny=_listed(args.egress_deny),
        service_cidrs=_listed(args.service_cidr),
        pod_cidrs=_listed(args.pod_cidr),
        default_ttl=default_ttl(args),
        archive_dsn=archive_dsn(args, os.environ),
        archive_retention_days=args.archive_retention_days,
    )
    try:
        egress_policy(options, [])
    except ValueError as err:
        raise KonduktUserError(f"kondukt operator: {err}") from None
    return run_operator(options)
