"""The sub-workflow depth limit on the real control plane: a workflow that starts itself ends FAILED.

Without the limit the operator would create child Workflows without end. With ``--max-sub-workflow-depth 3``
exactly three children exist (each annotated with its depth), the deepest one's SUB_WORKFLOW task fails
terminally with a reason naming the limit, every ancestor fails with it (a ``retryCount`` does not multiply
the children), and a neighbour workflow completes meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_support import Cluster, OperatorProcess, taskdef, workflow

pytestmark = pytest.mark.e2e

DEPTH_ANNOTATION = "kondukt.io/sub-workflow-depth"


@pytest.fixture
def limited_cluster(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    process = OperatorProcess(control_plane, namespace, tmp_path, "--max-sub-workflow-depth", "3").start()
    try:
        yield Cluster(control_plane, namespace, process)
    finally:
        process.stop()


def test_a_workflow_that_starts_itself_fails_at_the_depth_limit(limited_cluster: Cluster) -> None:
    cluster = limited_cluster
    cluster.apply(taskdef("echo"))
    cluster.apply({
        "apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "forever"},
        "spec": {"name": "forever", "tasks": [
            {"name": "again", "taskReferenceName": "again", "type": "SUB_WORKFLOW", "retryCount": 2,
             "subWorkflowParam": {"name": "forever"}}]},
    })
    cluster.apply(workflow("top", ref="forever"))
    cluster.apply(workflow("neighbour", definition={"name": "neighbour", "tasks": [
        {"name": "echo", "taskReferenceName": "hello", "inputParameters": {"v": 1}}]}))

    status = cluster.wait_phase("top", timeout=120)
    assert status["phase"] == "FAILED", status
    assert "sub-workflow depth limit reached" in status["reasonForIncompletion"]
    assert "more than the limit of 3 (operator flag --max-sub-workflow-depth" in status["reasonForIncompletion"]
    assert [t["status"] for t in cluster.tasks("top")] == ["FAILED_WITH_TERMINAL_ERROR"]

    everything = cluster.list("workflows")
    children = [w for w in everything if w["metadata"]["name"] not in ("top", "neighbour")]
    depths = sorted(int(w["metadata"]["annotations"][DEPTH_ANNOTATION]) for w in children)
    assert depths == [1, 2, 3], "one child per level, none beyond the limit, none for a retry"
    for child in children:
        assert cluster.wait_phase(child["metadata"]["name"])["phase"] == "FAILED"
    deepest = next(w["metadata"]["name"] for w in children if w["metadata"]["annotations"][DEPTH_ANNOTATION] == "3")
    task = cluster.tasks(deepest)[0]
    assert task["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert "would nest sub-workflows 4 deep" in task["reasonForIncompletion"]
    cluster.wait_until(lambda: any(e["reason"] == "SubWorkflowDepthLimit" for e in cluster.events(deepest)),
                       "the SubWorkflowDepthLimit event")

    assert cluster.wait_phase("neighbour")["phase"] == "COMPLETED"
    assert len(cluster.list("workflows")) == 5, "nothing more was created after the failure"


def test_a_resource_quota_on_workflows_bounds_a_sub_workflow_fan_out(limited_cluster: Cluster) -> None:
    """The Kubernetes way to bound how many Workflows a tree of sub-workflows may hold: a ResourceQuota on
    `count/workflows.kondukt.io`. The child the quota refuses FAILS its SUB_WORKFLOW task with the API server's
    words (waiting would wait for ever: the room is held by this workflow's own children, deleted with it)."""
    cluster = limited_cluster
    cluster.apply({
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "workflows"},
        "spec": {"hard": {"count/workflows.kondukt.io": "3"}},
    })
    # Admission counts against the quota only once the quota controller has filled in its status.
    cluster.wait_until(lambda: (cluster.get("resourcequotas", "workflows", "v1") or {}).get("status", {}).get("hard"),
                       "the ResourceQuota's status")
    leaf = {"name": "leaf", "tasks": [{"name": "set", "taskReferenceName": "set", "type": "SET_VARIABLE",
                                       "inputParameters": {"done": True}}]}
    cluster.apply({"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "leaf"},
                   "spec": leaf})
    branches = [[{"name": "leaf", "taskReferenceName": f"child_{i}", "type": "SUB_WORKFLOW",
                  "subWorkflowParam": {"name": "leaf"}}] for i in range(3)]
    cluster.apply(workflow("wide", definition={"name": "wide", "tasks": [
        {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN", "forkTasks": branches},
        {"name": "join", "taskReferenceName": "join", "type": "JOIN",
         "joinOn": [f"child_{i}" for i in range(3)]}]}))

    status = cluster.wait_phase("wide", timeout=120)
    assert status["phase"] == "FAILED", status
    children = [w for w in cluster.list("workflows") if w["metadata"]["name"] != "wide"]
    assert len(children) == 2, "the quota (3) holds the parent and two children"
    for child in children:  # completed, or terminated with the parent that failed first (as in Conductor)
        assert cluster.wait_phase(child["metadata"]["name"])["phase"] in ("COMPLETED", "TERMINATED")
    refused = [t for t in cluster.tasks("wide") if t.get("referenceTaskName", "").startswith("child_")
               and t["status"] == "FAILED"]
    assert len(refused) == 1, cluster.tasks("wide")
    reason = refused[0]["reasonForIncompletion"]
    assert reason.startswith("the sub workflow could not be created: ") and "exceeded quota: workflows" in reason
