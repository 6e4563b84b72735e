"""What GitOps tools see of Kondukt's resources, checked with Flux's own health computation.

Flux (and kpt) decide whether a resource is healthy with the kstatus library of sigs.k8s.io/cli-utils;
hack/kstatus is a small program built from it (``make kstatus``, cached) that prints kstatus's verdict for
objects read from ``kubectl get -o json``. These tests run the operator on a real control plane (kwok's
fake pods as workers) and ask kstatus about definitions and Workflows in each state: Current for a Ready
definition, a COMPLETED workflow and a scheduled CronWorkflow, InProgress for a definition still missing a
reference and for a running workflow, Failed for a FAILED or TERMINATED one, an invalid definition and a
CronWorkflow whose schedule cannot be used. See docs/gitops.md.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_operator_support import (  # noqa: F401 (fixtures)
    REPO,
    Cluster,
    cluster_fixture,
    operator_fixture,
    taskdef,
    workflow,
)

pytestmark = pytest.mark.e2e

Kstatus = Callable[[str, str], dict[str, Any]]


@pytest.fixture(scope="session")
def kstatus_bin() -> Path:
    """hack/kstatus, built from the Go module proxy on first use (a no-op once cached)."""
    done = subprocess.run(["bash", str(REPO / "hack" / "kstatus" / "build.sh")], capture_output=True, text=True,
                          check=False, timeout=1800)
    if done.returncode != 0:
        pytest.fail(f"cannot build hack/kstatus (make kstatus):\n{done.stderr[-3000:]}", pytrace=False)
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def kstatus(cluster: Cluster, kstatus_bin: Path) -> Kstatus:
    """kstatus's verdict on one object: {"kind", "name", "status", "message"}."""
    def verdict(resource: str, name: str) -> dict[str, Any]:
        got = cluster.cp.kubectl("-n", cluster.namespace, "get", resource, name, "-o", "json")
        done = subprocess.run([str(kstatus_bin)], input=got.stdout, capture_output=True, text=True, check=True,
                              timeout=60)
        line: dict[str, Any] = json.loads(done.stdout)
        return line
    return verdict


def ready_condition(cluster: Cluster, plural: str, name: str) -> dict[str, Any] | None:
    obj = cluster.get(plural, name) or {}
    status = obj.get("status") or {}
    if status.get("observedGeneration") != (obj.get("metadata") or {}).get("generation"):
        return None
    return next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)


def wait_verdict(cluster: Cluster, kstatus: Kstatus, resource: str, name: str, wanted: str) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def probe() -> dict[str, Any] | None:
        last.update(kstatus(resource, name))
        return dict(last) if last["status"] == wanted else None

    try:
        found: dict[str, Any] = cluster.wait_until(probe, f"kstatus to say {wanted} of {resource} {name}", timeout=90)
    except AssertionError as err:
        raise AssertionError(f"{err}\nlast verdict: {last}") from None
    return found


def test_a_workflowdef_is_current_once_the_taskdef_it_names_exists(cluster: Cluster, kstatus: Kstatus) -> None:
    cluster.apply(taskdef("present"))
    wait_verdict(cluster, kstatus, "taskdef", "present", "Current")
    condition = cluster.wait_until(lambda: ready_condition(cluster, "taskdefs", "present"), "the TaskDef's Ready")
    assert condition["status"] == "True" and condition["reason"] == "Ready"

    definition = {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "pipeline"},
                  "spec": {"version": 1, "tasks": [{"name": "present", "taskReferenceName": "first"},
                                                   {"name": "later", "taskReferenceName": "second"}]}}
    cluster.apply(definition)
    condition = cluster.wait_until(lambda: ready_condition(cluster, "workflowdefs", "pipeline"),
                                   "the WorkflowDef's Ready")
    assert condition["status"] == "False" and condition["reason"] == "TaskDefNotFound"
    assert "task 'second': TaskDef 'later' not found" in condition["message"]
    verdict = kstatus("workflowdef", "pipeline")
    assert verdict["status"] == "InProgress" and "TaskDef 'later' not found" in verdict["message"]
    generation = cluster.get("workflowdefs", "pipeline")["metadata"]["generation"]  # type: ignore[index]

    cluster.apply(taskdef("later"))  # the WorkflowDef itself is not touched: its referrers index finds it
    wait_verdict(cluster, kstatus, "workflowdef", "pipeline", "Current")
    assert cluster.get("workflowdefs", "pipeline")["metadata"]["generation"] == generation  # type: ignore[index]
    columns = cluster.cp.kubectl("-n", cluster.namespace, "get", "workflowdefs", "-o", "wide").stdout
    header, row = columns.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "WORKFLOW", "VERSION", "READY", "REASON"]
    assert row.split()[:4] == ["pipeline", "1", "True", "Ready"]  # no spec.name: the WORKFLOW column is empty

    cluster.cp.kubectl("-n", cluster.namespace, "delete", "taskdef", "later")
    wait_verdict(cluster, kstatus, "workflowdef", "pipeline", "InProgress")


def test_an_invalid_definition_is_failed(cluster: Cluster, kstatus: Kstatus) -> None:
    cluster.apply(taskdef("present"), {
        "apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "unjoined"},
        "spec": {"version": 1, "tasks": [{"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN",
                                          "forkTasks": [[{"name": "present", "taskReferenceName": "a"}]]}]}})
    verdict = wait_verdict(cluster, kstatus, "workflowdef", "unjoined", "Failed")
    assert "task 'fork'" in verdict["message"]


def test_workflows_are_in_progress_current_or_failed(cluster: Cluster, kstatus: Kstatus) -> None:
    cluster.apply(taskdef("quick"), taskdef("slow", annotations={"kwok.kondukt.io/duration": "300s"}),
                  taskdef("fragile", annotations={"kwok.kondukt.io/fail": "true"}))

    def one_task(name: str) -> dict[str, Any]:
        return {"name": f"run-{name}", "tasks": [{"name": name, "taskReferenceName": f"{name}_ref"}]}

    cluster.apply(*(workflow(f"wf-{name}", definition=one_task(name)) for name in ("quick", "slow", "fragile")))
    assert cluster.wait_phase("wf-quick")["phase"] == "COMPLETED"
    assert cluster.wait_phase("wf-fragile")["phase"] == "FAILED"
    cluster.wait_phase("wf-slow", {"RUNNING"})
    assert wait_verdict(cluster, kstatus, "workflow", "wf-quick", "Current")["status"] == "Current"
    failed = wait_verdict(cluster, kstatus, "workflow", "wf-fragile", "Failed")
    assert "slow" not in failed["message"] and failed["message"]
    running = kstatus("workflow", "wf-slow")
    assert running["status"] == "InProgress", running
    assert cluster.status("wf-slow")["phase"] == "RUNNING"  # still running when kstatus looked

    cluster.patch_workflow("wf-slow", {"spec": {"terminate": {"reason": "enough"}}})
    assert cluster.wait_phase("wf-slow")["phase"] == "TERMINATED"
    wait_verdict(cluster, kstatus, "workflow", "wf-slow", "Failed")


def test_cronworkflows_are_current_once_scheduled_and_failed_when_unusable(cluster: Cluster,
                                                                          kstatus: Kstatus) -> None:
    def cron(name: str, schedule: str, **spec: Any) -> dict[str, Any]:
        body = {"schedule": schedule, "workflowSpec": {"definition": {
            "name": "flow", "tasks": [{"name": "quick", "taskReferenceName": "only"}]}}, **spec}
        return {"apiVersion": "kondukt.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": name},
                "spec": body}

    cluster.apply(taskdef("quick"), cron("yearly", "0 0 1 1 *"), cron("paused", "0 0 1 1 *", suspend=True),
                  cron("broken", "61 * * * *"))
    for name in ("yearly", "paused"):
        condition = cluster.wait_until(lambda name=name: ready_condition(cluster, "cronworkflows", name),
                                       f"CronWorkflow {name}'s Ready")
        assert condition["status"] == "True", condition
        assert kstatus("cronworkflow", name)["status"] == "Current"
    failed = wait_verdict(cluster, kstatus, "cronworkflow", "broken", "Failed")
    assert "61" in failed["message"] or "schedule" in failed["message"], failed
