"""Writing a :class:`~kondukt.graph.model.WorkflowGraph` out: Mermaid text, Graphviz DOT text, and PNG or
SVG through Graphviz's ``dot`` (run without a shell, with a time limit) when it is installed.

Ids and labels are escaped for each format here; the model never knows which format it is drawn in.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from kondukt.engine.models import TaskStatus
from kondukt.graph.model import (
    Cluster,
    GraphFormat,
    GraphRenderError,
    ImageFormat,
    Node,
    NodeKind,
    TextFormat,
    WorkflowGraph,
)


@dataclass(frozen=True)
class _Style:
    css_class: str
    fill: str
    stroke: str
    dashed: bool = False


_STATUS_STYLES: dict[TaskStatus, _Style] = {
    TaskStatus.COMPLETED: _Style("completed", "#d4edda", "#2e7d32"),
    TaskStatus.COMPLETED_WITH_ERRORS: _Style("completed_with_errors", "#fff3cd", "#9e7c0c"),
    TaskStatus.FAILED: _Style("failed", "#f8d7da", "#c62828"),
    TaskStatus.FAILED_WITH_TERMINAL_ERROR: _Style("failed", "#f8d7da", "#c62828"),
    TaskStatus.IN_PROGRESS: _Style("in_progress", "#d6e6ff", "#1565c0"),
    TaskStatus.SCHEDULED: _Style("scheduled", "#eeeeee", "#757575"),
    TaskStatus.TIMED_OUT: _Style("timed_out", "#ffe0b2", "#ef6c00"),
    TaskStatus.CANCELED: _Style("canceled", "#ffffff", "#9e9e9e", dashed=True),
    TaskStatus.SKIPPED: _Style("skipped", "#ffffff", "#9e9e9e", dashed=True),
}
_PENDING_STYLE = _Style("pending", "#ffffff", "#9e9e9e", dashed=True)


def _node_style(node: Node) -> _Style | None:
    if node.status is not None:
        return _STATUS_STYLES[node.status]
    if node.kind is NodeKind.PLACEHOLDER:
        return _PENDING_STYLE
    return None


def style_of(node: Node) -> tuple[str, str, bool] | None:
    """``(fill, stroke, dashed)`` of a node as every writer draws it (the web UI colours its nodes with it);
    None for a node drawn without a state (start, end, a task not reached yet)."""
    style = _node_style(node)
    return None if style is None else (style.fill, style.stroke, style.dashed)


# ---------------------------------------------------------------------------------------------- Mermaid
_MERMAID_ENTITIES = {
    "#": "#35;",
    '"': "#quot;",
    "<": "#lt;",
    ">": "#gt;",
    "&": "#amp;",
    "`": "#96;",
}


def escape_mermaid(text: str) -> str:
    """Text safe inside a quoted Mermaid label (entity codes; newlines become spaces)."""
    flat = " ".join(text.splitlines())
    return "".join(_MERMAID_ENTITIES.get(char, char) for char in flat)


_MERMAID_SHAPES: dict[NodeKind, tuple[str, str]] = {
    NodeKind.START: ("((", "))"),
    NodeKind.END: ("((", "))"),
    NodeKind.WORKER: ("[", "]"),
    NodeKind.SYSTEM: ("(", ")"),
    NodeKind.WAIT: ("([", "])"),
    NodeKind.FORK: ("{{", "}}"),
    NodeKind.JOIN: ("{{", "}}"),
    NodeKind.SWITCH: ("{", "}"),
    NodeKind.LOOP: ("([", "])"),
    NodeKind.SUB_WORKFLOW: ("[[", "]]"),
    NodeKind.TERMINATE: (">", "]"),
    NodeKind.PLACEHOLDER: ("[", "]"),
    NodeKind.COLLAPSED: ("[", "]"),
}


def _mermaid_node(node: Node) -> str:
    opening, closing = _MERMAID_SHAPES[node.kind]
    label = "<br/>".join(escape_mermaid(line) for line in node.label)
    return f'{node.id}{opening}"{label}"{closing}'


def to_mermaid(graph: WorkflowGraph) -> str:
    """A Mermaid ``flowchart TD``: nodes first (inside their loop subgraphs), then edges, then styles."""
    lines = ["flowchart TD"]
    _emit_grouped(graph, lines, _mermaid_node, _mermaid_cluster_open, lambda depth: "    " * depth + "end")
    for edge in graph.edges:
        arrow = "-.->" if edge.dashed else "-->"
        label = f'|"{escape_mermaid(edge.label)}"|' if edge.label is not None else ""
        lines.append(f"    {edge.source} {arrow}{label} {edge.target}")
    styled: dict[str, list[str]] = {}
    styles: dict[str, _Style] = {}
    for node in graph.nodes:
        style = _node_style(node)
        if style is not None:
            styled.setdefault(style.css_class, []).append(node.id)
            styles[style.css_class] = style
    for css_class, style in styles.items():
        dash = ",stroke-dasharray:5 5" if style.dashed else ""
        lines.append(f"    classDef {css_class} fill:{style.fill},stroke:{style.stroke}{dash}")
    for css_class, ids in styled.items():
        lines.append(f"    class {','.join(ids)} {css_class}")
    return "\n".join(lines) + "\n"


def _mermaid_cluster_open(cluster: Cluster, depth: int) -> list[str]:
    return ["    " * depth + f'subgraph {cluster.id}["{escape_mermaid(cluster.label)}"]']


def _emit_grouped(
    graph: WorkflowGraph,
    lines: list[str],
    node_line: Callable[[Node], str],
    cluster_open: Callable[[Cluster, int], list[str]],
    cluster_close: Callable[[int], str],
) -> None:
    """Write the nodes outside any cluster, then each cluster (recursively) with its nodes."""
    children: dict[str | None, list[Cluster]] = {}
    for cluster in graph.clusters:
        children.setdefault(cluster.parent, []).append(cluster)

    def emit(cluster_id: str | None, depth: int) -> None:
        indent = "    " * depth
        for node in graph.nodes:
            if node.cluster == cluster_id:
                lines.append(indent + node_line(node))
        for cluster in children.get(cluster_id, []):
            lines.extend(cluster_open(cluster, depth))
            emit(cluster.id, depth + 1)
            lines.append(cluster_close(depth))

    emit(None, 1)


# ---------------------------------------------------------------------------------------------- Graphviz DOT
def escape_dot(text: str) -> str:
    """Text safe inside a double-quoted DOT string (backslashes and quotes escaped, one line)."""
    flat = " ".join(text.splitlines())
    return flat.replace("\\", "\\\\").replace('"', '\\"')


_DOT_SHAPES: dict[NodeKind, tuple[str, tuple[str, ...]]] = {
    NodeKind.START: ("circle", ()),
    NodeKind.END: ("doublecircle", ()),
    NodeKind.WORKER: ("box", ()),
    NodeKind.SYSTEM: ("box", ("rounded",)),
    NodeKind.WAIT: ("box", ("rounded",)),
    NodeKind.FORK: ("hexagon", ()),
    NodeKind.JOIN: ("hexagon", ()),
    NodeKind.SWITCH: ("diamond", ()),
    NodeKind.LOOP: ("box", ("rounded",)),
    NodeKind.SUB_WORKFLOW: ("box", ()),
    NodeKind.TERMINATE: ("octagon", ()),
    NodeKind.PLACEHOLDER: ("box", ("dashed",)),
    NodeKind.COLLAPSED: ("box", ("dashed",)),
}


def _dot_node(node: Node) -> str:
    shape, base_styles = _DOT_SHAPES[node.kind]
    label = "\\n".join(escape_dot(line) for line in node.label)
    attributes = [f'label="{label}"', f"shape={shape}"]
    styles = list(base_styles)
    if node.kind is NodeKind.SUB_WORKFLOW:
        attributes.append("peripheries=2")
    style = _node_style(node)
    if style is not None:
        if style.dashed:
            styles.append("dashed")
        else:
            styles.append("filled")
            attributes.append(f'fillcolor="{style.fill}"')
        attributes.append(f'color="{style.stroke}"')
    if styles:
        attributes.append(f'style="{",".join(dict.fromkeys(styles))}"')
    return f"{node.id} [{', '.join(attributes)}];"


def _dot_cluster_open(cluster: Cluster, depth: int) -> list[str]:
    indent = "    " * depth
    inner = "    " * (depth + 1)
    color = _STATUS_STYLES[cluster.status].stroke if cluster.status is not None else "#9e9e9e"
    return [
        f"{indent}subgraph {cluster.id} {{",
        f'{inner}label="{escape_dot(cluster.label)}";',
        f'{inner}style="rounded,dashed";',
        f'{inner}color="{color}";',
    ]


def to_dot(graph: WorkflowGraph) -> str:
    """A Graphviz ``digraph``; DO_WHILE loops become ``cluster_`` subgraphs."""
    lines = [
        f'digraph "{escape_dot(graph.name)}" {{',
        "    rankdir=TB;",
        '    graph [fontname="Helvetica", fontsize=11];',
        '    node [fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    _emit_grouped(graph, lines, _dot_node, _dot_cluster_open, lambda depth: "    " * depth + "}")
    for edge in graph.edges:
        attributes = []
        if edge.label is not None:
            attributes.append(f'label="{escape_dot(edge.label)}"')
        if edge.dashed:  # a loop's way back: drawn, but not allowed to pull the layout upwards
            attributes += ["style=dashed", "constraint=false"]
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"    {edge.source} -> {edge.target}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- images
def render(
    dot_source: str, image_format: ImageFormat, dot_command: str = "dot", timeout: float = 120
) -> bytes:
    """PNG or SVG bytes from DOT text, by Graphviz's ``dot`` (argv, no shell); a clear error without it."""
    if image_format not in ("png", "svg"):
        raise GraphRenderError(f"cannot render {image_format!r}: images are png or svg")
    executable = shutil.which(dot_command)
    if executable is None:
        raise GraphRenderError(
            f"rendering {image_format.upper()} needs Graphviz's `{dot_command}` command, which is not on PATH: "
            "install Graphviz (e.g. `apt-get install graphviz`, `brew install graphviz`) "
            "or use --format mermaid / --format dot"
        )
    try:
        completed = subprocess.run(
            [executable, f"-T{image_format}"],
            input=dot_source.encode(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GraphRenderError(f"`{dot_command}` did not finish within {timeout:.0f}s") from exc
    except OSError as exc:
        raise GraphRenderError(f"cannot run `{executable}`: {exc}") from exc
    if completed.returncode != 0:
        detail = completed.stderr.decode(errors="replace").strip() or f"exit code {completed.returncode}"
        raise GraphRenderError(f"`{dot_command} -T{image_format}` failed: {detail}")
    return completed.stdout


def graph_text(graph: WorkflowGraph, text_format: TextFormat) -> str:
    return to_mermaid(graph) if text_format == "mermaid" else to_dot(graph)


def graph_output(graph: WorkflowGraph, graph_format: GraphFormat, dot_command: str = "dot") -> bytes:
    """The graph in any supported format, as bytes ready to write (text formats UTF-8 encoded)."""
    if graph_format == "mermaid":
        return to_mermaid(graph).encode()
    if graph_format == "dot":
        return to_dot(graph).encode()
    return render(to_dot(graph), graph_format, dot_command)
