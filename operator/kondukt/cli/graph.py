"""``kondukt graph NAME|FILE``: draw a workflow as Mermaid, DOT, PNG or SVG.

A local file (a WorkflowDef manifest or Conductor JSON) is drawn without a cluster: its definition alone.
A name is a Workflow in the cluster, drawn with the state of each task from its ``status``; its
definition is the ``status.definition`` snapshot, else ``spec.definition``, else the WorkflowDef it
refers to. The drawing itself is :mod:`kondukt.graph`'s; PNG and SVG need Graphviz's ``dot``.

This module only reads; the cluster is reached through :mod:`kondukt.cli.cluster` only for a NAME.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from kondukt import graph as graphs
from kondukt.cli import archived, cluster
from kondukt.cli.app import add_cluster_options
from kondukt.cli.cluster import ClusterError, WorkflowApi
from kondukt.cli.workflows import (
    meta_of,
    object_ref,
    parse_definition,
    parse_tasks,
    spec_of,
    status_of,
    workflow_phase,
)
from kondukt.engine.models import WorkflowDef, WorkflowStatus
from kondukt.errors import KonduktUserError
from kondukt.manifests import Bundle, load_files

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
    status = status_of(obj)
    raw = status.get("definition") or spec_of(obj).get("definition")
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
    ref = spec_of(obj).get("workflowDefRef")
    if not isinstance(ref, Mapping) or not ref.get("name"):
        return None, ""
    namespace = str(meta_of(obj).get("namespace") or api.namespace)
    candidates = []
    for item in api.list_workflow_defs(namespace):
        spec = spec_of(item)
        name = spec.get("name") or meta_of(item).get("name")
        if name == ref["name"] and (ref.get("version") is None or spec.get("version", 1) == ref["version"]):
            candidates.append(item)
    if not candidates:
        version = f" version {ref['version']}" if ref.get("version") is not None else ""
        raise ClusterError(
            f"workflow {object_ref(obj)} refers to WorkflowDef {ref['name']}{version}, "
            f"which does not exist in namespace {namespace}"
        )
    best = max(candidates, key=lambda item: int(spec_of(item).get("version", 1) or 1))
    return dict(spec_of(best)), f"WorkflowDef {namespace}/{meta_of(best).get('name')} spec"


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


# ============================================================================================ command
def cmd_graph(args: argparse.Namespace) -> int:
    graph_format = choose_graph_format(args.format, args.output)
    if args.max_branches < 1:
        raise KonduktUserError("--max-branches must be at least 1")
    if args.archived:
        record, others = archived.get_one(args, args.source)
        sys.stderr.write(archived.others_note(others))
        graph = graph_from_workflow(record.workflow, None, args.max_branches)
    elif looks_like_file(args.source):
        if not Path(args.source).exists():
            raise KonduktUserError(f"{args.source}: no such file")
        graph = graph_from_files([args.source], args.max_branches, args.definition)
    else:
        with closing(cluster.connect(cluster.connection_from_args(args))) as api:
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


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Configure ``kondukt graph``."""
    parser.description = (
        "Draw a cluster Workflow (with its task states) or a local WorkflowDef manifest / Conductor "
        "JSON file. PNG and SVG need Graphviz's `dot`."
    )
    add_cluster_options(parser)
    parser.add_argument("source", metavar="NAME|FILE",
                        help="a Workflow in the cluster, or a local file; with --archived an archived name or uid")
    archived.add_archive_options(parser)
    parser.add_argument("--format", choices=graphs.GRAPH_FORMATS, help="default: from -o's suffix, else mermaid")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument(
        "--definition",
        metavar="NAME[:VERSION]",
        help="with a FILE holding several WorkflowDefs: the one to draw",
    )
    parser.add_argument(
        "--max-branches",
        type=int,
        default=graphs.DEFAULT_MAX_DYNAMIC_BRANCHES,
        metavar="N",
        help="dynamic-fork branches drawn before the rest collapse into one node",
    )
    parser.set_defaults(func=cmd_graph)
