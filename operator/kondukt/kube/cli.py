"""The `kondukt` commands that talk to a cluster: get, describe, watch, graph, and the operations.

People look at Workflow resources the way they look at anything in Kubernetes: ``kondukt get`` lists
them like ``kubectl get`` (NAME, PHASE, PROGRESS, AGE, MESSAGE), ``kondukt describe`` shows one in
detail (every task attempt, conditions, recent Events), ``kondukt watch`` follows one until it ends
(exit code 0 when COMPLETED, 1 otherwise, 124 when ``--timeout`` ran out) and ``kondukt graph`` draws it.
Operations that are not spec fields — ``retry``, ``restart``, ``rerun``, ``skip``, ``complete`` — are
requests the operator applies once: this module writes them as annotations ``ops.kondukt.io/<op>``
carrying a fresh nonce. ``suspend``, ``resume`` and ``terminate`` set ``spec.suspend`` / ``spec.terminate``
on the user's behalf (users own ``spec``; the operator only ever writes ``status``).

All cluster access goes through :class:`WorkflowApi` (the sync ``kubernetes`` client), which turns
every failure — no kubeconfig, an unreachable server, not found, forbidden — into a
:class:`~kondukt.errors.KonduktError` whose message says what went wrong and where. Formatting is done
by pure functions of the objects (and of ``now``), so it is tested without a cluster.

This module must never write a Workflow's ``status``, never print a traceback for a cluster or input
problem, and never retry an operation on its own (each request carries its own nonce).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pydantic
import yaml

from kondukt import graph as graphs
from kondukt.engine.models import Task, WorkflowDef, WorkflowStatus, WorkflowTask
from kondukt.errors import KonduktError, KonduktUserError
from kondukt.kube.resources import (
    GROUP,
    OPERATION_ANNOTATION_PREFIX,
    VERSION,
    WORKFLOW_PLURAL,
    WORKFLOWDEF_PLURAL,
)
from kondukt.kube.status import StatusError, tasks_from_status
from kondukt.manifests import Bundle, load_files

WORKFLOWS = WORKFLOW_PLURAL
WORKFLOW_DEFS = WORKFLOWDEF_PLURAL
ANNOTATION_OPERATIONS = ("retry", "restart", "rerun", "skip", "complete")
SPEC_OPERATIONS = ("suspend", "resume", "terminate")
TERMINAL_PHASES = frozenset(s.value for s in WorkflowStatus if s.terminal)
COMPLETABLE_STATUSES = ("COMPLETED", "FAILED", "FAILED_WITH_TERMINAL_ERROR")
WATCH_TIMEOUT_EXIT_CODE = 124  # like timeout(1)
INTERRUPTED_EXIT_CODE = 130
DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0
IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ClusterError(KonduktError):
    """The cluster could not be used as asked (no kubeconfig, unreachable, not found, forbidden): exit 2.

    Exit code 1 stays unambiguous: ``kondukt watch`` uses it for a workflow that ended unsuccessfully.
    """

    exit_code = 2


# ============================================================================================ API access
def _api_error(exc: Any, what: str, namespace: str | None) -> ClusterError:
    """A clear message for an ApiException raised while acting on `what` (e.g. 'workflow "x"')."""
    status = getattr(exc, "status", None)
    body: dict[str, Any] = {}
    raw = getattr(exc, "body", None)
    if raw:
        try:
            decoded = json.loads(raw)
            body = decoded if isinstance(decoded, dict) else {}
        except (TypeError, ValueError):
            body = {}
    message = str(body.get("message") or getattr(exc, "reason", "") or "no details").strip()
    where = f" in namespace {namespace}" if namespace else ""
    if status == 404:
        details = body.get("details") if isinstance(body.get("details"), dict) else {}
        if details and details.get("name"):
            return ClusterError(f"{what} not found{where}")
        return ClusterError(
            f"the cluster does not serve {GROUP}/{VERSION} ({message}): install Kondukt's CRDs "
            "(`kubectl apply -f crds/`) or its Helm chart"
        )
    if status == 403:
        return ClusterError(f"forbidden: {message}")
    if status == 401:
        return ClusterError(
            f"unauthorized: the cluster rejected the credentials of this kubeconfig ({message})"
        )
    if status == 410:
        return ClusterError(f"the cluster expired the watch of {what}: {message}")
    return ClusterError(f"the cluster refused the request on {what}{where} (HTTP {status}): {message}")


@dataclass(frozen=True)
class Connection:
    """Where to find the cluster: the standard kubeconfig rules, or the pod's service account."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS


class WorkflowApi:
    """The handful of API calls the CLI makes, each failure turned into a KonduktError.

    ``namespace`` is the default namespace (from ``-n``, else the kubeconfig context's, else the pod's).
    """

    def __init__(
        self, api_client: Any, namespace: str, request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS
    ):
        # The kubernetes client is imported where it is used: importing it takes over half a second,
        # which every other `kondukt` command (run, validate, graph FILE, --help) would pay for nothing.
        from kubernetes import client

        self.api_client = api_client
        self.namespace = namespace
        self.request_timeout = request_timeout
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    @classmethod
    def connect(cls, connection: Connection) -> WorkflowApi:
        from kubernetes import client, config

        configuration = client.Configuration()
        namespace = connection.namespace
        config_file = connection.kubeconfig or os.environ.get("KUBECONFIG")
        default_file = Path("~/.kube/config").expanduser()
        in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        if config_file is None and not default_file.exists() and in_cluster and connection.context is None:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException as exc:
                raise ClusterError(f"cannot use the in-cluster service account: {exc}") from exc
            if namespace is None:
                try:
                    namespace = IN_CLUSTER_NAMESPACE_FILE.read_text().strip() or "default"
                except OSError:
                    namespace = "default"
        else:
            path = config_file or str(default_file)
            if not any(Path(p).expanduser().is_file() for p in path.split(os.pathsep) if p):
                raise ClusterError(
                    f"no kubeconfig found at {path}: pass --kubeconfig FILE, set KUBECONFIG, "
                    "or run inside a cluster"
                )
            try:
                contexts, current = config.list_kube_config_contexts(config_file=path)
            except (config.ConfigException, yaml.YAMLError, OSError, KeyError, TypeError) as exc:
                raise ClusterError(f"cannot read the kubeconfig {path}: {exc}") from exc
            chosen = current
            if connection.context is not None:
                matches = [c for c in contexts or [] if c.get("name") == connection.context]
                if not matches:
                    known = ", ".join(sorted(str(c.get("name")) for c in contexts or [])) or "none"
                    raise ClusterError(
                        f"context {connection.context!r} not found in {path} (contexts: {known})"
                    )
                chosen = matches[0]
            if not chosen:
                raise ClusterError(f"the kubeconfig {path} has no current context: pass --context NAME")
            try:
                config.load_kube_config(
                    config_file=path,
                    context=connection.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
            except (config.ConfigException, OSError, KeyError, TypeError, ValueError) as exc:
                raise ClusterError(f"cannot use the kubeconfig {path}: {exc}") from exc
            if namespace is None:
                namespace = str((chosen.get("context") or {}).get("namespace") or "default")
        configuration.retries = 1
        return cls(client.ApiClient(configuration), namespace, connection.request_timeout)

    # -- calls
    def _call(self, what: str, namespace: str | None, call: Callable[[], Any]) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            return call()
        except ApiException as exc:
            raise _api_error(exc, what, namespace) from exc
        except (Urllib3Error, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ClusterError(f"cannot reach the Kubernetes API server at {self.host}: {reason}") from exc

    def get_workflow(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or self.namespace
        obj = self._call(
            f'workflow "{name}"',
            ns,
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, VERSION, ns, WORKFLOWS, name, _request_timeout=self.request_timeout
            ),
        )
        return dict(obj)

    def list_workflows(
        self, namespace: str | None = None, all_namespaces: bool = False
    ) -> list[dict[str, Any]]:
        if all_namespaces:
            result = self._call(
                "workflows",
                None,
                lambda: self.custom.list_cluster_custom_object(
                    GROUP, VERSION, WORKFLOWS, _request_timeout=self.request_timeout
                ),
            )
        else:
            ns = namespace or self.namespace
            result = self._call(
                "workflows",
                ns,
                lambda: self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, ns, WORKFLOWS, _request_timeout=self.request_timeout
                ),
            )
        return [dict(item) for item in result.get("items") or []]

    def list_workflow_defs(self, namespace: str | None = None) -> list[dict[str, Any]]:
        ns = namespace or self.namespace
        result = self._call(
            "workflowdefs",
            ns,
            lambda: self.custom.list_namespaced_custom_object(
                GROUP, VERSION, ns, WORKFLOW_DEFS, _request_timeout=self.request_timeout
            ),
        )
        return [dict(item) for item in result.get("items") or []]

    def merge_patch_workflow(
        self, name: str, patch: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        ns = namespace or self.namespace
        obj = self._call(
            f'workflow "{name}"',
            ns,
            lambda: self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                ns,
                WORKFLOWS,
                name,
                dict(patch),
                _content_type="application/merge-patch+json",
                _request_timeout=self.request_timeout,
            ),
        )
        return dict(obj)

    def events_for(self, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The Events whose involvedObject is this Workflow (matched by uid when it has one)."""
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace") or self.namespace)
        selector = (
            f"involvedObject.name={meta.get('name')},involvedObject.kind={obj.get('kind') or 'Workflow'}"
        )
        if meta.get("uid"):
            selector += f",involvedObject.uid={meta['uid']}"
        response = self._call(
            "events",
            ns,
            lambda: self.core.list_namespaced_event(
                ns, field_selector=selector, _preload_content=False, _request_timeout=self.request_timeout
            ),
        )
        decoded = json.loads(response.data)
        return [dict(item) for item in decoded.get("items") or []]

    def watch_workflow(
        self, name: str, resource_version: str | None, timeout_seconds: int, namespace: str | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, object) pairs for one Workflow until the server ends the watch (≤ timeout_seconds).

        An expired resource version (HTTP 410) just ends the iteration: the caller re-reads and watches again.
        """
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        ns = namespace or self.namespace
        watcher = watch.Watch()
        kwargs: dict[str, Any] = {
            "field_selector": f"metadata.name={name}",
            "timeout_seconds": max(1, timeout_seconds),
            "_request_timeout": (self.request_timeout, max(1, timeout_seconds) + self.request_timeout),
        }
        if resource_version:
            kwargs["resource_version"] = resource_version
        try:
            for event in watcher.stream(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, ns, WORKFLOWS, **kwargs
            ):
                yield str(event.get("type")), dict(event.get("raw_object") or {})
        except ApiException as exc:
            if exc.status == 410:
                return
            raise _api_error(exc, f'workflow "{name}"', ns) from exc
        except (Urllib3Error, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ClusterError(
                f"lost the watch on the Kubernetes API server at {self.host}: {reason}"
            ) from exc
        finally:
            watcher.stop()


# ============================================================================================ reading objects
def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, Mapping) else {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def object_ref(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` of an object, for messages."""
    meta = _meta(obj)
    return f"{meta.get('namespace') or '?'}/{meta.get('name') or '?'}"


def workflow_phase(obj: Mapping[str, Any]) -> str:
    return str(_status(obj).get("phase") or "")


def workflow_message(obj: Mapping[str, Any]) -> str:
    status = _status(obj)
    for key in ("message", "reasonForIncompletion"):
        value = status.get(key)
        if value:
            return str(value)
    for condition in status.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready" and condition.get("message"):
            return str(condition["message"])
    return ""


def raw_tasks(obj: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The task entries of ``status``: ``status.tasks``, or the list packed in ``status.tasksCompressed``."""
    status = _status(obj)
    place = "status.tasksCompressed" if status.get("tasksCompressed") else "status.tasks"
    try:
        return tasks_from_status(status), place
    except StatusError as exc:
        raise ClusterError(f"workflow {object_ref(obj)}: {exc}") from exc


def parse_tasks(obj: Mapping[str, Any]) -> list[Task]:
    """The attempts in ``status.tasks`` (or ``tasksCompressed``) as engine Tasks; bad entries are named."""
    tasks: list[Task] = []
    entries, place = raw_tasks(obj)
    for index, raw in enumerate(entries):
        try:
            tasks.append(Task.model_validate(raw))
        except pydantic.ValidationError as exc:
            problem = exc.errors()[0]
            field = ".".join(str(p) for p in problem.get("loc", ()))
            raise ClusterError(
                f"workflow {object_ref(obj)}: {place}[{index}].{field}: {problem.get('msg')}"
            ) from exc
    return tasks


def parse_definition(raw: Any, place: str) -> WorkflowDef:
    try:
        return WorkflowDef.model_validate(raw)
    except pydantic.ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(p) for p in problem.get("loc", ()))
        raise ClusterError(f"{place}.{field}: {problem.get('msg')}") from exc


def definition_label(obj: Mapping[str, Any]) -> str:
    """What the Workflow runs: ``name v1`` (from the snapshot, the reference or the inline definition)."""
    snapshot = _status(obj).get("definition")
    spec = _spec(obj)
    for source in (snapshot, spec.get("definition")):
        if isinstance(source, Mapping) and source.get("name"):
            return f"{source['name']} v{source.get('version', 1)}"
    status = _status(obj)
    if status.get("workflowName"):
        return f"{status['workflowName']} v{status.get('workflowVersion', 1)}"
    ref = spec.get("workflowDefRef")
    if isinstance(ref, Mapping) and ref.get("name"):
        return f"{ref['name']}" + (f" v{ref['version']}" if ref.get("version") is not None else "")
    return ""


# ============================================================================================ time and text
def parse_timestamp(value: Any) -> dt.datetime | None:
    """An RFC 3339 time (``metadata.creationTimestamp``) or epoch milliseconds (Conductor's times)."""
    if isinstance(value, bool) or value in (None, "", 0):
        return None
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def human_duration(seconds: float) -> str:
    """kubectl's AGE style (k8s.io/apimachinery's HumanDuration): 45s, 3m12s, 5h2m, 3d4h, 2y."""
    if seconds < -1:
        return "<invalid>"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def short_duration(milliseconds: float) -> str:
    """A task's run time: 850ms, 4.2s, then kubectl's style."""
    if milliseconds < 1000:
        return f"{max(0, int(milliseconds))}ms"
    if milliseconds < 60_000:
        return f"{milliseconds / 1000:.1f}s"
    return human_duration(milliseconds / 1000)


def age(value: Any, now: dt.datetime) -> str:
    when = parse_timestamp(value)
    return "<unknown>" if when is None else human_duration((now - when).total_seconds())


def iso_time(value: Any) -> str:
    when = parse_timestamp(value)
    return "-" if when is None else when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def truncate(text: str, width: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: max(0, width - 1)] + "…"


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Columns like kubectl's: left-aligned, three spaces apart, the last column unpadded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append((indent + "   ".join(cells)).rstrip())
    return "\n".join(lines)


# ============================================================================================ get
MESSAGE_WIDTH = 60


def workflow_duration(obj: Mapping[str, Any], now: dt.datetime) -> str:
    status = _status(obj)
    start = parse_timestamp(status.get("startTime"))
    if start is None:
        return "-"
    end = parse_timestamp(status.get("endTime")) or now
    return human_duration((end - start).total_seconds())


def workflow_row(obj: Mapping[str, Any], now: dt.datetime, wide: bool, with_namespace: bool) -> list[str]:
    meta = _meta(obj)
    status = _status(obj)
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
            str(_spec(obj).get("correlationId") or "-"),
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
    meta = _meta(obj)
    spec = _spec(obj)
    status = _status(obj)
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
        f"Phase: {phase}   Progress: {_status(obj).get('progress') or '-'}   Duration: {workflow_duration(obj, now)}",
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
        summary = (workflow_phase(obj), str(_status(obj).get("progress") or ""), workflow_message(obj))
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
    api: WorkflowApi,
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
        resource_version = _meta(obj).get("resourceVersion")
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


# ============================================================================================ operations
def parse_json_object(text: str | None, option: str) -> dict[str, Any] | None:
    """A JSON object from an option value, or ``@FILE`` to read it from a file."""
    if text is None:
        return None
    source = f"{option} {text}"
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            raise KonduktUserError(f"{option}: cannot read {path}: {exc.strerror or exc}") from exc
        source = f"{option} (file {path})"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KonduktUserError(
            f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(value, dict):
        raise KonduktUserError(f"{source}: expected a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class OperationRequest:
    """One request for the operator: an annotation op with a nonce, or a spec change."""

    op: str
    nonce: str | None = None
    reason: str | None = None
    taskReferenceName: str | None = None
    taskId: str | None = None
    status: str | None = None
    outputData: dict[str, Any] | None = None
    taskInput: dict[str, Any] | None = None
    workflowInput: dict[str, Any] | None = None

    def annotation_value(self) -> dict[str, Any]:
        value: dict[str, Any] = {"nonce": self.nonce}
        for key in (
            "reason",
            "taskReferenceName",
            "taskId",
            "status",
            "outputData",
            "taskInput",
            "workflowInput",
        ):
            field_value = getattr(self, key)
            if field_value is not None:
                value[key] = field_value
        return value

    def patch(self) -> dict[str, Any]:
        """The merge patch that makes this request."""
        if self.op == "suspend":
            return {"spec": {"suspend": True}}
        if self.op == "resume":
            return {"spec": {"suspend": False}}
        if self.op == "terminate":
            return {"spec": {"terminate": {"reason": self.reason or "terminated by user"}}}
        if self.op not in ANNOTATION_OPERATIONS:
            raise KonduktUserError(f"unknown operation {self.op!r}")
        annotation = compact_json(self.annotation_value())
        return {"metadata": {"annotations": {OPERATION_ANNOTATION_PREFIX + self.op: annotation}}}

    def describe(self) -> str:
        if self.op in ("suspend", "resume"):
            return f"{self.op} requested (spec.suspend={'true' if self.op == 'suspend' else 'false'})"
        if self.op == "terminate":
            return f"terminate requested (spec.terminate.reason={self.reason or 'terminated by user'!r})"
        details = [f"annotation {OPERATION_ANNOTATION_PREFIX}{self.op}", f"nonce {self.nonce}"]
        if self.taskReferenceName:
            details.append(f"task {self.taskReferenceName}")
        if self.taskId:
            details.append(f"taskId {self.taskId}")
        if self.status:
            details.append(f"status {self.status}")
        for label, value in (
            ("output", self.outputData),
            ("task input", self.taskInput),
            ("workflow input", self.workflowInput),
        ):
            if value is not None:
                details.append(f"{label} {truncate(compact_json(value), SUMMARY_WIDTH)}")
        if self.reason:
            details.append(f"reason {self.reason!r}")
        return f"{self.op} requested ({', '.join(details)})"


def operation_from_args(
    args: argparse.Namespace, new_nonce: Callable[[], str] = lambda: str(uuid.uuid4())
) -> OperationRequest:
    op = str(args.operation)
    task_ref = getattr(args, "task", None)
    if op in ("rerun", "skip", "complete") and not task_ref and not getattr(args, "task_id", None):
        raise KonduktUserError(f"kondukt {op} needs --task REF (the task's reference name)")
    if op in SPEC_OPERATIONS:
        return OperationRequest(op=op, reason=getattr(args, "reason", None))
    return OperationRequest(
        op=op,
        nonce=new_nonce(),
        reason=getattr(args, "reason", None),
        taskReferenceName=task_ref,
        taskId=getattr(args, "task_id", None),
        status=getattr(args, "status", None) if op == "complete" else None,
        outputData=parse_json_object(getattr(args, "output", None), "--output"),
        taskInput=parse_json_object(getattr(args, "task_input", None), "--task-input"),
        workflowInput=parse_json_object(getattr(args, "input", None), "--input"),
    )


def known_task_refs(obj: Mapping[str, Any]) -> set[str]:
    """Every reference a task operation may name: the definition's (nested) and the attempts' (dynamic, loops)."""
    refs: set[str] = set()

    def walk(tasks: Sequence[WorkflowTask]) -> None:
        for task in tasks:
            refs.add(task.taskReferenceName)
            for branch in task.children():
                walk(branch)

    raw = _status(obj).get("definition") or _spec(obj).get("definition")
    if isinstance(raw, Mapping):
        walk(parse_definition(raw, f"workflow {object_ref(obj)} definition").tasks)
    for task in parse_tasks(obj):
        refs.add(task.referenceTaskName)
        refs.add(graphs.definition_ref(task))
    return refs


def operation_warnings(obj: Mapping[str, Any], request: OperationRequest) -> list[str]:
    """Requests the operator is likely to ignore, said before they are made (they are still made)."""
    warnings: list[str] = []
    phase = workflow_phase(obj)
    if request.op in ("retry", "restart") and phase and phase not in TERMINAL_PHASES:
        warnings.append(f"workflow is {phase}: {request.op} applies to a workflow that has ended")
    if request.op in ("skip", "complete") and phase in TERMINAL_PHASES:
        warnings.append(f"workflow is {phase}: {request.op} applies to a running workflow")
    if request.op in ANNOTATION_OPERATIONS:
        previous = (_meta(obj).get("annotations") or {}).get(OPERATION_ANNOTATION_PREFIX + request.op)
        applied = _status(obj).get("appliedOperations")
        if previous and isinstance(applied, list):
            try:
                previous_nonce = json.loads(previous).get("nonce")
            except (ValueError, AttributeError):
                previous_nonce = None
            if previous_nonce and previous_nonce not in applied:
                warnings.append(
                    f"replacing an earlier {request.op} request (nonce {previous_nonce}) not applied yet"
                )
    return warnings


# ============================================================================================ graph sources
_GRAPH_SUFFIXES: dict[str, graphs.GraphFormat] = {
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".dot": "dot",
    ".gv": "dot",
    ".png": "png",
    ".svg": "svg",
}


def choose_graph_format(explicit: str | None, output: str | None) -> graphs.GraphFormat:
    if explicit:
        for known in graphs.GRAPH_FORMATS:
            if known == explicit:
                return known
        raise KonduktUserError(f"--format {explicit}: expected one of {', '.join(graphs.GRAPH_FORMATS)}")
    if output:
        suffix = Path(output).suffix.lower()
        if suffix in _GRAPH_SUFFIXES:
            return _GRAPH_SUFFIXES[suffix]
    return "mermaid"


def looks_like_file(source: str) -> bool:
    return Path(source).exists() or os.sep in source or source.endswith((".json", ".yaml", ".yml"))


def graph_from_workflow(
    obj: Mapping[str, Any], api: WorkflowApi | None, max_branches: int
) -> graphs.WorkflowGraph:
    """A cluster Workflow's graph: its status.definition snapshot (else spec.definition, else its WorkflowDef)."""
    status = _status(obj)
    raw = status.get("definition") or _spec(obj).get("definition")
    place = f"workflow {object_ref(obj)} " + (
        "status.definition" if status.get("definition") else "spec.definition"
    )
    if not isinstance(raw, Mapping) and api is not None:
        raw, place = _referenced_definition(obj, api)
    if not isinstance(raw, Mapping):
        raise ClusterError(f"workflow {object_ref(obj)} has no definition to draw yet (no status.definition)")
    definition = parse_definition(raw, place)
    phase = workflow_phase(obj)
    workflow_status = WorkflowStatus(phase) if phase in {s.value for s in WorkflowStatus} else None
    return graphs.build_graph(
        definition, parse_tasks(obj), workflow_status=workflow_status, max_dynamic_branches=max_branches
    )


def _referenced_definition(obj: Mapping[str, Any], api: WorkflowApi) -> tuple[Any, str]:
    ref = _spec(obj).get("workflowDefRef")
    if not isinstance(ref, Mapping) or not ref.get("name"):
        return None, ""
    namespace = str(_meta(obj).get("namespace") or api.namespace)
    candidates = []
    for item in api.list_workflow_defs(namespace):
        spec = _spec(item)
        name = spec.get("name") or _meta(item).get("name")
        if name == ref["name"] and (ref.get("version") is None or spec.get("version", 1) == ref["version"]):
            candidates.append(item)
    if not candidates:
        version = f" version {ref['version']}" if ref.get("version") is not None else ""
        raise ClusterError(
            f"workflow {object_ref(obj)} refers to WorkflowDef {ref['name']}{version}, "
            f"which does not exist in namespace {namespace}"
        )
    best = max(candidates, key=lambda item: int(_spec(item).get("version", 1) or 1))
    return dict(_spec(best)), f"WorkflowDef {namespace}/{_meta(best).get('name')} spec"


def graph_from_files(
    paths: Sequence[str], max_branches: int, wanted: str | None = None
) -> graphs.WorkflowGraph:
    """A local manifest's or Conductor JSON file's WorkflowDef, drawn without an execution."""
    bundle = load_files(list(paths))
    definition = pick_workflow_def(bundle, paths, wanted)
    return graphs.build_graph(definition, max_dynamic_branches=max_branches)


def pick_workflow_def(bundle: Bundle, paths: Sequence[str], wanted: str | None) -> WorkflowDef:
    """The WorkflowDef to draw: the one named by ``--definition NAME[:VERSION]``, the one a single Workflow
    manifest runs, or the only WorkflowDef in the files."""
    where = ", ".join(paths)
    if wanted:
        name, _, version_text = wanted.partition(":")
        try:
            version = int(version_text) if version_text else None
        except ValueError:
            raise KonduktUserError(f"--definition {wanted}: the version after ':' must be a number") from None
        found = bundle.find_workflow_def(name, version)
        if found is None:
            raise KonduktUserError(f"{where}: no WorkflowDef {wanted} (defined: {_defined(bundle)})")
        return found
    if len(bundle.workflows) == 1:
        return bundle.workflow_def_for(bundle.workflows[0][1])
    if len(bundle.workflow_defs) == 1:
        return next(iter(bundle.workflow_defs.values()))
    if not bundle.workflow_defs:
        raise KonduktUserError(f"{where}: no WorkflowDef to draw")
    raise KonduktUserError(
        f"{where}: several WorkflowDefs ({_defined(bundle)}): choose one with --definition NAME[:VERSION]"
    )


def _defined(bundle: Bundle) -> str:
    return ", ".join(f"{name}:{version}" for name, version in sorted(bundle.workflow_defs)) or "none"


# ============================================================================================ commands
def _connection(args: argparse.Namespace) -> Connection:
    return Connection(
        kubeconfig=getattr(args, "kubeconfig", None),
        context=getattr(args, "context", None),
        namespace=getattr(args, "namespace", None),
    )


#: How commands reach the cluster; tests may replace it to point elsewhere.
connect: Callable[[Connection], WorkflowApi] = WorkflowApi.connect


def cmd_get(args: argparse.Namespace) -> int:
    if args.name and args.all_namespaces:
        raise KonduktUserError(
            "a workflow cannot be retrieved by name across all namespaces: drop -A or the name"
        )
    api = connect(_connection(args))
    if args.name:
        objs = [api.get_workflow(args.name)]
    else:
        objs = api.list_workflows(all_namespaces=args.all_namespaces)
    if args.output in ("json", "yaml"):
        sys.stdout.write(serialize(objs, single=bool(args.name), fmt=args.output))
        return 0
    if not objs:
        where = "any namespace" if args.all_namespaces else f"{api.namespace} namespace"
        sys.stderr.write(f"No workflows found in {where}.\n")
        return 0
    now = dt.datetime.now(dt.UTC)
    sys.stdout.write(
        format_workflow_table(objs, now, wide=args.output == "wide", with_namespace=args.all_namespaces)
        + "\n"
    )
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    api = connect(_connection(args))
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
    api = connect(_connection(args))
    tty = sys.stdout.isatty() if args.tty is None else args.tty
    progress: LineProgress | ScreenProgress = ScreenProgress(sys.stdout) if tty else LineProgress(sys.stdout)
    try:
        return watch_until_done(api, args.name, None, args.timeout, progress, sys.stderr)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return INTERRUPTED_EXIT_CODE


def cmd_graph(args: argparse.Namespace) -> int:
    graph_format = choose_graph_format(args.format, args.output)
    if args.max_branches < 1:
        raise KonduktUserError("--max-branches must be at least 1")
    if looks_like_file(args.source):
        if not Path(args.source).exists():
            raise KonduktUserError(f"{args.source}: no such file")
        graph = graph_from_files([args.source], args.max_branches, args.definition)
    else:
        api = connect(_connection(args))
        graph = graph_from_workflow(api.get_workflow(args.source), api, args.max_branches)
    if graph_format == "png" and not args.output and sys.stdout.isatty():
        raise KonduktUserError("PNG is binary: write it to a file with -o FILE.png (or redirect stdout)")
    data = graphs.graph_output(graph, graph_format)
    if args.output:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            raise KonduktUserError(f"-o {args.output}: cannot write: {exc.strerror or exc}") from exc
        sys.stderr.write(f"wrote the {graph_format} graph of {graph.name} to {args.output}\n")
    else:
        if graph_format == "png":
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(data.decode())
        sys.stdout.flush()
    return 0


def cmd_operation(args: argparse.Namespace) -> int:
    request = operation_from_args(args)
    api = connect(_connection(args))
    obj = api.get_workflow(args.name)
    task_ref = request.taskReferenceName
    if task_ref:
        refs = known_task_refs(obj)
        if refs and task_ref not in refs:
            raise KonduktUserError(
                f"workflow {object_ref(obj)} has no task with reference name {task_ref!r} "
                f"(known: {', '.join(sorted(refs))})"
            )
    for warning in operation_warnings(obj, request):
        sys.stderr.write(f"warning: {warning}\n")
    api.merge_patch_workflow(args.name, request.patch())
    sys.stdout.write(
        f"workflow.{GROUP}/{_meta(obj).get('name')} ({_meta(obj).get('namespace')}): {request.describe()}\n"
    )
    return 0


# ============================================================================================ registration
def _connection_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("cluster")
    group.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)",
    )
    group.add_argument(
        "--context", metavar="NAME", help="kubeconfig context to use (default: the current one)"
    )
    group.add_argument(
        "-n", "--namespace", metavar="NS", help="namespace (default: the context's, else 'default')"
    )
    return parent


_OPERATION_HELP = {
    "retry": "retry a FAILED / TIMED_OUT / TERMINATED workflow from its failed tasks",
    "restart": "start the workflow over (optionally with a new --input)",
    "rerun": "rerun the workflow from a task (--task REF), optionally with new --task-input / --input",
    "skip": "skip a task (--task REF) of a running workflow",
    "complete": "complete (or fail) a waiting task, e.g. HUMAN or WAIT (--task REF --status --output)",
    "suspend": "pause the workflow (spec.suspend=true): running attempts finish, nothing new starts",
    "resume": "resume a paused workflow (spec.suspend=false)",
    "terminate": "end the workflow TERMINATED (spec.terminate); running attempts are stopped",
}


def register(subparsers: Any) -> None:
    """Add get, describe, watch, graph and the operation commands to the `kondukt` parser."""
    connection = _connection_options()

    get = subparsers.add_parser(
        "get",
        parents=[connection],
        help="list workflows, or show one (like kubectl get)",
        description="List Workflow resources with their phase and progress, or print one as JSON/YAML.",
    )
    get.add_argument("name", nargs="?", metavar="NAME", help="one workflow (default: all in the namespace)")
    get.add_argument("-A", "--all-namespaces", action="store_true", help="list workflows of every namespace")
    get.add_argument(
        "-o", "--output", choices=("wide", "json", "yaml"), help="wide table, or the objects as JSON/YAML"
    )
    get.set_defaults(func=cmd_get)

    describe = subparsers.add_parser(
        "describe",
        parents=[connection],
        help="show one workflow in detail: attempts, conditions, events",
        description="Show a Workflow: phase, times, input/output, every task attempt, conditions and recent Events.",
    )
    describe.add_argument("name", metavar="NAME")
    describe.set_defaults(func=cmd_describe)

    watch = subparsers.add_parser(
        "watch",
        parents=[connection],
        help="follow a workflow until it ends (exit 0 COMPLETED, 1 otherwise)",
        description="Follow a Workflow's progress until it is terminal. Exit code: 0 COMPLETED, 1 FAILED / "
        f"TIMED_OUT / TERMINATED, {WATCH_TIMEOUT_EXIT_CODE} when --timeout ran out, 2 on errors.",
    )
    watch.add_argument("name", metavar="NAME")
    watch.add_argument(
        "--timeout", type=float, default=0, metavar="SECONDS", help="give up after this long (0 = never)"
    )
    tty = watch.add_mutually_exclusive_group()
    tty.add_argument(
        "--tty", dest="tty", action="store_true", default=None, help="redraw in place (default on a terminal)"
    )
    tty.add_argument(
        "--plain", dest="tty", action="store_false", help="print one line per change (default in pipes)"
    )
    watch.set_defaults(func=cmd_watch)

    graph = subparsers.add_parser(
        "graph",
        parents=[connection],
        help="draw a workflow's graph (Mermaid, DOT, PNG, SVG)",
        description="Draw a cluster Workflow (with its task states) or a local WorkflowDef manifest / Conductor "
        "JSON file. PNG and SVG need Graphviz's `dot`.",
    )
    graph.add_argument("source", metavar="NAME|FILE", help="a Workflow in the cluster, or a local file")
    graph.add_argument(
        "--format", choices=graphs.GRAPH_FORMATS, help="default: from -o's suffix, else mermaid"
    )
    graph.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    graph.add_argument(
        "--definition",
        metavar="NAME[:VERSION]",
        help="with a FILE holding several WorkflowDefs: the one to draw",
    )
    graph.add_argument(
        "--max-branches",
        type=int,
        default=graphs.DEFAULT_MAX_DYNAMIC_BRANCHES,
        metavar="N",
        help="dynamic-fork branches drawn before the rest collapse into one node",
    )
    graph.set_defaults(func=cmd_graph)

    for op, text in _OPERATION_HELP.items():
        parser = subparsers.add_parser(
            op, parents=[connection], help=text, description=text[0].upper() + text[1:] + "."
        )
        parser.add_argument("name", metavar="NAME")
        parser.set_defaults(func=cmd_operation, operation=op)
        if op in ("rerun", "skip", "complete"):
            parser.add_argument("--task", metavar="REF", help="the task's reference name")
            parser.add_argument(
                "--task-id", metavar="ID", help="one attempt's taskId (instead of / besides --task)"
            )
        if op in ("skip", "complete"):
            parser.add_argument("--output", metavar="JSON", help="the task's output: a JSON object or @FILE")
        if op == "complete":
            parser.add_argument(
                "--status", choices=COMPLETABLE_STATUSES, default="COMPLETED", help="default COMPLETED"
            )
        if op == "rerun":
            parser.add_argument(
                "--task-input", metavar="JSON", help="new input of the rerun task: JSON or @FILE"
            )
        if op in ("restart", "rerun"):
            parser.add_argument("--input", metavar="JSON", help="new workflow input: a JSON object or @FILE")
        if op in ("retry", "skip", "complete", "terminate"):
            parser.add_argument("--reason", metavar="TEXT", help="recorded with the request")


__all__ = [
    "Connection",
    "OperationRequest",
    "WorkflowApi",
    "describe_workflow",
    "format_workflow_table",
    "register",
    "watch_until_done",
]
