"""Conductor JSON -> Kondukt manifests: how Conductor users bring their definitions unchanged.

A Conductor WorkflowDef (an object with ``tasks``) becomes a ``WorkflowDef`` resource whose ``spec`` is the
JSON exactly as given (unknown fields kept); a Conductor TaskDef becomes a ``TaskDef`` resource, plus a
``template`` (how an attempt runs: image and command) when the caller supplies one. Resource names are
derived deterministically from the Conductor names (``image_convert_resize`` version 1 ->
``image-convert-resize-v1``), so importing twice gives identical manifests, as GitOps needs.

Everything here is pure data-in, data-out: it reads no file (the caller parses the JSON) and never raises
on bad data; what cannot be imported comes back as ``ImportProblem`` values next to the manifests.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kondukt.engine.models import TaskDef, WorkflowDef
from kondukt.engine.validation import Problem, model_problems, validate_task_def, validate_workflow_def

__all__ = [
    "API_VERSION",
    "MAX_NAME_LENGTH",
    "ImportProblem",
    "WorkerTemplate",
    "find_name_clashes",
    "import_conductor",
    "is_conductor_document",
    "resource_name",
    "task_def_resource_name",
    "workflow_def_resource_name",
]

API_VERSION = "kondukt.io/v1alpha1"
#: A DNS-1123 subdomain, what Kubernetes allows for most object names.
MAX_NAME_LENGTH = 253
_HASH_LENGTH = 8


@dataclass(frozen=True)
class WorkerTemplate:
    """What ``kondukt import conductor --image IMG --command CMD`` puts into every imported TaskDef.

    The TaskDef's ``template.command`` becomes ``[*command, <task name>]``: one image serving many task
    names, as the built-in ``kondukt-worker NAME`` entry point does.
    """

    image: str | None = None
    command: tuple[str, ...] = ()

    def for_task(self, task_name: str) -> dict[str, Any]:
        template: dict[str, Any] = {}
        if self.image:
            template["image"] = self.image
        if self.command:
            template["command"] = [*self.command, task_name]
        return template


@dataclass(frozen=True)
class ImportProblem:
    """Why one Conductor object (the ``index``-th of an array, or the only one) was not imported."""

    index: int | None
    kind: str | None
    name: str | None
    problem: Problem

    def __str__(self) -> str:
        what = (f"{self.kind} '{self.name}'" if self.name else self.kind) if self.kind else ""
        if self.index is not None:
            where = f"item [{self.index}] ({what})" if what else f"item [{self.index}]"
        else:
            where = what
        return f"{where}: {self.problem}" if where else str(self.problem)


# --------------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------------

_INVALID_NAME_CHARS = re.compile(r"[^a-z0-9.\-]")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_LENGTH]


def resource_name(text: str) -> str:
    """A valid, deterministic Kubernetes object name (DNS-1123 subdomain) for a Conductor name.

    Lower-cased; ``_`` and spaces become ``-``; other invalid characters are dropped; each dot-separated
    label starts and ends with a letter or digit. A name longer than 253 characters is cut and gets a
    hash of the original as suffix, so distinct long names stay distinct; a name with nothing usable
    left becomes ``conductor-<hash>``.
    """
    lowered = text.lower().replace("_", "-").replace(" ", "-")
    kept = _INVALID_NAME_CHARS.sub("", lowered)
    labels = [label.strip("-") for label in kept.split(".")]
    name = ".".join(label for label in labels if label)
    if not name:
        return f"conductor-{_short_hash(text)}"
    if len(name) > MAX_NAME_LENGTH:
        head = name[: MAX_NAME_LENGTH - _HASH_LENGTH - 1].rstrip("-.")
        name = f"{head}-{_short_hash(text)}"
    return name


def task_def_resource_name(task_name: str) -> str:
    return resource_name(task_name)


def workflow_def_resource_name(workflow_name: str, version: int) -> str:
    """``image_convert_resize`` version 1 -> ``image-convert-resize-v1`` (one resource per version)."""
    suffix = f"-v{version}"
    base = resource_name(workflow_name)
    limit = MAX_NAME_LENGTH - len(suffix)
    if len(base) > limit:
        base = f"{base[: limit - _HASH_LENGTH - 1].rstrip('-.')}-{_short_hash(workflow_name)}"
    return f"{base}{suffix}"


# --------------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------------


def is_conductor_document(document: Any) -> bool:
    """Conductor JSON has no ``apiVersion`` / ``kind`` (Kondukt manifests always do)."""
    if isinstance(document, list):
        return True
    return isinstance(document, dict) and "apiVersion" not in document and "kind" not in document


def import_conductor(
    document: Any,
    *,
    worker_template: WorkerTemplate | None = None,
    namespace: str | None = None,
    check: bool = True,
) -> tuple[list[dict[str, Any]], list[ImportProblem]]:
    """Conductor WorkflowDef / TaskDef JSON (one object or an array) -> Kondukt manifests.

    ``check`` also runs the definition checks that need nothing but the object itself (all of
    ``validate_workflow_def`` except "a SIMPLE task has a TaskDef", which may live elsewhere).
    Objects with problems produce no manifest. Never raises.
    """
    items: Sequence[Any]
    indexed: bool
    if isinstance(document, list):
        items, indexed = document, True
    else:
        items, indexed = [document], False
    manifests: list[dict[str, Any]] = []
    problems: list[ImportProblem] = []
    for position, item in enumerate(items):
        index = position if indexed else None
        manifest, item_problems = _import_one(item, index, worker_template, namespace, check)
        problems.extend(item_problems)
        if manifest is not None:
            manifests.append(manifest)
    return manifests, problems


def _import_one(
    item: Any,
    index: int | None,
    worker_template: WorkerTemplate | None,
    namespace: str | None,
    check: bool,
) -> tuple[dict[str, Any] | None, list[ImportProblem]]:
    if not isinstance(item, dict):
        problem = Problem(
            "", None, "", f"must be a Conductor WorkflowDef or TaskDef object (got {type(item).__name__})"
        )
        return None, [ImportProblem(index, None, None, problem)]
    raw_name = item.get("name")
    name = raw_name if isinstance(raw_name, str) else None
    if not is_conductor_document(item):
        problem = Problem(
            "kind",
            None,
            "kind",
            f"is set: this is already a Kondukt manifest ({item.get('kind')}), not Conductor JSON",
        )
        return None, [ImportProblem(index, None, name, problem)]
    if "tasks" in item:
        return _import_workflow_def(item, index, name, namespace, check)
    return _import_task_def(item, index, name, worker_template, namespace, check)


def _import_workflow_def(
    item: dict[str, Any], index: int | None, name: str | None, namespace: str | None, check: bool
) -> tuple[dict[str, Any] | None, list[ImportProblem]]:
    workflow_def, problems = model_problems(WorkflowDef, item)
    if workflow_def is None:
        return None, [ImportProblem(index, "WorkflowDef", name, p) for p in problems]
    if check:
        problems = validate_workflow_def(workflow_def, None)
        if problems:
            return None, [ImportProblem(index, "WorkflowDef", name, p) for p in problems]
    metadata = _metadata(workflow_def_resource_name(workflow_def.name, workflow_def.version), namespace)
    return _manifest("WorkflowDef", metadata, copy.deepcopy(item)), []


def _import_task_def(
    item: dict[str, Any],
    index: int | None,
    name: str | None,
    worker_template: WorkerTemplate | None,
    namespace: str | None,
    check: bool,
) -> tuple[dict[str, Any] | None, list[ImportProblem]]:
    task_def, problems = model_problems(TaskDef, item)
    if task_def is None:
        return None, [ImportProblem(index, "TaskDef", name, p) for p in problems]
    if check:
        problems = validate_task_def(task_def)
        if problems:
            return None, [ImportProblem(index, "TaskDef", name, p) for p in problems]
    spec = copy.deepcopy(item)
    if worker_template is not None and "template" not in spec:
        template = worker_template.for_task(task_def.name)
        if template:
            spec["template"] = template
    metadata = _metadata(task_def_resource_name(task_def.name), namespace)
    return _manifest("TaskDef", metadata, spec), []


def _metadata(name: str, namespace: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return metadata


def _manifest(kind: str, metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def find_name_clashes(
    manifests: Sequence[dict[str, Any]], origins: Sequence[str] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Drop exact duplicates (the same definition imported twice) and report distinct definitions that
    would become the same resource (``a_b`` and ``a-b``; the same TaskDef name with different settings).

    ``origins`` (one label per manifest, e.g. its file) makes the messages say where both came from.
    Returns (the manifests without duplicates, one message per clash).
    """
    kept: list[dict[str, Any]] = []
    seen: dict[tuple[str, str | None, str], int] = {}
    clashes: list[str] = []
    for position, manifest in enumerate(manifests):
        metadata = manifest.get("metadata") or {}
        key = (str(manifest.get("kind")), metadata.get("namespace"), str(metadata.get("name")))
        earlier_position = seen.get(key)
        if earlier_position is None:
            seen[key] = position
            kept.append(manifest)
            continue
        earlier = manifests[earlier_position]
        if earlier == manifest:
            continue
        first, second = earlier.get("spec", {}).get("name"), manifest.get("spec", {}).get("name")
        if first == second:
            why = f"'{first}' is defined twice with different content"
        else:
            why = f"'{first}' and '{second}' both become the resource name '{key[2]}'"
        where = f" ({origins[earlier_position]} and {origins[position]})" if origins is not None else ""
        clashes.append(f"{key[0]} {why}{where}")
    return kept, clashes
