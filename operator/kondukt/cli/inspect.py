"""``kondukt get``, ``describe`` and ``watch``: looking at Workflow resources the way kubectl users do.

``kondukt get`` lists them like ``kubectl get`` (NAME, PHASE, PROGRESS, AGE, MESSAGE; ``-o wide|json|yaml``),
``kondukt describe`` shows one in detail (every task attempt, conditions, recent Events), ``kondukt
watch`` follows one until it ends (exit code 0 when COMPLETED, 1 otherwise, 124 when ``--timeout`` ran
out): redrawn in place on a terminal, one line per change in pipes and logs.

Formatting is done by pure functions of the objects (and of ``now``), so it is tested without a cluster;
the cluster is reached through :mod:`kondukt.cli.cluster`. This module only reads: it never changes a
Workflow.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import IO, Any, Protocol

import yaml

from kondukt import graph as graphs
from kondukt.cli import archived, cluster
from kondukt.cli.app import add_cluster_options
from kondukt.cli.cluster import ClusterError
from kondukt.cli.text import (
    age,
    compact_json,
    format_table,
    human_duration,
    iso_time,
    parse_timestamp,
    short_duration,
    truncate,
)
from kondukt.cli.workflows import (
    TERMINAL_PHASES,
    definition_label,
    meta_of,
    object_ref,
    parse_tasks,
    spec_of,
    status_of,
    workflow_message,
    workflow_phase,
)
from kondukt.engine.models import Task, WorkflowStatus
from kondukt.errors import KonduktError, KonduktUserError

WATCH_TIMEOUT_EXIT_CODE = 124  # like timeout(1)
INTERRUPTED_EXIT_CODE = 130


class WatchedApi(Protocol):
    """What ``kondukt watch`` needs of the cluster (:class:`~kondukt.cli.cluster.WorkflowApi` has it)."""

    def get_workflow(self, name: str, namespace: str | None = None) -> dict[str, Any]: ...

    def watch_workflow(
        self, name: str, resource_version: str | None, timeout_seconds: int, namespace: str | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]: ...


# ============================================================================================ get
MESSAGE_WIDTH = 60


def workflow_duration(obj: Mapping[str, Any], now: dt.datetime) -> str:
    status = status_of(obj)
    start = parse_timestamp(status.get("startTime"))
    if start is None:
        return "-"
    end = parse_timestamp(status.get("endTime")) or now
    return human_duration((end - start).total_seconds())


def workflow_row(obj: Mapping[str, Any], now: dt.datetime, wide: bool, with_namespace: bool) -> list[str]:
    meta = meta_of(obj)
    status = status_of(obj)
    message = workflow_message(obj)
    row = [str(meta.get("namespace") or "")] if with_namespace else []
    row += [
        str(meta.get("name") or ""),
        workflow_phase(obj),
        str(status.get("progress") or ""),
        age(meta.get("creationTimestamp"), now),
    ]
    if wide:
        row += [
            definition_label(obj) or "-",
            workflow_duration(obj, now),
            str(spec_of(obj).get("correlationId") or "-"),
            " ".join(message.split()),
        ]
    else:
        row.append(truncate(message, MESSAGE_WIDTH))
    return row


def format_workflow_table(
    objs: Sequence[Mapping[str, Any]], now: dt.datetime, wide: bool = False, with_namespace: bool = False
) -> str:
    headers = ["NAMESPACE"] if with_namespace else []
    headers += ["NAME", "PHASE", "PROGRESS", "AGE"]
    headers += ["DEFINITION", "DURATION", "CORRELATION-ID", "MESSAGE"] if wide else ["MESSAGE"]
    return format_table(headers, [workflow_row(o, now, wide, with_namespace) for o in objs])


def for_output(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as ``-o json|yaml`` prints it: without managedFields, like kubectl."""
    copy = json.loads(json.dumps(obj, default=str))
    copy.get("metadata", {}).pop("managedFields", None)
    return dict(copy)


def serialize(objs: Sequence[Mapping[str, Any]], single: bool, fmt: str) -> str:
    document: Any = (
        for_output(objs[0])
        if single
        else {"apiVersion": "v1", "kind": "List", "items": [for_output(o) for o in objs], "metadata": {}}
    )
    if fmt == "json":
        return json.dumps(document, indent=2, sort_keys=False) + "\n"
    return str(yaml.safe_dump(document, sort_keys=False, default_flow_style=False))


# ============================================================================================ describe
SUMMARY_WIDTH = 100
REASON_WIDTH = 80


def summarize_mapping(values: Any, indent: str = "  ") -> list[str]:
    """One line per top-level key, each value as compact JSON cut to a readable width."""
    if not isinstance(values, Mapping) or not values:
        return [f"{indent}<none>"]
    width = max(len(str(k)) for k in values) + 1
    return [
        f"{indent}{(str(k) + ':').ljust(width)}  {truncate(compact_json(v), SUMMARY_WIDTH)}"
        for k, v in values.items()
    ]


def task_duration(task: Task, now: dt.datetime) -> str:
    if task.startTime <= 0:
        return "-"
    if task.endTime > 0:
        return short_duration(task.endTime - task.startTime)
    if not task.status.terminal:
        return short_duration(now.timestamp() * 1000 - task.startTime) + "+"
    return "-"


def task_rows(tasks: Sequence[Task], now: dt.datetime) -> list[list[str]]:
    return [
        [
            t.referenceTaskName,
            t.taskType,
            t.status.value,
            str(t.retryCount),
            str(t.iteration),
            task_duration(t, now),
            str(getattr(t, "jobName", None) or t.subWorkflowId or "-"),
            truncate(t.reasonForIncompletion or "", REASON_WIDTH),
        ]
        for t in tasks
    ]


TASK_HEADERS = ("REF", "TYPE", "STATUS", "RETRY", "ITER", "DURATION", "JOB/CHILD", "REASON")


def _event_time(event: Mapping[str, Any]) -> dt.datetime | None:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        when = parse_timestamp(event.get(key))
        if when is not None:
            return when
    series = event.get("series")
    if isinstance(series, Mapping):
        return parse_timestamp(series.get("lastObservedTime"))
    return None


def event_rows(events: Sequence[Mapping[str, Any]], now: dt.datetime) -> list[list[str]]:
    ordered = sorted(events, key=lambda e: _event_time(e) or dt.datetime.min.replace(tzinfo=dt.UTC))
    rows = []
    for event in ordered:
        when = _event_time(event)
        shown_age = "<unknown>" if when is None else human_duration((now - when).total_seconds())
        count = event.get("count")
        first = parse_timestamp(event.get("firstTimestamp"))
        if isinstance(count, int) and count > 1 and first is not None:
            shown_age += f" (x{count} over {human_duration((now - first).total_seconds())})"
        source = event.get("source") if isinstance(event.get("source"), Mapping) else {}
        reporter = str(event.get("reportingComponent") or (source or {}).get("component") or "")
        rows.append(
            [
                str(event.get("type") or ""),
                str(event.get("reason") or ""),
                shown_age,
                reporter,
                " ".join(str(event.get("message") or "").split()),
            ]
        )
    return rows


def describe_workflow(
    obj: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
    events_error: str | None = None,
) -> str:
    """``kondukt describe``: the Workflow in detail, every attempt, its conditions and recent Events."""
    meta = meta_of(obj)
    spec = spec_of(obj)
    status = status_of(obj)
    tasks = parse_tasks(obj)
    terminate = spec.get("terminate")
    fields: list[tuple[str, str]] = [
        ("Name", str(meta.get("name") or "")),
        ("Namespace", str(meta.get("namespace") or "")),
        ("Definition", definition_label(obj) or "-"),
        ("Phase", workflow_phase(obj) or "<not started>"),
        ("Progress", str(status.get("progress") or "-")),
        ("Message", workflow_message(obj) or "-"),
        ("Correlation ID", str(spec.get("correlationId") or "-")),
        (
            "Created",
            f"{iso_time(meta.get('creationTimestamp'))} ({age(meta.get('creationTimestamp'), now)} ago)",
        ),
        ("Started", iso_time(status.get("startTime"))),
        ("Ended", iso_time(status.get("endTime"))),
        ("Duration", workflow_duration(obj, now)),
        ("Suspend", "true" if spec.get("suspend") else "false"),
        ("Terminate", f"requested: {terminate.get('reason', '')}" if isinstance(terminate, Mapping) else "-"),
    ]
    if status.get("reasonForIncompletion") and status.get("message") != status.get("reasonForIncompletion"):
        fields.append(("Reason", str(status["reasonForIncompletion"])))
    width = max(len(label) for label, _ in fields) + 3  # the longest label, its colon, two spaces
    lines = [f"{(label + ':').ljust(width)}{value}" for label, value in fields]
    for title, values in (
        ("Input", spec.get("input")),
        ("Output", status.get("output")),
        ("Variables", status.get("variables")),
    ):
        lines.append(f"{title}:")
        lines.extend(summarize_mapping(values))
    lines.append(f"Tasks ({len(tasks)} attempts):" if tasks else "Tasks:")
    lines.append(format_table(TASK_HEADERS, task_rows(tasks, now), indent="  ") if tasks else "  <none>")
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    lines.append("Conditions:")
    if conditions:
        rows = [
            [
                str(c.get("type") or ""),
                str(c.get("status") or ""),
                str(c.get("reason") or ""),
                age(c.get("lastTransitionTime"), now),
                " ".join(str(c.get("message") or "").split()),
            ]
            for c in conditions
        ]
        lines.append(format_table(("TYPE", "STATUS", "REASON", "AGE", "MESSAGE"), rows, indent="  "))
    else:
        lines.append("  <none>")
    lines.append("Events:")
    if events_error:
        lines.append(f"  <cannot list events: {events_error}>")
    elif events:
        lines.append(
            format_table(("TYPE", "REASON", "AGE", "FROM", "MESSAGE"), event_rows(events, now), indent="  ")
        )
    else:
        lines.append("  <none>")
    return "\n".join(lines) + "\n"


# ============================================================================================ watch
def latest_attempts(tasks: Sequence[Task]) -> list[Task]:
    """The latest attempt of each task reference, in the order the references first appeared."""
    summaries = graphs.summarize_attempts(tasks)
    order: list[str] = []
    for task in tasks:
        ref = graphs.definition_ref(task)
        if ref not in order:
            order.append(ref)
    return [summaries[ref].latest for ref in order]


def watch_frame(obj: Mapping[str, Any], now: dt.datetime, max_rows: int) -> list[str]:
    """The screen ``kondukt watch`` redraws on a terminal."""
    tasks = latest_attempts(parse_tasks(obj))
    phase = workflow_phase(obj) or "<not started>"
    header = [
        f"Workflow {object_ref(obj)}  {definition_label(obj)}".rstrip(),
        f"Phase: {phase}   Progress: {status_of(obj).get('progress') or '-'}   Duration: {workflow_duration(obj, now)}",
    ]
    message = workflow_message(obj)
    if message:
        header.append(f"Message: {' '.join(message.split())}")
    rows = [
        [t.referenceTaskName, t.taskType, t.status.value, str(t.retryCount), task_duration(t, now)]
        for t in tasks
    ]
    hidden: list[Task] = []
    if len(rows) > max_rows:
        # Show what is happening now: the tail of the list, after a summary of what scrolled away.
        cut = len(rows) - max_rows + 1
        hidden, rows = tasks[:cut], rows[cut:]
    table = format_table(("TASK", "TYPE", "STATUS", "RETRY", "DURATION"), rows).splitlines()
    if hidden:
        counts: dict[str, int] = {}
        for task in hidden:
            counts[task.status.value] = counts.get(task.status.value, 0) + 1
        summary = ", ".join(f"{n:,} {s}" for s, n in counts.items())
        table.insert(1, f"… {len(hidden):,} earlier tasks ({summary})")
    return [*header, "", *table]


@dataclass
class LineProgress:
    """Plain lines for logs and pipes: the workflow's phase/progress and each attempt's transitions."""

    out: IO[str]
    clock: Callable[[], str] = lambda: time.strftime("%H:%M:%S")

    def __post_init__(self) -> None:
        self.last_summary: tuple[str, str, str] | None = None
        self.seen: dict[str, str] = {}

    def show(self, obj: Mapping[str, Any], now: dt.datetime) -> None:
        stamp = self.clock()
        for task in parse_tasks(obj):
            if self.seen.get(task.taskId) == task.status.value:
                continue
            self.seen[task.taskId] = task.status.value
            retry = f" retry {task.retryCount}" if task.retryCount else ""
            reason = (
                f": {truncate(task.reasonForIncompletion, REASON_WIDTH)}"
                if task.reasonForIncompletion
                else ""
            )
            self.out.write(
                f"{stamp}   {task.referenceTaskName} ({task.taskType}) {task.status.value}{retry}{reason}\n"
            )
        summary = (workflow_phase(obj), str(status_of(obj).get("progress") or ""), workflow_message(obj))
        if summary != self.last_summary:
            self.last_summary = summary
            phase, progress, message = summary
            text = " ".join(
                part for part in (phase or "<not started>", progress, truncate(message, REASON_WIDTH)) if part
            )
            self.out.write(f"{stamp} {object_ref(obj)} {text}\n")
        self.out.flush()


@dataclass
class ScreenProgress:
    """A frame redrawn in place on a terminal (cursor up, clear, draw)."""

    out: IO[str]

    def __post_init__(self) -> None:
        self.drawn_lines = 0

    def show(self, obj: Mapping[str, Any], now: dt.datetime) -> None:
        size = shutil.get_terminal_size((120, 40))
        frame = [line[: size.columns - 1] for line in watch_frame(obj, now, max_rows=max(5, size.lines - 8))]
        if self.drawn_lines:
            self.out.write(f"\x1b[{self.drawn_lines}F\x1b[J")
        self.out.write("\n".join(frame) + "\n")
        self.out.flush()
        self.drawn_lines = len(frame)


def watch_exit_code(phase: str) -> int:
    return 0 if phase == WorkflowStatus.COMPLETED.value else 1


def watch_until_done(
    api: WatchedApi,
    name: str,
    namespace: str | None,
    timeout: float,
    progress: LineProgress | ScreenProgress,
    err: IO[str],
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Follow one Workflow until it is terminal (0 COMPLETED, 1 otherwise) or `timeout` s pass (124)."""
    deadline = monotonic() + timeout if timeout > 0 else math.inf
    obj = api.get_workflow(name, namespace)
    while True:
        progress.show(obj, dt.datetime.now(dt.UTC))
        phase = workflow_phase(obj)
        if phase in TERMINAL_PHASES:
            return _finish(obj, err)
        remaining = deadline - monotonic()
        if remaining <= 0:
            err.write(
                f"timed out after {timeout:g}s: workflow {object_ref(obj)} is still {phase or 'not started'}\n"
            )
            return WATCH_TIMEOUT_EXIT_CODE
        window = 300 if math.isinf(remaining) else min(300, math.ceil(remaining))
        resource_version = meta_of(obj).get("resourceVersion")
        changed = False
        for event_type, current in api.watch_workflow(name, resource_version, window, namespace):
            if event_type == "DELETED":
                raise ClusterError(f"workflow {object_ref(obj)} was deleted while being watched")
            if event_type in ("ADDED", "MODIFIED"):
                obj, changed = current, True
                progress.show(obj, dt.datetime.now(dt.UTC))
                if workflow_phase(obj) in TERMINAL_PHASES:
                    return _finish(obj, err)
            if monotonic() >= deadline:
                break
        if not changed:
            obj = api.get_workflow(name, namespace)  # the watch ended quietly: re-read to resynchronise


def _finish(obj: Mapping[str, Any], err: IO[str]) -> int:
    phase = workflow_phase(obj)
    if phase != WorkflowStatus.COMPLETED.value:
        reason = workflow_message(obj)
        err.write(f"workflow {object_ref(obj)} ended {phase}" + (f": {reason}" if reason else "") + "\n")
    return watch_exit_code(phase)


# ============================================================================================ commands
def cmd_get(args: argparse.Namespace) -> int:
    if args.archived:
        return cmd_get_archived(args)
    for flag, value in (("--phase", args.phase), ("-l", args.selector), ("--since", args.since),
                        ("--until", args.until)):
        if value:
            raise KonduktUserError(f"{flag} filters the archive: add --archived")
    if args.name and args.all_namespaces:
        raise KonduktUserError(
            "a workflow cannot be retrieved by name across all namespaces: drop -A or the name"
        )
    with closing(cluster.connect(cluster.connection_from_args(args))) as api:
        if args.name:
            objs = [api.get_workflow(args.name)]
        else:
            objs = api.list_workflows(all_namespaces=args.all_namespaces)
        namespace = api.namespace
    if args.output in ("json", "yaml"):
        sys.stdout.write(serialize(objs, single=bool(args.name), fmt=args.output))
        return 0
    if not objs:
        where = "any namespace" if args.all_namespaces else f"{namespace} namespace"
        sys.stderr.write(f"No workflows found in {where}.\n")
        return 0
    now = dt.datetime.now(dt.UTC)
    sys.stdout.write(
        format_workflow_table(objs, now, wide=args.output == "wide", with_namespace=args.all_namespaces)
        + "\n"
    )
    return 0


def cmd_get_archived(args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    query = archived.query_from_args(args, now)
    records = archived.find(args, query, with_workflow=args.output in ("json", "yaml"))
    if args.output in ("json", "yaml"):
        sys.stdout.write(serialize([dict(r.workflow) for r in records], single=False, fmt=args.output))
        return 0
    if not records:
        where = f"namespace {query.namespace}" if query.namespace else "any namespace"
        sys.stderr.write(f"No archived workflows found in {where}.\n")
        return 0
    sys.stdout.write(archived.archived_rows(records, wide=args.output == "wide") + "\n")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    if args.archived:
        record, others = archived.get_one(args, args.name)
        sys.stderr.write(archived.others_note(others))
        sys.stdout.write(archived.archive_header(record))
        sys.stdout.write(describe_workflow(record.workflow, None, dt.datetime.now(dt.UTC),
                                           "not kept in the archive (Events live in the cluster only)"))
        return 0
    with closing(cluster.connect(cluster.connection_from_args(args))) as api:
        obj = api.get_workflow(args.name)
        events: list[dict[str, Any]] | None = None
        events_error: str | None = None
        try:
            events = api.events_for(obj)
        except KonduktError as exc:  # describing still helps without Events (e.g. RBAC allows only workflows)
            events_error = str(exc)
    sys.stdout.write(describe_workflow(obj, events, dt.datetime.now(dt.UTC), events_error))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    with closing(cluster.connect(cluster.connection_from_args(args))) as api:
        tty = sys.stdout.isatty() if args.tty is None else args.tty
        progress: LineProgress | ScreenProgress = ScreenProgress(sys.stdout) if tty else LineProgress(sys.stdout)
        try:
            return watch_until_done(api, args.name, None, args.timeout, progress, sys.stderr)
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            return INTERRUPTED_EXIT_CODE


# ============================================================================================ configuration
def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Configure ``kondukt get``, ``describe`` or ``watch``."""
    add_cluster_options(parser)
    if name == "get":
        parser.description = "List Workflow resources with their phase and progress, or print one as JSON/YAML."
        parser.add_argument("name", nargs="?", metavar="NAME", help="one workflow (default: all in the namespace)")
        parser.add_argument("-A", "--all-namespaces", action="store_true", help="list workflows of every namespace")
        parser.add_argument(
            "-o", "--output", choices=("wide", "json", "yaml"), help="wide table, or the objects as JSON/YAML"
        )
        archived.add_archive_options(parser)
        filters = parser.add_argument_group("filters of --archived (every namespace unless -n)")
        filters.add_argument("--phase", action="append", metavar="PHASE",
                             help="COMPLETED, FAILED, TIMED_OUT or TERMINATED (repeatable, or comma-separated)")
        filters.add_argument("-l", "--selector", metavar="SELECTOR",
                             help="label selector, as kubectl's (team=a,tier!=gold,env in (dev,qa),!temp)")
        filters.add_argument("--since", metavar="DURATION|TIME",
                             help="finished at or after this: 30m, 2h, 7d ago, or an RFC 3339 time")
        filters.add_argument("--until", metavar="DURATION|TIME", help="finished before this (same forms)")
        filters.add_argument("--limit", type=int, default=500, metavar="N", help="at most N rows, newest first")
        parser.set_defaults(func=cmd_get)
    elif name == "describe":
        parser.description = (
            "Show a Workflow: phase, times, input/output, every task attempt, conditions and recent Events."
        )
        parser.add_argument("name", metavar="NAME", help="a Workflow; with --archived a name or a uid")
        archived.add_archive_options(parser)
        parser.set_defaults(func=cmd_describe)
    elif name == "watch":
        parser.description = (
            "Follow a Workflow's progress until it is terminal. Exit code: 0 COMPLETED, 1 FAILED / "
            f"TIMED_OUT / TERMINATED, {WATCH_TIMEOUT_EXIT_CODE} when --timeout ran out, 2 on errors."
        )
        parser.add_argument("name", metavar="NAME")
        parser.add_argument(
            "--timeout", type=float, default=0, metavar="SECONDS", help="give up after this long (0 = never)"
        )
        tty = parser.add_mutually_exclusive_group()
        tty.add_argument(
            "--tty", dest="tty", action="store_true", default=None, help="redraw in place (default on a terminal)"
        )
        tty.add_argument(
            "--plain", dest="tty", action="store_false", help="print one line per change (default in pipes)"
        )
        parser.set_defaults(func=cmd_watch)
    else:
        raise ValueError(f"{__name__} does not configure `kondukt {name}`")
