"""Limits on hostile input: how big, how deep and how aliased a file may be, how deep sub-workflows nest.

A manifest, a Conductor JSON file or an ``--input`` file comes from someone else. Read naively, a few hundred
bytes can cost gigabytes: a YAML "billion laughs" (eight nested levels of ten aliases each) expands to 10^8
nodes the moment anything walks it (validation, ``json.dumps``, a deep copy), and a file nested a hundred
thousand levels deep overflows the stack of the native parsers. Every file Kondukt reads goes through
``parse_yaml_documents`` / ``parse_json`` here, which refuse such a file *before* it is built, with a
``ManifestError`` that names the file, the place and the limit.

YAML is checked from its event stream (streaming, no recursion, no objects built): the nesting depth, the
number of aliases and the number of nodes the document would have once every alias is expanded. JSON has no
aliases; its size bounds its node count, and its depth is measured after parsing without recursion (the
parser itself stops at a depth near a thousand with a RecursionError, which is reported the same way).

``check_nesting`` applies the depth limit to a value that did not come from a file (the operator's view of
a Workflow's ``spec.input``, which the API server already parsed).

The sub-workflow depth limit lives here too because both drivers enforce it the same way: a workflow at
depth ``d`` (the main workflow is 0, its SUB_WORKFLOW child 1, ...) may start a child only when ``d + 1`` is
at most the limit; otherwise the SUB_WORKFLOW task fails with ``sub_workflow_depth_reason`` (terminal: a
retry would hit the same wall), and every ancestor's SUB_WORKFLOW task fails terminally too when it sees that
reason, so a retried SUB_WORKFLOW cannot multiply the children. Workflows started by START_WORKFLOW or as a
failureWorkflow count one level deeper than their starter too: a START_WORKFLOW that starts its own workflow
would otherwise chain new workflows without end.

This module must never print, exit or touch the network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from kondukt.errors import ManifestError

try:  # the C parser is several times faster on big files; same events
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - libyaml is in the pinned wheels
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_SUB_WORKFLOW_DEPTH",
    "MAX_SUB_WORKFLOW_DEPTH_ENV",
    "SUB_WORKFLOW_DEPTH_MARKER",
    "DocumentLimits",
    "SafeYamlLoader",
    "check_nesting",
    "check_size",
    "is_sub_workflow_depth_reason",
    "max_sub_workflow_depth_from_env",
    "parse_json",
    "parse_yaml_documents",
    "sub_workflow_depth_reason",
]


@dataclass(frozen=True)
class DocumentLimits:
    """What one file may hold. The defaults are far above any real definition and far below harm."""

    max_bytes: int = 8 * 1024 * 1024
    """A file's size (UTF-8 bytes). The API server stores at most ~1.5 MB per object; Conductor JSON
    files of hundreds of tasks are tens of kB."""
    max_depth: int = 100
    """Nesting of mappings and lists. A WorkflowDef nests about three levels per FORK/SWITCH/DO_WHILE."""
    max_aliases: int = 1000
    """YAML ``*alias`` uses in one file."""
    max_nodes: int = 1_000_000
    """Scalars, mappings and lists of one YAML document with every alias expanded (an alias bomb's
    true size)."""


DEFAULT_LIMITS = DocumentLimits()


class SafeYamlLoader(_BaseLoader):
    """Safe YAML that builds JSON values only, as the API server would store them.

    No implicit timestamps (``until: 2026-11-27`` stays the string Conductor expects), and no value JSON
    cannot hold: ``!!binary`` (bytes), ``!!set``, ``!!omap``, ``!!pairs``, ``!!timestamp``, ``.nan`` and
    ``.inf`` are refused with their line and column instead of reaching the engine as Python objects.
    """

    def construct_json_float(self, node: yaml.ScalarNode) -> float:
        value = float(self.construct_yaml_float(node))
        if value != value or value in (float("inf"), float("-inf")):
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a number JSON can hold (no NaN or infinity)", node.start_mark
            )
        return value

    def refuse_non_json(self, node: yaml.Node) -> Any:
        raise yaml.constructor.ConstructorError(
            None, None, f"the tag {node.tag} makes a value JSON cannot hold; write a string, list or mapping",
            node.start_mark,
        )


SafeYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
SafeYamlLoader.add_constructor("tag:yaml.org,2002:float", SafeYamlLoader.construct_json_float)
for _tag in ("binary", "set", "omap", "pairs", "timestamp"):
    SafeYamlLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", SafeYamlLoader.refuse_non_json)


def _at(label: str, mark: Any) -> str:
    if mark is None:
        return label
    return f"{label}: line {mark.line + 1}, column {mark.column + 1}"


def check_size(text: str, label: str, limits: DocumentLimits = DEFAULT_LIMITS) -> None:
    """Refuse a text larger than ``limits.max_bytes``."""
    # len(text) <= bytes <= 4 * len(text): encode only when the cheap bounds do not decide.
    if len(text) <= limits.max_bytes // 4:
        return
    size = len(text) if len(text) > limits.max_bytes else len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise ManifestError(
            f"{label}: the file is {size} bytes, more than the limit of {limits.max_bytes} bytes"
        )


def _scan_yaml(text: str, label: str, limits: DocumentLimits) -> None:
    """Walk the YAML events once: nesting depth, aliases, and each document's expanded node count."""
    depth = 0
    aliases = 0
    #: Nodes of the current document with every alias expanded.
    total = 0
    #: Nodes counted so far in each open collection (the innermost last); index 0 is the document.
    open_counts: list[int] = [0]
    #: Anchors of the open collections, parallel to open_counts (None = no anchor).
    open_anchors: list[str | None] = [None]
    #: Expanded node count of every anchored node seen in this document.
    anchored: dict[str, int] = {}
    for event in yaml.parse(text, Loader=SafeYamlLoader):
        if isinstance(event, yaml.DocumentStartEvent):
            total, open_counts, open_anchors, anchored = 0, [0], [None], {}
            continue
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > limits.max_depth:
                raise ManifestError(
                    f"{_at(label, event.start_mark)}: nested more than {limits.max_depth} levels deep "
                    f"(the limit on mappings and lists inside each other)"
                )
            open_counts.append(1)
            open_anchors.append(event.anchor)
            total += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            count = open_counts.pop()
            anchor = open_anchors.pop()
            if anchor is not None:
                anchored[anchor] = count
            open_counts[-1] += count
            continue
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > limits.max_aliases:
                raise ManifestError(
                    f"{_at(label, event.start_mark)}: more than {limits.max_aliases} YAML aliases "
                    f"(the limit on *alias uses in one file)"
                )
            if event.anchor in open_anchors:
                raise ManifestError(
                    f"{_at(label, event.start_mark)}: the YAML alias *{event.anchor} refers to a node that "
                    f"contains it (a value cannot contain itself)"
                )
            # An unknown anchor is a syntax error the loader reports with its own message.
            count = anchored.get(event.anchor or "", 1)
            open_counts[-1] += count
            total += count
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                anchored[event.anchor] = 1
            open_counts[-1] += 1
            total += 1
        else:
            continue
        if total > limits.max_nodes:
            raise ManifestError(
                f"{_at(label, event.start_mark)}: the document expands to more than {limits.max_nodes} values "
                f"once its YAML aliases are replaced by what they stand for (the limit on a document's size; "
                f"an alias bomb?)"
            )


def parse_yaml_documents(text: str, label: str, limits: DocumentLimits = DEFAULT_LIMITS) -> list[Any]:
    """Every document of a YAML text, refused with a ManifestError when it exceeds ``limits``.

    Syntax errors propagate as ``yaml.YAMLError`` (the caller words them with the line and column).
    """
    check_size(text, label, limits)
    _scan_yaml(text, label, limits)
    return list(yaml.load_all(text, Loader=SafeYamlLoader))


def parse_json(text: str, label: str, limits: DocumentLimits = DEFAULT_LIMITS) -> Any:
    """A JSON text's value, refused with a ManifestError when it exceeds ``limits``.

    Syntax errors propagate as ``json.JSONDecodeError``.
    """
    check_size(text, label, limits)
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotJsonNumber as err:
        raise ManifestError(
            f"{label}: {err} is not a number JSON can hold (no NaN or infinity; the API server refuses it too)"
        ) from None
    except RecursionError:
        raise ManifestError(
            f"{label}: nested more than {limits.max_depth} levels deep (the limit on objects and arrays "
            f"inside each other)"
        ) from None
    check_nesting(value, label, limits)
    return value


class _NotJsonNumber(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, which JSON itself (and the API server) does not have.
    raise _NotJsonNumber(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NotJsonNumber(text)
    return value


def _children(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        yield from value.values()
    elif isinstance(value, list | tuple):
        yield from value


def check_nesting(value: Any, label: str, limits: DocumentLimits = DEFAULT_LIMITS) -> None:
    """Refuse a value nested deeper than ``limits.max_depth`` (measured without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        current, depth = stack.pop()
        if not isinstance(current, dict | list | tuple):
            continue
        depth += 1
        if depth > limits.max_depth:
            raise ManifestError(
                f"{label}: nested more than {limits.max_depth} levels deep (the limit on objects and "
                f"arrays inside each other)"
            )
        stack.extend((child, depth) for child in _children(current))


# --------------------------------------------------------------------------------------------------
# Sub-workflow depth
# --------------------------------------------------------------------------------------------------

#: Argo Workflows stops template recursion at a stack depth of 100 (``maxAllowedStackDepth``);
#: Conductor has no limit. 100 nested SUB_WORKFLOWs are far more than any real design needs.
DEFAULT_MAX_SUB_WORKFLOW_DEPTH = 100
#: ``kondukt run`` and ``kondukt operator`` read their default limit from this variable.
MAX_SUB_WORKFLOW_DEPTH_ENV = "KONDUKT_MAX_SUB_WORKFLOW_DEPTH"
SUB_WORKFLOW_DEPTH_MARKER = "sub-workflow depth limit"


def sub_workflow_depth_reason(name: str, depth: int, limit: int, setting: str, *, started: bool = False) -> str:
    """Why a SUB_WORKFLOW task may not start its child: short, so that it survives nesting in reasons.

    ``started``: the workflow would be started by START_WORKFLOW or as a failureWorkflow; such chains count
    against the same limit (a workflow that starts itself that way would otherwise never end either).
    """
    how = "chain started workflows" if started else "nest sub-workflows"
    return (
        f"{SUB_WORKFLOW_DEPTH_MARKER} reached: starting {name!r} would {how} {depth} deep, "
        f"more than the limit of {limit} ({setting})"
    )


def is_sub_workflow_depth_reason(reason: str | None) -> bool:
    """Whether a (possibly nested) failure reason comes from the sub-workflow depth limit."""
    return bool(reason) and SUB_WORKFLOW_DEPTH_MARKER in str(reason)


def max_sub_workflow_depth_from_env(default: int = DEFAULT_MAX_SUB_WORKFLOW_DEPTH) -> int:
    """The limit from ``KONDUKT_MAX_SUB_WORKFLOW_DEPTH`` (a non-negative integer), else ``default``."""
    text = os.environ.get(MAX_SUB_WORKFLOW_DEPTH_ENV, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ManifestError(f"{MAX_SUB_WORKFLOW_DEPTH_ENV}={text!r}: not an integer") from None
    if value < 0:
        raise ManifestError(f"{MAX_SUB_WORKFLOW_DEPTH_ENV}={text!r}: must be 0 or more")
    return value
