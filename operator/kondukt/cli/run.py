"""``kondukt run FILE...``: run one workflow on this machine, without a cluster.

The files are manifests (multi-document YAML with TaskDef, WorkflowDef and Workflow) or Conductor JSON.
The workflow to run is the single Workflow manifest, else the single WorkflowDef that no other one
starts (or ``--workflow NAME[:VERSION]``); its input is the Workflow's ``spec.input`` with the top-level
keys of ``--input`` laid over it. SIMPLE tasks run as local processes (the TaskDef's
``template.command`` + ``args``; the image is ignored), under the worker protocol.

Relative file locations: a string input of the form ``file:<relative path>`` (no ``//``, e.g.
``file:images/sample.jpg``) is made absolute before the run starts, against the directory of the
manifest it is written in, or the current directory for ``--input JSON`` (the input file's directory for
``--input @file``). ``file:///absolute/path`` URIs are left alone.

Exit codes: 0 = COMPLETED, 1 = FAILED / TIMED_OUT / TERMINATED (Ctrl-C included), 2 = the input is
invalid (a message on stderr names the file, field or task reference; never a traceback).

This module turns command-line input into a run and a run into output; it must never make an
engine-level decision (that is ``decide``'s) nor know how a process is started (that is the runner's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from kondukt.cli.progress import ProgressView, result_locations
from kondukt.engine import Blueprint, TaskType, Workflow, WorkflowDef, WorkflowStatus
from kondukt.engine.models import WorkflowSpec
from kondukt.errors import KonduktError, KonduktUserError, ManifestError
from kondukt.local.objectstore import ObjectStoreError, TaskStorage, open_task_storage
from kondukt.local.process import TemplateError, attempt_argv, template_environment
from kondukt.local.runner import LocalRunner, RunEvent, RunResult
from kondukt.manifests import Bundle, load_files, read_documents
from kondukt.scriptpool import (
    DEFAULT_MEMORY_LIMIT_BYTES,
    DEFAULT_TIME_LIMIT_SECONDS,
    MIB,
    ScriptLimits,
    ScriptLimitsError,
)

#: The program whose tasks need object storage (the built-in workers write their outputs there).
BUILTIN_WORKER_PROGRAM = "kondukt-worker"
DEFAULT_DATA_DIR = Path(".kondukt")
_TICK_SECONDS = 0.25

#: Execution-state fields that are Kondukt's bookkeeping, not part of Conductor's execution JSON.
_INTERNAL_WORKFLOW_FIELDS = frozenset(
    {"nextSeq", "appliedOperations", "failureWorkflowStarted", "timeoutAlerted"}
)
_INTERNAL_TASK_FIELDS = frozenset({"dispatched", "heartbeat", "loopTaskRef", "parentTaskRef", "workflowTask"})

_RELATIVE_FILE_URI = re.compile(r"^file:(?!//)(?P<path>.+)$", re.DOTALL)


class RunUsageError(KonduktUserError):
    """The command line or the files cannot make a run (exit code 2)."""


# --------------------------------------------------------------------------------------------------
# Execution JSON
# --------------------------------------------------------------------------------------------------


def execution_json(workflow: Workflow) -> dict[str, Any]:
    """The final execution in Conductor's execution JSON shape (Kondukt's bookkeeping left out)."""
    exclude: dict[str, Any] = {name: True for name in _INTERNAL_WORKFLOW_FIELDS}
    exclude["tasks"] = {"__all__": set(_INTERNAL_TASK_FIELDS)}
    document: dict[str, Any] = workflow.model_dump(mode="json", exclude=exclude)
    document.setdefault("workflowType", workflow.workflowName)
    return document


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
            text = path.read_text()
        except OSError as e:
            raise RunUsageError(f"{where}: cannot read {path}: {e.strerror or e}") from None
        base = path.resolve().parent
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        if not argument.startswith("@"):
            raise RunUsageError(
                f"{where}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
            ) from None
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as yaml_error:
            raise RunUsageError(f"{where}: neither JSON nor YAML: {yaml_error}") from None
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
    manifests = bundle.workflows

    def from_manifest(
        metadata: dict[str, Any], spec: WorkflowSpec
    ) -> tuple[WorkflowDef, dict[str, Any], str | None, str]:
        source = _workflow_manifest_file(files, metadata)
        base = source.resolve().parent if source is not None else cwd
        workflow_input: dict[str, Any] = resolve_relative_file_uris(dict(spec.input or {}), base)
        label = f"Workflow {_metadata_name(metadata) or '(unnamed)'}" + (f" ({source})" if source else "")
        return _definition_of_spec(bundle, spec), workflow_input, spec.correlationId, label

    if selector is not None:
        for metadata, spec in manifests:
            if _metadata_name(metadata) == selector:
                return from_manifest(metadata, spec)
        name, version = _parse_selector(selector)
        chosen = bundle.find_workflow_def(name, version)
        if chosen is None:
            known = sorted(f"{n}:{v}" for n, v in bundle.workflow_defs)
            raise RunUsageError(
                f"--workflow {selector}: no such WorkflowDef or Workflow among the files given"
                + (f" (WorkflowDefs: {', '.join(known)})" if known else "")
            )
        for metadata, spec in manifests:
            ref = spec.workflowDefRef
            if ref is not None and ref.name == chosen.name and ref.version in (None, chosen.version):
                return from_manifest(metadata, spec)
        return chosen, {}, None, f"WorkflowDef {chosen.name} v{chosen.version}"

    if len(manifests) == 1:
        return from_manifest(*manifests[0])
    if len(manifests) > 1:
        listed = ", ".join(_metadata_name(m) or "(unnamed)" for m, _ in manifests)
        raise RunUsageError(
            f"the files hold {len(manifests)} Workflow manifests ({listed}): choose one with --workflow NAME"
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


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------


async def _run_with_signals(runner: LocalRunner, view: ProgressView | None) -> RunResult:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if threading.current_thread() is threading.main_thread():
        for signum, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
            loop.add_signal_handler(signum, runner.terminate, f"interrupted ({name})")
            installed.append(signum)
    ticker: asyncio.Task[None] | None = None
    if view is not None and view.live:

        async def tick() -> None:
            while True:
                await asyncio.sleep(_TICK_SECONDS)
                view.tick()

        ticker = loop.create_task(tick())
    try:
        return await runner.run()
    finally:
        if ticker is not None:
            ticker.cancel()
        for signum in installed:
            loop.remove_signal_handler(signum)


def located_results(result: RunResult, storage: TaskStorage) -> list[tuple[str, str | None]]:
    """The URIs in the main workflow's output, each with the local file behind it when there is one."""
    located: list[tuple[str, str | None]] = []
    for uri in result_locations(result.workflow.output):
        local = storage.local_path(uri)
        located.append((uri, str(local) if local is not None else None))
    return located


def execute(
    plan: RunPlan,
    *,
    data_dir: Path,
    parallelism: int | None,
    local_s3: str,
    output_format: str | None,
    stdout: TextIO,
    stderr: TextIO,
    script_limits: ScriptLimits | None = None,
) -> int:
    """Run the plan; print progress or the execution JSON; return the exit code."""
    if output_format == "json":
        view = ProgressView(stderr) if stderr.isatty() else None
    else:
        view = ProgressView(stdout)
    want_s3 = local_s3 == "always" or (
        local_s3 == "auto" and needs_object_storage(plan.bundle, plan.blueprint)
    )
    data_dir = data_dir.resolve()
    workflow_id = str(uuid.uuid4())
    try:
        # The embedded S3's objects reach the data directory when the storage closes: results are
        # located after that.
        with open_task_storage(
            data_dir,
            want_s3=want_s3,
            workflow_input=plan.workflow_input,
            warn=lambda text: stderr.write(f"kondukt run: {text}\n"),
        ) as storage:
            runner = LocalRunner(
                plan.bundle,
                plan.blueprint,
                plan.workflow_input,
                attempt_dir=data_dir / "runs",
                correlation_id=plan.correlation_id,
                workflow_id=workflow_id,
                parallelism=parallelism,
                base_environment=storage.task_environment(os.environ),
                store_input=storage.store_payload,
                fetch_payload=storage.fetch_json,
                on_event=_safe_sink(view),
                script_limits=script_limits,
            )
            if view is not None:
                view.stream.write(f"kondukt run: {plan.label}; task files in {storage.describe()}\n")
            result = asyncio.run(_run_with_signals(runner, view))
        locations = located_results(result, storage)
    except ObjectStoreError as e:
        raise KonduktError(str(e)) from None
    finally:
        if view is not None:
            view.close()
    if view is not None:
        note = None
        if storage.local_s3_root is not None and any(local for _, local in locations):
            note = (
                f"the embedded S3 endpoint stopped with the run; its objects were copied to {storage.local_s3_root}"
            )
        view.summary(result, locations, note)
    if output_format == "json":
        json.dump(execution_json(result.workflow), stdout, indent=2)
        stdout.write("\n")
        stdout.flush()
    return 0 if result.workflow.status == WorkflowStatus.COMPLETED else 1


def _safe_sink(view: ProgressView | None) -> Any:
    if view is None:
        return None

    def sink(event: RunEvent) -> None:
        with contextlib.suppress(BrokenPipeError):
            view(event)

    return sink


def run_command(args: argparse.Namespace) -> int:
    stdout: TextIO = sys.stdout
    stderr: TextIO = sys.stderr
    try:
        script_limits = _script_limits(args)
        plan = plan_run(args.files, selector=args.workflow, input_argument=args.input, cwd=Path.cwd())
        return execute(
            plan,
            data_dir=Path(args.data_dir),
            parallelism=args.parallelism,
            local_s3=args.local_s3,
            output_format=args.output,
            stdout=stdout,
            stderr=stderr,
            script_limits=script_limits,
        )
    except KonduktError as e:
        print(f"kondukt run: {e}", file=stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("kondukt run: interrupted", file=stderr)
        return 1


def _script_limits(args: argparse.Namespace) -> ScriptLimits:
    """The jq evaluation limits: the flags, else KONDUKT_SCRIPT_* variables, else the defaults (as the operator's)."""
    try:
        limits = ScriptLimits.from_environ()
        overrides: dict[str, Any] = {}
        if args.script_time_limit is not None:
            overrides["time_limit_seconds"] = args.script_time_limit
        if args.script_memory_limit is not None:
            overrides["memory_limit_bytes"] = args.script_memory_limit * MIB
        return dataclasses.replace(limits, **overrides) if overrides else limits
    except ScriptLimitsError as e:
        raise RunUsageError(str(e)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Configure ``kondukt run``."""
    parser.description = (
        "Run one workflow locally: SIMPLE tasks as processes (TaskDef template.command + args) under the "
        "worker protocol, with the same engine as the operator. FILE: manifests (YAML: TaskDef, WorkflowDef, "
        "Workflow) or Conductor JSON. Exit code 0 = COMPLETED, 1 = FAILED/TIMED_OUT/TERMINATED, 2 = invalid input."
    )
    parser.epilog = (
        "Input strings 'file:<relative path>' are resolved against the manifest's directory (or the current "
        "directory for --input). With no S3 endpoint configured (KONDUKT_S3_ENDPOINT / AWS_ENDPOINT_URL) and "
        "built-in workers in use, an embedded S3 endpoint (moto) runs on 127.0.0.1; its objects are copied to "
        "<data-dir>/s3/<bucket>/<key> when the run ends."
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="manifests or Conductor JSON files")
    parser.add_argument(
        "-i",
        "--input",
        metavar="JSON|@FILE",
        help="workflow input (its top-level keys override the Workflow's)",
    )
    parser.add_argument(
        "-o", "--output", choices=["json"], help="print the final execution as Conductor JSON"
    )
    parser.add_argument("-w", "--workflow", metavar="NAME[:VERSION]", help="which workflow to run")
    parser.add_argument(
        "--parallelism", type=_positive_int, metavar="N", help="task processes at once (default: 2 x CPUs)"
    )
    parser.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA_DIR),
        metavar="DIR",
        help="where task logs, results and the embedded S3's objects go (default: ./.kondukt)",
    )
    parser.add_argument(
        "--local-s3",
        choices=["auto", "always", "never"],
        default="auto",
        help="start the embedded S3 endpoint: when built-in workers need it (auto), always, or never",
    )
    parser.add_argument(
        "--script-time-limit",
        type=_positive_float,
        metavar="SECONDS",
        help="wall-clock limit of one JSON_JQ_TRANSFORM evaluation (default: $KONDUKT_SCRIPT_TIME_LIMIT, else "
        f"{DEFAULT_TIME_LIMIT_SECONDS:g}); the task FAILS naming it",
    )
    parser.add_argument(
        "--script-memory-limit",
        type=_positive_int,
        metavar="MIB",
        help="address-space limit of each jq evaluation process (default: $KONDUKT_SCRIPT_MEMORY_LIMIT, else "
        f"{DEFAULT_MEMORY_LIMIT_BYTES // MIB})",
    )
    parser.set_defaults(func=run_command)


__all__ = [
    "RunPlan",
    "RunUsageError",
    "choose_workflow",
    "configure",
    "definition_problems",
    "execute",
    "execution_json",
    "parse_input_argument",
    "plan_run",
    "resolve_relative_file_uris",
    "run_command",
]
