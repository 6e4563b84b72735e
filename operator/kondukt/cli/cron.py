"""``kondukt cron list`` and ``kondukt cron trigger NAME``: CronWorkflows from the command line.

``list`` shows them like ``kubectl get cwf`` does, with the schedule, time zone, active runs and the last
and next scheduled times; ``trigger`` starts a run now, as ``kubectl create job --from=cronjob/NAME`` does
for a CronJob: the same Workflow the operator would create on schedule (:func:`kondukt.kube.schedule.build_run`,
owned by the CronWorkflow, so it counts in its active runs and history), named
``<cronworkflow>-manual-<unix seconds>``. A trigger ignores ``suspend`` and ``concurrencyPolicy`` (it is an
explicit request); two triggers in the same second are one run (the second is refused as existing).

Formatting is a pure function of the objects and ``now``; the cluster is reached through
:mod:`kondukt.cli.cluster`. This module never writes a CronWorkflow.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Mapping, Sequence
from contextlib import closing
from typing import Any

from kondukt.cli import cluster
from kondukt.cli.app import add_cluster_options
from kondukt.cli.text import format_table, human_duration
from kondukt.cli.workflows import meta_of, spec_of, status_of
from kondukt.kube import schedule as cron


def schedule_text(obj: Mapping[str, Any]) -> str:
    """The schedules as the operator reads them (its status), else as written in the spec."""
    shown = status_of(obj).get("schedule")
    if shown:
        return str(shown)
    spec = spec_of(obj)
    written = [spec["schedule"]] if spec.get("schedule") else []
    written += [str(s) for s in spec.get("schedules") or []]
    return "; ".join(written)


def ready_text(obj: Mapping[str, Any]) -> str:
    for condition in status_of(obj).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            state = "True" if condition.get("status") == "True" else f"False ({condition.get('reason')})"
            return state if state == "True" else f"{state}: {' '.join(str(condition.get('message')).split())}"
    return "Unknown"


def relative(stamp: Any, now: dt.datetime) -> str:
    when = cron.parse_stamp(stamp)
    if when is None:
        return "-"
    seconds = (when - now).total_seconds()
    return f"in {human_duration(seconds)}" if seconds >= 0 else f"{human_duration(-seconds)} ago"


def cron_rows(objs: Sequence[Mapping[str, Any]], now: dt.datetime, with_namespace: bool) -> list[list[str]]:
    rows = []
    for obj in objs:
        meta, spec, status = meta_of(obj), spec_of(obj), status_of(obj)
        row = [str(meta.get("namespace") or "")] if with_namespace else []
        row += [
            str(meta.get("name") or ""),
            schedule_text(obj) or "-",
            str(spec.get("timezone") or "UTC"),
            "True" if spec.get("suspend") else "False",
            str(len(status.get("active") or [])),
            relative(status.get("lastScheduleTime"), now),
            relative(status.get("nextScheduleTime"), now),
            ready_text(obj),
        ]
        rows.append(row)
    return rows


def format_cron_table(objs: Sequence[Mapping[str, Any]], now: dt.datetime, with_namespace: bool = False) -> str:
    headers = ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "NEXT", "READY"]
    if with_namespace:
        headers = ["NAMESPACE", *headers]
    return format_table(headers, cron_rows(objs, now, with_namespace))


def cmd_list(args: argparse.Namespace) -> int:
    with closing(cluster.connect(cluster.connection_from_args(args))) as api:
        objs = api.list_cron_workflows(all_namespaces=args.all_namespaces)
        if args.output == "json":
            print(json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}, indent=2))
            return 0
        if not objs:
            where = "any namespace" if args.all_namespaces else f"namespace {api.namespace}"
            print(f"No CronWorkflows found in {where}.", file=sys.stderr)
            return 0
        objs = sorted(objs, key=lambda o: (str(meta_of(o).get("namespace")), str(meta_of(o).get("name"))))
        print(format_cron_table(objs, dt.datetime.now(dt.UTC), with_namespace=args.all_namespaces))
    return 0


def cmd_trigger(args: argparse.Namespace) -> int:
    with closing(cluster.connect(cluster.connection_from_args(args))) as api:
        obj = api.get_cron_workflow(args.name)
        run = cron.build_run(obj, dt.datetime.now(dt.UTC), manual=True)
        created = api.create_workflow(run, namespace=str(meta_of(obj).get("namespace") or api.namespace))
        name = meta_of(created).get("name") or run["metadata"]["name"]
        print(f"workflow.kondukt.io/{name} created (a run of cronworkflow {args.name})")
    return 0


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: name a subcommand: `{parser.prog} list` or `{parser.prog} trigger NAME`",
          file=sys.stderr)
    return 2


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Configure ``kondukt cron`` and its subcommands."""
    subparsers = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND", dest="cron_command")
    parser.set_defaults(func=lambda _args: _usage(parser))
    listing = subparsers.add_parser("list", help="list CronWorkflows: schedule, time zone, active runs, "
                                    "last and next scheduled times",
                                    description="List CronWorkflows with their schedules and runs.")
    add_cluster_options(listing)
    listing.add_argument("-A", "--all-namespaces", action="store_true", help="list those of every namespace")
    listing.add_argument("-o", "--output", choices=("json",), help="the objects as JSON")
    listing.set_defaults(func=cmd_list)
    trigger = subparsers.add_parser(
        "trigger", help="start a run of a CronWorkflow now (<name>-manual-<unix seconds>)",
        description="Start a run of a CronWorkflow now, owned by it like its scheduled runs; suspend and "
        "concurrencyPolicy do not apply to it.")
    add_cluster_options(trigger)
    trigger.add_argument("name", metavar="NAME", help="the CronWorkflow")
    trigger.set_defaults(func=cmd_trigger)
