"""Big and deep: a 500-branch dynamic fork, and SUB_WORKFLOW nested three deep."""

from __future__ import annotations

import json

import pytest

from kondukt.kube.status import tasks_from_status
from tests.e2e.test_operator_support import (  # noqa: F401 (fixtures)
    Cluster,
    cluster_fixture,
    operator_fixture,
    taskdef,
    workflow,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: An INLINE task plans the fork (no Job, no 4 KiB termination-message limit on the plan).
PLAN = (
    "(function () { var tasks = [], inputs = {};"
    " for (var i = 0; i < $.branches; i++) {"
    "   tasks.push({name: 'echo', taskReferenceName: 'branch_' + i});"
    "   inputs['branch_' + i] = {index: i}; }"
    " return {tasks: tasks, inputs: inputs}; })()"
)


def test_a_500_branch_dynamic_fork(cluster: Cluster) -> None:
    branches = 500
    cluster.apply(taskdef("echo"))
    definition = {"name": "wide", "tasks": [
        {"name": "plan", "taskReferenceName": "plan", "type": "INLINE",
         "inputParameters": {"evaluatorType": "javascript", "expression": PLAN, "branches": "${workflow.input.n}"}},
        {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN_DYNAMIC",
         "inputParameters": {"dynamicTasks": "${plan.output.result.tasks}",
                             "dynamicTasksInput": "${plan.output.result.inputs}"},
         "dynamicForkTasksParam": "dynamicTasks", "dynamicForkTasksInputParamName": "dynamicTasksInput"},
        {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
    ], "outputParameters": {"joined": "${join.output}"}}
    cluster.apply(workflow("wide", definition=definition, input={"n": branches}))
    status = cluster.wait_phase("wide", timeout=600)
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    joined = status["output"]["joined"]
    assert len(joined) == branches and joined["branch_499"] == {"index": 499}
    tasks = tasks_from_status(status)
    assert sum(1 for t in tasks if t["referenceTaskName"].startswith("branch_")) == branches
    assert status["taskCounts"] == {"COMPLETED": branches + 3}
    size = len(json.dumps(cluster.workflow("wide")))
    assert size < 1024 * 1024, f"the Workflow object is {size} bytes"
    assert len(cluster.jobs()) == branches


def test_sub_workflows_three_deep(cluster: Cluster) -> None:
    cluster.apply(taskdef("echo"))
    leaf = {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "level-3"},
            "spec": {"name": "level_3", "tasks": [
                {"name": "echo", "taskReferenceName": "work", "inputParameters": {"depth": "${workflow.input.depth}"}}],
                "outputParameters": {"depth": "${work.output.depth}"}}}

    def middle(level: int, child: str) -> dict[str, object]:
        return {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": f"level-{level}"},
                "spec": {"name": f"level_{level}", "tasks": [
                    {"name": "sub", "taskReferenceName": "sub", "type": "SUB_WORKFLOW",
                     "subWorkflowParam": {"name": child},
                     "inputParameters": {"depth": f"${{workflow.input.depth}}/{level + 1}"}}],
                    "outputParameters": {"depth": "${sub.output.depth}"}}}

    cluster.apply(leaf, middle(2, "level_3"), middle(1, "level_2"))
    cluster.apply(workflow("deep", ref="level_1", input={"depth": "1"}))
    status = cluster.wait_phase("deep", timeout=120)
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    assert status["output"] == {"depth": "1/2/3"}
    workflows = {w["metadata"]["name"]: w for w in cluster.list("workflows")}
    assert len(workflows) == 3
    parents = {w["metadata"]["uid"]: w.get("spec", {}).get("parentWorkflowId") for w in workflows.values()}
    chain_length = 0
    uid: str | None = next(u for u in parents if u not in parents.values())  # the innermost
    while uid is not None:
        chain_length += 1
        uid = parents.get(uid)
    assert chain_length == 3
    assert all(w["status"]["phase"] == "COMPLETED" for w in workflows.values())
