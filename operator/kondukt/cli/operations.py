"""The operation commands: ``retry``, ``restart``, ``rerun``, ``skip``, ``complete``, ``suspend``,
``resume`` and ``terminate``.

Operations that are not spec fields (``retry``, ``restart``, ``rerun``, ``skip``, ``complete``) are
requests the operator applies once: they are written as annotations ``ops.kondukt.io/<op>`` carrying a
fresh nonce, in the format :mod:`kondukt.kube.opsannotations` defines for the CLI and the operator alike.
``suspend``, ``resume`` and ``terminate`` set ``spec.suspend`` / ``spec.terminate`` on the user's behalf
(users own ``spec``; the operator only ever writes ``status``).

Before writing, the request is checked against the Workflow (a ``--task`` it does not have is refused)
and what the operator is likely to ignore is said as a warning. This module must never write a
Workflow's ``status`` nor retry a request on its own (each request carries its own nonce).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kondukt import graph as graphs
from kondukt.cli import cluster
from kondukt.cli.app import add_cluster_options
from kondukt.cli.text import compact_json, truncate
from kondukt.cli.workflows import (
    TERMINAL_PHASES,
    meta_of,
    object_ref,
    parse_definition,
    parse_tasks,
    spec_of,
    status_of,
    workflow_phase,
)
from kondukt.engine.models import WorkflowTask
from kondukt.errors import KonduktUserError
from kondukt.kube import opsannotations
from kondukt.kube.opsannotations import ANNOTATION_OPERATIONS
from kondukt.kube.resources import GROUP
from kondukt.limits import DEFAULT_LIMITS, parse_json

SPEC_OPERATIONS = ("suspend", "resume", "terminate")
COMPLETABLE_STATUSES = ("COMPLETED", "FAILED", "FAILED_WITH_TERMINAL_ERROR")
SUMMARY_WIDTH = 100


def parse_json_object(text: str | None, option: str) -> dict[str, Any] | None:
    """A JSON object from an option value, or ``@FILE`` to read it from a file."""
    if text is None:
        return None
    source = f"{option} {text}"
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            with path.open("rb") as stream:
                text = stream.read(DEFAULT_LIMITS.max_bytes + 1).decode("utf-8", "replace")
        except OSError as exc:
            raise KonduktUserError(f"{option}: cannot read {path}: {exc.strerror or exc}") from exc
        source = f"{option} (file {path})"
    try:
        value = parse_json(text, source)
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

    def annotation_value(self) -> str:
        """The annotation's value, in the format the operator reads."""
        return opsannotations.encode(
            self.nonce,
            {
                "reason": self.reason,
                "taskReferenceName": self.taskReferenceName,
                "taskId": self.taskId,
                "status": self.status,
                "outputData": self.outputData,
                "taskInput": self.taskInput,
                "workflowInput": self.workflowInput,
            },
        )

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
        return {"metadata": {"annotations": {opsannotations.annotation_key(self.op): self.annotation_value()}}}

    def describe(self) -> str:
        if self.op in ("suspend", "resume"):
            return f"{self.op} requested (spec.suspend={'true' if self.op == 'suspend' else 'false'})"
        if self.op == "terminate":
            return f"terminate requested (spec.terminate.reason={self.reason or 'terminated by user'!r})"
        details = [f"annotation {opsannotations.annotation_key(self.op)}", f"nonce {self.nonce}"]
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

    raw = status_of(obj).get("definition") or spec_of(obj).get("definition")
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
        previous = (meta_of(obj).get("annotations") or {}).get(opsannotations.annotation_key(request.op))
        applied = status_of(obj).get("appliedOperations")
        if previous and isinstance(applied, list):
            previous_nonce = opsannotations.nonce_of(previous)
            if previous_nonce and previous_nonce not in applied:
                warnings.append(
                    f"replacing an earlier {request.op} request (nonce {previous_nonce}) not applied yet"
                )
    return warnings


def check_operation(obj: Mapping[str, Any], request: OperationRequest) -> list[str]:
    """Refuse a request that names a task the Workflow does not have (:class:`KonduktUserError`); else the
    warnings to show before it is made. ``kondukt <op>`` and ``kondukt ui`` both check requests here."""
    task_ref = request.taskReferenceName
    if task_ref:
        refs = known_task_refs(obj)
        if refs and task_ref not in refs:
            raise KonduktUserError(
                f"workflow {object_ref(obj)} has no task with reference name {task_ref!r} "
                f"(known: {', '.join(sorted(refs))})"
            )
    return operation_warnings(obj, request)


# ============================================================================================ command
def cmd_operation(args: argparse.Namespace) -> int:
    request = operation_from_args(args)
    with closing(cluster.connect(cluster.connection_from_args(args))) as api:
        obj = api.get_workflow(args.name)
        for warning in check_operation(obj, request):
            sys.stderr.write(f"warning: {warning}\n")
        api.merge_patch_workflow(args.name, request.patch())
    sys.stdout.write(
        f"workflow.{GROUP}/{meta_of(obj).get('name')} ({meta_of(obj).get('namespace')}): {request.describe()}\n"
    )
    return 0


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Configure one operation command (``retry``, ``skip``, ``terminate``, ...)."""
    if name not in ANNOTATION_OPERATIONS and name not in SPEC_OPERATIONS:
        raise ValueError(f"{__name__} does not configure `kondukt {name}`")
    add_cluster_options(parser)
    parser.add_argument("name", metavar="NAME")
    parser.set_defaults(func=cmd_operation, operation=name)
    if name in ("rerun", "skip", "complete"):
        parser.add_argument("--task", metavar="REF", help="the task's reference name")
        parser.add_argument("--task-id", metavar="ID", help="one attempt's taskId (instead of / besides --task)")
    if name in ("skip", "complete"):
        parser.add_argument("--output", metavar="JSON", help="the task's output: a JSON object or @FILE")
    if name == "complete":
        parser.add_argument("--status", choices=COMPLETABLE_STATUSES, default="COMPLETED", help="default COMPLETED")
    if name == "rerun":
        parser.add_argument("--task-input", metavar="JSON", help="new input of the rerun task: JSON or @FILE")
    if name in ("restart", "rerun"):
        parser.add_argument("--input", metavar="JSON", help="new workflow input: a JSON object or @FILE")
    if name in ("retry", "skip", "complete", "terminate"):
        parser.add_argument("--reason", metavar="TEXT", help="recorded with the request")
