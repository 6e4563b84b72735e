"""A workflow too large for its Workflow object ends FAILED with a reason, never stuck (issue 16, "second").

The issue's case: an INLINE task whose result is ~2.5 MB of incompressible text. Before, the operator retried
the status write for ever (etcd refuses the request) and ``kubectl get wf`` showed no phase and no message.

- By default (no external payload storage) the value is refused where it appears: the task FAILS naming its
  size and the limit, and the workflow with it.
- When a value gets past that limit (here the limit is raised on purpose) and the status write is refused for
  its size by the real API server, the workflow ends FAILED with a short status saying why, at once.
A neighbour workflow completes meanwhile in both cases.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bigvalues import incompressible_inline
from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_support import Cluster, OperatorProcess, taskdef, workflow

pytestmark = pytest.mark.e2e

SIZE = 2_500_000


def big_workflow(name: str, size: int = SIZE, *, copy_to_output: bool = True) -> dict[str, object]:
    definition: dict[str, object] = {"name": name, "tasks": [
        incompressible_inline("big", size),
        {"name": "after", "taskReferenceName": "after", "type": "NOOP"},
    ]}
    if copy_to_output:
        definition["outputParameters"] = {"text": "${big.output.result}"}
    return workflow(name, definition=definition)


def neighbour(cluster: Cluster) -> None:
    cluster.apply(taskdef("echo"))
    cluster.apply(workflow("neighbour", input={"n": 1}, definition={"name": "neighbour", "tasks": [
        {"name": "echo", "taskReferenceName": "job", "inputParameters": {"n": "${workflow.input.n}"}}]}))


def get_wf(control_plane: ControlPlane, namespace: str) -> str:
    return str(control_plane.kubectl("-n", namespace, "get", "wf").stdout)


def test_a_value_too_large_fails_its_task_naming_size_and_limit(
        control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    operator = OperatorProcess(control_plane, namespace, tmp_path).start()
    try:
        cluster = Cluster(control_plane, namespace, operator)
        cluster.apply(big_workflow("big"))
        neighbour(cluster)
        status = cluster.wait_phase("big", timeout=120)
        reason = ("task 'big': its output is 2.4 MiB (2527462 bytes), more than the 256 KiB a value may take in the "
                  "workflow's state; larger values need external payload storage (KONDUKT_PAYLOAD_BUCKET on the "
                  "operator)")
        big_task = cluster.tasks("big")[0]
        assert (status["phase"], status["reasonForIncompletion"]) == (
            "FAILED", f"Task {big_task['taskId']} failed with status: FAILED_WITH_TERMINAL_ERROR and reason: '{reason}'")
        assert [(t["referenceTaskName"], t["status"]) for t in cluster.tasks("big")] == [
            ("big", "FAILED_WITH_TERMINAL_ERROR")]
        shown = get_wf(control_plane, namespace)
        print(shown)  # the closing note quotes it
        assert "FAILED" in shown and "its output is 2.4 MiB" in shown
        assert cluster.wait_phase("neighbour")["phase"] == "COMPLETED"
        assert operator.alive() and "Traceback" not in operator.logs()
    finally:
        operator.stop()


@pytest.mark.parametrize(("size", "copy_to_output", "refusal"), [
    # 2.5 MB kept twice (the task's output and the workflow's): over the API server's 3 MiB request limit.
    pytest.param(SIZE, True, "Request entity too large", id="api-server"),
    # 2 MB once: under the API server's limit, over etcd's (1.5 MiB) even compressed.
    pytest.param(2_000_000, False, "larger than max", id="etcd"),
])
def test_a_status_the_api_server_refuses_for_its_size_ends_the_workflow_failed(
        control_plane: ControlPlane, namespace: str, tmp_path: Path, size: int, copy_to_output: bool,
        refusal: str) -> None:
    # A limit above the value: the engine keeps it, and the status write meets the API server's own limit.
    operator = OperatorProcess(control_plane, namespace, tmp_path, "--status-value-limit", "8192").start()
    try:
        cluster = Cluster(control_plane, namespace, operator)
        cluster.apply(big_workflow("big", size, copy_to_output=copy_to_output))
        neighbour(cluster)
        status = cluster.wait_phase("big", timeout=120)
        assert status["phase"] == "FAILED", status
        assert refusal in status["reasonForIncompletion"]
        assert status["reasonForIncompletion"].startswith("the Workflow's status would be ")
        assert "more than the API server stores (" in status["reasonForIncompletion"]
        assert status["reasonForIncompletion"].endswith("the workflow cannot go on")
        assert {c["type"]: c["reason"] for c in status["conditions"]}["Failed"] == "StatusTooLarge"
        assert "output" not in status and all("outputData" not in t for t in cluster.tasks("big"))
        assert any(e.get("reason") == "StatusTooLarge" for e in cluster.events("big"))
        shown = get_wf(control_plane, namespace)
        print(shown)
        print(status["reasonForIncompletion"])
        assert "FAILED" in shown and "the Workflow's status would be" in shown
        assert cluster.wait_phase("neighbour")["phase"] == "COMPLETED"
        assert operator.alive() and "Traceback" not in operator.logs()
    finally:
        operator.stop()
