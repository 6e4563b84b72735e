"""System tasks the operator carries out itself: HTTP (against a server on 127.0.0.1), START_WORKFLOW, and
a failed workflow's failureWorkflow — each a new, independent Workflow resource.

The operator here allows 127.0.0.1 (``--egress-allow``): by default its egress policy refuses loopback
(see test_operator_security.py for the refusal).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_support import (  # noqa: F401 (fixtures)
    Cluster,
    OperatorProcess,
    cluster_fixture,
    taskdef,
    workflow,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(name="operator")
def operator_allowing_loopback(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(control_plane, namespace, tmp_path, "--egress-allow", "127.0.0.1").start()
    try:
        yield process
    finally:
        process.stop()


class _Handler(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, bytes]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).requests.append((self.command, self.path, body))
        if self.path.startswith("/ok"):
            payload = json.dumps({"greeting": "hi", "echo": json.loads(body) if body else None}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            payload = b"the server is unhappy"
            self.send_response(503)
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        return


@pytest.fixture
def http_server() -> Iterator[str]:
    _Handler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def http_task(ref: str, uri: str, method: str = "GET", body: object = None) -> dict[str, object]:
    request: dict[str, object] = {"uri": uri, "method": method, "connectionTimeOut": 2000, "readTimeOut": 5000}
    if body is not None:
        request["body"] = body
    return {"name": ref, "taskReferenceName": ref, "type": "HTTP", "inputParameters": {"http_request": request}}


def test_http_tasks_are_performed_by_the_operator(cluster: Cluster, http_server: str) -> None:
    definition = {"name": "calls", "tasks": [
        http_task("hello", f"{http_server}/ok", "POST", {"who": "${workflow.input.who}"}),
    ], "outputParameters": {"said": "${hello.output.response.body.greeting}",
                            "code": "${hello.output.response.statusCode}",
                            "echo": "${hello.output.response.body.echo}"}}
    cluster.apply(workflow("calls", definition=definition, input={"who": "kondukt"}))
    status = cluster.wait_phase("calls")
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    assert status["output"] == {"said": "hi", "code": 200, "echo": {"who": "kondukt"}}
    assert [(method, path) for method, path, _ in _Handler.requests] == [("POST", "/ok")]
    assert cluster.jobs() == [], "an HTTP task runs in the operator, not as a Job"


def test_a_failing_http_call_fails_the_task_with_the_status(cluster: Cluster, http_server: str) -> None:
    cluster.apply(workflow("unhappy", definition={"name": "unhappy", "tasks": [http_task("call", f"{http_server}/no")]}))
    status = cluster.wait_phase("unhappy")
    assert status["phase"] == "FAILED"
    task = cluster.tasks("unhappy")[0]
    assert "503" in task["reasonForIncompletion"]
    assert task["outputData"]["response"]["body"] == "the server is unhappy"


def test_start_workflow_and_failure_workflow_create_independent_workflows(cluster: Cluster) -> None:
    cluster.apply(taskdef("echo"), taskdef("broken", annotations={"kwok.kondukt.io/fail": "true"}))
    cluster.apply(
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "side-job"},
         "spec": {"name": "side_job", "tasks": [
             {"name": "echo", "taskReferenceName": "side", "inputParameters": {"from": "${workflow.input.from}"}}]}},
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "cleanup"},
         "spec": {"name": "cleanup", "tasks": [
             {"name": "echo", "taskReferenceName": "clean",
              "inputParameters": {"failed": "${workflow.input.workflowId}", "why": "${workflow.input.reason}"}}]}},
    )
    definition = {"name": "starter", "failureWorkflow": "cleanup", "tasks": [
        {"name": "start", "taskReferenceName": "start", "type": "START_WORKFLOW",
         "inputParameters": {"startWorkflow": {"name": "side_job", "input": {"from": "starter"}}}},
        {"name": "broken", "taskReferenceName": "breaks"}]}
    cluster.apply(workflow("starter", definition=definition))
    status = cluster.wait_phase("starter")
    assert status["phase"] == "FAILED"
    started_id = cluster.tasks("starter")[0]["outputData"]["workflowId"]
    others = {w["metadata"]["uid"]: w for w in cluster.list("workflows") if w["metadata"]["name"] != "starter"}
    assert started_id in others
    for other in others.values():
        assert "ownerReferences" not in other["metadata"], "started workflows are independent"
        assert cluster.wait_phase(other["metadata"]["name"])["phase"] == "COMPLETED"
    cleanup = next(w for w in others.values() if w["spec"]["workflowDefRef"]["name"] == "cleanup")
    assert cleanup["spec"]["input"]["workflowId"] == status["workflowId"]
    cleanup_task = cluster.tasks(cleanup["metadata"]["name"])[0]
    assert cleanup_task["outputData"] == {"failed": status["workflowId"], "why": status["reasonForIncompletion"]}
    assert any(e["reason"] == "FailureWorkflowStarted" for e in cluster.events("starter"))
