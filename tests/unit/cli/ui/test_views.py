"""The web UI's pages as data (kondukt.cli.ui.views): the list's filter, order and pages, a workflow's view
with kondukt graph's nodes and colours, attempts without payloads, definitions."""

from __future__ import annotations

from typing import Any

import pytest

from kondukt import graph as graphs
from kondukt.cli.ui import views
from kondukt.cli.workflows import parse_definition, parse_tasks
from kondukt.kube import names


def wf(name: str, created: str, phase: str | None = None, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "creationTimestamp": created,
                     "resourceVersion": "7"},
        "spec": {"definition": {"name": "demo", "version": 2, "tasks": [
            {"name": "echo", "taskReferenceName": "first"},
            {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN_DYNAMIC",
             "dynamicForkTasksParam": "tasks", "dynamicForkTasksInputParamName": "inputs"},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN"}]}},
        "status": {"phase": phase} if phase else {},
    }
    for key, value in extra.items():
        obj[key].update(value) if isinstance(obj.get(key), dict) else obj.__setitem__(key, value)
    return obj


def attempt(ref: str, status: str, seq: int, **fields: Any) -> dict[str, Any]:
    return {"taskId": f"id-{ref}-{seq}", "taskType": fields.pop("taskType", "echo"), "referenceTaskName": ref,
            "taskDefName": fields.pop("taskDefName", "echo"), "status": status, "seq": seq, **fields}


# ---------------------------------------------------------------------------------------------- the list
def test_the_list_is_newest_first_filtered_and_cut_into_pages() -> None:
    objs = [wf(f"w{i:02}", f"2026-12-06T10:{i:02}:00Z", "FAILED" if i % 3 == 0 else "COMPLETED") for i in range(30)]
    page = views.workflow_page(objs, views.ListQuery.from_params({"limit": "5"}))
    assert [r["name"] for r in page["rows"]] == ["w29", "w28", "w27", "w26", "w25"]
    assert (page["total"], page["matched"], page["phaseCounts"]) == (30, 30, {"COMPLETED": 20, "FAILED": 10})
    page = views.workflow_page(objs, views.ListQuery.from_params({"phase": "failed", "offset": "2", "limit": "3"}))
    assert [r["name"] for r in page["rows"]] == ["w21", "w18", "w15"]
    assert page["matched"] == 10 and page["phaseCounts"] == {"COMPLETED": 20, "FAILED": 10}
    page = views.workflow_page(objs, views.ListQuery.from_params({"q": "W1"}))
    assert [r["name"] for r in page["rows"]] == [f"w1{i}" for i in range(9, -1, -1)]
    assert page["phaseCounts"] == {"COMPLETED": 7, "FAILED": 3}  # w12, w15, w18 failed


def test_a_row_says_what_kondukt_get_says_and_who_started_it() -> None:
    child = wf("child", "2026-12-06T10:00:00Z", "RUNNING",
               metadata={"ownerReferences": [{"kind": "Workflow", "name": "parent", "uid": "u"}]},
               status={"phase": "RUNNING", "progress": "1/3", "message": "running: first"})
    row = views.workflow_row(child)
    assert row == {"namespace": "ns", "name": "child", "phase": "RUNNING", "progress": "1/3",
                   "created": "2026-12-06T10:00:00Z", "definition": "demo v2", "correlationId": "",
                   "startedBy": "workflow parent", "message": "running: first"}
    applied = wf("x", "t", metadata={"managedFields": [
        {"manager": "kondukt", "operation": "Update", "subresource": "status"},
        {"manager": "kubectl-create", "operation": "Update"}]})
    assert views.started_by(applied) == "kubectl-create"
    assert views.workflow_row(wf("new", "t"))["phase"] == "PENDING"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"phase": "DONE"}, "phase: unknown phase DONE", id="unknown-phase"),
        pytest.param({"limit": "0"}, "limit: must be between 1 and 500", id="limit-too-small"),
        pytest.param({"limit": "9999"}, "limit: must be between 1 and 500", id="limit-too-large"),
        pytest.param({"offset": "-1"}, "offset: must be 0 or more", id="negative-offset"),
        pytest.param({"offset": "two"}, "offset: 'two' is not a whole number", id="offset-not-a-number"),
    ],
)
def test_a_bad_list_query_names_its_parameter(params: dict[str, str], message: str) -> None:
    with pytest.raises(views.ViewError) as caught:
        views.ListQuery.from_params(params)
    assert str(caught.value).startswith(message)


# ---------------------------------------------------------------------------------------------- one workflow
def test_the_view_draws_kondukt_graph_with_its_colours_and_collapses_a_big_fork() -> None:
    branches = [attempt(f"b{i}", "COMPLETED" if i % 2 else "FAILED", 3 + i, parentTaskRef="fan",
                        inputData={"big": "x" * 100}, outputData={"out": i}) for i in range(30)]
    tasks = [attempt("first", "COMPLETED", 1),
             attempt("fan", "COMPLETED", 2, taskType="FORK_JOIN_DYNAMIC", taskDefName="fan"), *branches]
    obj = wf("big", "t", status={"phase": "RUNNING", "tasks": tasks, "startTime": 1_796_587_569_677})
    view = views.workflow_view(obj, max_branches=5)
    graph = view["graph"]
    expected = graphs.build_graph(parse_definition(obj["spec"]["definition"], "d"), parse_tasks(obj),
                                  max_dynamic_branches=5)
    assert [n["id"] for n in graph["nodes"]] == [n.id for n in expected.nodes]
    first = next(n for n in graph["nodes"] if n["ref"] == "first")
    assert (first["status"], first["fill"], first["stroke"]) == ("COMPLETED", "#d4edda", "#2e7d32")
    collapsed = [n for n in graph["nodes"] if n["kind"] == "collapsed"]
    assert len(collapsed) == 1 and collapsed[0]["label"][0] == "… 25 more" and collapsed[0]["ref"] is None
    assert collapsed[0]["status"] == "FAILED"
    assert len(view["tasks"]) == 32  # every attempt listed, none of their payloads
    assert all("inputData" not in t and "outputData" not in t for t in view["tasks"])
    assert view["startTime"] == "2026-12-06T20:06:09.677Z"
    assert view["operations"] == ["suspend", "terminate"]


def test_a_sub_workflow_attempt_links_to_its_child_by_the_operators_name() -> None:
    sub = attempt("child", "IN_PROGRESS", 1, taskType="SUB_WORKFLOW", taskDefName="child", subWorkflowId="uid-c")
    obj = wf("parent", "t", status={"phase": "RUNNING", "tasks": [sub]})
    row = views.workflow_view(obj)["tasks"][0]
    assert row["childWorkflow"] == names.child_workflow_name("parent", "uid-parent", "child", "id-child-1")


def test_an_attempts_details_carry_its_payloads_and_the_selector_of_its_pods() -> None:
    obj = wf("w", "t", status={"phase": "FAILED", "tasks": [
        attempt("first", "FAILED", 1, inputData={"a": 1}, outputData={"b": 2}, reasonForIncompletion="exit 1",
                startTime=1000, endTime=2000)]})
    task = views.find_attempt(obj, "id-first-1")
    assert task is not None and views.find_attempt(obj, "nope") is None
    details = views.attempt_details(obj, task)
    assert (details["inputData"], details["outputData"], details["reason"]) == ({"a": 1}, {"b": 2}, "exit 1")
    assert (details["startTime"], details["endTime"]) == ("1970-01-01T00:00:01.000Z", "1970-01-01T00:00:02.000Z")
    assert details["podSelector"] == "kondukt.io/workflow-uid=uid-w,kondukt.io/task-id=id-first-1"
    assert views.workflow_view(obj)["operations"] == ["retry", "restart"]


def test_a_paused_workflow_offers_resume() -> None:
    obj = wf("w", "t", spec={"suspend": True}, status={"phase": "PAUSED"})
    assert views.available_operations(obj) == ["resume", "terminate"]


def test_a_workflow_without_a_definition_yet_has_no_graph() -> None:
    obj = {"metadata": {"name": "w", "namespace": "ns"}, "spec": {"workflowDefRef": {"name": "demo"}}}
    view = views.workflow_view(obj)
    assert view["graph"] is None and view["tasks"] == [] and view["definition"] == "demo"


# ---------------------------------------------------------------------------------------------- definitions
def test_definitions_are_listed_and_drawn() -> None:
    wdef = {"metadata": {"name": "demo-v2", "namespace": "ns"},
            "spec": {"name": "demo", "version": 2, "description": "d", "tasks": [
                {"name": "echo", "taskReferenceName": "first"}]}}
    tdef = {"metadata": {"name": "echo", "namespace": "ns"},
            "spec": {"name": "echo", "retryCount": 2, "template": {"image": "worker:1"}}}
    rows = views.definition_rows([wdef], [tdef])
    assert rows["workflowDefs"] == [{"name": "demo-v2", "namespace": "ns", "definitionName": "demo", "version": 2,
                                     "tasks": 1, "description": "d"}]
    assert rows["taskDefs"][0]["image"] == "worker:1" and rows["taskDefs"][0]["retryCount"] == 2
    view = views.definition_view(wdef)
    assert [n["id"] for n in view["graph"]["nodes"]] == ["wf_start", "t_first", "wf_end"]
    assert all(n["status"] is None for n in view["graph"]["nodes"])
