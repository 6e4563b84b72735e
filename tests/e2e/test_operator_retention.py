"""Retention on the real control plane: a finished Workflow is deleted once its ttlStrategy runs out, its
SUB_WORKFLOW child and all their Jobs go with it (owner references, the garbage collector), and the
operator's default (``--ttl-after-completion``) applies only to Workflows whose spec has no ttlStrategy.
(The archive's part — nothing deleted before it is archived — is in test_operator_archive.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_support import Cluster, OperatorProcess, WatchRecorder, taskdef, workflow

pytestmark = pytest.mark.e2e


@pytest.fixture
def ttl_cluster(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    operator = OperatorProcess(control_plane, namespace, tmp_path, "--ttl-after-completion", "1").start()
    try:
        yield Cluster(control_plane, namespace, operator)
    finally:
        operator.stop()


def phase(obj: dict[str, Any]) -> str | None:
    return (obj.get("status") or {}).get("phase")


def test_ttl_deletes_the_workflow_with_its_child_and_jobs_and_the_default_applies_only_without_one(
        ttl_cluster: Cluster) -> None:
    cluster = ttl_cluster
    # A one-second TTL leaves too short a window to poll for "COMPLETED, not yet deleted" under load: the
    # test records every change through watches begun before anything is applied, and asserts on those.
    workflows = WatchRecorder(cluster, "workflows").start()
    jobs = WatchRecorder(cluster, "jobs", "batch/v1").start()
    try:
        check_retention(cluster, workflows, jobs)
    finally:
        workflows.stop()
        jobs.stop()


def check_retention(cluster: Cluster, workflows: WatchRecorder, jobs: WatchRecorder) -> None:
    cluster.apply(taskdef("echo"))
    cluster.apply({"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "inner"},
                   "spec": {"name": "inner", "tasks": [
                       {"name": "echo", "taskReferenceName": "deep", "inputParameters": {"v": 2}}]}})
    one_task = {"name": "one", "tasks": [{"name": "echo", "taskReferenceName": "a", "inputParameters": {"v": 1}}]}

    # ttlStrategy: {} keeps it, whatever the operator's default. It ends first, so had the default applied
    # to it, its time would have run out before the defaulted workflow's below.
    cluster.apply(workflow("kept", definition=one_task, ttlStrategy={}))
    assert cluster.wait_phase("kept")["phase"] == "COMPLETED"

    cluster.apply(workflow("parent", ttlStrategy={"secondsAfterSuccess": 3, "secondsAfterCompletion": 600},
                           definition={"name": "parent", "tasks": [
                               {"name": "echo", "taskReferenceName": "first", "inputParameters": {"v": 0}},
                               {"name": "inner", "taskReferenceName": "sub", "type": "SUB_WORKFLOW",
                                "subWorkflowParam": {"name": "inner"}}]}))
    cluster.apply(workflow("defaulted", definition=one_task))

    # The operator's default (1 s after completion) deletes "defaulted"; the parent's own 3 s (success wins
    # over its 600 s after completion) deletes it, its child and every Job they owned.
    parent_uid = workflows.wait(lambda: next((obj["metadata"]["uid"] for _, obj in workflows.of("parent")), None),
                                "parent created")

    def child_name() -> str | None:
        found = [obj["metadata"]["name"] for _, obj in workflows.recorded()
                 if (obj["metadata"].get("labels") or {}).get("kondukt.io/parent-workflow-uid") == parent_uid]
        return found[0] if found else None
    child = workflows.wait(child_name, "the parent's SUB_WORKFLOW child created")
    workflows.wait(lambda: {"defaulted", "parent", child} <= set(workflows.names("DELETED")),
                   "defaulted (operator default), parent (its ttlStrategy) and its child (garbage collector) "
                   "deleted", timeout=120)
    for name in ("defaulted", "parent", child):
        seen = [(kind, phase(obj)) for kind, obj in workflows.of(name)]
        assert ("MODIFIED", "COMPLETED") in seen, f"{name} deleted before it was seen COMPLETED: {seen}"
        assert seen[-1][0] == "DELETED", f"{name}: {seen}"
    child_specs = [obj["spec"] for _, obj in workflows.of(child)]
    assert all("ttlStrategy" not in spec for spec in child_specs), "a child has no TTL of its own"
    assert "DELETED" not in [kind for kind, _ in workflows.of("kept")]
    assert cluster.get("workflows", "kept") is not None, "kept outlived the defaulted workflow's 1 s"

    def owner(job: dict[str, Any]) -> str:
        return str(job["metadata"]["ownerReferences"][0]["name"])
    owners = {obj["metadata"]["name"]: owner(obj) for kind, obj in jobs.recorded() if kind == "ADDED"}
    assert sorted(owners.values()) == sorted(["kept", "defaulted", "parent", child]), owners
    jobs.wait(lambda: set(jobs.names("DELETED")) == {j for j, w in owners.items() if w != "kept"},
              "the Jobs of defaulted, parent and its child deleted (garbage collector)", timeout=120)
    assert [owner(j) for j in cluster.jobs()] == ["kept"]
    assert [w["metadata"]["name"] for w in cluster.list("workflows")] == ["kept"]
    assert cluster.status("kept")["phase"] == "COMPLETED"
    logs = cluster.operator.logs() if cluster.operator else ""
    assert f"workflow {cluster.namespace}/parent deleted: its TTL ran out" in logs
    assert "Traceback" not in logs
