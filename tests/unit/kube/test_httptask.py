"""The operator's HTTP task under the egress policy: real aiohttp requests to a recording server on
127.0.0.1 (refused by default: it never sees them; allowed through the allowlist: it does), and the
resolver's check given fake answers (no connection at all)."""

from __future__ import annotations

import socket
import urllib.parse
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from kondukt.engine.models import TaskStatus
from kondukt.kube.httptask import CheckedResolver, checked_session, perform_http_task
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
