"""The drivers' HTTP task under the egress policy: real aiohttp requests to a recording server on
127.0.0.1 (refused by default: it never sees them; allowed through the allowlist: it does), and the
resolver's check given fake answers (no connection at all)."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from kondukt.driver.http import (
    DEFAULT_CONNECTION_TIMEOUT_MS,
    DEFAULT_READ_TIMEOUT_MS,
    DEFAULT_TIMEOUT_SECONDS,
    MAX_RESPONSE_BYTES,
    CheckedResolver,
    checked_session,
    perform_http_task,
    request_timeout,
)
from kondukt.engine.models import TaskStatus
from kondukt_workers.egress import EgressPolicy, EgressRefused
from tests.loopback_http import recording_server


class FakeResolver(AbstractResolver):
    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [{"hostname": host, "host": self.answers[host], "port": port, "family": family,
                 "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


async def perform(policy: EgressPolicy, uri: str, resolver: AbstractResolver | None = None,
                  **request: Any) -> Any:
    session = checked_session(policy)
    if resolver is not None:
        session.connector._resolver = CheckedResolver(policy, resolver)  # type: ignore[union-attr]
    async with session:
        return await perform_http_task("t1", {"uri": uri, **request}, 10, session, policy)


async def test_the_resolver_refuses_a_name_of_the_metadata_endpoint_without_connecting() -> None:
    resolver = CheckedResolver(EgressPolicy.cluster(), FakeResolver({"metadata.google.internal": "169.254.169.254"}))
    with pytest.raises(EgressRefused) as raised:
        await resolver.resolve("metadata.google.internal", 80)
    assert raised.value.rule == "link-local" and raised.value.address == "169.254.169.254"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_loopback_is_refused_by_default_and_the_server_sees_nothing(host: str) -> None:
    with recording_server() as server:
        update = await perform(EgressPolicy.cluster(), f"http://{host}:{server.port}/ok", method="POST",
                               body={"a": 1}, resolver=FakeResolver({"localhost": "127.0.0.1"}))
        assert server.paths == []
    assert update.status == TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert "127.0.0.1" in update.reasonForIncompletion and "'loopback'" in update.reasonForIncompletion


async def test_the_allowlist_lets_the_request_through() -> None:
    with recording_server() as server:
        update = await perform(EgressPolicy.cluster(allow=["127.0.0.1"]), f"{server.url}/ok")
        assert server.paths == ["/ok"]
    assert update.status == TaskStatus.COMPLETED and update.outputData["response"]["body"] == {"ok": True}


async def test_each_redirect_hop_is_checked_again() -> None:
    """``localhost`` is allowlisted by name; its redirect to 127.0.0.1 (not listed) is refused."""
    with recording_server() as server:
        target = urllib.parse.quote(f"{server.url}/ok", safe="")
        update = await perform(EgressPolicy.cluster(allow=["localhost"]),
                               f"http://localhost:{server.port}/redirect?to={target}",
                               resolver=FakeResolver({"localhost": "127.0.0.1"}))
        assert [path.split("?")[0] for path in server.paths] == ["/redirect"]
    assert update.status == TaskStatus.FAILED_WITH_TERMINAL_ERROR and "'loopback'" in update.reasonForIncompletion


async def test_allowed_redirects_are_followed_and_a_post_becomes_a_get() -> None:
    with recording_server() as server:
        target = urllib.parse.quote(f"{server.url}/ok", safe="")
        update = await perform(EgressPolicy.cluster(allow=["127.0.0.1"]), f"{server.url}/redirect?to={target}",
                               method="POST", body={"a": 1})
        assert [path.split("?")[0] for path in server.paths] == ["/redirect", "/ok"]
    assert update.status == TaskStatus.COMPLETED


async def test_a_redirect_to_another_scheme_fails_the_task() -> None:
    with recording_server() as server:
        target = urllib.parse.quote("file:///etc/passwd", safe="")
        update = await perform(EgressPolicy.cluster(allow=["127.0.0.1"]), f"{server.url}/redirect?to={target}")
    assert update.status == TaskStatus.FAILED and "only http and https" in update.reasonForIncompletion


async def test_a_redirect_loop_ends() -> None:
    with recording_server() as server:
        update = await perform(EgressPolicy.cluster(allow=["127.0.0.1"]),
                               f"{server.url}/loop")
        assert server.paths == ["/loop"] * 11
    assert update.status == TaskStatus.FAILED and "redirects" in update.reasonForIncompletion


# Conductor's rules (HttpTask), the same for the operator and ``kondukt run``.


class _ConductorRulesHandler(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        type(self).seen.append((self.path, dict(self.headers.items()), self.rfile.read(length) if length else b""))
        answers = {"/json-as-text": b'{"a": [1, 2]}', "/text": b"plain words", "/number": b"42",
                   "/big": b"x" * (MAX_RESPONSE_BYTES + 1), "/limit": b"y" * MAX_RESPONSE_BYTES}
        body = answers[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer


@pytest.fixture(name="rules_server")
def conductor_rules_server() -> Iterator[str]:
    _ConductorRulesHandler.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ConductorRulesHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


LOOPBACK = EgressPolicy.cluster(allow=["127.0.0.1"])


async def test_the_body_is_json_whenever_it_parses_whatever_the_content_type(rules_server: str) -> None:
    as_json = await perform(LOOPBACK, f"{rules_server}/json-as-text")
    text = await perform(LOOPBACK, f"{rules_server}/text")
    number = await perform(LOOPBACK, f"{rules_server}/number")
    assert as_json.outputData["response"]["body"] == {"a": [1, 2]}
    assert text.outputData["response"]["body"] == "plain words"
    assert number.outputData["response"]["body"] == 42


async def test_accept_and_content_type_default_to_json_and_a_string_body_is_sent_as_it_is(rules_server: str) -> None:
    await perform(LOOPBACK, f"{rules_server}/text", method="POST", body="raw words")
    await perform(LOOPBACK, f"{rules_server}/text", method="POST", body={"k": "v"}, contentType="text/plain",
                  accept="text/plain")
    await perform(LOOPBACK, f"{rules_server}/text", method="POST", body="x", headers={"content-type": "text/csv"})
    (_, raw_headers, raw_body), (_, typed_headers, typed_body), (_, own_headers, _) = _ConductorRulesHandler.seen
    assert raw_body == b"raw words"
    assert raw_headers["Content-Type"] == "application/json" and raw_headers["Accept"] == "application/json"
    assert json.loads(typed_body) == {"k": "v"}
    assert typed_headers["Content-Type"] == "text/plain" and typed_headers["Accept"] == "text/plain"
    assert own_headers["content-type"] == "text/csv"


async def test_a_body_over_the_limit_fails_the_task_naming_it_and_one_at_the_limit_passes(rules_server: str) -> None:
    big = await perform(LOOPBACK, f"{rules_server}/big")
    limit = await perform(LOOPBACK, f"{rules_server}/limit")
    assert big.status == TaskStatus.FAILED and str(MAX_RESPONSE_BYTES) in big.reasonForIncompletion
    assert big.outputData["response"]["statusCode"] == 200 and "body" not in big.outputData["response"]
    assert limit.status == TaskStatus.COMPLETED and len(limit.outputData["response"]["body"]) == MAX_RESPONSE_BYTES


def test_timeouts_follow_conductor_with_the_task_timeout_as_the_bound() -> None:
    default = request_timeout({}, None)
    assert (default.connect, default.sock_read, default.total) == (
        DEFAULT_CONNECTION_TIMEOUT_MS / 1000, DEFAULT_READ_TIMEOUT_MS / 1000, DEFAULT_TIMEOUT_SECONDS)
    given = request_timeout({"connectionTimeOut": 500, "readTimeOut": 0}, 7)
    assert (given.connect, given.sock_read, given.total) == (0.5, None, 7.0)
    assert request_timeout({"readTimeOut": "soon"}, None).sock_read == DEFAULT_READ_TIMEOUT_MS / 1000
