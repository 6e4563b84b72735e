"""Retention on the real control plane: a finished Workflow is deleted once its ttlStrategy runs out, its
SUB_WORKFLOW child and all their Jobs go with it (owner references, the garbage collector), and the
operator's default (``--ttl-after-completion``) applies only to Workflows whose spec has no ttlStrategy.
(The archive's part — nothing deleted before it is archived — is in test_operator_archive.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_support import Cluster, OperatorProcess, taskdef, workflow

pytestmark = pytest.mark.e2e


@pytest.fixture
def ttl_cluster(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    operator = OperatorProcess(control_plane, namespace, tmp_path, "--ttl-after-completion", "1").start()
    try:
        yield Cluster(control_plane, namespace, operator)
    finally:
        operator.stop()


def test_ttl_deletes_the_workflow_with_its_child_and_jobs_and_the_default_applies_only_without_one(
        ttl_cluster: Cluster) -> None:
    cluster = ttl_cluster
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
    cluster.wait_until(lambda: cluster.get("workflows", "parent") is not None
                       and cluster.status("parent").get("phase") == "COMPLETED"
                       and len(cluster.list("workflows")) == 4 and len(cluster.jobs()) == 4,
                       "parent COMPLETED with its child, four Jobs (kept, defaulted, first, deep)")
    parent_uid = cluster.workflow("parent")["metadata"]["uid"]
    child = cluster.list("workflows", selector=f"kondukt.io/parent-workflow-uid={parent_uid}")[0]
    assert child["status"]["phase"] == "COMPLETED"
    assert "ttlStrategy" not in child["spec"], "a child has no TTL of its own: it goes with its parent"

    # The operator's default (1 s after completion) deletes "defaulted"; the parent's own 3 s (success wins
    # over its 600 s after completion) deletes it, its child and every Job they owned.
    cluster.wait_until(lambda: cluster.get("workflows", "defaulted") is None, "defaulted deleted (operator default)")
    cluster.wait_until(lambda: cluster.get("workflows", "parent") is None, "parent deleted (its ttlStrategy)")
    cluster.wait_until(lambda: cluster.get("workflows", child["metadata"]["name"]) is None,
                       "the child deleted with its parent (garbage collector)", timeout=90)
    cluster.wait_until(lambda: len(cluster.jobs()) == 1, "only kept's Job left", timeout=90)
    assert [w["metadata"]["name"] for w in cluster.list("workflows")] == ["kept"]
    assert cluster.status("kept")["phase"] == "COMPLETED"
    logs = cluster.operator.logs() if cluster.operator else ""
    assert f"workflow {cluster.namespace}/parent deleted: its TTL ran out" in logs
    assert "Traceback" not in logs
