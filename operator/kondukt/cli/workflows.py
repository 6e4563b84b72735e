"""Reading Workflow objects as the cluster serves them: name, phase, message, definition, attempts.

The cluster commands (``get``, ``describe``, ``watch``, ``graph`` and the operations) read the same few
things off a Workflow object (a plain dict from the API server). Each is read here once, tolerating what a
half-written or foreign object may lack; a malformed ``status.tasks`` entry or definition becomes a
:class:`~kondukt.cli.cluster.ClusterError` naming the workflow and the field, never a traceback.

Pure functions of the object: no cluster access here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic

from kondukt.cli.cluster import ClusterError
from kondukt.engine.models import Task, WorkflowDef, WorkflowStatus
from kondukt.kube.status import StatusError, tasks_from_status

TERMINAL_PHASES = frozenset(s.value for s in WorkflowStatus if s.terminal)


def meta_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def status_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, Mapping) else {}


def spec_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def object_ref(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` of an object, for messages."""
    meta = meta_of(obj)
    return f"{meta.get('namespace') or '?'}/{meta.get('name') or '?'}"


def workflow_phase(obj: Mapping[str, Any]) -> str:
    return str(status_of(obj).get("phase") or "")


def workflow_message(obj: Mapping[str, Any]) -> str:
    status = status_of(obj)
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
    status = status_of(obj)
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
    snapshot = status_of(obj).get("definition")
    spec = spec_of(obj)
    for source in (snapshot, spec.get("definition")):
        if isinstance(source, Mapping) and source.get("name"):
            return f"{source['name']} v{source.get('version', 1)}"
    status = status_of(obj)
    if status.get("workflowName"):
        return f"{status['workflowName']} v{status.get('workflowVersion', 1)}"
    ref = spec.get("workflowDefRef")
    if isinstance(ref, Mapping) and ref.get("name"):
        return f"{ref['name']}" + (f" v{ref['version']}" if ref.get("version") is not None else "")
    return ""
