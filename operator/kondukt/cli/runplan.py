"""What ``kondukt run`` runs: the files read, the workflow chosen, its input merged, all of it checked.

The files are manifests (multi-document YAML with TaskDef, WorkflowDef and Workflow) or Conductor JSON.
The workflow to run is the single Workflow manifest, else the single WorkflowDef that no other one
starts (or ``--workflow NAME[:VERSION]``); its input is the Workflow's ``spec.input`` with the top-level
keys of ``--input`` laid over it.

Relative file locations: a string input of the form ``file:<relative path>`` (no ``//``, e.g.
``file:images/sample.jpg``) is made absolute before the run starts, against the directory of the
manifest it is written in, or the current directory for ``--input JSON`` (the input file's directory for
``--input @file``). ``file:///absolute/path`` URIs are left alone.

Every mistake found here is a :class:`RunUsageError` (or a ``ManifestError``) naming the file, field or
task reference, before any process starts. This module only reads and checks; running is
:mod:`kondukt.cli.run`'s.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kondukt.engine import Blueprint, TaskType, WorkflowDef
from kondukt.engine.models import WorkflowSpec
from kondukt.errors import KonduktError, KonduktUserError, ManifestError
from kondukt.limits import DEFAULT_LIMITS, parse_json, parse_yaml_documents
from kondukt.local.process import TemplateError, attempt_argv, template_environment
from kondukt.manifests import Bundle, load_files, read_documents

#: The program whose tasks need object storage (the built-in workers write their outputs there).
BUILTIN_WORKER_PROGRAM = "kondukt-worker"

_RELATIVE_FILE_URI = re.compile(r"^file:(?!//)(?P<path>.+)$", re.DOTALL)


class RunUsageError(KonduktUserError):
    """The command line or the files cannot make a run (exit code 2)."""


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def resolve_relative_file_uris(value: Any, base: Path) -> Any:
    """``file:<relative path>`` strings (anywhere in ``value``) → absolute ``file:///`` URIs against ``base``."""
    if isinstance(value, str):
        match = _RELATIVE_FILE_URI.match(value)
        if match is None:
            return value
        return (base / match.group("path")).resolve().as_uri()
    if isinstance(value, dict):
        return {key: resolve_relative_file_uris(item, base) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_relative_file_uris(item, base) for item in value]
    return value


def parse_input_argument(argument: str, cwd: Path) -> dict[str, Any]:
    """``--input``: a JSON object, or ``@file`` holding a JSON or YAML object."""
    base = cwd
    where = "--input"
    text = argument
    if argument.startswith("@"):
        path = (cwd / argument[1:]).expanduser()
        where = f"--input {argument}"
        try:
            with path.open("rb") as stream:
                text = stream.read(DEFAULT_LIMITS.max_bytes + 1).decode("utf-8", "replace")
        except OSError as e:
            raise RunUsageError(f"{where}: cannot read {path}: {e.strerror or e}") from None
        base = path.resolve().parent
    try:
        value = parse_json(text, where)
    except json.JSONDecodeError as e:
        if not argument.startswith("@"):
            raise RunUsageError(
                f"{where}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
            ) from None
        try:
            documents = parse_yaml_documents(text, where)
        except yaml.YAMLError as yaml_error:
            raise RunUsageError(f"{where}: neither JSON nor YAML: {yaml_error}") from None
        if len(documents) > 1:
            raise RunUsageError(f"{where}: holds {len(documents)} YAML documents; the input is one object") from None
        value = documents[0] if documents else None
    if not isinstance(value, dict):
        raise RunUsageError(f"{where}: the workflow input must be a JSON object, not {type(value).__name__}")
    resolved: dict[str, Any] = resolve_relative_file_uris(value, base)
    return resolved


def _parse_selector(selector: str) -> tuple[str, int | None]:
    name, _, version = selector.partition(":")
    if not version:
        return name, None
    try:
        return name, int(version)
    except ValueError:
        raise RunUsageError(f"--workflow {selector}: the version after ':' must be an integer") from None


# --------------------------------------------------------------------------------------------------
# Choosing what to run
# --------------------------------------------------------------------------------------------------


@dataclass
class RunPlan:
    """Everything a run needs, checked: the definitions, the workflow, its input."""

    bundle: Bundle
    blueprint: Blueprint
    workflow_input: dict[str, Any]
    correlation_id: str | None = None
    label: str = ""
    warnings: list[str] = field(default_factory=list)


def _walk_tasks(tasks: Iterable[Any]) -> Iterator[Any]:
    for task in tasks:
        yield task
        for branch in task.children():
            yield from _walk_tasks(branch)


def _started_workflow_names(workflow_def: WorkflowDef) -> set[str]:
    """Names of the workflows a definition starts (sub-workflows, START_WORKFLOW, failureWorkflow)."""
    names: set[str] = set()
    if workflow_def.failureWorkflow:
        names.add(workflow_def.failureWorkflow)
    for task in _walk_tasks(workflow_def.tasks):
        if task.type == TaskType.SUB_WORKFLOW.value and task.subWorkflowParam and task.subWorkflowParam.name:
            names.add(task.subWorkflowParam.name)
        if task.type == TaskType.START_WORKFLOW.value:
            request = task.inputParameters.get("startWorkflow")
            if isinstance(request, Mapping) and isinstance(request.get("name"), str):
                names.add(request["name"])
    return names


def _metadata_name(metadata: Mapping[str, Any]) -> str | None:
    name = metadata.get("name") or metadata.get("generateName")
    return str(name) if name else None


def _cron_file(file: str) -> Path | None:
    """The file a CronWorkflow came from (its relative file: inputs start there); None for stdin."""
    return None if file == "-" else Path(file)


def _workflow_manifest_file(files: Sequence[Path], metadata: Mapping[str, Any]) -> Path | None:
    """The file holding the Workflow manifest with this metadata (its relative file: inputs start there)."""
    candidates: list[Path] = []
    for path in files:
        if str(path) == "-":
            continue
        if path.is_dir():
            candidates.extend(
                sorted(p for p in path.iterdir() if p.suffix.lower() in (".yaml", ".yml", ".json"))
            )
        else:
            candidates.append(path)
    for path in candidates:
        try:
            documents = read_documents(path)
        except KonduktError:
            continue
        for document in documents:
            content = document.content
            items = (
                content.get("items")
                if isinstance(content, dict) and content.get("kind") == "List"
                else [content]
            )
            for item in items if isinstance(items, list) else []:
                if (
                    isinstance(item, dict)
                    and item.get("kind") == "Workflow"
                    and item.get("metadata") == metadata
                ):
                    return path
    return None


def _definition_of_spec(bundle: Bundle, spec: WorkflowSpec) -> WorkflowDef:
    try:
        return bundle.workflow_def_for(spec)
    except ManifestError as e:
        raise RunUsageError(f"the Workflow's spec.workflowDefRef {e}") from None


def choose_workflow(
    bundle: Bundle, selector: str | None, files: Sequence[Path], cwd: Path
) -> tuple[WorkflowDef, dict[str, Any], str | None, str]:
    """Which workflow runs, with the input and correlation id its Workflow manifest gives (if any).

    Returns (definition, input, correlationId, a label naming what was chosen).
    """
    # A CronWorkflow runs once, as `kondukt cron trigger` would start it on a cluster: its workflowSpec.
    manifests: list[tuple[dict[str, Any], WorkflowSpec, str, Path | None]] = [
        (metadata, spec, "Workflow", _workflow_manifest_file(files, metadata)) for metadata, spec in bundle.workflows
    ] + [
        (cron.metadata, cron.workflow_spec, "CronWorkflow", _cron_file(cron.source.file))
        for cron in bundle.cron_workflows
    ]

    def from_manifest(
        metadata: dict[str, Any], spec: WorkflowSpec, kind: str, source: Path | None
    ) -> tuple[WorkflowDef, dict[str, Any], str | None, str]:
        base = source.resolve().parent if source is not None else cwd
        workflow_input: dict[str, Any] = resolve_relative_file_uris(dict(spec.input or {}), base)
        label = f"{kind} {_metadata_name(metadata) or '(unnamed)'}" + (f" ({source})" if source else "")
        return _definition_of_spec(bundle, spec), workflow_input, spec.correlationId, label

    if selector is not None:
        for manifest in manifests:
            if _metadata_name(manifest[0]) == selector:
                return from_manifest(*manifest)
        name, version = _parse_selector(selector)
        chosen = bundle.find_workflow_def(name, version)
        if chosen is None:
            known = sorted(f"{n}:{v}" for n, v in bundle.workflow_defs)
            raise RunUsageError(
                f"--workflow {selector}: no such WorkflowDef or Workflow among the files given"
                + (f" (WorkflowDefs: {', '.join(known)})" if known else "")
            )
        for manifest in manifests:
            ref = manifest[1].workflowDefRef
            if ref is not None and ref.name == chosen.name and ref.version in (None, chosen.version):
                return from_manifest(*manifest)
        return chosen, {}, None, f"WorkflowDef {chosen.name} v{chosen.version}"

    if len(manifests) == 1:
        return from_manifest(*manifests[0])
    if len(manifests) > 1:
        listed = ", ".join(f"{kind} {_metadata_name(m) or '(unnamed)'}" for m, _, kind, _ in manifests)
        raise RunUsageError(
            f"the files hold {len(manifests)} Workflow and CronWorkflow manifests ({listed}): "
            "choose one with --workflow NAME"
        )

    defs = list(bundle.workflow_defs.values())
    if not defs:
        raise RunUsageError("the files hold no WorkflowDef and no Workflow: nothing to run")
    started = set().union(*(_started_workflow_names(d) for d in defs))
    candidates = [d for d in defs if d.name not in started] or defs
    names = sorted({d.name for d in candidates})
    if len(names) > 1:
        raise RunUsageError(
            f"the files hold several workflows ({', '.join(names)}): choose one with --workflow NAME[:VERSION]"
        )
    chosen = max((d for d in candidates if d.name == names[0]), key=lambda d: d.version)
    return chosen, {}, None, f"WorkflowDef {chosen.name} v{chosen.version}"


# --------------------------------------------------------------------------------------------------
# Checks before anything starts
# --------------------------------------------------------------------------------------------------


def _reachable_blueprints(bundle: Bundle, blueprint: Blueprint) -> list[Blueprint]:
    """The blueprint and those of the workflows it may start, transitively (for the local checks)."""
    seen: set[tuple[str, int]] = set()
    found: list[Blueprint] = []
    queue: list[Blueprint] = [blueprint]
    while queue:
        current = queue.pop(0)
        key = (current.workflow.name, current.workflow.version)
        if key in seen:
            continue
        seen.add(key)
        found.append(current)
        for name in _started_workflow_names(current.workflow):
            child = bundle.find_workflow_def(name)
            if child is not None:
                queue.append(bundle.blueprint_for(child))
        for task in _walk_tasks(current.workflow.tasks):
            params = task.subWorkflowParam
            if task.type != TaskType.SUB_WORKFLOW.value or params is None:
                continue
            if params.workflowDefinition:
                with contextlib.suppress(ValueError):
                    queue.append(bundle.blueprint_for(WorkflowDef.model_validate(params.workflowDefinition)))
            elif params.name:
                named = bundle.find_workflow_def(params.name, params.version)
                if named is not None:
                    queue.append(bundle.blueprint_for(named))
    return found


def definition_problems(bundle: Bundle, blueprint: Blueprint) -> list[str]:
    """Definition mistakes (the engine's validation, with file and document) and what cannot run locally."""
    problems = bundle.problems()  # validate_workflow_def for every definition, named by file and document
    task_def_origins: Mapping[str, Any] = getattr(bundle, "_task_def_origins", {})
    for current in _reachable_blueprints(bundle, blueprint):
        label = f"WorkflowDef {current.workflow.name} v{current.workflow.version}"
        for task in _walk_tasks(current.workflow.tasks):
            if task.type != TaskType.SIMPLE.value:
                continue
            task_def = task.taskDefinition or current.taskDefs.get(task.name)
            if task_def is None:
                continue  # reported by the validation
            try:
                attempt_argv(task_def.template, task_def.name)
                template_environment(task_def.template, task_def.name)
            except TemplateError as e:
                origin = task_def_origins.get(task_def.name)
                where = f" (TaskDef from {origin.source})" if origin is not None else ""
                problems.append(f"{label}: task '{task.taskReferenceName}': {e}{where}")
    return list(dict.fromkeys(problems))


def needs_object_storage(bundle: Bundle, blueprint: Blueprint) -> bool:
    """Some task may run a built-in worker, which keeps its files in object storage."""
    task_defs = list(bundle.task_defs.values()) + list(blueprint.taskDefs.values())
    for task_def in task_defs:
        command = task_def.template.command if task_def.template else None
        if command and Path(str(command[0])).name == BUILTIN_WORKER_PROGRAM:
            return True
    return False


def plan_run(files: Sequence[str], *, selector: str | None, input_argument: str | None, cwd: Path) -> RunPlan:
    """Load, choose, merge inputs and check; raises RunUsageError / ManifestError for bad input."""
    paths = [Path(f) if f == "-" else cwd / f for f in files]
    for path in paths:
        if str(path) != "-" and not path.exists():
            raise RunUsageError(f"{path}: no such file")
    bundle = load_files(paths)
    chosen, workflow_input, correlation_id, label = choose_workflow(bundle, selector, paths, cwd)
    if input_argument is not None:
        workflow_input = {**workflow_input, **parse_input_argument(input_argument, cwd)}
    blueprint: Blueprint = bundle.blueprint_for(chosen)
    problems = definition_problems(bundle, blueprint)
    if problems:
        hint = ""
        if any("has no TaskDef" in p or "has no template.command" in p for p in problems):
            hint = (
                "\nhint: a local run needs, for each SIMPLE task, a TaskDef whose template.command runs it; "
                "for the seed's image tasks add examples/conductor/taskdefs.yaml to the command line"
            )
        raise RunUsageError(f"{label} cannot run:\n" + "\n".join(f"  - {p}" for p in problems) + hint)
    return RunPlan(bundle, blueprint, workflow_input, correlation_id, label)


__all__ = [
    "RunPlan",
    "RunUsageError",
    "choose_workflow",
    "definition_problems",
    "needs_object_storage",
    "parse_input_argument",
    "plan_run",
    "resolve_relative_file_uris",
]
