"""A loopback TLS proxy between the operator and the API server that misbehaves on demand (test code).

The fault tests (test_operator_faults.py) point the operator's kubeconfig at this proxy instead of the API
server. It terminates TLS with the API server's own certificate (the operator trusts the cluster's CA), opens
a TLS connection to the real API server for every client connection and relays bytes both ways, except when
told to:

- :meth:`FaultProxy.cut` aborts every open connection (watches and keep-alive connections alike): what a
  load balancer or a network blip does;
- :meth:`FaultProxy.throttle` answers the first request of the next ``n`` connections with ``429 Too Many
  Requests`` and a ``Retry-After``, as API Priority and Fairness does, and cuts the open connections so that
  the clients must come back through it;
- :attr:`FaultProxy.latency` delays every chunk each way (a slow API server);
- :attr:`FaultProxy.upstream_wait`: while the API server is down, hold a new connection up to this many
  seconds until it is back (as a load balancer queues), so that a client's next request — a watch resumed
  from its last resourceVersion — reaches the *restarted* API server.

It listens on 127.0.0.1 only and talks only to the API server on 127.0.0.1. Every loop ends when its
connection does; :meth:`FaultProxy.stop` closes everything and joins the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_HEAD_LIMIT = 64 * 1024
_CHUNK = 64 * 1024


class FaultProxy:
    def __init__(self, upstream_port: int, pki: Path) -> None:
        self.upstream_port = upstream_port
        self._server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_ssl.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
        self._client_ssl = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.latency = 0.0
        self.upstream_wait = 0.0
        self.connections = 0  # accepted
        self.cuts = 0  # connections aborted by cut()
        self.throttled = 0  # requests answered 429
        self._throttle_left = 0
        self._retry_after = 1
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    # ------------------------------------------------------------------------------ control (any thread)
    def start(self) -> FaultProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._server_ssl))
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def cut(self) -> int:
        """Abort every open connection now; returns how many."""
        return self._call(self._cut())

    def throttle(self, requests: int, retry_after: int = 1) -> None:
        """Answer the next ``requests`` connections' first request with 429 + Retry-After; cut the open ones."""
        self._retry_after = retry_after
        self._throttle_left = requests
        self.cut()

    @property
    def throttling(self) -> bool:
        return self._throttle_left > 0

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _cut(self) -> int:
        writers = list(self._open)
        for writer in writers:
            writer.transport.abort()
        self._open.difference_update(writers)
        self.cuts += len(writers)
        return len(writers)

    # ------------------------------------------------------------------------------ relaying
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            if self._throttle_left > 0:
                self._throttle_left -= 1  # taken before any await: exactly `requests` answers
                await self._answer_429(reader, writer)
                return
            up_reader, upstream = await self._connect_upstream()
            self._open.add(upstream)
            await asyncio.gather(self._pipe(reader, upstream), self._pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self._open.discard(w)
                    w.transport.abort()

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        deadline = asyncio.get_running_loop().time() + self.upstream_wait
        while True:
            try:
                return await asyncio.open_connection("127.0.0.1", self.upstream_port, ssl=self._client_ssl,
                                                     server_hostname="127.0.0.1")
            except OSError:
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                await asyncio.sleep(0.2)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(_CHUNK):
                if self.latency:
                    await asyncio.sleep(self.latency)
                sink.write(chunk)
                await sink.drain()
        except BaseException:
            sink.transport.abort()  # one side broke: so does the other (no half-open connections)
            raise
        sink.close()  # one side ended cleanly (e.g. a server shutting down): end the other cleanly too

    async def _answer_429(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        self.throttled += 1
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429,
                           "reason": "TooManyRequests",
                           "message": "Too many requests, please try again later."}).encode()
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
                     b"Retry-After: %d\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (self._retry_after, len(body), body))
        with contextlib.suppress(OSError):
            await writer.drain()
