"""``kondukt import conductor`` and ``kondukt validate``: the commands that work on definition files alone.

Both read files through ``kondukt.manifests`` and report every mistake at once, each naming its file,
document, field and task reference; neither needs a cluster. ``import`` writes manifests to stdout only
when every input is valid, so ``kondukt import conductor *.json | kubectl apply -f -`` never applies half
a set.

This module must never talk to a cluster or run a workflow.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Mapping
from typing import Any

import yaml

from kondukt.cli.text import count
from kondukt.engine.conductor import (
    WorkerTemplate,
    find_name_clashes,
    import_conductor,
    is_conductor_document,
)
from kondukt.errors import KonduktUserError, ManifestError
from kondukt.manifests import load_files, read_documents

try:
    from yaml import CSafeDumper as _Dumper
except ImportError:  # pragma: no cover - libyaml is in the pinned wheels
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]

DEFAULT_WORKER_COMMAND = "kondukt-worker"

_IMPORT_DESCRIPTION = """\
Convert Conductor definitions (WorkflowDef or TaskDef JSON: one object or an array of them, exactly as
Conductor's API and UI export them) into Kondukt manifests, printed on stdout as multi-document YAML.

A WorkflowDef becomes `kind: WorkflowDef` named <name>-v<version> (image_convert_resize version 1 ->
image-convert-resize-v1); a TaskDef becomes `kind: TaskDef` named after the task. The Conductor JSON is
kept unchanged as the `spec` (unknown fields too), so names, expressions and policies carry over.

How tasks run: a Kondukt TaskDef carries a `template` (container image and command) for its attempts.
With --image and/or --command every imported TaskDef gets
    template: {image: IMG, command: [CMD..., <task name>]}
so one workers image serves all task names, e.g. the built-in workers (image_convert_resize,
upload_toS3, image_multiple_convert_resize) with `--image <workers image> --command kondukt-worker`.
--image alone implies --command kondukt-worker. Without either, TaskDefs have no template: add one
before `kubectl apply` (TaskDefs that already have a `template` keep it).

All files are checked first: if any file is invalid (bad JSON with its line and column, an unknown task
type, a JOIN without its fork, a reference to a task that does not exist, ...), every problem is printed
on stderr, nothing is printed on stdout, and the exit code is 2.
"""

_IMPORT_EPILOG = """\
examples:
  kondukt import conductor workflow.json task__*.json > manifests.yaml
  kondukt import conductor --image ghcr.io/acme/workers:0.1.0 --command kondukt-worker task__*.json
  kondukt import conductor workflow.json | kubectl apply -f -
"""

_VALIDATE_DESCRIPTION = """\
Check manifests (multi-document YAML with TaskDef, WorkflowDef and Workflow) and Conductor JSON without
running anything: syntax (with line and column), schemas and enum values, task types, unique task
references, JOINs and their forks, references in expressions, the parameters each task type needs,
WAIT durations and dates, TERMINATE statuses, and TaskDef timeouts.

The files are checked as one self-contained set: every SIMPLE task needs a TaskDef in the files, and
every WorkflowDef named by a Workflow, a SUB_WORKFLOW or a failureWorkflow must be there too. Use
--allow-external-refs when those live elsewhere (already applied to the cluster).

Prints `ok: ...` and exits 0, or prints every problem on stderr and exits 2. A directory stands for its
*.yaml, *.yml and *.json files; `-` reads stdin.
"""


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Configure ``kondukt import`` (with its ``conductor`` source) or ``kondukt validate``."""
    if name == "import":
        import_sources = parser.add_subparsers(title="sources", metavar="SOURCE")
        parser.set_defaults(func=lambda _args: _usage(parser))
        conductor = import_sources.add_parser(
            "conductor",
            help="Conductor WorkflowDef / TaskDef JSON -> TaskDef / WorkflowDef manifests (YAML on stdout)",
            description=_IMPORT_DESCRIPTION,
            epilog=_IMPORT_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        conductor.add_argument("files", nargs="+", metavar="FILE", help="Conductor JSON files ('-' = stdin)")
        conductor.add_argument(
            "--image", metavar="IMG", help="container image for every imported TaskDef's template"
        )
        conductor.add_argument(
            "--command",
            metavar="CMD",
            help="worker command (shell-style words) for every imported TaskDef; the task name is appended "
            f"(default with --image: {DEFAULT_WORKER_COMMAND})",
        )
        conductor.add_argument("--namespace", "-n", metavar="NS", help="set metadata.namespace on every manifest")
        conductor.set_defaults(func=run_import_conductor)
    elif name == "validate":
        parser.description = _VALIDATE_DESCRIPTION
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.add_argument(
            "files", nargs="+", metavar="FILE", help="manifest or Conductor JSON files, or directories"
        )
        parser.add_argument(
            "--allow-external-refs",
            action="store_true",
            help="do not require the TaskDefs and WorkflowDefs that are named but not in the files",
        )
        parser.set_defaults(func=run_validate)
    else:
        raise ValueError(f"{__name__} does not configure `kondukt {name}`")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: name a source, e.g. `{parser.prog} conductor FILE...`", file=sys.stderr)
    return 2


def worker_template_from_args(image: str | None, command: str | None) -> WorkerTemplate | None:
    """The TaskDef template the --image / --command flags ask for (None when neither is given)."""
    if image is None and command is None:
        return None
    if command is not None:
        try:
            words = tuple(shlex.split(command))
        except ValueError as err:
            raise KonduktUserError(f"--command {command!r}: {err}") from None
        if not words:
            raise KonduktUserError("--command is empty")
    else:
        words = (DEFAULT_WORKER_COMMAND,)
    return WorkerTemplate(image=image, command=words)


def import_files(
    files: list[str], worker_template: WorkerTemplate | None = None, namespace: str | None = None
) -> list[dict[str, Any]]:
    """The manifests for Conductor JSON files; ManifestError lists every problem of every file."""
    manifests: list[dict[str, Any]] = []
    origins: list[str] = []
    errors: list[str] = []
    for file in files:
        try:
            documents = read_documents(file)
        except ManifestError as err:
            errors.extend(err.problems)
            continue
        for document in documents:
            where = file if document.number is None else f"{file}: document {document.number}"
            if document.content is None:
                continue
            if not is_conductor_document(document.content):
                kind = document.content.get("kind") if isinstance(document.content, dict) else None
                what = (
                    f"already a Kondukt manifest (kind {kind})" if kind else "not a Conductor object or array"
                )
                errors.append(f"{where}: {what}: nothing to import")
                continue
            imported, problems = import_conductor(
                document.content, worker_template=worker_template, namespace=namespace, check=True
            )
            errors.extend(f"{where}: {problem}" for problem in problems)
            manifests.extend(imported)
            origins.extend(where for _ in imported)
    manifests, clashes = find_name_clashes(manifests, origins)
    errors.extend(clashes)
    if errors:
        raise ManifestError.from_problems(errors)
    return manifests


def dump_manifests(manifests: list[dict[str, Any]]) -> str:
    """Multi-document YAML, keys in manifest order (apiVersion, kind, metadata, spec)."""
    return yaml.dump_all(
        manifests,
        Dumper=_Dumper,
        explicit_start=True,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=120,
    )


def run_import_conductor(args: argparse.Namespace) -> int:
    template = worker_template_from_args(args.image, args.command)
    manifests = import_files(args.files, template, args.namespace)
    sys.stdout.write(dump_manifests(manifests))
    sys.stdout.flush()
    return 0


def run_validate(args: argparse.Namespace) -> int:
    bundle = load_files(args.files, check_cron=check_cron_schedule)
    bundle.check(self_contained=not args.allow_external_refs)
    crons = f", {count(len(bundle.cron_workflows), 'cron workflow')}" if bundle.cron_workflows else ""
    print(
        f"ok: {count(len(bundle.task_defs), 'task definition')}, "
        f"{count(len(bundle.workflow_defs), 'workflow definition')}, "
        f"{count(len(bundle.workflows), 'workflow')}{crons}"
    )
    return 0


def check_cron_schedule(spec: Mapping[str, Any]) -> str | None:
    """A CronWorkflow's schedule checked by the operator's own parser: what the operator would report in its
    conditions (an unknown time zone, a cron expression of 6 fields, an unknown concurrencyPolicy...)."""
    from kondukt.kube import schedule  # the operator's parser, imported only when a file has a CronWorkflow

    try:
        # spec.workflowSpec is load_files' to check, like a Workflow's spec (and reported once, there).
        schedule.parse_schedule(schedule.parse_spec({**spec, "workflowSpec": {}}))
    except schedule.CronSpecError as err:
        return str(err)
    return None

