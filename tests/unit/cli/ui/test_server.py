"""The local server's guards, over real HTTP on loopback (aiohttp's test server): the Host check against DNS
rebinding, the token and Origin checks against other pages' requests, the headers every answer carries.
None of these requests reaches a Kubernetes API server (the client points at a closed port)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from kubernetes_asyncio.client import Configuration

from kondukt.cli.ui import server as ui_server
from kondukt.kube.kubeapi import KubeClient

REPO = Path(__file__).resolve().parents[4]


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    configuration = Configuration()
    configuration.host = "https://127.0.0.1:9"  # discard port: nothing answers
    settings = ui_server.UiSettings(namespace="demo", token="secret-token", allowed_hosts=frozenset({"ui.example"}))
    app = ui_server.UiServer(KubeClient(configuration, timeout=2), settings).app()
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def test_the_page_carries_its_token_and_forbids_framing(client: TestClient[Any, Any]) -> None:
    ui_server.check_static_files()  # built by `make setup` (hack/ui/build.sh); says so when they are missing
    response = await client.get("/")
    assert response.status == 200
    page = await response.text()
    found = re.search(r'<meta name="kondukt-config" content="([^"]*)">', page)
    assert found is not None
    assert json.loads(html.unescape(found.group(1))) == {
        "token": "secret-token", "namespace": "demo", "allNamespaces": False, "readOnly": False, "archive": False}
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "Access-Control-Allow-Origin" not in response.headers
    script = await client.get("/static/app.js")
    assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert (await client.get("/static/../server.py")).status == 404


@pytest.mark.parametrize(
    ("host", "status"),
    [
        pytest.param("evil.example", 421, id="rebinding"),
        pytest.param("evil.example:8642", 421, id="rebinding-with-port"),
        pytest.param("127.0.0.1.evil.example", 421, id="lookalike"),
        pytest.param("localhost:1234", 200, id="localhost-any-port"),
        pytest.param("[::1]:8642", 200, id="ipv6-loopback"),
        pytest.param("ui.example", 200, id="allowed-host"),
    ],
)
async def test_only_this_servers_own_host_names_are_served(
    client: TestClient[Any, Any], host: str, status: int
) -> None:
    response = await client.get("/api/info", headers={"Host": host})
    assert response.status == status
    if status == 421:
        assert "is not this server's" in (await response.json())["error"]


async def test_an_operation_needs_the_pages_token_and_its_origin(client: TestClient[Any, Any]) -> None:
    path = "/api/namespaces/demo/workflows/w/operations"
    refused = await client.post(path, json={"op": "terminate"})
    assert refused.status == 403
    assert (await refused.json())["error"] == "missing or wrong X-Kondukt-Token header: reload the page"
    wrong = await client.post(path, json={"op": "terminate"}, headers={"X-Kondukt-Token": "guess"})
    assert wrong.status == 403
    foreign = await client.post(path, json={"op": "terminate"},
                                headers={"X-Kondukt-Token": "secret-token", "Origin": "http://evil.example"})
    assert foreign.status == 403
    assert (await foreign.json())["error"] == "requests from http://evil.example are not accepted"
    # Past the guards, the request itself is checked before anything is sent to the cluster.
    own_origin = f"http://127.0.0.1:{client.port}"
    bad = await client.post(path, json={"op": "explode"},
                            headers={"X-Kondukt-Token": "secret-token", "Origin": own_origin})
    assert bad.status == 400
    assert (await bad.json())["error"].startswith("op: expected one of retry, restart, rerun, skip, complete")


async def test_a_bad_list_query_is_refused_before_the_cluster_is_asked(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/workflows?phase=DONE")
    assert response.status == 400
    assert (await response.json())["error"].startswith("phase: unknown phase DONE")


async def test_an_unreachable_cluster_is_said_as_the_cli_says_it(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/workflows")
    assert response.status == 502
    assert (await response.json())["error"].startswith("cannot reach the Kubernetes API server at https://127.0.0.1:9")


async def test_read_only_mode_sends_no_operation_without_the_users_token() -> None:
    configuration = Configuration()
    configuration.host = "https://127.0.0.1:9"
    settings = ui_server.UiSettings(namespace="demo", token="t", read_only=True)
    app = ui_server.UiServer(KubeClient(configuration, timeout=2), settings).app()
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        response = await test_client.post("/api/namespaces/demo/workflows/w/operations", json={"op": "retry"},
                                          headers={"X-Kondukt-Token": "t"})
        assert response.status == 401
        assert "read-only" in (await response.json())["error"]


@pytest.mark.parametrize(
    ("header", "name"),
    [("localhost:8642", "localhost"), ("127.0.0.1", "127.0.0.1"), ("[::1]:80", "[::1]"), ("UI.Example", "ui.example")],
)
def test_host_name_drops_the_port(header: str, name: str) -> None:
    assert ui_server.host_name(header) == name


def test_the_package_ships_the_built_front_end(tmp_path: Path) -> None:
    """The static files (built by `make setup`, not in git) are package data: setuptools' build_py, which
    collects what a wheel of kondukt holds, copies them, so the operator image's `kondukt ui` (the chart's
    ui.enabled) serves the same pages."""
    ui_server.check_static_files()
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "operator", source / "operator",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py",
                    "--build-lib", str(tmp_path / "lib")], cwd=source, check=True, timeout=240,
                   capture_output=True)
    shipped = {p.name for p in (tmp_path / "lib" / "kondukt" / "cli" / "ui" / "static").iterdir()}
    assert {"index.html", "app.js", "app.css"} <= shipped
