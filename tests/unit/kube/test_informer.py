"""The Jobs/pods informer against a small fake API server on 127.0.0.1: list, watch, 410, relist."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from kondukt.kube import cache
from kondukt.kube import resources as r
from kondukt.kube.informer import IndexStore, Informer
from kondukt.kube.kubeapi import (
    MAX_RETRY_AFTER_SECONDS,
    KubeClient,
    NotFound,
    TransientApiError,
    retry_after_seconds,
)
from tests.unit.kube.loopback import serve


def pod(name: str, version: int, state: dict[str, Any] | None = None, phase: str = "Pending") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": str(version),
                     "labels": {r.LABEL_WORKFLOW_UID: "wf-uid", "batch.kubernetes.io/job-name": f"job-{name}"},
                     "annotations": {r.ANNOTATION_TASK_ID: f"task-{name}", r.ANNOTATION_WORKFLOW: "wf",
                                     r.ANNOTATION_TASK_DEF: "echo"}},
        "status": {"phase": phase, "containerStatuses": [{"name": "worker", "state": state or {"waiting": {}}}]},
    }


class FakeServer:
    """Serves scripted list results and watch streams, and records the query of each request."""

    def __init__(self) -> None:
        self.lists: list[list[dict[str, Any]]] = []
        self.watches: list[list[dict[str, Any]] | str] = []  # "FAIL": answer that watch 503
        self.queries: list[dict[str, str]] = []
        self.closing = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        if request.query.get("watch") != "1":
            items = self.lists.pop(0) if self.lists else []
            return web.json_response({"metadata": {"resourceVersion": "100"}, "items": items})
        script = self.watches.pop(0) if self.watches else []
        if script == "FAIL":  # the server in trouble: refuse this watch
            return web.json_response({"kind": "Status", "code": 503, "message": "try later"}, status=503)
        response = web.StreamResponse()
        await response.prepare(request)
        for event in script:
            line = json.dumps(event).encode() + b"\n"
            await response.write(line[:10])  # split lines across chunks
            await response.write(line[10:])
        if not self.watches:
            await self.closing.wait()  # then hang, like an idle watch
        return response


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeServer, KubeClient]]:
    fake = FakeServer()
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/pods", fake.handle)
    async with serve(app) as client:
        try:
            yield fake, client
        finally:
            fake.closing.set()


async def wait_until(condition: Any, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_list_watch_gone_and_relist(server: tuple[FakeServer, KubeClient]) -> None:
    fake, client = server
    terminated = {"terminated": {"exitCode": 0, "message": "{}"}}
    fake.lists = [[pod("a", 1), pod("b", 2)], [pod("a", 5, terminated, "Succeeded"), pod("c", 6)]]
    fake.watches = [
        [{"type": "MODIFIED", "object": pod("a", 3, {"running": {}}, "Running")},
         {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "4"}}},
         {"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}],
    ]
    changes: list[tuple[str, str]] = []
    store: IndexStore[cache.PodRecord] = IndexStore()

    def on_change(kind: str, now: Any, before: Any) -> None:
        record = next(iter(now.values()), None) or next(iter(before.values()))
        changes.append((kind, f"{record.name}:{record.phase}"))

    restarts: list[str] = []
    informer = Informer(client, "/api/v1/namespaces/ns/pods", label_selector=r.LABEL_WORKFLOW_UID,
                        index=cache.index_pod, store=store, on_change=on_change, what="pods",
                        on_restart=restarts.append)
    informer.start()
    try:
        await asyncio.wait_for(informer.synced.wait(), 60)
        await wait_until(lambda: ("ADDED", "c:Pending") in changes)
    finally:
        await informer.stop()
    assert changes == [
        ("ADDED", "a:Pending"), ("ADDED", "b:Pending"),  # the first list
        ("MODIFIED", "a:Running"),  # the watch
        ("MODIFIED", "a:Succeeded"), ("ADDED", "c:Pending"), ("DELETED", "b:Pending"),  # the relist after 410
    ]
    assert {p.name for p in store[("wf", "ns", "wf-uid")]} == {"a", "c"}
    assert [p.terminated for p in store[("job", "ns", "job-a")]] == [True]
    assert ("job", "ns", "job-b") not in store
    assert all(q["labelSelector"] == r.LABEL_WORKFLOW_UID for q in fake.queries)
    assert fake.queries[1]["resourceVersion"] == "100" and fake.queries[1]["watch"] == "1"
    assert restarts == ["expired"], "the 410 was reported (kondukt_watch_restarts_total)"


def test_index_store_moves_an_object_between_keys() -> None:
    store: IndexStore[str] = IndexStore()
    store.replace("u1", {"k1": "a", "k2": "a"})
    store.replace("u2", {"k1": "b"})
    assert sorted(store["k1"]) == ["a", "b"] and list(store["k2"]) == ["a"]
    store.replace("u1", {"k3": "a2"})
    assert list(store["k1"]) == ["b"] and "k2" not in store and list(store["k3"]) == ["a2"]
    assert store.discard("u2") == {"k1": "b"} and "k1" not in store and len(store) == 1


async def test_a_failed_watch_resumes_from_the_last_version_without_listing_again(
        server: tuple[FakeServer, KubeClient]) -> None:
    fake, client = server
    fake.lists = [[pod("a", 1)]]
    fake.watches = [[{"type": "MODIFIED", "object": pod("a", 3, {"running": {}}, "Running")}], "FAIL",
                    [{"type": "MODIFIED", "object": pod("a", 7, {"terminated": {"exitCode": 0}}, "Succeeded")}]]
    store: IndexStore[cache.PodRecord] = IndexStore()
    restarts: list[str] = []
    informer = Informer(client, "/api/v1/namespaces/ns/pods", label_selector=r.LABEL_WORKFLOW_UID,
                        index=cache.index_pod, store=store, on_change=lambda *_: None, what="pods",
                        on_restart=restarts.append)
    informer.start()
    try:
        await wait_until(lambda: ("job", "ns", "job-a") in store
                         and [p.phase for p in store[("job", "ns", "job-a")]] == ["Succeeded"])
    finally:
        await informer.stop()
    watched_from = [q.get("resourceVersion") for q in fake.queries if q.get("watch") == "1"]
    assert watched_from[:3] == ["100", "3", "3"], "resumed from the last version seen, before and after the 503"
    assert sum(q.get("watch") != "1" for q in fake.queries) == 1, "listed once"
    assert restarts == ["error"]


async def test_throttling_429_carries_retry_after_and_is_reported() -> None:
    """A 429 with Retry-After comes out as a TransientApiError that carries the wait, and is counted."""
    async def throttled(request: web.Request) -> web.Response:
        return web.json_response({"kind": "Status", "code": 429, "reason": "TooManyRequests",
                                  "message": "slow down"}, status=429, headers={"Retry-After": "3"})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/pods", throttled)
    seen: list[TransientApiError] = []
    async with serve(app) as client:
        client.on_error = seen.append
        with pytest.raises(TransientApiError) as raised:
            await client.request("GET", "/api/v1/namespaces/ns/pods", what="pods")
        with pytest.raises(NotFound):  # an answer, not a fault: not reported
            await client.request("GET", "/api/v1/namespaces/ns/nothing", what="nothing")
    assert raised.value.status == 429 and raised.value.retry_after == 3.0
    assert [e.status for e in seen] == [429]


@pytest.mark.parametrize(("header", "seconds"), [(None, None), ("", None), ("2", 2.0), (" 1.5 ", 1.5),
                                                 ("-1", None), ("nan", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None),
                                                 ("86400", MAX_RETRY_AFTER_SECONDS)])
def test_retry_after_header_is_read_in_seconds_and_capped(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds
