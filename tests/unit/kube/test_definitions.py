"""Definitions' health: the references a WorkflowDef names, what is missing, the status written."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from kondukt.kube import cache, definitions
from kondukt.kube import resources as r
from kondukt.kube.workqueue import WorkQueue

NOW = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def body(kind: str, name: str, spec: dict[str, Any], *, generation: int = 1, **status: Any) -> dict[str, Any]:
    return {"apiVersion": r.API_VERSION, "kind": kind,
            "metadata": {"name": name, "namespace": "ns", "generation": generation, "resourceVersion": "7"},
            "spec": spec, **({"status": status} if status else {})}


def taskdef(name: str, **spec: Any) -> dict[str, Any]:
    return body(r.TASKDEF_KIND, name, {"retryCount": 0, **spec})


def workflowdef(name: str, tasks: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return body(r.WORKFLOWDEF_KIND, name, {"version": 1, "tasks": tasks, **spec})


PIPELINE = workflowdef("pipeline", [
    {"name": "fetch", "taskReferenceName": "fetch_ref"},
    {"name": "fork", "taskReferenceName": "fork_ref", "type": "FORK_JOIN",
     "forkTasks": [[{"name": "resize", "taskReferenceName": "resize_ref"}],
                   [{"name": "inline", "taskReferenceName": "inline_ref", "taskDefinition": {"name": "inline"}}]]},
    {"name": "join", "taskReferenceName": "join_ref", "type": "JOIN", "joinOn": ["resize_ref", "inline_ref"]},
    {"name": "child", "taskReferenceName": "child_ref", "type": "SUB_WORKFLOW",
     "subWorkflowParam": {"name": "child", "version": 2}},
], failureWorkflow="cleanup")


def view(*objects: dict[str, Any]) -> cache.ClusterView:
    """A ClusterView over plain dict indexes built by the operator's own index functions."""
    indices: dict[str, dict[Any, list[Any]]] = {cache.TASKDEFS_INDEX: {}, cache.WORKFLOWDEFS_INDEX: {},
                                                cache.REFERENCES_INDEX: {}}
    for obj in objects:
        if obj["kind"] == r.TASKDEF_KIND:
            pairs = cache.index_taskdef(obj).items()
            target = indices[cache.TASKDEFS_INDEX]
        else:
            pairs = cache.index_workflowdef(obj).items()
            target = indices[cache.WORKFLOWDEFS_INDEX]
            for key, value in definitions.index_references(obj).items():
                indices[cache.REFERENCES_INDEX].setdefault(key, []).append(value)
        for key, value in pairs:
            target.setdefault(key, []).append(value)
    return cache.ClusterView(indices)


def health(target: dict[str, Any], *objects: dict[str, Any]) -> definitions.Health:
    cluster = view(target, *objects)
    task_defs = {rec.name: rec.task_def for rec in cluster.task_defs("ns") if rec.task_def is not None}
    return definitions.workflowdef_health(cache.workflowdef_record(target), cluster, task_defs)


def test_references_are_indexed_by_the_names_they_name() -> None:
    assert definitions.index_references(PIPELINE) == {
        ("td", "ns", "fetch"): "pipeline", ("td", "ns", "resize"): "pipeline",
        ("wd", "ns", "child"): "pipeline", ("wd", "ns", "cleanup"): "pipeline",
    }
    assert view(PIPELINE).referrers("ns", "td", "resize") == ["pipeline"]
    assert view(PIPELINE).referrers("ns", "td", "inline") == []


EVERYTHING = (taskdef("fetch"), taskdef("resize"), workflowdef("child", [], version=2),
              workflowdef("cleanup", []))


def test_a_definition_whose_references_all_resolve_is_ready() -> None:
    found = health(PIPELINE, *EVERYTHING)
    assert found == definitions.Health(True, "Ready", "every reference of WorkflowDef 'pipeline' version 1 resolves")


@pytest.mark.parametrize(("left_out", "reason", "message"), [
    pytest.param("resize", "TaskDefNotFound", "task 'resize_ref': TaskDef 'resize' not found in namespace ns",
                 id="nested-simple-task"),
    pytest.param("child", "WorkflowDefNotFound",
                 "task 'child_ref': WorkflowDef 'child' version 2 not found in namespace ns", id="sub-workflow"),
    pytest.param("cleanup", "WorkflowDefNotFound", "failureWorkflow: WorkflowDef 'cleanup' not found in namespace ns",
                 id="failure-workflow"),
])
def test_a_missing_reference_is_named_with_its_task(left_out: str, reason: str, message: str) -> None:
    present = [o for o in EVERYTHING if o["metadata"]["name"] != left_out]
    assert health(PIPELINE, *present) == definitions.Health(False, reason, message)


def test_a_sub_workflow_of_another_version_does_not_count_and_several_misses_are_listed() -> None:
    found = health(PIPELINE, taskdef("fetch"), workflowdef("child", [], version=1))
    assert not found.ready and not found.stalled and found.reason == "ReferencesNotFound"
    assert found.message == ("task 'resize_ref': TaskDef 'resize' not found; task 'child_ref': WorkflowDef 'child' "
                             "version 2 not found; failureWorkflow: WorkflowDef 'cleanup' not found in namespace ns")


def test_an_invalid_taskdef_is_named_as_such() -> None:
    found = health(PIPELINE, *EVERYTHING[1:], taskdef("fetch", retryCount="many"))
    assert found.reason == "TaskDefNotFound" and "task 'fetch_ref': TaskDef 'fetch' is invalid (" in found.message


def test_a_definition_the_engine_rejects_is_stalled() -> None:
    bad = workflowdef("bad", [{"name": "fork", "taskReferenceName": "fork_ref", "type": "FORK_JOIN",
                               "forkTasks": [[{"name": "fetch", "taskReferenceName": "a"}]]}])
    found = health(bad, taskdef("fetch"))
    assert found.stalled and not found.ready and found.reason == "InvalidDefinition"
    assert "task 'fork_ref'" in found.message and "JOIN" in found.message


def test_taskdefs_are_checked_alone() -> None:
    assert definitions.taskdef_health(cache.taskdef_record(taskdef("fetch"))).ready
    bad = definitions.taskdef_health(cache.taskdef_record(taskdef("fetch", timeoutSeconds=5,
                                                                  responseTimeoutSeconds=60)))
    assert bad.stalled and bad.reason == "InvalidDefinition" and bad.message.startswith("spec.")
    assert "responseTimeoutSeconds" in bad.message
    unreadable = definitions.taskdef_health(cache.taskdef_record(taskdef("fetch", retryCount=[1])))
    assert unreadable.stalled and "spec.retryCount" in unreadable.message


def test_the_status_carries_the_generation_and_changes_only_when_the_health_does() -> None:
    missing = definitions.Health(False, "TaskDefNotFound", "task 'a': TaskDef 'a' not found in namespace ns")
    first = definitions.definition_status(missing, 3, None, NOW)
    assert first["observedGeneration"] == 3
    assert [(c["type"], c["status"], c["reason"]) for c in first["conditions"]] == [
        ("Ready", "False", "TaskDefNotFound")]
    again = definitions.definition_status(missing, 3, first, NOW + dt.timedelta(minutes=1))
    assert not definitions.status_changed(first, again) and again == first
    ready = definitions.definition_status(definitions.Health(True, "Ready", "ok"), 3, first, NOW)
    assert definitions.status_changed(first, ready)
    assert definitions.status_changed(first, definitions.definition_status(missing, 4, first, NOW))
    stalled = definitions.definition_status(definitions.Health(False, "InvalidDefinition", "x", stalled=True), 3,
                                            None, NOW)
    assert [c["type"] for c in stalled["conditions"]] == ["Ready", "Stalled"]



class Recorder:
    """The checker's work queue, run for real, with a handler that records each key it is handed."""

    def __init__(self, checker: definitions.DefinitionHealth) -> None:
        self.seen: set[definitions.DefinitionKey] = set()
        checker.queue = WorkQueue(self.handle, workers=1)
        self.queue = checker.queue

    async def handle(self, key: definitions.DefinitionKey) -> None:
        self.seen.add(key)

    async def drained(self) -> set[definitions.DefinitionKey]:
        for _ in range(1000):  # bounded: a few loop turns hand every key over
            await asyncio.sleep(0)
            if not self.queue.depth and not self.queue._processing:
                break
        found, self.seen = self.seen, set()
        return found


async def test_a_change_checks_the_definition_and_every_workflowdef_naming_it() -> None:
    cluster = view(PIPELINE, workflowdef("other", [{"name": "fetch", "taskReferenceName": "f"}]))
    checker = definitions.DefinitionHealth(None, cluster, lambda namespace: {})  # type: ignore[arg-type]
    recorder = Recorder(checker)
    await checker.start()
    try:
        checker.observe(r.TASKDEF_PLURAL, "ADDED", taskdef("resize"))
        assert await recorder.drained() == {("taskdefs", "ns", "resize"), ("workflowdefs", "ns", "pipeline")}
        checker.observe(r.TASKDEF_PLURAL, "DELETED", taskdef("fetch"))  # not checked itself; its referrers are
        assert await recorder.drained() == {("workflowdefs", "ns", "pipeline"), ("workflowdefs", "ns", "other")}
        checker.observe(r.WORKFLOWDEF_PLURAL, "MODIFIED", workflowdef("cleanup", []))
        assert await recorder.drained() == {("workflowdefs", "ns", "cleanup"), ("workflowdefs", "ns", "pipeline")}
        renamed = body(r.TASKDEF_KIND, "resize-td", {"name": "resize", "retryCount": 0})
        checker.observe(r.TASKDEF_PLURAL, "ADDED", renamed)
        await recorder.drained()
        renamed = {**renamed, "spec": {**renamed["spec"], "name": "shrink"}}  # the old name's referrers too
        checker.observe(r.TASKDEF_PLURAL, "MODIFIED", renamed)
        assert await recorder.drained() == {("taskdefs", "ns", "resize-td"), ("workflowdefs", "ns", "pipeline")}
        checker.lead()
        assert await recorder.drained() == {("taskdefs", "ns", "resize"), ("workflowdefs", "ns", "cleanup"),
                                            ("taskdefs", "ns", "resize-td")}
    finally:
        await checker.stop()
