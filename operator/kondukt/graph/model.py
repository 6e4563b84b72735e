"""The graph of a workflow as plain data: nodes, edges and clusters built from a WorkflowDef, each node
carrying the state of its latest attempt.

Both writers (:mod:`kondukt.graph.write`) read only this data, so Mermaid and DOT always show the same
thing. Never imports anything that talks to a cluster (the local mode draws too).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from kondukt.engine.models import (
    FORK_TASK_TYPES,
    JOIN_TASK_TYPES,
    SWITCH_TASK_TYPES,
    WAITING_TASK_TYPES,
    WORKFLOW_STARTING_TASK_TYPES,
    Task,
    TaskStatus,
    TaskType,
    WorkflowDef,
    WorkflowStatus,
    WorkflowTask,
)
from kondukt.errors import KonduktError

#: Beyond this many runtime branches a dynamic fork's remaining branches collapse into one node.
DEFAULT_MAX_DYNAMIC_BRANCHES = 20

TextFormat = Literal["mermaid", "dot"]
ImageFormat = Literal["png", "svg"]
GraphFormat = Literal["mermaid", "dot", "png", "svg"]
GRAPH_FORMATS: tuple[GraphFormat, ...] = ("mermaid", "dot", "png", "svg")

START_NODE_ID = "wf_start"
END_NODE_ID = "wf_end"


class GraphRenderError(KonduktError):
    """The graph could not be rendered to an image (Graphviz missing or failing)."""

    exit_code = 2


class NodeKind(enum.Enum):
    """How a node is drawn; one shape per kind in each output format."""

    START = "start"
    END = "end"
    WORKER = "worker"  # SIMPLE: a Job / a process
    SYSTEM = "system"  # INLINE, SET_VARIABLE, HTTP, NOOP, JSON_JQ_TRANSFORM, ...
    WAIT = "wait"  # WAIT, HUMAN: waits for time or a person
    FORK = "fork"
    JOIN = "join"
    SWITCH = "switch"
    LOOP = "loop"  # the DO_WHILE task itself, at the top of its cluster
    SUB_WORKFLOW = "sub_workflow"
    TERMINATE = "terminate"
    PLACEHOLDER = "placeholder"  # a dynamic fork's branches before they are known
    COLLAPSED = "collapsed"  # "… 1,990 more" runtime branches


# The task-type facts are the engine's (on TaskType); the graph only adds how each family is drawn.
_FORK_TYPES = FORK_TASK_TYPES
_JOIN_TYPES = JOIN_TASK_TYPES
_SWITCH_TYPES = SWITCH_TASK_TYPES
_WAIT_TYPES = WAITING_TASK_TYPES
_SUB_WORKFLOW_TYPES = WORKFLOW_STARTING_TASK_TYPES
#: Drawn as system tasks: the engine-run types without a shape of their own, and Conductor types Kondukt
#: does not run (EVENT, KAFKA_PUBLISH) so that an imported definition still draws.
_SYSTEM_TYPES = frozenset(
    {
        "INLINE",
        "LAMBDA",
        "SET_VARIABLE",
        "HTTP",
        "NOOP",
        "JSON_JQ_TRANSFORM",
        "DYNAMIC",
        "EVENT",
        "KAFKA_PUBLISH",
    }
)


def kind_of_type(task_type: str) -> NodeKind:
    """The node kind for a WorkflowTask ``type`` or an execution ``taskType`` (a TaskDef name = worker)."""
    if task_type in _FORK_TYPES:
        return NodeKind.FORK
    if task_type in _JOIN_TYPES:
        return NodeKind.JOIN
    if task_type in _SWITCH_TYPES:
        return NodeKind.SWITCH
    if task_type == TaskType.DO_WHILE:
        return NodeKind.LOOP
    if task_type in _SUB_WORKFLOW_TYPES:
        return NodeKind.SUB_WORKFLOW
    if task_type == TaskType.TERMINATE:
        return NodeKind.TERMINATE
    if task_type in _WAIT_TYPES:
        return NodeKind.WAIT
    if task_type in _SYSTEM_TYPES:
        return NodeKind.SYSTEM
    return NodeKind.WORKER


# ---------------------------------------------------------------------------------------------- the graph
@dataclass(frozen=True)
class Node:
    id: str
    label: tuple[str, ...]  # lines, unescaped
    kind: NodeKind
    status: TaskStatus | None = None
    cluster: str | None = None  # the id of the DO_WHILE cluster holding it
    #: The task reference it stands for (attempts are looked up by it); None for start, end, placeholders
    #: and a collapsed group of branches.
    ref: str | None = None


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str | None = None
    dashed: bool = False  # a loop's back edge


@dataclass(frozen=True)
class Cluster:
    id: str
    label: str
    parent: str | None = None
    status: TaskStatus | None = None


@dataclass(frozen=True)
class WorkflowGraph:
    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    clusters: tuple[Cluster, ...] = ()

    def node(self, node_id: str) -> Node:
        for candidate in self.nodes:
            if candidate.id == node_id:
                return candidate
        raise KeyError(node_id)


@dataclass(frozen=True)
class AttemptSummary:
    """The latest attempt of one task reference (across retries and loop iterations) and how many ran."""

    latest: Task
    attempts: int


def _strip_iteration(ref: str, iteration: int) -> str:
    suffix = f"__{iteration}"
    return ref[: -len(suffix)] if iteration > 0 and ref.endswith(suffix) else ref


def definition_ref(task: Task) -> str:
    """The reference name in the definition: DO_WHILE attempts are ``ref__N`` at iteration N."""
    return _strip_iteration(task.referenceTaskName, task.iteration)


def summarize_attempts(tasks: Iterable[Task]) -> dict[str, AttemptSummary]:
    """Latest attempt per definition reference; later iterations, then later ``seq`` / list order win."""
    best: dict[str, tuple[tuple[int, int, int], Task]] = {}
    counts: dict[str, int] = {}
    for position, task in enumerate(tasks):
        ref = definition_ref(task)
        counts[ref] = counts.get(ref, 0) + 1
        order = (task.iteration, task.seq, position)
        current = best.get(ref)
        if current is None or order > current[0]:
            best[ref] = (order, task)
    return {ref: AttemptSummary(latest=task, attempts=counts[ref]) for ref, (_, task) in best.items()}


_SAFE_ID = re.compile(r"[^A-Za-z0-9_]")


def sanitize_id(text: str, prefix: str = "t_") -> str:
    """A Mermaid- and DOT-safe identifier: letters, digits and underscores, never a reserved word."""
    return prefix + (_SAFE_ID.sub("_", text) or "_")


_FAILED_STATUSES = (TaskStatus.FAILED, TaskStatus.FAILED_WITH_TERMINAL_ERROR)


def aggregate_status(statuses: Sequence[TaskStatus]) -> TaskStatus | None:
    """One status standing for many branches: the most alarming one wins."""
    if not statuses:
        return None
    present = set(statuses)
    for status in (*_FAILED_STATUSES, TaskStatus.TIMED_OUT, TaskStatus.IN_PROGRESS, TaskStatus.SCHEDULED):
        if status in present:
            return TaskStatus.FAILED if status in _FAILED_STATUSES else status
    if present <= {TaskStatus.COMPLETED, TaskStatus.SKIPPED}:
        return TaskStatus.COMPLETED
    if TaskStatus.COMPLETED_WITH_ERRORS in present:
        return TaskStatus.COMPLETED_WITH_ERRORS
    return TaskStatus.CANCELED


def _status_line(summary: AttemptSummary | None) -> str | None:
    if summary is None:
        return None
    latest = summary.latest
    parts = [latest.status.value]
    if latest.retryCount > 0:
        parts.append(f"retry {latest.retryCount}")
    return " · ".join(parts)


# A graph edge still to be drawn: from this node, with this label (a switch case), to whatever comes next.
_Exit = tuple[str, str | None]


@dataclass
class _GraphBuilder:
    definition: WorkflowDef
    attempts: dict[str, AttemptSummary]
    tasks: Sequence[Task]
    max_dynamic_branches: int
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)
    used_ids: set[str] = field(default_factory=set)

    def unique_id(self, text: str, prefix: str = "t_") -> str:
        base = sanitize_id(text, prefix)
        candidate, n = base, 2
        while candidate in self.used_ids or candidate in (START_NODE_ID, END_NODE_ID):
            candidate, n = f"{base}_{n}", n + 1
        self.used_ids.add(candidate)
        return candidate

    def add_node(self, node: Node) -> str:
        self.nodes.append(node)
        return node.id

    def connect(self, exits: Sequence[_Exit], target: str) -> None:
        for source, label in exits:
            self.edges.append(Edge(source, target, label))

    # -- sequences and single tasks
    def sequence(
        self, tasks: Sequence[WorkflowTask], entry: Sequence[_Exit], cluster: str | None
    ) -> list[_Exit]:
        exits = list(entry)
        for task in tasks:
            exits = self.task(task, exits, cluster)
        return exits

    def task(self, task: WorkflowTask, entry: Sequence[_Exit], cluster: str | None) -> list[_Exit]:
        task_type = task.type or "SIMPLE"
        if task_type == "DO_WHILE":
            return self.loop(task, entry, cluster)
        summary = self.attempts.get(task.taskReferenceName)
        node_id = self.add_node(
            Node(
                id=self.unique_id(task.taskReferenceName),
                label=self.task_label(task, summary),
                kind=kind_of_type(task_type),
                status=summary.latest.status if summary else None,
                cluster=cluster,
                ref=task.taskReferenceName,
            )
        )
        self.connect(entry, node_id)
        if task_type == "FORK_JOIN":
            exits: list[_Exit] = []
            for branch in task.forkTasks:
                exits.extend(self.sequence(branch, [(node_id, None)], cluster))
            return exits or [(node_id, None)]
        if task_type == "FORK_JOIN_DYNAMIC":
            return self.dynamic_branches(task, node_id, summary, cluster)
        if task_type in _SWITCH_TYPES:
            exits = []
            for case, case_tasks in task.decisionCases.items():
                exits.extend(self.sequence(case_tasks, [(node_id, case)], cluster))
            exits.extend(self.sequence(task.defaultCase, [(node_id, "default")], cluster))
            return exits
        if task_type == "TERMINATE":
            self.edges.append(Edge(node_id, END_NODE_ID))
            return []
        return [(node_id, None)]

    def task_label(self, task: WorkflowTask, summary: AttemptSummary | None) -> tuple[str, ...]:
        task_type = task.type or "SIMPLE"
        lines = [task.taskReferenceName]
        if task_type == "SIMPLE":
            lines.append(task.name)
        elif task_type in _SUB_WORKFLOW_TYPES:
            params = task.subWorkflowParam
            target = (params.name if params else None) or task.name
            version = f" v{params.version}" if params and params.version is not None else ""
            lines.append(f"{task_type} {target}{version}")
        elif task_type == "DYNAMIC" and summary is not None and summary.latest.taskDefName != task.name:
            lines.append(f"DYNAMIC → {summary.latest.taskDefName}")
        else:
            lines.append(task_type)
        status = _status_line(summary)
        if status:
            lines.append(status)
        if summary is not None and summary.latest.subWorkflowId:
            lines.append(f"sub-workflow {summary.latest.subWorkflowId}")
        return tuple(lines)

    # -- DO_WHILE: a cluster with the loop task on top and a dashed edge back to it
    def loop(self, task: WorkflowTask, entry: Sequence[_Exit], parent: str | None) -> list[_Exit]:
        summary = self.attempts.get(task.taskReferenceName)
        cluster_id = self.unique_id(task.taskReferenceName, prefix="cluster_")
        iteration = _loop_iteration(summary)
        title = f"DO_WHILE {task.taskReferenceName}" + (f" · iteration {iteration}" if iteration else "")
        self.clusters.append(
            Cluster(cluster_id, title, parent, status=summary.latest.status if summary else None)
        )
        label = [task.taskReferenceName, "DO_WHILE"]
        status = _status_line(summary)
        if status:
            label.append(status)
        head = self.add_node(
            Node(
                id=self.unique_id(task.taskReferenceName),
                label=tuple(label),
                kind=NodeKind.LOOP,
                status=summary.latest.status if summary else None,
                cluster=cluster_id,
                ref=task.taskReferenceName,
            )
        )
        self.connect(entry, head)
        body_exits = self.sequence(task.loopOver, [(head, None)], cluster_id)
        if not task.loopOver:
            return [(head, None)]
        for source, _ in body_exits:
            self.edges.append(Edge(source, head, "loop", dashed=True))
        return body_exits

    # -- FORK_JOIN_DYNAMIC: the branches the execution spawned, or a placeholder before it did
    def dynamic_branches(
        self, task: WorkflowTask, fork_id: str, fork: AttemptSummary | None, cluster: str | None
    ) -> list[_Exit]:
        refs = self.runtime_branch_refs(task.taskReferenceName, fork)
        if not refs:
            placeholder = self.add_node(
                Node(
                    id=self.unique_id(f"{task.taskReferenceName}_branches"),
                    label=("dynamic branches", "known at run time"),
                    kind=NodeKind.PLACEHOLDER,
                    cluster=cluster,
                )
            )
            self.edges.append(Edge(fork_id, placeholder))
            return [(placeholder, None)]
        shown, hidden = refs[: self.max_dynamic_branches], refs[self.max_dynamic_branches :]
        exits: list[_Exit] = []
        for ref in shown:
            summary = self.attempts[ref]
            latest = summary.latest
            label = [ref, latest.taskDefName]
            status = _status_line(summary)
            if status:
                label.append(status)
            if latest.subWorkflowId:
                label.append(f"sub-workflow {latest.subWorkflowId}")
            node_id = self.add_node(
                Node(self.unique_id(ref), tuple(label), kind_of_type(latest.taskType), latest.status, cluster, ref)
            )
            self.edges.append(Edge(fork_id, node_id))
            exits.append((node_id, None))
        if hidden:
            statuses = [self.attempts[ref].latest.status for ref in hidden]
            counts: dict[TaskStatus, int] = {}
            for status in statuses:
                counts[status] = counts.get(status, 0) + 1
            breakdown = " · ".join(f"{n:,} {s.value}" for s, n in sorted(counts.items(), key=lambda i: -i[1]))
            collapsed = self.add_node(
                Node(
                    id=self.unique_id(f"{task.taskReferenceName}_more"),
                    label=(f"… {len(hidden):,} more", breakdown),
                    kind=NodeKind.COLLAPSED,
                    status=aggregate_status(statuses),
                    cluster=cluster,
                )
            )
            self.edges.append(Edge(fork_id, collapsed))
            exits.append((collapsed, None))
        return exits

    def runtime_branch_refs(self, fork_ref: str, fork: AttemptSummary | None) -> list[str]:
        """Branch references in spawn order: attempts made by this fork, or Conductor's ``forkedTasks``."""
        refs: list[str] = []
        seen: set[str] = set()

        def add(ref: str) -> None:
            if ref not in seen and ref in self.attempts:
                seen.add(ref)
                refs.append(ref)

        for attempt in self.tasks:
            parent = attempt.parentTaskRef
            if parent is not None and _strip_iteration(parent, attempt.iteration) == fork_ref:
                add(definition_ref(attempt))
        forked = fork.latest.inputData.get("forkedTasks") if fork is not None else None
        if isinstance(forked, list):
            for ref in forked:
                if isinstance(ref, str):
                    add(ref)
        return refs


def _loop_iteration(summary: AttemptSummary | None) -> int:
    if summary is None:
        return 0
    output_iteration = summary.latest.outputData.get("iteration")
    if isinstance(output_iteration, int) and not isinstance(output_iteration, bool):
        return output_iteration
    return summary.latest.iteration


def build_graph(
    definition: WorkflowDef,
    tasks: Sequence[Task] | None = None,
    *,
    workflow_status: WorkflowStatus | None = None,
    max_dynamic_branches: int = DEFAULT_MAX_DYNAMIC_BRANCHES,
) -> WorkflowGraph:
    """The task graph of ``definition``, styled by ``tasks`` (an execution's attempts) when given."""
    if max_dynamic_branches < 1:
        raise ValueError("max_dynamic_branches must be at least 1")
    attempts = summarize_attempts(tasks or ())
    builder = _GraphBuilder(definition, attempts, tasks or (), max_dynamic_branches)
    builder.add_node(Node(START_NODE_ID, ("start",), NodeKind.START))
    exits = builder.sequence(definition.tasks, [(START_NODE_ID, None)], None)
    end_label = ("end",) if workflow_status is None else ("end", workflow_status.value)
    builder.add_node(Node(END_NODE_ID, end_label, NodeKind.END))
    builder.connect(exits, END_NODE_ID)
    title = f"{definition.name} v{definition.version}"
    return WorkflowGraph(title, tuple(builder.nodes), tuple(builder.edges), tuple(builder.clusters))


# ---------------------------------------------------------------------------------------------- styling
