"""The CLI's cluster calls through the operator's client, against a small API server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from kondukt.cli import cluster

WORKFLOWS = "/apis/kondukt.io/v1alpha1/namespaces/media/workflows"


class FakeApiServer(ThreadingHTTPServer):
    """Answers from ``routes``: (method, path) -> (status, body or list of watch events)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes: dict[tuple[str, str], tuple[int, Any]] = {}
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeApiServer

    def _answer(self) -> None:
        parsed = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        self.server.requests.append({
            "method": self.command, "path": parsed.path, "query": parse_qs(parsed.query),
            "authorization": self.headers.get("Authorization"), "content_type": self.headers.get("Content-Type"),
            "body": json.loads(self.rfile.read(length)) if length else None,
        })
        status, body = self.server.routes.get((self.command, parsed.path), (404, {"message": "no route"}))
        if isinstance(body, list):  # a watch: one JSON event per line, then the end of the stream
            data = b"".join(json.dumps(event).encode() + b"\n" for event in body)
        else:
            data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    srv = FakeApiServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(10)


@pytest.fixture
def api(server: FakeApiServer, tmp_path: Path) -> Iterator[cluster.WorkflowApi]:
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dev",
        "clusters": [{"name": "c", "cluster": {"server": server.url}}],
        "users": [{"name": "u", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u", "namespace": "media"}}],
    }))
    workflow_api = cluster.WorkflowApi.connect(cluster.Connection(kubeconfig=str(kubeconfig)))
    yield workflow_api
    workflow_api.close()


def wf(version: str, phase: str = "RUNNING") -> dict[str, Any]:
    return {"metadata": {"name": "wf", "namespace": "media", "resourceVersion": version}, "status": {"phase": phase}}


def test_reads_and_patches_go_through_with_the_kubeconfig_token(server: FakeApiServer, api: cluster.WorkflowApi) -> None:
    server.routes[("GET", f"{WORKFLOWS}/wf")] = (200, wf("7"))
    server.routes[("PATCH", f"{WORKFLOWS}/wf")] = (200, wf("8"))
    assert api.get_workflow("wf") == wf("7")
    assert api.merge_patch_workflow("wf", {"spec": {"suspend": True}}) == wf("8")
    get, patch = server.requests
    assert get["authorization"] == patch["authorization"] == "Bearer secret-token"
    assert (patch["content_type"], patch["body"]) == ("application/merge-patch+json", {"spec": {"suspend": True}})


def test_events_are_selected_by_the_workflow(server: FakeApiServer, api: cluster.WorkflowApi) -> None:
    server.routes[("GET", "/api/v1/namespaces/media/events")] = (200, {"items": [{"reason": "Started"}]})
    obj = {"kind": "Workflow", "metadata": {"name": "wf", "namespace": "media", "uid": "u-1"}}
    assert api.events_for(obj) == [{"reason": "Started"}]
    assert server.requests[0]["query"]["fieldSelector"] == [
        "involvedObject.name=wf,involvedObject.kind=Workflow,involvedObject.uid=u-1"
    ]


def test_not_found_names_the_workflow_and_the_namespace(server: FakeApiServer, api: cluster.WorkflowApi) -> None:
    server.routes[("GET", f"{WORKFLOWS}/gone")] = (
        404, {"kind": "Status", "message": 'workflows.kondukt.io "gone" not found', "details": {"name": "gone"}}
    )
    with pytest.raises(cluster.ClusterError, match=r'^workflow "gone" not found in namespace media$'):
        api.get_workflow("gone")


def test_a_watch_yields_changes_and_ends_quietly_on_410(server: FakeApiServer, api: cluster.WorkflowApi) -> None:
    server.routes[("GET", WORKFLOWS)] = (200, [
        {"type": "MODIFIED", "object": wf("8")},
        {"type": "MODIFIED", "object": wf("9", "COMPLETED")},
        {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}},
        {"type": "MODIFIED", "object": wf("10")},
    ])
    events = list(api.watch_workflow("wf", "7", 30))
    assert events == [("MODIFIED", wf("8")), ("MODIFIED", wf("9", "COMPLETED"))]
    query = server.requests[0]["query"]
    assert query["watch"] == ["1"] and query["resourceVersion"] == ["7"] and query["timeoutSeconds"] == ["30"]
    assert query["fieldSelector"] == ["metadata.name=wf"]


def test_a_refused_watch_is_explained(server: FakeApiServer, api: cluster.WorkflowApi) -> None:
    server.routes[("GET", WORKFLOWS)] = (403, {"message": 'User "bob" cannot watch resource "workflows"'})
    with pytest.raises(cluster.ClusterError, match=r'^forbidden: User "bob" cannot watch resource "workflows"$'):
        list(api.watch_workflow("wf", None, 5))
