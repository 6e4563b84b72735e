"""The web UI's archive routes against a real PostgreSQL (tests/postgres.py): the list with the filters of
``kondukt get --archived``, one archived run as the workflow page shows a live one, bad filters refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from kubernetes_asyncio.client import Configuration

from kondukt.archive.store import ArchiveStore
from kondukt.cli.ui import server as ui_server
from kondukt.kube.kubeapi import KubeClient
from tests.unit.cli.test_archived import archived


@pytest.fixture
async def client(archive_dsn: str) -> AsyncIterator[TestClient[Any, Any]]:
    store = ArchiveStore(archive_dsn)
    await store.archive(archived("uid-a", "nightly", "COMPLETED", 0, labels={"team": "a"}))
    await store.archive(archived("uid-b", "nightly", "FAILED", 10, labels={"team": "b"}))
    await store.archive(archived("uid-c", "adhoc", "COMPLETED", 20, namespace="team-b"))
    await store.close()
    configuration = Configuration()
    configuration.host = "https://127.0.0.1:9"  # the archive pages never ask the cluster
    settings = ui_server.UiSettings(namespace="team-a", token="t", archive_dsn=archive_dsn)
    app = ui_server.UiServer(KubeClient(configuration, timeout=2), settings).app()
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def uids(client: TestClient[Any, Any], query: str) -> list[str]:
    response = await client.get(f"/api/archive?{query}")
    assert response.status == 200, await response.text()
    return [row["uid"] for row in (await response.json())["rows"]]


async def test_the_archive_is_listed_newest_first_with_the_clis_filters(client: TestClient[Any, Any]) -> None:
    assert await uids(client, "") == ["uid-b", "uid-a"]  # the default namespace, team-a
    assert await uids(client, "all=1") == ["uid-c", "uid-b", "uid-a"]
    assert await uids(client, "all=1&phase=FAILED") == ["uid-b"]
    assert await uids(client, "namespace=team-a&label=team%3Da") == ["uid-a"]
    row = (await (await client.get("/api/archive?namespace=team-b")).json())["rows"][0]
    assert (row["name"], row["phase"], row["definition"], row["finished"]) == (
        "adhoc", "COMPLETED", "pipe v2", "2026-12-06T12:20:00Z")


async def test_an_archived_run_is_shown_like_a_live_one_without_operations(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/archive/uid-b")
    assert response.status == 200
    view = await response.json()
    assert (view["name"], view["phase"], view["operations"], view["taskOperations"]) == ("nightly", "FAILED", [], [])
    assert view["archived"]["uid"] == "uid-b"
    statuses = {n["ref"]: n["status"] for n in view["graph"]["nodes"] if n["ref"]}
    assert statuses == {"first": "COMPLETED", "second": "FAILED"}
    attempt = await (await client.get("/api/archive/uid-b/attempts/uid-b-2")).json()
    assert (attempt["reason"], attempt["status"]) == ("boom", "FAILED")
    missing = await client.get("/api/archive/uid-zzz")
    assert missing.status == 404 and (await missing.json())["error"] == "no archived workflow with uid uid-zzz"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param("phase=RUNNING", "phase: RUNNING is not a phase of a finished workflow", id="phase"),
        pytest.param("since=yesterday", "since yesterday: expected a duration", id="since"),
        pytest.param("label=a%3D%3D%3Db", "the workflow archive: label selector", id="selector"),
    ],
)
async def test_bad_archive_filters_are_refused_naming_the_filter(
    client: TestClient[Any, Any], query: str, message: str
) -> None:
    response = await client.get(f"/api/archive?{query}")
    assert response.status == 400
    assert (await response.json())["error"].startswith(message)


async def test_without_an_archive_the_page_says_how_to_get_one() -> None:
    configuration = Configuration()
    configuration.host = "https://127.0.0.1:9"
    app = ui_server.UiServer(KubeClient(configuration, timeout=2), ui_server.UiSettings(namespace="x")).app()
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        response = await test_client.get("/api/archive")
        assert response.status == 404
        assert (await response.json())["error"].startswith("no workflow archive: start `kondukt ui --archive-dsn DSN`")
