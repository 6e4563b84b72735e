"""An API server stand-in on 127.0.0.1 for the tests of the client code (kubeapi, informer, leader): a real
aiohttp server on a free loopback port and a real KubeClient pointed at it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from kubernetes_asyncio.client import Configuration

from kondukt.kube.kubeapi import KubeClient


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[KubeClient]:
    """Serve ``app`` on 127.0.0.1 and yield a KubeClient for it; both are closed on exit."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    configuration = Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    client = KubeClient(configuration)
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()
