"""KubeClient's requests over real HTTP, against the loopback API stand-in (``tests.unit.kube.loopback``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kondukt.kube.kubeapi import METADATA_LIST
from tests.unit.kube.loopback import serve


async def test_names_are_listed_metadata_only_in_pages_with_the_label_selector() -> None:
    """What a big fork's lagging cache is checked with: the API server's paging (limit / continue) followed to the
    end, one small metadata-only page at a time."""
    names = [f"job-{i}" for i in range(7)]
    asked: list[dict[str, Any]] = []

    async def jobs(request: web.Request) -> web.Response:
        asked.append({"accept": request.headers.get("Accept"), **request.query})
        start = int(request.query.get("continue", "0"))
        end = start + int(request.query["limit"])
        page = [{"metadata": {"name": name}} for name in names[start:end]]
        return web.json_response({"kind": "PartialObjectMetadataList", "items": page,
                                  "metadata": {"continue": str(end)} if end < len(names) else {}})

    app = web.Application()
    app.router.add_get("/apis/batch/v1/namespaces/ns/jobs", jobs)
    async with serve(app) as client:
        found = await client.list_names("/apis/batch/v1/namespaces/ns/jobs", "jobs", label_selector="a=b", page=3)
    assert found == set(names)
    assert [(a.get("continue"), a["limit"], a["labelSelector"]) for a in asked] == [
        (None, "3", "a=b"), ("3", "3", "a=b"), ("6", "3", "a=b")]
    assert all(a["accept"] == METADATA_LIST for a in asked)
    assert METADATA_LIST.startswith("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io")
