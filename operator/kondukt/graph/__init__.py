"""A workflow's task graph as Mermaid or Graphviz DOT text, coloured by an execution's task states.

``kondukt graph`` draws a WorkflowDef (from a cluster Workflow's ``status.definition`` or from a local
manifest) so that people can see what will run, and, given an execution's task attempts, what did run:
every WorkflowTask becomes a node (forks with their branches, joins, switches with one labelled edge per
case plus ``default``, DO_WHILE loops as a cluster with a back edge, SUB_WORKFLOW marked), a dynamic
fork shows the branches it spawned at run time (collapsed beyond a limit, so a 10,000-branch fork stays
readable), and each node is styled by the status of its latest attempt, with retry counts in the label.

The graph is built once as plain data (:class:`WorkflowGraph`) and then written out by
:func:`to_mermaid` or :func:`to_dot`, so both formats always show the same thing. Node ids are derived
from reference names but sanitised (Mermaid and DOT reserve words and characters); labels are escaped
for each format. :func:`render` turns DOT into PNG or SVG with Graphviz's ``dot`` when it is installed.

This package must never import anything that talks to a cluster (it serves the local mode too), never
go through a shell, and never guess: a task it cannot place is drawn as what the definition says.
"""

from kondukt.graph.model import (
    DEFAULT_MAX_DYNAMIC_BRANCHES,
    END_NODE_ID,
    GRAPH_FORMATS,
    START_NODE_ID,
    AttemptSummary,
    Cluster,
    Edge,
    GraphFormat,
    GraphRenderError,
    ImageFormat,
    Node,
    NodeKind,
    TextFormat,
    WorkflowGraph,
    aggregate_status,
    build_graph,
    definition_ref,
    kind_of_type,
    sanitize_id,
    summarize_attempts,
)
from kondukt.graph.write import (
    escape_dot,
    escape_mermaid,
    graph_output,
    graph_text,
    render,
    style_of,
    to_dot,
    to_mermaid,
)

__all__ = [
    "DEFAULT_MAX_DYNAMIC_BRANCHES",
    "END_NODE_ID",
    "GRAPH_FORMATS",
    "START_NODE_ID",
    "AttemptSummary",
    "Cluster",
    "Edge",
    "GraphFormat",
    "GraphRenderError",
    "ImageFormat",
    "Node",
    "NodeKind",
    "TextFormat",
    "WorkflowGraph",
    "aggregate_status",
    "build_graph",
    "definition_ref",
    "escape_dot",
    "escape_mermaid",
    "graph_output",
    "graph_text",
    "kind_of_type",
    "render",
    "sanitize_id",
    "style_of",
    "summarize_attempts",
    "to_dot",
    "to_mermaid",
]
