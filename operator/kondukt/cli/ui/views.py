"""What the web UI's pages show, as JSON-ready dicts computed from the objects the API server returns.

The server (:mod:`kondukt.cli.ui.server`) only fetches and pushes; every page's content is made here from
plain Workflow / WorkflowDef / TaskDef dicts, with the CLI's readers (:mod:`kondukt.cli.workflows`) and the
graph of ``kondukt graph`` (:mod:`kondukt.graph`: same nodes, same state colours). So the browser shows
what ``kondukt get`` and ``kondukt graph`` print, and these functions are tested without a server.

Lists of thousands of rows are filtered, sorted (newest first) and cut into pages here, on the server: the
browser never holds more than one page. A workflow's attempts are sent without their input and output
(a 2,000-branch fork's payloads can be large); one attempt's details are fetched when opened.

Pure functions: no cluster access, no clock (``now`` is passed in), no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kondukt import graph as graphs
from kondukt.cli.operations import COMPLETABLE_STATUSES, SPEC_OPERATIONS
from kondukt.cli.workflows import (
    TERMINAL_PHASES,
    definition_label,
    meta_of,
    object_ref,
    parse_definition,
    parse_tasks,
    spec_of,
    status_of,
    workflow_message,
    workflow_phase,
)
from kondukt.engine.models import Task, WorkflowDef, WorkflowStatus
from kondukt.kube import names
from kondukt.kube import resources as r
from kondukt.kube.opsannotations import ANNOTATION_OPERATIONS

#: Rows in one page of the workflows list unless the page asks for another size (at most MAX_PAGE_SIZE).
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
#: Every operation the UI offers, in the order its buttons appear.
OPERATIONS: tuple[str, ...] = (*ANNOTATION_OPERATIONS, *SPEC_OPERATIONS)
#: Operations on the workflow as a whole; the others name a task.
WORKFLOW_OPERATIONS: tuple[str, ...] = ("retry", "restart", "suspend", "resume", "terminate")
TASK_OPERATIONS: tuple[str, ...] = ("rerun", "skip", "complete")


class ViewError(ValueError):
    """A request the views cannot answer (a bad filter or page); its message names the parameter."""


# ============================================================================================ the list
def started_by(obj: Mapping[str, Any]) -> str:
    """Who started a Workflow, as far as the cluster records it: the parent workflow of a SUB_WORKFLOW
    child, the workflow a START_WORKFLOW came from, else the field manager that created the object
    (``kubectl-create``, ``kondukt``, ...; Kubernetes keeps no user name on objects)."""
    meta = meta_of(obj)
    for owner in meta.get("ownerReferences") or []:
        if isinstance(owner, Mapping) and owner.get("kind") == r.WORKFLOW_KIND:
            return f"workflow {owner.get('name')}"
    labels = meta.get("labels") or {}
    if isinstance(labels, Mapping) and labels.get(r.LABEL_STARTED_BY_UID):
        return f"workflow uid {labels[r.LABEL_STARTED_BY_UID]}"
    for entry in meta.get("managedFields") or []:
        if isinstance(entry, Mapping) and entry.get("manager") and entry.get("operation") in ("Update", "Apply"):
            if entry.get("subresource"):
                continue  # the operator's status writes
            return str(entry["manager"])
    return ""


def workflow_row(obj: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the workflows list (the columns of ``kondukt get -o wide``, plus who started it)."""
    meta = meta_of(obj)
    status = status_of(obj)
    return {
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "phase": workflow_phase(obj) or "PENDING",
        "progress": str(status.get("progress") or ""),
        "created": str(meta.get("creationTimestamp") or ""),
        "definition": definition_label(obj),
        "correlationId": str(spec_of(obj).get("correlationId") or ""),
        "startedBy": started_by(obj),
        "message": " ".join(workflow_message(obj).split()),
    }


@dataclass(frozen=True)
class ListQuery:
    """The list page's filters: phases (any of), free text (in name, definition, correlation id, message),
    and a page (``offset``, ``limit``). A label selector is the API server's business (it validates it)."""

    phases: frozenset[str] = frozenset()
    text: str = ""
    offset: int = 0
    limit: int = DEFAULT_PAGE_SIZE

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> ListQuery:
        phases = frozenset(p.strip().upper() for p in params.get("phase", "").split(",") if p.strip())
        known = {s.value for s in WorkflowStatus} | {"PENDING"}
        unknown = sorted(phases - known)
        if unknown:
            raise ViewError(f"phase: unknown phase {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        offset = _int_param(params, "offset", 0)
        limit = _int_param(params, "limit", DEFAULT_PAGE_SIZE)
        if offset < 0:
            raise ViewError("offset: must be 0 or more")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ViewError(f"limit: must be between 1 and {MAX_PAGE_SIZE}")
        return cls(phases, params.get("q", "").strip().lower(), offset, limit)


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name, "")
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ViewError(f"{name}: {text!r} is not a whole number") from None


def _matches(row: Mapping[str, Any], query: ListQuery) -> bool:
    if query.phases and row["phase"] not in query.phases:
        return False
    if query.text:
        haystack = " ".join(str(row[k]) for k in ("namespace", "name", "definition", "correlationId", "message"))
        return query.text in haystack.lower()
    return True


def workflow_page(objs: Iterable[Mapping[str, Any]], query: ListQuery) -> dict[str, Any]:
    """One page of the list: rows newest first, how many matched, and each phase's count (before the phase
    filter, so the filter's buttons can show them)."""
    return row_page([workflow_row(obj) for obj in objs], query)


def row_page(rows: Sequence[Mapping[str, Any]], query: ListQuery) -> dict[str, Any]:
    """:func:`workflow_page` from rows already made (the live list keeps rows, not objects)."""
    phase_counts: dict[str, int] = {}
    for row in rows:
        if _matches(row, ListQuery(text=query.text)):
            phase_counts[row["phase"]] = phase_counts.get(row["phase"], 0) + 1
    matched = [row for row in rows if _matches(row, query)]
    matched.sort(key=lambda row: (row["created"], row["namespace"], row["name"]), reverse=True)
    return {
        "total": len(rows),
        "matched": len(matched),
        "offset": query.offset,
        "limit": query.limit,
        "phaseCounts": dict(sorted(phase_counts.items())),
        "rows": matched[query.offset : query.offset + query.limit],
    }


# ============================================================================================ one workflow
def _ms_iso(milliseconds: int) -> str:
    if not milliseconds:
        return ""
    moment = dt.datetime.fromtimestamp(milliseconds / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _status_time(value: Any) -> str:
    """A ``status`` time: epoch milliseconds (the engine's), or already a timestamp string."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _ms_iso(int(value))
    return str(value or "")


def child_workflow(obj: Mapping[str, Any], task: Task) -> str | None:
    """The name of the Workflow a SUB_WORKFLOW attempt started (the operator names it deterministically)."""
    if not task.subWorkflowId:
        return None
    meta = meta_of(obj)
    return names.child_workflow_name(
        str(meta.get("name") or ""), str(meta.get("uid") or ""), task.referenceTaskName, task.taskId
    )


def attempt_row(obj: Mapping[str, Any], task: Task) -> dict[str, Any]:
    """An attempt as the graph's side panel and the attempts table list it: no input or output."""
    return {
        "taskId": task.taskId,
        "ref": task.referenceTaskName,
        "definitionRef": graphs.definition_ref(task),
        "type": task.taskType,
        "taskDefName": task.taskDefName,
        "status": task.status.value,
        "seq": task.seq,
        "retryCount": task.retryCount,
        "iteration": task.iteration,
        "scheduledTime": _ms_iso(task.scheduledTime),
        "startTime": _ms_iso(task.startTime),
        "endTime": _ms_iso(task.endTime),
        "reason": task.reasonForIncompletion or "",
        "parentTaskRef": task.parentTaskRef or "",
        "childWorkflow": child_workflow(obj, task),
    }


def attempt_details(obj: Mapping[str, Any], task: Task) -> dict[str, Any]:
    """One attempt in full: the row, its input and output, the Job that ran it (for its pods' logs)."""
    meta = meta_of(obj)
    details = attempt_row(obj, task)
    details.update(
        inputData=task.inputData,
        outputData=task.outputData,
        workerId=task.workerId or "",
        updateTime=_ms_iso(task.updateTime),
        callbackAfterSeconds=task.callbackAfterSeconds,
        podSelector=f"{r.LABEL_WORKFLOW_UID}={meta.get('uid') or ''},"
        f"{r.LABEL_TASK_ID}={names.label_value(task.taskId)}",
    )
    return details


def find_attempt(obj: Mapping[str, Any], task_id: str) -> Task | None:
    for task in parse_tasks(obj):
        if task.taskId == task_id:
            return task
    return None


def graph_json(graph: graphs.WorkflowGraph) -> dict[str, Any]:
    """The graph as the browser lays it out: ``kondukt graph``'s nodes, edges and clusters with its colours."""
    nodes = []
    for node in graph.nodes:
        style = graphs.style_of(node)
        nodes.append(
            {
                "id": node.id,
                "label": list(node.label),
                "kind": node.kind.value,
                "status": node.status.value if node.status else None,
                "ref": node.ref,
                "cluster": node.cluster,
                "fill": style[0] if style else None,
                "stroke": style[1] if style else None,
                "dashed": style[2] if style else False,
            }
        )
    return {
        "name": graph.name,
        "nodes": nodes,
        "edges": [
            {"source": e.source, "target": e.target, "label": e.label, "dashed": e.dashed} for e in graph.edges
        ],
        "clusters": [
            {"id": c.id, "label": c.label, "parent": c.parent, "status": c.status.value if c.status else None}
            for c in graph.clusters
        ],
    }


def available_operations(obj: Mapping[str, Any]) -> list[str]:
    """The workflow-level operations that make sense in its phase (the others are still refused by nobody:
    the operator ignores them, as ``kondukt <op>`` warns)."""
    phase = workflow_phase(obj)
    spec = spec_of(obj)
    if phase in TERMINAL_PHASES:
        return ["retry", "restart"]
    ops = ["resume"] if spec.get("suspend") or phase == WorkflowStatus.PAUSED.value else ["suspend"]
    return [*ops, "terminate"]


def workflow_definition(obj: Mapping[str, Any]) -> WorkflowDef | None:
    """The definition to draw: the ``status.definition`` snapshot, else ``spec.definition`` (a Workflow that
    only refers to a WorkflowDef has none until the operator snapshots it)."""
    status = status_of(obj)
    raw = status.get("definition") or spec_of(obj).get("definition")
    if not isinstance(raw, Mapping):
        return None
    where = "status.definition" if status.get("definition") else "spec.definition"
    return parse_definition(raw, f"workflow {object_ref(obj)} {where}")


def workflow_view(
    obj: Mapping[str, Any], max_branches: int = graphs.DEFAULT_MAX_DYNAMIC_BRANCHES,
    definition: WorkflowDef | None = None,
) -> dict[str, Any]:
    """Everything the workflow page shows, pushed again on every change of the Workflow."""
    meta = meta_of(obj)
    status = status_of(obj)
    spec = spec_of(obj)
    tasks = parse_tasks(obj)
    phase = workflow_phase(obj)
    definition = definition or workflow_definition(obj)
    graph = None
    if definition is not None:
        workflow_status = WorkflowStatus(phase) if phase in {s.value for s in WorkflowStatus} else None
        graph = graph_json(
            graphs.build_graph(definition, tasks, workflow_status=workflow_status, max_dynamic_branches=max_branches)
        )
    terminate = spec.get("terminate")
    return {
        **workflow_row(obj),
        "uid": str(meta.get("uid") or ""),
        "resourceVersion": str(meta.get("resourceVersion") or ""),
        "startTime": _status_time(status.get("startTime")),
        "endTime": _status_time(status.get("endTime")),
        "suspended": bool(spec.get("suspend")),
        "terminateRequested": isinstance(terminate, Mapping),
        "reason": str(status.get("reasonForIncompletion") or ""),
        "input": spec.get("input") or {},
        "output": status.get("output") or {},
        "labels": dict(meta.get("labels") or {}),
        "graph": graph,
        "tasks": [attempt_row(obj, task) for task in tasks],
        "operations": available_operations(obj),
        "taskOperations": list(TASK_OPERATIONS),
        "completableStatuses": list(COMPLETABLE_STATUSES),
    }


# ============================================================================================ definitions
def definition_rows(workflow_defs: Sequence[Mapping[str, Any]], task_defs: Sequence[Mapping[str, Any]]
                    ) -> dict[str, Any]:
    """The definitions page: WorkflowDefs (name, version, tasks, description) and TaskDefs."""
    wdefs = []
    for item in workflow_defs:
        spec = spec_of(item)
        wdefs.append({
            "name": str(meta_of(item).get("name") or ""),
            "namespace": str(meta_of(item).get("namespace") or ""),
            "definitionName": str(spec.get("name") or meta_of(item).get("name") or ""),
            "version": spec.get("version", 1),
            "tasks": len(spec.get("tasks") or []),
            "description": str(spec.get("description") or ""),
        })
    tdefs = []
    for item in task_defs:
        spec = spec_of(item)
        tdefs.append({
            "name": str(meta_of(item).get("name") or ""),
            "namespace": str(meta_of(item).get("namespace") or ""),
            "retryCount": spec.get("retryCount"),
            "timeoutSeconds": spec.get("timeoutSeconds"),
            "image": str(((spec.get("template") or {}).get("image")) or "") if isinstance(spec.get("template"), Mapping) else "",
            "description": str(spec.get("description") or ""),
        })
    wdefs.sort(key=lambda d: (str(d["definitionName"]), str(d["version"])))
    tdefs.sort(key=lambda d: str(d["name"]))
    return {"workflowDefs": wdefs, "taskDefs": tdefs}


def definition_view(item: Mapping[str, Any]) -> dict[str, Any]:
    """One WorkflowDef with its graph (no execution: every node unstyled)."""
    spec = spec_of(item)
    raw = {k: v for k, v in spec.items()}
    raw.setdefault("name", meta_of(item).get("name"))
    definition = parse_definition(raw, f"WorkflowDef {object_ref(item)} spec")
    return {
        "name": str(meta_of(item).get("name") or ""),
        "namespace": str(meta_of(item).get("namespace") or ""),
        "spec": dict(spec),
        "graph": graph_json(graphs.build_graph(definition)),
    }

