"""A jq program that never ends must not freeze the operator (issue 16, "worst first").

One operator watches two namespaces. In the first, a JSON_JQ_TRANSFORM runs ``def f: f; f``; in the second, a
workflow with a Job and a jq task runs meanwhile. The stuck evaluation runs in the operator's script pool, a
separate process: the neighbour completes while the stuck one still runs, the operator keeps answering its
liveness endpoint, and the stuck task FAILS with the reason naming the limit. The operator is never
restarted. (Before, jq ran inside ``decide`` holding the GIL: every workflow stopped and /healthz went silent.)
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.controlplane import ControlPlane, wait_for
from tests.e2e.test_operator_support import Cluster, OperatorProcess, taskdef, workflow

pytestmark = pytest.mark.e2e

#: Long enough that the neighbour finishes well inside it; the test never asserts on durations.
STUCK_LIMIT_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def second_namespace(control_plane: ControlPlane, namespace: str) -> Iterator[str]:
    name = f"{namespace[:50]}-b"
    control_plane.kubectl("create", "namespace", name)
    wait_for(lambda: control_plane.api("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200,
             f"the default ServiceAccount of namespace {name}", timeout=30)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def healthz(url: str) -> int:
    """The liveness endpoint's HTTP status; 0 when it does not answer (not listening yet, or frozen)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # a loopback URL this test made
            return int(answer.status)
    except OSError:
        return 0


def jq_task(ref: str, query: str, **inputs: object) -> dict[str, object]:
    return {"name": ref, "taskReferenceName": ref, "type": "JSON_JQ_TRANSFORM",
            "inputParameters": {"queryExpression": query, **inputs}}


def test_a_never_ending_jq_fails_on_its_limit_while_other_namespaces_go_on(
        control_plane: ControlPlane, namespace: str, second_namespace: str, tmp_path: Path) -> None:
    port = free_port()
    liveness = f"http://127.0.0.1:{port}/healthz"
    operator = OperatorProcess(control_plane, namespace, tmp_path, "--namespace", second_namespace,
                               "--liveness", liveness, "--script-time-limit", str(STUCK_LIMIT_SECONDS),
                               "--script-workers", "2").start()
    try:
        stuck_ns = Cluster(control_plane, namespace, operator)
        other_ns = Cluster(control_plane, second_namespace, operator)
        stuck_ns.wait_until(lambda: healthz(liveness) == 200, "the operator's liveness endpoint", timeout=60)
        stuck_ns.apply(workflow("stuck", definition={"name": "stuck", "tasks": [
            jq_task("spin", "def f: f; f", x=1),
            {"name": "never", "taskReferenceName": "never", "type": "NOOP"},
        ]}))
        stuck_ns.wait_until(lambda: any(t.get("referenceTaskName") == "spin" and t.get("status") == "IN_PROGRESS"
                                        for t in stuck_ns.tasks("stuck")), "the stuck jq task to be evaluated")
        pid = operator.proc.pid if operator.proc else None

        other_ns.apply(taskdef("echo"))
        other_ns.apply(workflow("neighbour", input={"n": 20}, definition={"name": "neighbour", "tasks": [
            {"name": "echo", "taskReferenceName": "job", "inputParameters": {"n": "${workflow.input.n}"}},
            jq_task("double", ".n * 2", n="${job.output.n}"),
        ], "outputParameters": {"doubled": "${double.output.result}"}}))
        neighbour = other_ns.wait_phase("neighbour", timeout=STUCK_LIMIT_SECONDS * 3)
        # While the stuck evaluation still spins (its limit is far away), the operator serves everyone.
        assert stuck_ns.status("stuck")["phase"] == "RUNNING"
        assert healthz(liveness) == 200
        assert neighbour["phase"] == "COMPLETED", neighbour.get("reasonForIncompletion")
        assert neighbour["output"] == {"doubled": 40}

        stuck = stuck_ns.wait_phase("stuck", timeout=STUCK_LIMIT_SECONDS * 4)
        reason = f"task 'spin': jq: the evaluation exceeded its time limit of {STUCK_LIMIT_SECONDS} s"
        spin = next(t for t in stuck_ns.tasks("stuck") if t["referenceTaskName"] == "spin")
        assert (stuck["phase"], stuck["reasonForIncompletion"]) == (
            "FAILED", f"Task {spin['taskId']} failed with status: FAILED and reason: '{reason}'")
        assert spin["status"] == "FAILED"
        print(f"stuck jq: IN_PROGRESS for {spin['endTime'] - spin['startTime']} ms before it FAILED; neighbour: "
              f"{neighbour['endTime'] - neighbour['startTime']} ms start to end")  # figures for the closing note
        assert spin["outputData"] == {"error": f"jq: the evaluation exceeded its time limit of {STUCK_LIMIT_SECONDS} s"}
        assert any(e.get("reason") == "WorkflowFailed" for e in stuck_ns.events("stuck")), \
            json.dumps(stuck_ns.events("stuck"))[:2000]

        # Never restarted, never frozen: the same process, alive, answering.
        assert operator.starts == 1 and operator.alive() and operator.proc is not None and operator.proc.pid == pid
        assert healthz(liveness) == 200
        assert "Traceback" not in operator.logs()
    finally:
        operator.stop()
