"""The live workflows list (``GET /api/workflows/stream``) over real HTTP, against a small fake API server on
127.0.0.1 (``tests.unit.kube.loopback.serve``) that scripts the list and each watch: one watch per scope
shared by the pages, pages pushed as the rows change with each page's own filter, a watch resumed from its
resourceVersion, an expired one listed again, a refused one said on the page, the watch kept a while after the
last page leaves and then stopped, a refusal said before any event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kondukt.cli.ui import listwatch
from kondukt.cli.ui import server as ui_server
from kondukt.cli.ui.listwatch import Scope
from tests.unit.kube.loopback import serve

PATH = "/apis/kondukt.io/v1alpha1/namespaces/ns/workflows"
HOST = {"Host": "127.0.0.1"}


def wf(name: str, version: int, phase: str = "RUNNING", created: str = "2026-12-06T10:00:00Z") -> dict[str, Any]:
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": str(version),
                         "creationTimestamp": created},
            "spec": {}, "status": {"phase": phase}}


class FakeApiServer:
    """Lists answer ``items`` (or ``refuse``); each watch streams what the test puts into its queue, until END."""

    END = {"type": "END"}

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.refuse = False
        self.refuse_watches = 0  # the next N watches are answered 503
        self.queries: list[dict[str, str]] = []
        self.watches: list[asyncio.Queue[dict[str, Any]]] = []
        self.watch_started = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        if request.query.get("watch") != "1":
            if self.refuse:
                return web.json_response({"kind": "Status", "code": 403, "reason": "Forbidden", "message":
                                          'workflows.kondukt.io is forbidden: User "u" cannot list resource '
                                          '"workflows" in API group "kondukt.io" in the namespace "ns"'}, status=403)
            return web.json_response({"metadata": {"resourceVersion": "10"}, "items": self.items})
        if self.refuse_watches:
            self.refuse_watches -= 1
            return web.json_response({"kind": "Status", "code": 503, "reason": "ServiceUnavailable",
                                      "message": "etcd is unhappy"}, status=503)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.watches.append(queue)
        self.watch_started.set()
        response = web.StreamResponse()
        await response.prepare(request)
        while (event := await queue.get()) is not self.END:
            await response.write(json.dumps(event).encode() + b"\n")
        return response

    async def next_watch(self, count: int) -> asyncio.Queue[dict[str, Any]]:
        while len(self.watches) < count:
            self.watch_started.clear()
            await asyncio.wait_for(self.watch_started.wait(), 10)
        return self.watches[count - 1]


@pytest.fixture
async def setup(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeApiServer, ui_server.UiServer,
                                                                         TestClient[Any, Any]]]:
    monkeypatch.setattr(ui_server, "PUSH_INTERVAL_SECONDS", 0)
    monkeypatch.setattr(ui_server, "WATCH_RETRY_SECONDS", 0.05)
    monkeypatch.setattr(listwatch, "LINGER_SECONDS", 30.0)  # tests shorten it where they wait for it
    fake = FakeApiServer()
    api = web.Application()
    api.router.add_get(PATH, fake.handle)
    async with serve(api) as kube:
        ui = ui_server.UiServer(kube, ui_server.UiSettings(namespace="ns"))
        try:
            async with TestClient(TestServer(ui.app(), host="127.0.0.1")) as client:
                yield fake, ui, client
        finally:
            for watch in fake.watches:  # end the stand-in's open watches: its server then stops at once
                watch.put_nowait(FakeApiServer.END)


class Events:
    """The Server-Sent Events of one stream response, read one at a time."""

    def __init__(self, response: Any) -> None:
        self.response = response

    async def next(self) -> tuple[str, Any]:
        event, data = "", ""
        async with asyncio.timeout(10):
            while True:
                line = (await self.response.content.readline()).decode()
                assert line, "the stream ended"
                if line.startswith("event: "):
                    event = line[7:].strip()
                elif line.startswith("data: "):
                    data = line[6:].strip()
                elif line == "\n" and event:
                    return event, json.loads(data)


def names(page: dict[str, Any]) -> list[tuple[str, str]]:
    return [(row["name"], row["phase"]) for row in page["rows"]]


async def page_of(events: Events) -> dict[str, Any]:
    event, data = await events.next()
    assert event == "page", data
    return dict(data)


async def test_pages_share_one_watch_and_each_gets_its_own_filtered_page(
    setup: tuple[FakeApiServer, ui_server.UiServer, TestClient[Any, Any]]
) -> None:
    fake, ui, client = setup
    fake.items = [wf("alpha", 5, "COMPLETED", "2026-12-06T09:00:00Z")]
    everything = await client.get("/api/workflows/stream?namespace=ns", headers=HOST)
    assert everything.status == 200 and everything.headers["Content-Type"] == "text/event-stream"
    failed = await client.get("/api/workflows/stream?namespace=ns&phase=FAILED", headers=HOST)
    all_events, failed_events = Events(everything), Events(failed)
    first = await page_of(all_events)
    assert names(first) == [("alpha", "COMPLETED")] and first["total"] == 1
    assert names(await page_of(failed_events)) == []
    watch = await fake.next_watch(1)
    # One list and one watch for both pages, from the list's resourceVersion.
    assert [q for q in fake.queries if q.get("watch") != "1"] == [{}]
    assert fake.queries[-1]["resourceVersion"] == "10" and fake.queries[-1]["allowWatchBookmarks"] == "true"
    assert len(ui.lists.watches) == 1

    # A new workflow: newest first on the unfiltered page; the FAILED page gets only the new counts.
    await watch.put({"type": "ADDED", "object": wf("beta", 11)})
    page = await page_of(all_events)
    assert names(page) == [("beta", "RUNNING"), ("alpha", "COMPLETED")]
    assert page["phaseCounts"] == {"COMPLETED": 1, "RUNNING": 1}
    page = await page_of(failed_events)
    assert names(page) == [] and page["total"] == 2 and page["phaseCounts"] == {"COMPLETED": 1, "RUNNING": 1}
    # Its phase changes: now it is on both pages (the FAILED page's next push is this one).
    await watch.put({"type": "MODIFIED", "object": wf("beta", 12, "FAILED")})
    assert names(await page_of(all_events)) == [("beta", "FAILED"), ("alpha", "COMPLETED")]
    assert names(await page_of(failed_events)) == [("beta", "FAILED")]
    # A bookmark moves the resourceVersion only; a deletion removes the row.
    await watch.put({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}})
    await watch.put({"type": "DELETED", "object": wf("alpha", 21, "COMPLETED")})
    assert names(await page_of(all_events)) == [("beta", "FAILED")]
    assert (await page_of(failed_events))["phaseCounts"] == {"FAILED": 1}

    # The watch ends (its timeoutSeconds): the next one resumes from the last resourceVersion, no new list.
    await watch.put(FakeApiServer.END)
    watch = await fake.next_watch(2)
    assert fake.queries[-1]["resourceVersion"] == "21"
    # Expired (410 Gone): listed again, and the pages get what the new list says.
    fake.items = [wf("gamma", 30, "COMPLETED", "2026-12-06T11:00:00Z")]
    await watch.put({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}})
    assert names(await page_of(all_events)) == [("gamma", "COMPLETED")]
    assert (await page_of(failed_events))["phaseCounts"] == {"COMPLETED": 1}
    assert len([q for q in fake.queries if q.get("watch") != "1"]) == 2
    await fake.next_watch(3)
    assert fake.queries[-1]["resourceVersion"] == "10"

    # Both pages leave; one comes back with another filter before the watch's linger ends: the same watch,
    # its rows current, no new list.
    everything.close()
    failed.close()
    async with asyncio.timeout(10):
        while ui.lists.watches[Scope("ns")].subscribers:
            await asyncio.sleep(0.01)
    again = await client.get("/api/workflows/stream?namespace=ns&q=gam", headers=HOST)
    assert names(await page_of(Events(again))) == [("gamma", "COMPLETED")]
    assert len([q for q in fake.queries if q.get("watch") != "1"]) == 2
    # The linger ends after the last page leaves: the watch stops.
    listwatch.LINGER_SECONDS = 0.05
    again.close()
    async with asyncio.timeout(10):
        while ui.lists.watches:
            await asyncio.sleep(0.01)


async def test_a_refused_watch_is_said_on_the_page_then_the_list_is_read_again(
    setup: tuple[FakeApiServer, ui_server.UiServer, TestClient[Any, Any]]
) -> None:
    fake, _, client = setup
    fake.items = [wf("alpha", 5)]
    response = await client.get("/api/workflows/stream?namespace=ns", headers=HOST)
    events = Events(response)
    assert names(await page_of(events)) == [("alpha", "RUNNING")]
    watch = await fake.next_watch(1)
    fake.refuse_watches = 1
    fake.items = [wf("alpha", 40, "COMPLETED")]
    await watch.put(FakeApiServer.END)
    event, data = await events.next()
    assert event == "problem" and "etcd is unhappy" in data["error"], data
    assert names(await page_of(events)) == [("alpha", "COMPLETED")]  # listed again after the refusal
    assert len([q for q in fake.queries if q.get("watch") != "1"]) == 2
    response.close()


async def test_a_refused_list_is_said_before_any_event(
    setup: tuple[FakeApiServer, ui_server.UiServer, TestClient[Any, Any]]
) -> None:
    fake, ui, client = setup
    fake.refuse = True
    response = await client.get("/api/workflows/stream?namespace=ns", headers=HOST)
    assert response.status == 403
    body = await response.json()
    assert body["error"].startswith('forbidden: workflows.kondukt.io is forbidden: User "u" cannot list'), body
    assert ui.lists.watches[Scope("ns")].subscribers == 0  # lingers, its own retries bounded by the linger
    bad = await client.get("/api/workflows/stream?namespace=ns&limit=0", headers=HOST)
    assert bad.status == 400 and (await bad.json())["error"] == "limit: must be between 1 and 500"


async def test_too_many_different_lists_are_refused(
    setup: tuple[FakeApiServer, ui_server.UiServer, TestClient[Any, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ui, client = setup
    monkeypatch.setattr(listwatch, "MAX_SCOPES", 1)
    first = await client.get("/api/workflows/stream?namespace=ns", headers=HOST)
    assert first.status == 200
    other = await client.get("/api/workflows/stream?namespace=ns&label=app%3Dx", headers=HOST)
    assert other.status == 503
    assert (await other.json())["error"].startswith("this server already watches 1 different workflow lists")
    same = await client.get("/api/workflows/stream?namespace=ns&q=x", headers=HOST)  # same scope: shared
    assert same.status == 200
    first.close()
    same.close()
    async with asyncio.timeout(10):
        while ui.lists.watches[Scope("ns")].subscribers:
            await asyncio.sleep(0.01)
    # A lingering watch with no page gives way to a scope a page asks for.
    other = await client.get("/api/workflows/stream?namespace=ns&label=app%3Dx", headers=HOST)
    assert other.status == 200
    assert list(ui.lists.watches) == [Scope("ns", "app=x")]
    other.close()
