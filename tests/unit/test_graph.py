"""Workflow graphs as Mermaid and DOT: every task type, the seed's workflows, status styling, escaping."""

from __future__ import annotations

import json
import re
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from kondukt import graph as graphs
from kondukt.engine.models import Task, TaskStatus, TaskType, WorkflowDef, WorkflowStatus, WorkflowTask
from kondukt.errors import KonduktError

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "conductor-examples"
if not EXAMPLES.is_dir():  # a clone whose shared/ sits beside the repository
    EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "conductor-examples"

SINGLE = "workflow__image_convert_resize.json"
FORK = "workflow__image_convert_resize_multipleformat__2022-02-02_af15736.json"
DYNAMIC = "workflow__image_multiple_convert_resize.json"
SUBWORKFLOW = "workflow__image_convert_resize_multipleformat_subworkflow.json"

MERMAID_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def example(name: str) -> WorkflowDef:
    return WorkflowDef.model_validate(json.loads((EXAMPLES / name).read_text()))


def wt(ref: str, type_: str = "SIMPLE", name: str | None = None, **fields: Any) -> WorkflowTask:
    return WorkflowTask(name=name or ref.removesuffix("_ref"), taskReferenceName=ref, type=type_, **fields)


def definition(*tasks: WorkflowTask, name: str = "wf") -> WorkflowDef:
    return WorkflowDef(name=name, tasks=list(tasks))


def attempt(ref: str, status: TaskStatus, task_type: str = "SIMPLE", seq: int = 0, **fields: Any) -> Task:
    return Task(
        taskId=f"{ref}-{seq}-{fields.get('retryCount', 0)}-{fields.get('iteration', 0)}",
        taskType=task_type,
        referenceTaskName=ref,
        taskDefName=fields.pop("taskDefName", ref.removesuffix("_ref")),
        status=status,
        seq=seq,
        **fields,
    )


def mermaid_lines(g: graphs.WorkflowGraph) -> list[str]:
    return [line.strip() for line in graphs.to_mermaid(g).splitlines()]


def dot_lines(g: graphs.WorkflowGraph) -> list[str]:
    return [line.strip() for line in graphs.to_dot(g).splitlines()]


# ---------------------------------------------------------------------------------------------- the seed's four
def test_single_image_pipeline_golden_mermaid() -> None:
    assert graphs.to_mermaid(graphs.build_graph(example(SINGLE))) == (
        "flowchart TD\n"
        '    wf_start(("start"))\n'
        '    t_image_convert_resize_ref["image_convert_resize_ref<br/>image_convert_resize"]\n'
        '    t_upload_toS3_ref["upload_toS3_ref<br/>upload_toS3"]\n'
        '    wf_end(("end"))\n'
        "    wf_start --> t_image_convert_resize_ref\n"
        "    t_image_convert_resize_ref --> t_upload_toS3_ref\n"
        "    t_upload_toS3_ref --> wf_end\n"
    )


def test_single_image_pipeline_golden_dot() -> None:
    assert graphs.to_dot(graphs.build_graph(example(SINGLE))) == (
        'digraph "image_convert_resize v1" {\n'
        "    rankdir=TB;\n"
        '    graph [fontname="Helvetica", fontsize=11];\n'
        '    node [fontname="Helvetica", fontsize=11];\n'
        '    edge [fontname="Helvetica", fontsize=10];\n'
        '    wf_start [label="start", shape=circle];\n'
        '    t_image_convert_resize_ref [label="image_convert_resize_ref\\nimage_convert_resize", shape=box];\n'
        '    t_upload_toS3_ref [label="upload_toS3_ref\\nupload_toS3", shape=box];\n'
        '    wf_end [label="end", shape=doublecircle];\n'
        "    wf_start -> t_image_convert_resize_ref;\n"
        "    t_image_convert_resize_ref -> t_upload_toS3_ref;\n"
        "    t_upload_toS3_ref -> wf_end;\n"
        "}\n"
    )


def test_fork_join_pipeline_branches_meet_at_the_join() -> None:
    g = graphs.build_graph(example(FORK))
    mermaid = mermaid_lines(g)
    fork, join = "t_image_convert_resize_multipleformat_ref", "t_image_convert_resize_multipleformat_join_ref"
    assert f'{fork}{{{{"image_convert_resize_multipleformat_ref<br/>FORK_JOIN"}}}}' in mermaid
    assert f'{join}{{{{"image_convert_resize_multipleformat_join_ref<br/>JOIN"}}}}' in mermaid
    for branch in ("jpg", "webp"):
        assert f"{fork} --> t_image_convert_resize_{branch}_ref" in mermaid
        assert f"t_image_convert_resize_{branch}_ref --> t_upload_toS3_{branch}_ref" in mermaid
        assert f"t_upload_toS3_{branch}_ref --> {join}" in mermaid
        assert f"t_upload_toS3_{branch}_ref -> {join};" in dot_lines(g)
    assert f"{join} --> wf_end" in mermaid
    assert f'{fork} [label="image_convert_resize_multipleformat_ref\\nFORK_JOIN", shape=hexagon];' in dot_lines(g)


def test_dynamic_fork_pipeline_without_execution_shows_a_placeholder() -> None:
    g = graphs.build_graph(example(DYNAMIC))
    mermaid = mermaid_lines(g)
    fork, placeholder = "t_image_multiple_convert_resize_fork_ref", "t_image_multiple_convert_resize_fork_ref_branches"
    assert "t_image_multiple_convert_resize_ref --> " + fork in mermaid
    assert f'{placeholder}["dynamic branches<br/>known at run time"]' in mermaid
    assert f"{fork} --> {placeholder}" in mermaid
    assert f"{placeholder} --> t_image_multiple_convert_resize_join_ref" in mermaid
    assert f"class {placeholder} pending" in mermaid
    assert any(line.startswith(f"{placeholder} [") and 'style="dashed"' in line for line in dot_lines(g))


def test_subworkflow_pipeline_marks_the_sub_workflow() -> None:
    g = graphs.build_graph(example(SUBWORKFLOW))
    assert 't_subworkflow_jpg_ref[["subworkflow_jpg_ref<br/>SUB_WORKFLOW image_convert_resize v1"]]' in mermaid_lines(g)
    assert (
        't_subworkflow_jpg_ref [label="subworkflow_jpg_ref\\nSUB_WORKFLOW image_convert_resize v1", '
        "shape=box, peripheries=2];" in dot_lines(g)
    )
    assert "t_subworkflow_jpg_ref --> t_image_convert_resize_multipleformat_join_ref" in mermaid_lines(g)


def test_dynamic_fork_pipeline_with_execution_draws_each_runtime_branch() -> None:
    tasks = [
        attempt("image_multiple_convert_resize_ref", TaskStatus.COMPLETED, seq=1),
        attempt("image_multiple_convert_resize_fork_ref", TaskStatus.COMPLETED, "FORK", seq=2),
        attempt("image_multiple_convert_resize_join_ref", TaskStatus.IN_PROGRESS, "JOIN", seq=3),
        attempt(
            "image_convert_resize_png_300x300_0", TaskStatus.COMPLETED, "image_convert_resize", seq=4,
            taskDefName="image_convert_resize", parentTaskRef="image_multiple_convert_resize_fork_ref",
        ),
        attempt(
            "image_convert_resize_jpg_300x300_1", TaskStatus.IN_PROGRESS, "image_convert_resize", seq=5,
            taskDefName="image_convert_resize", parentTaskRef="image_multiple_convert_resize_fork_ref",
        ),
    ]
    g = graphs.build_graph(example(DYNAMIC), tasks, workflow_status=WorkflowStatus.RUNNING)
    mermaid = mermaid_lines(g)
    fork, join = "t_image_multiple_convert_resize_fork_ref", "t_image_multiple_convert_resize_join_ref"
    for ref in ("image_convert_resize_png_300x300_0", "image_convert_resize_jpg_300x300_1"):
        assert f"{fork} --> t_{ref}" in mermaid
        assert f"t_{ref} --> {join}" in mermaid
    assert 't_image_convert_resize_png_300x300_0["image_convert_resize_png_300x300_0<br/>image_convert_resize<br/>COMPLETED"]' in mermaid
    assert "class t_image_convert_resize_jpg_300x300_1,t_image_multiple_convert_resize_join_ref in_progress" in mermaid
    assert not any("known at run time" in line for line in mermaid)
    assert 'wf_end(("end<br/>RUNNING"))' in mermaid


# ---------------------------------------------------------------------------------------------- dynamic forks at scale
def _big_fork(branches: int, failed: int = 0) -> tuple[WorkflowDef, list[Task]]:
    d = definition(wt("fork_ref", "FORK_JOIN_DYNAMIC", dynamicForkTasksParam="t"), wt("join_ref", "JOIN"))
    tasks = [attempt("fork_ref", TaskStatus.COMPLETED, "FORK")]
    for i in range(branches):
        status = TaskStatus.FAILED if i >= branches - failed else TaskStatus.COMPLETED
        tasks.append(attempt(f"b_{i}", status, "work", seq=i + 1, taskDefName="work", parentTaskRef="fork_ref"))
    return d, tasks


def test_a_huge_dynamic_fork_collapses_beyond_the_limit() -> None:
    d, tasks = _big_fork(2000, failed=3)
    g = graphs.build_graph(d, tasks, max_dynamic_branches=10)
    branch_nodes = [n for n in g.nodes if n.id.startswith("t_b_")]
    assert [n.id for n in branch_nodes] == [f"t_b_{i}" for i in range(10)]
    collapsed = g.node("t_fork_ref_more")
    assert collapsed.label == ("… 1,990 more", "1,987 COMPLETED · 3 FAILED")
    assert collapsed.status is TaskStatus.FAILED  # one failed branch among the hidden ones shows
    assert graphs.Edge("t_fork_ref_more", "t_join_ref") in g.edges
    assert 't_fork_ref_more["… 1,990 more<br/>1,987 COMPLETED · 3 FAILED"]' in mermaid_lines(g)
    assert len(graphs.to_mermaid(g)) < 5000  # stays readable, whatever the fork's size


def test_dynamic_branches_fall_back_to_conductors_forked_tasks_list() -> None:
    d = definition(wt("fork_ref", "FORK_JOIN_DYNAMIC"), wt("join_ref", "JOIN"))
    tasks = [
        attempt("fork_ref", TaskStatus.COMPLETED, "FORK", inputData={"forkedTasks": ["x", "y"]}),
        attempt("y", TaskStatus.COMPLETED, "work", seq=2),
        attempt("x", TaskStatus.FAILED, "work", seq=3),
    ]
    g = graphs.build_graph(d, tasks)
    assert [e.target for e in g.edges if e.source == "t_fork_ref"] == ["t_x", "t_y"]
    assert g.node("t_x").status is TaskStatus.FAILED


def test_an_execution_made_by_the_engine_is_drawn_as_it_ran() -> None:
    """The dynamic-fork pipeline run by `decide`: the graph reads the engine's real attempts."""
    from kondukt.engine import Blueprint, StartTask, TaskDef, TaskUpdate, decide, new_workflow

    d = example(DYNAMIC)
    names = ("image_multiple_convert_resize", "image_convert_resize")
    blueprint = Blueprint(workflow=d, taskDefs={n: TaskDef(name=n, retryCount=1, retryDelaySeconds=0) for n in names})
    decision = decide(blueprint, new_workflow(blueprint, "wf-1", {"fileLocation": "s3://in/a.jpg"}, 1_000), [], 1_000)
    generator = next(a for a in decision.actions if isinstance(a, StartTask))
    forked = {
        "dynamicTasks": [{"name": "image_convert_resize", "taskReferenceName": f"resize_{i}"} for i in range(25)],
        "dynamicTasksInput": {f"resize_{i}": {"outputWidth": i} for i in range(25)},
    }
    done = TaskUpdate(taskId=generator.taskId, status=TaskStatus.COMPLETED, outputData=forked)
    decision = decide(blueprint, decision.workflow, [done], 2_000)
    branches = [a for a in decision.actions if isinstance(a, StartTask)]
    updates = [TaskUpdate(taskId=branches[0].taskId, status=TaskStatus.FAILED, reasonForIncompletion="boom")]
    updates += [TaskUpdate(taskId=b.taskId, status=TaskStatus.COMPLETED) for b in branches[1:]]
    workflow = decide(blueprint, decision.workflow, updates, 3_000).workflow

    g = graphs.build_graph(d, workflow.tasks, workflow_status=workflow.status, max_dynamic_branches=3)
    fork = "t_image_multiple_convert_resize_fork_ref"
    assert [e.target for e in g.edges if e.source == fork] == ["t_resize_0", "t_resize_1", "t_resize_2", f"{fork}_more"]
    first, retry = (t for t in workflow.tasks if t.referenceTaskName == "resize_0")
    assert (first.status, retry.retryCount) == (TaskStatus.FAILED, 1)
    assert g.node("t_resize_0").label[2] == f"{retry.status.value} · retry 1"  # the retry is the latest attempt
    assert g.node(f"{fork}_more").label == ("… 22 more", "22 COMPLETED")
    assert g.node("t_image_multiple_convert_resize_ref").status is TaskStatus.COMPLETED


def test_a_dynamic_fork_inside_a_loop_shows_the_latest_iterations_branches() -> None:
    d = definition(
        wt("loop_ref", "DO_WHILE", loopOver=[wt("fork_ref", "FORK_JOIN_DYNAMIC"), wt("join_ref", "JOIN")])
    )
    tasks = [
        attempt("loop_ref", TaskStatus.IN_PROGRESS, "DO_WHILE", iteration=2),
        attempt("fork_ref__1", TaskStatus.COMPLETED, "FORK", seq=1, iteration=1, loopTaskRef="loop_ref"),
        attempt("a__1", TaskStatus.COMPLETED, "w", seq=2, iteration=1, parentTaskRef="fork_ref__1"),
        attempt("fork_ref__2", TaskStatus.COMPLETED, "FORK", seq=3, iteration=2, loopTaskRef="loop_ref"),
        attempt("a__2", TaskStatus.IN_PROGRESS, "w", seq=4, iteration=2, parentTaskRef="fork_ref__2"),
    ]
    g = graphs.build_graph(d, tasks)
    assert [e.target for e in g.edges if e.source == "t_fork_ref"] == ["t_a"]
    assert g.node("t_a").status is TaskStatus.IN_PROGRESS and g.node("t_a").cluster == "cluster_loop_ref"


def test_max_dynamic_branches_must_be_positive() -> None:
    with pytest.raises(ValueError):
        graphs.build_graph(definition(wt("a")), max_dynamic_branches=0)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param([TaskStatus.COMPLETED, TaskStatus.SKIPPED], TaskStatus.COMPLETED, id="all-done"),
        pytest.param([TaskStatus.COMPLETED, TaskStatus.FAILED_WITH_TERMINAL_ERROR], TaskStatus.FAILED, id="failure"),
        pytest.param([TaskStatus.COMPLETED, TaskStatus.TIMED_OUT], TaskStatus.TIMED_OUT, id="timeout"),
        pytest.param([TaskStatus.SCHEDULED, TaskStatus.IN_PROGRESS], TaskStatus.IN_PROGRESS, id="running"),
        pytest.param([TaskStatus.COMPLETED_WITH_ERRORS, TaskStatus.COMPLETED], TaskStatus.COMPLETED_WITH_ERRORS, id="errors"),
        pytest.param([TaskStatus.CANCELED], TaskStatus.CANCELED, id="canceled"),
        pytest.param([], None, id="none"),
    ],
)
def test_aggregate_status_shows_the_most_alarming(statuses: list[TaskStatus], expected: TaskStatus | None) -> None:
    assert graphs.aggregate_status(statuses) is expected


# ---------------------------------------------------------------------------------------------- task types
def test_switch_has_one_labelled_edge_per_case_and_default() -> None:
    d = definition(
        wt(
            "route_ref", "SWITCH", evaluatorType="value-param", expression="kind",
            decisionCases={"image": [wt("resize_ref")], "video": [wt("transcode_ref"), wt("thumb_ref")]},
            defaultCase=[],
        ),
        wt("notify_ref"),
    )
    g = graphs.build_graph(d)
    mermaid = mermaid_lines(g)
    assert 't_route_ref{"route_ref<br/>SWITCH"}' in mermaid
    assert 't_route_ref -->|"image"| t_resize_ref' in mermaid
    assert 't_route_ref -->|"video"| t_transcode_ref' in mermaid
    assert "t_transcode_ref --> t_thumb_ref" in mermaid
    assert 't_route_ref -->|"default"| t_notify_ref' in mermaid  # no default tasks: straight on, labelled
    assert "t_resize_ref --> t_notify_ref" in mermaid
    assert "t_thumb_ref --> t_notify_ref" in mermaid
    assert 't_route_ref -> t_notify_ref [label="default"];' in dot_lines(g)
    assert 't_route_ref [label="route_ref\\nSWITCH", shape=diamond];' in dot_lines(g)


def test_decision_is_drawn_like_a_switch_with_its_default_case() -> None:
    d = definition(
        wt("decide_ref", "DECISION", caseValueParam="p", decisionCases={"a": [wt("a_ref")]}, defaultCase=[wt("d_ref")]),
    )
    mermaid = mermaid_lines(graphs.build_graph(d))
    assert 't_decide_ref -->|"a"| t_a_ref' in mermaid
    assert 't_decide_ref -->|"default"| t_d_ref' in mermaid
    assert "t_a_ref --> wf_end" in mermaid and "t_d_ref --> wf_end" in mermaid


def test_do_while_is_a_subgraph_with_a_dashed_back_edge() -> None:
    d = definition(
        wt("loop_ref", "DO_WHILE", loopCondition="$.loop_ref['iteration'] < 3", loopOver=[wt("step_a"), wt("step_b")]),
        wt("after_ref"),
    )
    g = graphs.build_graph(d)
    text = graphs.to_mermaid(g)
    assert (
        '    subgraph cluster_loop_ref["DO_WHILE loop_ref"]\n'
        '        t_loop_ref(["loop_ref<br/>DO_WHILE"])\n'
        '        t_step_a["step_a<br/>step_a"]\n'
        '        t_step_b["step_b<br/>step_b"]\n'
        "    end\n"
    ) in text
    assert '    t_step_b -.->|"loop"| t_loop_ref\n' in text
    assert "    t_step_b --> t_after_ref\n" in text
    dot = graphs.to_dot(g)
    assert "    subgraph cluster_loop_ref {\n" in dot
    assert '        label="DO_WHILE loop_ref";\n' in dot
    assert '    t_step_b -> t_loop_ref [label="loop", style=dashed, constraint=false];\n' in dot


def test_do_while_with_execution_shows_the_latest_iteration() -> None:
    d = definition(wt("loop_ref", "DO_WHILE", loopOver=[wt("step_ref")]))
    tasks = [
        attempt("loop_ref", TaskStatus.IN_PROGRESS, "DO_WHILE", seq=1, iteration=3),
        attempt("step_ref__1", TaskStatus.COMPLETED, seq=2, iteration=1),
        attempt("step_ref__2", TaskStatus.COMPLETED, seq=3, iteration=2),
        attempt("step_ref__3", TaskStatus.FAILED, seq=4, iteration=3),
        attempt("step_ref__3", TaskStatus.IN_PROGRESS, seq=5, iteration=3, retryCount=1),
    ]
    g = graphs.build_graph(d, tasks)
    assert g.clusters[0].label == "DO_WHILE loop_ref · iteration 3"
    assert g.node("t_step_ref").label == ("step_ref", "step", "IN_PROGRESS · retry 1")


def test_nested_loops_become_nested_subgraphs() -> None:
    inner = wt("inner_ref", "DO_WHILE", loopOver=[wt("leaf_ref")])
    d = definition(wt("outer_ref", "DO_WHILE", loopOver=[inner]))
    text = graphs.to_mermaid(graphs.build_graph(d))
    assert (
        '    subgraph cluster_outer_ref["DO_WHILE outer_ref"]\n'
        '        t_outer_ref(["outer_ref<br/>DO_WHILE"])\n'
        '        subgraph cluster_inner_ref["DO_WHILE inner_ref"]\n'
        '            t_inner_ref(["inner_ref<br/>DO_WHILE"])\n'
        '            t_leaf_ref["leaf_ref<br/>leaf"]\n'
        "        end\n"
        "    end\n"
    ) in text
    dot = graphs.to_dot(graphs.build_graph(d))
    assert dot.index("subgraph cluster_outer_ref") < dot.index("subgraph cluster_inner_ref")


def test_terminate_ends_its_branch_at_the_end_node() -> None:
    d = definition(
        wt("check_ref", "SWITCH", expression="x", decisionCases={"bad": [wt("stop_ref", "TERMINATE")]}),
        wt("go_on_ref"),
    )
    g = graphs.build_graph(d)
    mermaid = mermaid_lines(g)
    assert 't_stop_ref>"stop_ref<br/>TERMINATE"]' in mermaid
    assert "t_stop_ref --> wf_end" in mermaid
    assert not any(line.startswith("t_stop_ref --> t_go_on_ref") for line in mermaid)
    assert 't_check_ref -->|"default"| t_go_on_ref' in mermaid


def test_fork_with_an_empty_branch_joins_from_the_fork() -> None:
    d = definition(wt("fork_ref", "FORK_JOIN", forkTasks=[[wt("a_ref")], []]), wt("join_ref", "JOIN"))
    edges = set(graphs.build_graph(d).edges)
    assert graphs.Edge("t_fork_ref", "t_join_ref") in edges
    assert graphs.Edge("t_a_ref", "t_join_ref") in edges


SHAPES = {
    "SIMPLE": ('["', '"]', "shape=box"),
    "SUB_WORKFLOW": ('[["', '"]]', "peripheries=2"),
    "START_WORKFLOW": ('[["', '"]]', "peripheries=2"),
    "FORK_JOIN": ('{{"', '"}}', "shape=hexagon"),
    "FORK_JOIN_DYNAMIC": ('{{"', '"}}', "shape=hexagon"),
    "JOIN": ('{{"', '"}}', "shape=hexagon"),
    "EXCLUSIVE_JOIN": ('{{"', '"}}', "shape=hexagon"),
    "SWITCH": ('{"', '"}', "shape=diamond"),
    "DECISION": ('{"', '"}', "shape=diamond"),
    "DO_WHILE": ('(["', '"])', 'style="rounded"'),
    "WAIT": ('(["', '"])', 'style="rounded"'),
    "HUMAN": ('(["', '"])', 'style="rounded"'),
    "TERMINATE": ('>"', '"]', "shape=octagon"),
}


@pytest.mark.parametrize("task_type", [t.value for t in TaskType])
def test_every_task_type_is_drawn_with_its_shape(task_type: str) -> None:
    g = graphs.build_graph(definition(wt("x_ref", task_type, name="x")))
    opening, closing, dot_attribute = SHAPES.get(task_type, ('("', '")', 'style="rounded"'))
    node_line = next(line for line in mermaid_lines(g) if line.startswith("t_x_ref") and "-->" not in line)
    assert node_line.startswith(f"t_x_ref{opening}x_ref<br/>")
    assert node_line.endswith(closing)
    dot_node = next(line for line in dot_lines(g) if line.startswith("t_x_ref ["))
    assert dot_attribute in dot_node
    expected_second_line = "x" if task_type == "SIMPLE" else task_type
    assert g.node("t_x_ref").label[1].startswith(expected_second_line)


def test_dynamic_task_shows_the_task_it_resolved_to() -> None:
    d = definition(wt("pick_ref", "DYNAMIC", name="pick", dynamicTaskNameParam="taskToRun"))
    tasks = [attempt("pick_ref", TaskStatus.COMPLETED, "encode", taskDefName="encode")]
    assert graphs.build_graph(d, tasks).node("t_pick_ref").label == ("pick_ref", "DYNAMIC → encode", "COMPLETED")


def test_sub_workflow_attempt_shows_the_child_workflow() -> None:
    d = definition(wt("child_ref", "SUB_WORKFLOW", subWorkflowParam={"name": "inner", "version": 2}))
    tasks = [attempt("child_ref", TaskStatus.IN_PROGRESS, "SUB_WORKFLOW", subWorkflowId="wf-child-123")]
    label = graphs.build_graph(d, tasks).node("t_child_ref").label
    assert label == ("child_ref", "SUB_WORKFLOW inner v2", "IN_PROGRESS", "sub-workflow wf-child-123")


# ---------------------------------------------------------------------------------------------- statuses
STYLES = {
    TaskStatus.COMPLETED: ("completed", "fill:#d4edda,stroke:#2e7d32", 'fillcolor="#d4edda", color="#2e7d32", style="filled"'),
    TaskStatus.FAILED: ("failed", "fill:#f8d7da,stroke:#c62828", 'fillcolor="#f8d7da"'),
    TaskStatus.FAILED_WITH_TERMINAL_ERROR: ("failed", "fill:#f8d7da,stroke:#c62828", 'fillcolor="#f8d7da"'),
    TaskStatus.IN_PROGRESS: ("in_progress", "fill:#d6e6ff,stroke:#1565c0", 'fillcolor="#d6e6ff"'),
    TaskStatus.SCHEDULED: ("scheduled", "fill:#eeeeee,stroke:#757575", 'fillcolor="#eeeeee"'),
    TaskStatus.TIMED_OUT: ("timed_out", "fill:#ffe0b2,stroke:#ef6c00", 'fillcolor="#ffe0b2"'),
    TaskStatus.CANCELED: ("canceled", "stroke-dasharray:5 5", 'style="dashed"'),
    TaskStatus.SKIPPED: ("skipped", "stroke-dasharray:5 5", 'style="dashed"'),
    TaskStatus.COMPLETED_WITH_ERRORS: ("completed_with_errors", "fill:#fff3cd", 'fillcolor="#fff3cd"'),
}


@pytest.mark.parametrize("status", list(TaskStatus), ids=lambda s: s.value)
def test_nodes_are_styled_by_their_latest_attempts_status(status: TaskStatus) -> None:
    g = graphs.build_graph(definition(wt("a_ref"), wt("b_ref")), [attempt("a_ref", status)])
    css_class, mermaid_style, dot_style = STYLES[status]
    mermaid = graphs.to_mermaid(g)
    assert f"    class t_a_ref {css_class}\n" in mermaid
    assert re.search(rf"classDef {css_class} [^\n]*{re.escape(mermaid_style)}", mermaid)
    dot_node = next(line for line in dot_lines(g) if line.startswith("t_a_ref ["))
    assert dot_style in dot_node
    assert "t_b_ref" not in "".join(line for line in mermaid.splitlines() if line.strip().startswith("class "))


def test_retries_show_in_the_label_and_the_latest_attempt_wins() -> None:
    tasks = [
        attempt("a_ref", TaskStatus.FAILED, seq=1, retryCount=0),
        attempt("a_ref", TaskStatus.TIMED_OUT, seq=2, retryCount=1),
        attempt("a_ref", TaskStatus.COMPLETED, seq=3, retryCount=2),
    ]
    g = graphs.build_graph(definition(wt("a_ref")), tasks)
    assert g.node("t_a_ref").label == ("a_ref", "a", "COMPLETED · retry 2")
    assert g.node("t_a_ref").status is TaskStatus.COMPLETED
    assert graphs.summarize_attempts(tasks)["a_ref"].attempts == 3


def test_the_end_node_carries_the_workflow_status() -> None:
    g = graphs.build_graph(definition(wt("a_ref")), [], workflow_status=WorkflowStatus.FAILED)
    assert g.node(graphs.END_NODE_ID).label == ("end", "FAILED")


# ---------------------------------------------------------------------------------------------- ids and escaping
def test_ids_are_sanitised_unique_and_never_reserved() -> None:
    d = definition(wt("end"), wt("a-b.c d"), wt("a_b_c_d"), wt("graph"), wt("subgraph"), wt("9lives"))
    g = graphs.build_graph(d)
    ids = [n.id for n in g.nodes]
    assert len(ids) == len(set(ids))
    assert all(MERMAID_ID.match(i) for i in ids)
    assert {"t_end", "t_a_b_c_d", "t_a_b_c_d_2", "t_graph", "t_subgraph", "t_9lives"} <= set(ids)
    assert "end" not in ids and "graph" not in ids


def test_mermaid_labels_are_escaped() -> None:
    ref = 'say "hi" <b>#1</b> & `x`'
    g = graphs.build_graph(definition(wt(ref, name="n")))
    node = next(n for n in g.nodes if n.label[0] == ref)
    line = next(line for line in mermaid_lines(g) if line.startswith(node.id + "["))
    assert line == f'{node.id}["say #quot;hi#quot; #lt;b#gt;#35;1#lt;/b#gt; #amp; #96;x#96;<br/>n"]'
    assert graphs.escape_mermaid("two\nlines") == "two lines"


def test_mermaid_edge_labels_are_escaped() -> None:
    d = definition(wt("s_ref", "SWITCH", decisionCases={'a"|b': [wt("x_ref")]}))
    assert 't_s_ref -->|"a#quot;|b"| t_x_ref' in mermaid_lines(graphs.build_graph(d))


def test_dot_labels_are_escaped() -> None:
    assert graphs.escape_dot('a "quoted" \\ path\nnext') == 'a \\"quoted\\" \\\\ path next'
    d = definition(wt('q"uote\\', name="n"), name='my "wf"')
    text = graphs.to_dot(graphs.build_graph(d))
    assert 'digraph "my \\"wf\\" v1" {' in text
    assert '[label="q\\"uote\\\\\\nn", shape=box];' in text


def test_mermaid_declares_every_node_before_any_edge() -> None:
    """An edge naming a node first would pull it into whichever subgraph the edge sits in."""
    for name in (SINGLE, FORK, DYNAMIC, SUBWORKFLOW):
        lines = mermaid_lines(graphs.build_graph(example(name)))
        first_edge = next(i for i, line in enumerate(lines) if "-->" in line)
        assert not any(re.match(r"^\w+[\[({>]", line) for line in lines[first_edge:])


def _parses(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except json.JSONDecodeError:
        return False  # two files are invalid JSON upstream: the importer's concern, not the graph's
    return True


CORPUS = sorted(p.name for p in EXAMPLES.glob("workflow__*.json") if _parses(p))


@pytest.mark.parametrize("name", CORPUS)
def test_every_conductor_example_draws_every_task(name: str) -> None:
    raw = json.loads((EXAMPLES / name).read_text())
    d = WorkflowDef.model_validate(raw)
    g = graphs.build_graph(d)
    refs: list[str] = []

    def walk(tasks: list[WorkflowTask]) -> None:
        for t in tasks:
            refs.append(t.taskReferenceName)
            for branch in t.children():
                walk(branch)

    walk(d.tasks)
    labelled = {n.label[0] for n in g.nodes}
    assert set(refs) <= labelled
    node_ids = {n.id for n in g.nodes}
    assert all(e.source in node_ids and e.target in node_ids for e in g.edges)
    assert graphs.to_mermaid(g).startswith("flowchart TD\n")
    assert graphs.to_dot(g).rstrip().endswith("}")


# ---------------------------------------------------------------------------------------------- images
def test_render_without_graphviz_names_the_missing_tool(tmp_path: Path) -> None:
    with pytest.raises(graphs.GraphRenderError) as info:
        graphs.render("digraph {}", "png", dot_command=str(tmp_path / "no-such-dot"))
    message = str(info.value)
    assert "Graphviz" in message and "no-such-dot" in message and "--format mermaid" in message
    assert isinstance(info.value, KonduktError) and info.value.exit_code == 2


def _fake_dot(tmp_path: Path, exit_code: int = 0) -> Path:
    """A stand-in for Graphviz's dot: echoes its argv and the DOT it was fed."""
    script = tmp_path / "dot"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "data = sys.stdin.read()\n"
        f"if {exit_code}:\n"
        "    sys.stderr.write('syntax error in line 1')\n"
        f"    sys.exit({exit_code})\n"
        "sys.stdout.write(repr(sys.argv[1:]) + '|' + data)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.mark.parametrize("image_format", ["png", "svg"])
def test_render_feeds_dot_to_graphviz_with_argv(tmp_path: Path, image_format: graphs.ImageFormat) -> None:
    source = graphs.to_dot(graphs.build_graph(example(SINGLE)))
    data = graphs.render(source, image_format, dot_command=str(_fake_dot(tmp_path)))
    assert data.decode() == f"['-T{image_format}']|{source}"


def test_render_reports_graphviz_failures(tmp_path: Path) -> None:
    with pytest.raises(graphs.GraphRenderError, match="syntax error in line 1"):
        graphs.render("digraph {", "svg", dot_command=str(_fake_dot(tmp_path, exit_code=3)))


def test_graph_output_gives_text_formats_as_utf8() -> None:
    g = graphs.build_graph(definition(wt("ünïcode_ref")))
    assert graphs.graph_output(g, "mermaid").decode() == graphs.to_mermaid(g)
    assert graphs.graph_output(g, "dot").decode() == graphs.to_dot(g)
