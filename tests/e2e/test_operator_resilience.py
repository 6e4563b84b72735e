"""What must never go wrong: a killed operator loses nothing and runs no attempt twice; a bad Workflow
fails alone with a reason; malformed manifests are rejected at admission with readable messages.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kondukt.kube import resources as r
from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_support import (  # noqa: F401 (fixtures)
    ECHO,
    Cluster,
    OperatorProcess,
    cluster_fixture,
    operator_fixture,
    taskdef,
    workflow,
)

pytestmark = pytest.mark.e2e


def chain_then_fork(steps: int, branches: int) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = [{"name": "step", "taskReferenceName": f"step_{i}", "inputParameters": {"i": i}}
                                   for i in range(steps)]
    refs = [f"branch_{i}" for i in range(branches)]
    tasks.append({"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN",
                  "forkTasks": [[{"name": "step", "taskReferenceName": ref}] for ref in refs]})
    tasks.append({"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": refs})
    tasks.append({"name": "step", "taskReferenceName": "last", "inputParameters": {"i": "${step_0.output.i}"}})
    return {"name": "crashy", "tasks": tasks, "outputParameters": {"first": "${last.output.i}"}}


@pytest.mark.slow
def test_sigkill_at_any_moment_loses_nothing_and_runs_no_attempt_twice(cluster: Cluster,
                                                                       operator: OperatorProcess) -> None:
    steps, branches = 8, 6
    cluster.apply(taskdef("step", annotations={**ECHO, "kwok.kondukt.io/duration": "400ms"}))
    cluster.apply(workflow("crashy", definition=chain_then_fork(steps, branches)))
    for jobs_before_kill in (2, 5, steps + 2):
        cluster.wait_until(lambda n=jobs_before_kill: len(cluster.jobs()) >= n, f"{jobs_before_kill} Jobs")
        operator.kill()
        assert not operator.alive()
        operator.start()
    status = cluster.wait_phase("crashy", timeout=180)
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    assert status["output"] == {"first": 0}
    tasks = cluster.tasks("crashy")
    attempts = [t for t in tasks if "jobName" in t]
    assert len(attempts) == steps + branches + 1
    assert all(t["status"] == "COMPLETED" and t["retryCount"] == 0 for t in attempts), "an attempt was retried"
    jobs = cluster.jobs()
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(t["jobName"] for t in attempts), \
        "exactly one Job per attempt"
    task_ids = Counter(j["metadata"]["annotations"][r.ANNOTATION_TASK_ID] for j in jobs)
    assert set(task_ids.values()) == {1}
    pods = Counter(p["metadata"]["labels"]["batch.kubernetes.io/job-name"] for p in cluster.list("pods", "v1"))
    assert set(pods.values()) == {1}, "a Job ran more than one pod"
    assert operator.starts == 4


def test_an_invalid_workflow_fails_with_a_reason_while_others_go_on(cluster: Cluster,
                                                                     operator: OperatorProcess) -> None:
    cluster.apply(taskdef("echo"))
    duplicate = {"name": "dup", "tasks": [{"name": "echo", "taskReferenceName": "same"},
                                          {"name": "echo", "taskReferenceName": "same"}]}
    unknown_task = {"name": "unknown", "tasks": [{"name": "no_such_taskdef", "taskReferenceName": "x"}]}
    good = {"name": "good", "tasks": [{"name": "echo", "taskReferenceName": "a", "inputParameters": {"v": 1}}]}
    cluster.apply(
        workflow("missing-def", ref="no_such_workflow"),
        workflow("duplicate-refs", definition=duplicate),
        workflow("unknown-taskdef", definition=unknown_task),
        workflow("good", definition=good),
    )
    assert cluster.wait_phase("good")["phase"] == "COMPLETED"
    expectations = {
        "missing-def": ("WorkflowDefNotFound", "no_such_workflow"),
        "duplicate-refs": ("InvalidDefinition", "same"),
        "unknown-taskdef": ("TaskDefNotFound", "no_such_taskdef"),
    }
    for name, (reason, mention) in expectations.items():
        status = cluster.wait_phase(name, timeout=60)
        assert status["phase"] == "FAILED"
        assert mention in status["reasonForIncompletion"] and mention in status["message"]
        failed = {c["type"]: c for c in status["conditions"]}["Failed"]
        assert failed["status"] == "True" and failed["reason"] == reason
        assert any(e["type"] == "Warning" and e["reason"] == reason for e in cluster.events(name))
    assert cluster.jobs()[0]["metadata"]["ownerReferences"][0]["name"] == "good"
    assert len(cluster.jobs()) == 1
    assert operator.alive()
    assert "Traceback" not in operator.logs()


def test_a_late_definition_is_waited_for(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    """GitOps tools apply in any order: a Workflow may arrive a moment before its WorkflowDef.

    The operator waits --definition-grace-seconds (15 s by default) from the Workflow's creation. Under load
    the steps below (see the waiting message, apply the definition, the operator sees it) took longer than
    15 s and the workflow FAILED as designed, so this test gives the operator a grace no load reaches: it is
    about the waiting, not about the default's length (which test_kube_reconcile covers)."""
    operator = OperatorProcess(control_plane, namespace, tmp_path, "--definition-grace-seconds", "600").start()
    try:
        cluster = Cluster(control_plane, namespace, operator)
        cluster.apply(taskdef("echo"))
        cluster.apply(workflow("early", ref="arrives_later", input={"v": 5}))
        cluster.wait_until(lambda: "not found" in cluster.status("early").get("message", ""), "the waiting message")
        cluster.apply({"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef",
                       "metadata": {"name": "arrives-later"},
                       "spec": {"name": "arrives_later", "tasks": [
                           {"name": "echo", "taskReferenceName": "a", "inputParameters": {"v": "${workflow.input.v}"}}]}})
        status = cluster.wait_phase("early")
        assert status["phase"] == "COMPLETED" and status["output"] == {"v": 5}
    finally:
        operator.stop()


# ------------------------------------------------------------------------------------ admission
def rejected(control_plane: ControlPlane, namespace: str, document: dict[str, Any]) -> str:
    cluster = Cluster(control_plane, namespace)
    return cluster.create_expecting_rejection(document)


def wf(spec: dict[str, Any], name: str = "bad") -> dict[str, Any]:
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name}, "spec": spec}


def td(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "TaskDef", "metadata": {"name": "bad"}, "spec": spec}


def wfd(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "bad"}, "spec": spec}


INLINE = {"tasks": [{"name": "echo", "taskReferenceName": "a"}]}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param(wf({"workflowDefRef": {"name": "x"}, "definition": INLINE}),
                     "set exactly one of spec.workflowDefRef", id="workflow-two-definitions"),
        pytest.param(wf({"input": {"a": 1}}), "set exactly one of spec.workflowDefRef", id="workflow-no-definition"),
        pytest.param(wf({"workflowDefRef": {"version": 2}}), "spec.workflowDefRef.name: Required value",
                     id="workflow-ref-without-name"),
        pytest.param(td({"retryCount": "three"}), "spec.retryCount: Invalid value", id="taskdef-wrong-type"),
        pytest.param(td({"retryCount": -1}), "spec.retryCount: Invalid value", id="taskdef-negative"),
        pytest.param(td({"timeoutPolicy": "NEVER"}), 'Unsupported value: "NEVER"', id="taskdef-enum"),
        pytest.param(td({"rateLimitPerFrequency": 5}), "rateLimitPerFrequency needs rateLimitFrequencyInSeconds > 0",
                     id="taskdef-rate-without-window"),
        pytest.param(wfd({"tasks": [{"name": "echo"}]}), "spec.tasks[0].taskReferenceName: Required value",
                     id="workflowdef-task-without-reference"),
        pytest.param(wfd({"tasks": [{"name": "s", "taskReferenceName": "s", "type": "SUB_WORKFLOW"}]}),
                     "a SUB_WORKFLOW task needs subWorkflowParam", id="workflowdef-sub-workflow-without-params"),
        pytest.param(wfd({"tasks": [{"name": "l", "taskReferenceName": "l", "type": "DO_WHILE"}]}),
                     "a DO_WHILE task needs a non-empty loopOver", id="workflowdef-empty-loop"),
    ],
)
def test_malformed_manifests_are_rejected_at_admission(control_plane: ControlPlane, namespace: str,
                                                       document: dict[str, Any], message: str) -> None:
    error = rejected(control_plane, namespace, document)
    assert message in error, error


def test_a_running_workflow_input_and_definition_cannot_change(control_plane: ControlPlane, namespace: str) -> None:
    cluster = Cluster(control_plane, namespace)
    cluster.apply(wf({"workflowDefRef": {"name": "x"}, "input": {"a": 1}}, name="fixed"))
    for patch, message in (
        ({"spec": {"input": {"a": 2}}}, "spec.input is immutable"),
        ({"spec": {"workflowDefRef": {"name": "y"}}}, "spec.workflowDefRef is immutable"),
    ):
        proc = control_plane.kubectl("-n", namespace, "patch", "workflow.kondukt.io", "fixed", "--type=merge",
                                     "-p", json.dumps(patch), check=False)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    control_plane.kubectl("-n", namespace, "patch", "workflow.kondukt.io", "fixed", "--type=merge",
                          "-p", json.dumps({"spec": {"suspend": True}}))
