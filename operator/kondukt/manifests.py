"""Reading definitions from files: Kondukt manifests (multi-document YAML) or Conductor JSON as is.

``load_files(paths)`` reads every file (or every ``*.yaml``/``*.yml``/``*.json`` of a directory, or stdin
for ``-``) into one ``Bundle``: the TaskDefs, WorkflowDefs, Workflows and CronWorkflows they hold. A document
with ``apiVersion``/``kind`` is a manifest (``kind: TaskDef | WorkflowDef | Workflow | CronWorkflow``, or a
``List`` of them); a CronWorkflow's ``spec.workflowSpec`` is checked here like a Workflow's spec, its schedule
by the caller's ``check_cron`` (``kondukt validate`` gives the operator's own parser, which lives in the
operator's package);
anything else is Conductor JSON (a WorkflowDef, a TaskDef, or an array of either), imported through
``kondukt.engine.conductor`` so both spellings load to the same models.

Every mistake becomes a ``ManifestError`` whose message names the file, the document, the kind and name,
and the field (``x.yaml: document 2 (WorkflowDef image-convert-resize): task 'a' (spec.tasks[1]): type
'SIMPL' is not a task type``), or the line and column of a syntax error. All mistakes of all files are
reported at once. Loading checks each definition on its own; ``Bundle.problems()`` then checks them as a
set (every SIMPLE task has a TaskDef, every referenced WorkflowDef is there).

This is the I/O side of the engine's pure checks: it reads files, and must never print or exit.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kondukt.engine.conductor import API_VERSION, import_conductor, is_conductor_document
from kondukt.engine.models import Blueprint, TaskDef, TaskType, WorkflowDef, WorkflowSpec
from kondukt.engine.validation import (
    Problem,
    model_problems,
    validate_task_def,
    validate_workflow_def,
    walk_tasks,
)
from kondukt.errors import ManifestError
from kondukt.limits import DEFAULT_LIMITS, DocumentLimits, parse_json, parse_yaml_documents

__all__ = ["KINDS", "Bundle", "CronCheck", "CronManifest", "ManifestError", "ParsedDocument", "Source", "load_files", "read_documents"]

KINDS = ("TaskDef", "WorkflowDef", "Workflow", "CronWorkflow")
_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_JSON_HINTS = {
    "Extra data": " (text after the end of the JSON value, e.g. a trailing comma)",
    "Expecting value": " (a value is missing here, e.g. after a ':' or ',')",
}
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# --------------------------------------------------------------------------------------------------
# Where a definition came from
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A place in the input, as messages name it: ``x.yaml: document 2 (WorkflowDef image-convert-resize)``."""

    file: str
    document: int | None = None
    """1-based YAML document number (None for JSON)."""
    item: int | None = None
    """0-based index in a JSON array or a ``List`` manifest's items."""
    kind: str | None = None
    name: str | None = None

    def named(self, kind: str | None, name: Any) -> Source:
        return Source(self.file, self.document, self.item, kind, name if isinstance(name, str) else None)

    def __str__(self) -> str:
        text = self.file
        if self.document is not None:
            text += f": document {self.document}"
        if self.item is not None:
            text += f": item [{self.item}]"
        if self.kind:
            text += f" ({self.kind} {self.name})" if self.name else f" ({self.kind})"
        return text


@dataclass(frozen=True)
class _Origin:
    source: Source
    prefix: str
    """Where the definition sits in its document: ``spec`` in a manifest, nothing in Conductor JSON."""

    def describe(self, problem: Problem) -> str:
        return f"{self.source}: {problem.with_prefix(self.prefix)}"


def _a_type(value: Any) -> str:
    """``an int``, ``a list``: what a value is, as a message says it."""
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _built_in_memory(kind: str, name: Any) -> Source:
    """Where a definition added to a Bundle by code (not read from a file) is said to come from."""
    return Source("(not from a file)").named(kind, name)


# --------------------------------------------------------------------------------------------------
# Reading and parsing files
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedDocument:
    file: str
    number: int | None
    """1-based YAML document number; None for a JSON file."""
    content: Any


def read_documents(path: str | Path, limits: DocumentLimits = DEFAULT_LIMITS) -> list[ParsedDocument]:
    """Parse one file (``-`` = stdin) into its documents; ManifestError names the line and column.

    A file over the size, nesting or alias limits of ``kondukt.limits`` is refused before it is built.
    """
    label = str(path)
    text = _read_text(label, limits)
    if _is_json(label, text):
        try:
            return [ParsedDocument(label, None, parse_json(text, label, limits))]
        except json.JSONDecodeError as err:
            hint = _JSON_HINTS.get(err.msg, "")
            raise ManifestError(
                f"{label}: line {err.lineno}, column {err.colno}: invalid JSON: {err.msg}{hint}"
            ) from None
    try:
        contents = parse_yaml_documents(text, label, limits)
    except yaml.MarkedYAMLError as err:
        raise ManifestError(_yaml_error_message(label, err)) from None
    except yaml.YAMLError as err:
        raise ManifestError(f"{label}: invalid YAML: {err}") from None
    return [ParsedDocument(label, number, content) for number, content in enumerate(contents, start=1)]


def _read_text(label: str, limits: DocumentLimits) -> str:
    """The file's text; never more than a byte over the size limit is read (a named pipe may be endless)."""
    if label == "-":
        return sys.stdin.read(limits.max_bytes + 1)
    path = Path(label)
    try:
        with path.open("rb") as stream:
            data = stream.read(limits.max_bytes + 1)
        if len(data) > limits.max_bytes:
            raise ManifestError(f"{label}: the file is more than the limit of {limits.max_bytes} bytes")
        return data.decode("utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ManifestError(f"{label}: is a directory") from None
    except UnicodeDecodeError as err:
        raise ManifestError(f"{label}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ManifestError(f"{label}: cannot read: {err.strerror or err}") from None


def _is_json(label: str, text: str) -> bool:
    suffix = Path(label).suffix.lower()
    if suffix == ".json":
        return True
    if suffix in (".yaml", ".yml"):
        return False
    return text.lstrip()[:1] in ("{", "[")


def _yaml_error_message(label: str, err: yaml.MarkedYAMLError) -> str:
    mark = err.problem_mark or err.context_mark
    what = " ".join(part for part in (err.context, err.problem) if part) or "syntax error"
    if mark is None:
        return f"{label}: invalid YAML: {what}"
    return f"{label}: line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {what}"


def _expand(paths: Sequence[str | Path]) -> list[str]:
    files: list[str] = []
    for path in paths:
        label = str(path)
        if label != "-" and Path(label).is_dir():
            found = sorted(str(p) for p in Path(label).iterdir() if p.suffix.lower() in _MANIFEST_SUFFIXES)
            if not found:
                raise ManifestError(f"{label}: no *.yaml, *.yml or *.json files in this directory")
            files.extend(found)
        else:
            files.append(label)
    return files


# --------------------------------------------------------------------------------------------------
# The bundle
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CronManifest:
    """A CronWorkflow read from a file: its metadata, its spec as written, its checked workflowSpec."""

    metadata: dict[str, Any]
    spec: dict[str, Any]
    """As written: the schedule fields are checked by the caller (kondukt.kube.schedule.parse_spec)."""
    workflow_spec: WorkflowSpec
    source: Source


@dataclass
class Bundle:
    """The definitions of a set of files, keyed the way Conductor refers to them."""

    task_defs: dict[str, TaskDef] = field(default_factory=dict)
    """By TaskDef name (``spec.name``, defaulting to ``metadata.name``)."""
    workflow_defs: dict[tuple[str, int], WorkflowDef] = field(default_factory=dict)
    """By (``spec.name``, ``spec.version``)."""
    workflows: list[tuple[dict[str, Any], WorkflowSpec]] = field(default_factory=list)
    """Workflow manifests: (metadata, spec)."""
    _task_def_origins: dict[str, _Origin] = field(default_factory=dict, repr=False)
    _workflow_def_origins: dict[tuple[str, int], _Origin] = field(default_factory=dict, repr=False)
    _workflow_origins: list[_Origin] = field(default_factory=list, repr=False)
    cron_workflows: list[CronManifest] = field(default_factory=list)
    """CronWorkflow manifests; their workflowSpec is checked like a Workflow's spec, not run by ``kondukt run``."""

    def find_workflow_def(self, name: str, version: int | None = None) -> WorkflowDef | None:
        """The WorkflowDef of that name and version (the highest version when None), or None."""
        if version is not None:
            return self.workflow_defs.get((name, version))
        versions = [v for (n, v) in self.workflow_defs if n == name]
        return self.workflow_defs[(name, max(versions))] if versions else None

    def require_workflow_def(self, name: str, version: int | None = None) -> WorkflowDef:
        """Like ``find_workflow_def``, but a ManifestError that lists what the files do define."""
        found = self.find_workflow_def(name, version)
        if found is None:
            raise ManifestError(self._missing_workflow_def(name, version))
        return found

    def workflow_def_for(self, spec: WorkflowSpec) -> WorkflowDef:
        """What a Workflow runs: its inline ``definition``, or the WorkflowDef its ``workflowDefRef`` names."""
        if spec.definition is not None:
            return spec.definition
        if spec.workflowDefRef is None:
            raise ManifestError(
                "the Workflow names no definition: set spec.workflowDefRef or spec.definition"
            )
        return self.require_workflow_def(spec.workflowDefRef.name, spec.workflowDefRef.version)

    def blueprint_for(self, workflow_def: WorkflowDef) -> Blueprint:
        return Blueprint(workflow=workflow_def, taskDefs=dict(self.task_defs))

    def problems(
        self, extra_task_defs: Mapping[str, TaskDef] | None = None, *, self_contained: bool = True
    ) -> list[str]:
        """Checks of the definitions as a set, one message per problem.

        ``self_contained``: every SIMPLE task needs a TaskDef (from the files or ``extra_task_defs``),
        and every WorkflowDef a Workflow, SUB_WORKFLOW or failureWorkflow names must be in the files.
        False when they live elsewhere (already applied to a cluster).
        """
        task_defs: dict[str, TaskDef] | None = None
        if self_contained:
            task_defs = {**(extra_task_defs or {}), **self.task_defs}
        messages: list[str] = []
        for key, workflow_def in self.workflow_defs.items():
            origin = self._workflow_def_origins.get(key) or _Origin(
                _built_in_memory("WorkflowDef", key[0]), ""
            )
            messages.extend(origin.describe(p) for p in validate_workflow_def(workflow_def, task_defs))
            if self_contained:
                messages.extend(origin.describe(p) for p in self._unknown_workflow_names(workflow_def))
        runs = [
            (self._workflow_origins[index] if index < len(self._workflow_origins)
             else _Origin(_built_in_memory("Workflow", metadata.get("name")), "spec"), spec)
            for index, (metadata, spec) in enumerate(self.workflows)
        ] + [(_Origin(cron.source, "spec.workflowSpec"), cron.workflow_spec) for cron in self.cron_workflows]
        for origin, spec in runs:
            if spec.definition is not None:
                inline = _Origin(origin.source, f"{origin.prefix}.definition")
                messages.extend(inline.describe(p) for p in validate_workflow_def(spec.definition, task_defs))
                if self_contained:
                    messages.extend(inline.describe(p) for p in self._unknown_workflow_names(spec.definition))
            elif self_contained and spec.workflowDefRef is not None:
                ref = spec.workflowDefRef
                if self.find_workflow_def(ref.name, ref.version) is None:
                    messages.append(
                        f"{origin.source}: {origin.prefix}.workflowDefRef "
                        f"{self._missing_workflow_def(ref.name, ref.version)}"
                    )
        return messages

    def check(
        self, extra_task_defs: Mapping[str, TaskDef] | None = None, *, self_contained: bool = True
    ) -> None:
        """Raise a ManifestError listing ``problems()``, if there are any."""
        messages = self.problems(extra_task_defs, self_contained=self_contained)
        if messages:
            raise ManifestError.from_problems(messages)

    def _unknown_workflow_names(self, workflow_def: WorkflowDef) -> Iterator[Problem]:
        failure = workflow_def.failureWorkflow
        # An expression ($workflow.input.x, ${workflow.input.x}) names it only when the workflow fails.
        if failure and not failure.startswith("$") and self.find_workflow_def(failure) is None:
            yield Problem(
                "failureWorkflow",
                None,
                "failureWorkflow",
                f"names WorkflowDef '{failure}', which is not in the files",
            )
        for path, task in walk_tasks(workflow_def.tasks):
            params = task.subWorkflowParam
            if (
                task.type != TaskType.SUB_WORKFLOW.value
                or params is None
                or params.workflowDefinition is not None
            ):
                continue
            if (
                params.name
                and "${" not in params.name
                and self.find_workflow_def(params.name, params.version) is None
            ):
                version = f" version {params.version}" if params.version is not None else ""
                yield Problem(
                    f"{path}.subWorkflowParam.name",
                    task.taskReferenceName,
                    "subWorkflowParam.name",
                    f"names WorkflowDef '{params.name}'{version}, which is not in the files",
                )

    def _missing_workflow_def(self, name: str, version: int | None) -> str:
        wanted = f"'{name}'" + (f" version {version}" if version is not None else "")
        defined = ", ".join(f"{n} v{v}" for (n, v) in sorted(self.workflow_defs)) or "none"
        return f"names WorkflowDef {wanted}, which is not in the files (they define: {defined})"


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


#: Checks a CronWorkflow's spec as written (its schedule): the problem, naming the field, or None.
CronCheck = Callable[[Mapping[str, Any]], "str | None"]


def load_files(paths: Sequence[str | Path], *, check_cron: CronCheck | None = None) -> Bundle:
    """Load manifests and Conductor JSON from files into one Bundle; ManifestError lists every mistake.

    ``check_cron``: the schedule check of each CronWorkflow (the operator's parser, given by the caller:
    this module does not depend on the operator); without it only their workflowSpec is checked."""
    loader = _BundleLoader(check_cron)
    try:
        files = _expand(paths)
    except ManifestError as err:
        raise ManifestError.from_problems(err.problems) from None
    if not files:
        raise ManifestError("no files given")
    for file in files:
        try:
            documents = read_documents(file)
        except ManifestError as err:
            loader.errors.extend(err.problems)
            continue
        for document in documents:
            loader.add_document(document)
    if loader.errors:
        raise ManifestError.from_problems(loader.errors)
    return loader.bundle


class _BundleLoader:
    def __init__(self, check_cron: CronCheck | None = None) -> None:
        self.check_cron = check_cron
        self.bundle = Bundle()
        self.errors: list[str] = []

    def add_document(self, document: ParsedDocument) -> None:
        source = Source(document.file, document.number)
        content = document.content
        if content is None:
            return  # an empty YAML document (a trailing ---)
        if isinstance(content, dict) and content.get("kind") == "List" and "apiVersion" in content:
            items = content.get("items")
            if not isinstance(items, list):
                self.errors.append(f"{source.named('List', None)}: items must be a list")
                return
            for index, item in enumerate(items):
                self.add_manifest(item, Source(document.file, document.number, index), "spec")
        elif is_conductor_document(content):
            items = content if isinstance(content, list) else [content]
            for index, item in enumerate(items):
                item_source = Source(
                    document.file, document.number, index if isinstance(content, list) else None
                )
                self.add_conductor(item, item_source)
        elif isinstance(content, dict):
            self.add_manifest(content, source, "spec")
        else:
            self.errors.append(
                f"{source}: is a {type(content).__name__}, not a manifest or a Conductor definition (an object)"
            )

    def add_conductor(self, item: Any, source: Source) -> None:
        manifests, problems = import_conductor(item, check=False)
        for problem in problems:
            self.errors.append(f"{source.named(problem.kind, problem.name)}: {problem.problem}")
        for manifest in manifests:
            self.add_manifest(manifest, source, "")

    def add_manifest(self, manifest: Any, source: Source, prefix: str) -> None:
        if not isinstance(manifest, dict):
            self.errors.append(f"{source}: must be an object (a manifest), not {_a_type(manifest)}")
            return
        kind = manifest.get("kind")
        metadata = manifest.get("metadata")
        meta_name = metadata.get("name") if isinstance(metadata, dict) else None
        named = source.named(kind if isinstance(kind, str) else None, meta_name)
        if prefix == "":  # Conductor JSON: name it the way the user wrote it
            named = source.named(kind, (manifest.get("spec") or {}).get("name"))
        before = len(self.errors)
        api_version = manifest.get("apiVersion")
        if api_version != API_VERSION:
            got = "is missing" if api_version is None else f"is {api_version!r}"
            self.errors.append(f"{named}: apiVersion {got}; it must be {API_VERSION}")
        if kind is None:
            self.errors.append(f"{named}: kind is missing (one of {', '.join(KINDS)})")
        elif kind not in KINDS:
            self.errors.append(f"{named}: kind {kind!r} is not one of {', '.join(KINDS)}")
        has_generate_name = (
            kind == "Workflow" and isinstance(metadata, dict) and bool(metadata.get("generateName"))
        )
        if not isinstance(metadata, dict):
            self.errors.append(f"{named}: metadata is missing (it needs at least a name)")
        elif not isinstance(meta_name, str) or not meta_name:
            if not has_generate_name:
                self.errors.append(f"{named}: metadata.name is missing")
        elif len(meta_name) > 253 or not _DNS_SUBDOMAIN.match(meta_name):
            self.errors.append(
                f"{named}: metadata.name {meta_name!r} is not a valid Kubernetes name "
                "(at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit)"
            )
        spec = manifest.get("spec")
        if spec is None and kind == "TaskDef":
            spec = {}  # every TaskDef field has a default; the name comes from metadata.name
        if not isinstance(spec, dict):
            self.errors.append(
                f"{named}: spec must be an object" if spec is not None else f"{named}: spec is missing"
            )
        if len(self.errors) > before:
            return
        assert isinstance(metadata, dict) and isinstance(spec, dict)
        origin = _Origin(named, prefix)
        if kind == "TaskDef":
            self._add_task_def(metadata, spec, origin)
        elif kind == "WorkflowDef":
            self._add_workflow_def(metadata, spec, origin)
        elif kind == "CronWorkflow":
            self._add_cron_workflow(metadata, spec, origin)
        else:
            self._add_workflow(metadata, spec, origin)

    def _add_task_def(self, metadata: dict[str, Any], spec: dict[str, Any], origin: _Origin) -> None:
        if "name" not in spec and isinstance(metadata.get("name"), str):
            spec = {**spec, "name": metadata["name"]}
        task_def, problems = model_problems(TaskDef, spec)
        if task_def is not None:
            problems = validate_task_def(task_def)
        if problems or task_def is None:
            self.errors.extend(origin.describe(p) for p in problems)
            return
        earlier = self.bundle.task_defs.get(task_def.name)
        if earlier is not None:
            if earlier != task_def:
                self.errors.append(
                    f"{origin.source}: TaskDef '{task_def.name}' is already defined differently by "
                    f"{self.bundle._task_def_origins[task_def.name].source}"
                )
            return
        self.bundle.task_defs[task_def.name] = task_def
        self.bundle._task_def_origins[task_def.name] = origin

    def _add_workflow_def(self, metadata: dict[str, Any], spec: dict[str, Any], origin: _Origin) -> None:
        if "name" not in spec and isinstance(metadata.get("name"), str):
            spec = {**spec, "name": metadata["name"]}
        workflow_def, problems = model_problems(WorkflowDef, spec)
        if workflow_def is not None:
            problems = validate_workflow_def(workflow_def, None)
        if problems or workflow_def is None:
            self.errors.extend(origin.describe(p) for p in problems)
            return
        key = (workflow_def.name, workflow_def.version)
        earlier = self.bundle.workflow_defs.get(key)
        if earlier is not None:
            if earlier != workflow_def:
                self.errors.append(
                    f"{origin.source}: WorkflowDef '{key[0]}' version {key[1]} is already defined differently by "
                    f"{self.bundle._workflow_def_origins[key].source}"
                )
            return
        self.bundle.workflow_defs[key] = workflow_def
        self.bundle._workflow_def_origins[key] = origin

    def _add_workflow(self, metadata: dict[str, Any], spec: dict[str, Any], origin: _Origin) -> None:
        workflow_spec = self._workflow_spec(spec, origin)
        if workflow_spec is not None:
            self.bundle.workflows.append((dict(metadata), workflow_spec))
            self.bundle._workflow_origins.append(origin)

    def _add_cron_workflow(self, metadata: dict[str, Any], spec: dict[str, Any], origin: _Origin) -> None:
        problem = self.check_cron(spec) if self.check_cron is not None else None
        if problem:
            self.errors.append(f"{origin.source}: {problem}")
        raw = spec.get("workflowSpec")
        if not isinstance(raw, dict):
            got = "is missing" if raw is None else f"must be an object, not {_a_type(raw)}"
            self.errors.append(f"{origin.source}: spec.workflowSpec {got} (the spec of each run: "
                               "workflowDefRef or definition, input)")
            return
        workflow_spec = self._workflow_spec(raw, _Origin(origin.source, "spec.workflowSpec"))
        if workflow_spec is not None and not problem:
            self.bundle.cron_workflows.append(CronManifest(dict(metadata), dict(spec), workflow_spec, origin.source))

    def _workflow_spec(self, spec: dict[str, Any], origin: _Origin) -> WorkflowSpec | None:
        """A Workflow's spec (or a CronWorkflow's workflowSpec) checked on its own; None after an error."""
        workflow_spec, problems = model_problems(WorkflowSpec, spec)
        if workflow_spec is None:
            self.errors.extend(origin.describe(p) for p in problems)
            return None
        where = origin.prefix
        if workflow_spec.definition is None and workflow_spec.workflowDefRef is None:
            self.errors.append(
                f"{origin.source}: {where}.workflowDefRef is missing "
                f"(name a WorkflowDef, or give an inline {where}.definition)"
            )
            return None
        if workflow_spec.definition is not None and workflow_spec.workflowDefRef is not None:
            self.errors.append(
                f"{origin.source}: {where} gives both workflowDefRef and definition (give one of them)"
            )
            return None
        if workflow_spec.definition is not None:
            inline = _Origin(origin.source, f"{where}.definition")
            problems = validate_workflow_def(workflow_spec.definition, None)
            if problems:
                self.errors.extend(inline.describe(p) for p in problems)
                return None
        return workflow_spec
