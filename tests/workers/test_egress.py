"""The egress rules (``kondukt_workers.egress``), given resolved addresses, and their enforcement.

The rules are tested on addresses handed over by a fake resolver, with a fake connector that records
what it would have connected to: no test here sends a packet anywhere but 127.0.0.1. End to end, a
recording server on loopback proves a refusal by never seeing the request (and the allowlist by
seeing it).
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.parse
from collections.abc import Sequence

import pytest

from kondukt_workers.egress import (
    EgressPolicy,
    EgressRefused,
    checked_opener,
    connect_checked,
    egress_refusal,
    policy_environ,
)
from tests.loopback_http import recording_server

CLUSTER = EgressPolicy.cluster()
RANGED = EgressPolicy.cluster(
    service_cidrs=["10.96.0.0/12"], pod_cidrs=["10.244.0.0/16"], api_server=["203.0.113.10"]
)
LOCAL = EgressPolicy.local()


@pytest.mark.parametrize(
    ("policy", "address", "rule"),
    [
        pytest.param(CLUSTER, "169.254.169.254", "link-local", id="cloud-metadata"),
        pytest.param(CLUSTER, "fe80::1", "link-local", id="ipv6-link-local"),
        pytest.param(CLUSTER, "fe80::1%eth0", "link-local", id="ipv6-link-local-with-scope"),
        pytest.param(CLUSTER, "::ffff:169.254.169.254", "link-local", id="ipv4-mapped-metadata"),
        pytest.param(CLUSTER, "2002:a9fe:a9fe::", "link-local", id="6to4-metadata"),
        pytest.param(CLUSTER, "64:ff9b::a9fe:a9fe", "link-local", id="nat64-metadata"),
        pytest.param(CLUSTER, "127.0.0.1", "loopback", id="loopback"),
        pytest.param(CLUSTER, "127.200.0.9", "loopback", id="loopback-range"),
        pytest.param(CLUSTER, "::1", "loopback", id="ipv6-loopback"),
        pytest.param(CLUSTER, "0.0.0.0", "unspecified", id="unspecified"),
        pytest.param(CLUSTER, "::", "unspecified", id="ipv6-unspecified"),
        pytest.param(CLUSTER, "224.0.0.1", "multicast", id="multicast"),
        pytest.param(CLUSTER, "255.255.255.255", "reserved", id="broadcast"),
        pytest.param(CLUSTER, "10.96.0.1", "private", id="unknown-ranges-refuse-10/8"),
        pytest.param(CLUSTER, "172.20.0.10", "private", id="unknown-ranges-refuse-172.16/12"),
        pytest.param(CLUSTER, "192.168.1.1", "private", id="unknown-ranges-refuse-192.168/16"),
        pytest.param(CLUSTER, "100.64.0.1", "private", id="unknown-ranges-refuse-cgnat"),
        pytest.param(CLUSTER, "fd00::1", "private", id="unknown-ranges-refuse-ula"),
        pytest.param(RANGED, "10.96.0.1", "service-range", id="service-range"),
        pytest.param(RANGED, "10.244.3.7", "pod-range", id="pod-range"),
        pytest.param(RANGED, "203.0.113.10", "api-server", id="api-server"),
        pytest.param(RANGED, "169.254.169.254", "link-local", id="ranged-still-refuses-metadata"),
        pytest.param(RANGED, "127.0.0.1", "loopback", id="ranged-still-refuses-loopback"),
        pytest.param(LOCAL, "169.254.169.254", "link-local", id="local-refuses-metadata"),
        pytest.param(LOCAL, "fe80::1", "link-local", id="local-refuses-ipv6-link-local"),
        pytest.param(LOCAL, "0.0.0.0", "unspecified", id="local-refuses-unspecified"),
        pytest.param(EgressPolicy.local(deny=["127.0.0.0/8"]), "127.0.0.1", "denied", id="local-deny"),
        pytest.param(EgressPolicy.cluster(deny=["198.51.100.0/24"]), "198.51.100.7", "denied", id="cluster-deny"),
    ],
)
def test_refused_addresses_name_their_rule(policy: EgressPolicy, address: str, rule: str) -> None:
    refusal = policy.refusal("some.host", address)
    assert refusal is not None and refusal.rule == rule
    assert address in str(refusal) and repr(rule) in str(refusal) and "some.host" in str(refusal)


@pytest.mark.parametrize(
    ("policy", "address"),
    [
        pytest.param(CLUSTER, "93.184.216.34", id="public"),
        pytest.param(CLUSTER, "2606:4700::1111", id="public-ipv6"),
        pytest.param(RANGED, "10.1.2.3", id="private-outside-the-cluster-ranges"),
        pytest.param(RANGED, "192.168.1.1", id="lan-outside-the-cluster-ranges"),
        pytest.param(LOCAL, "127.0.0.1", id="local-loopback"),
        pytest.param(LOCAL, "::1", id="local-ipv6-loopback"),
        pytest.param(LOCAL, "192.168.1.20", id="local-lan"),
        pytest.param(LOCAL, "10.0.0.5", id="local-private"),
    ],
)
def test_allowed_addresses(policy: EgressPolicy, address: str) -> None:
    assert policy.refusal("some.host", address) is None


@pytest.mark.parametrize(
    ("allow", "host", "address"),
    [
        pytest.param(["127.0.0.1"], "localhost", "127.0.0.1", id="address"),
        pytest.param(["10.20.0.0/16"], "wiki.corp", "10.20.3.4", id="cidr"),
        pytest.param(["fd12::/16"], "v6.corp", "fd12::8", id="ipv6-cidr"),
        pytest.param(["metrics.internal"], "METRICS.internal.", "10.0.0.9", id="host-any-case-trailing-dot"),
        pytest.param(["*.svc.cluster.local"], "api.team.svc.cluster.local", "10.96.4.2", id="suffix"),
        pytest.param(["metadata.test"], "metadata.test", "169.254.169.254", id="named-host-whatever-it-is"),
    ],
)
def test_the_allowlist_lets_through(allow: Sequence[str], host: str, address: str) -> None:
    policy = EgressPolicy.cluster(allow=allow)
    assert policy.refusal(host, address) is None
    assert CLUSTER.refusal(host, address) is not None


def test_a_suffix_pattern_does_not_match_the_bare_domain_or_a_lookalike() -> None:
    policy = EgressPolicy.cluster(allow=["*.corp.example"])
    assert policy.refusal("corp.example", "10.0.0.1") is not None
    assert policy.refusal("evilcorp.example", "10.0.0.1") is not None


def test_a_name_with_one_refused_address_is_refused_whole() -> None:
    with pytest.raises(EgressRefused) as raised:
        CLUSTER.check("mixed.example", ["93.184.216.34", "169.254.169.254"])
    assert raised.value.address == "169.254.169.254" and raised.value.rule == "link-local"
    with pytest.raises(EgressRefused) as empty:
        CLUSTER.check("nothing.example", [])
    assert empty.value.rule == "no-address"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        pytest.param("allow", ["not a host/"], id="allow"),
        pytest.param("service_cidrs", ["10.96.0.0/33"], id="service"),
        pytest.param("deny", ["everything"], id="deny"),
    ],
)
def test_bad_settings_are_refused_with_their_value(setting: str, value: list[str]) -> None:
    with pytest.raises(ValueError, match=r"is not|is neither") as raised:
        EgressPolicy.cluster(**{setting: value})  # type: ignore[arg-type]
    assert value[0] in str(raised.value)


# ------------------------------------------------------------------------------ the environment
def test_the_workers_policy_comes_from_the_environment() -> None:
    assert EgressPolicy.from_environ({}).mode == "local"
    assert EgressPolicy.from_environ({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}).mode == "cluster"
    assert EgressPolicy.from_environ({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KONDUKT_EGRESS": "local"}).mode == "local"
    with pytest.raises(ValueError, match="KONDUKT_EGRESS"):
        EgressPolicy.from_environ({"KONDUKT_EGRESS": "open"})
    with pytest.raises(ValueError, match="KONDUKT_"):
        EgressPolicy.from_environ({"KONDUKT_EGRESS": "cluster", "KONDUKT_POD_CIDRS": "10.0.0.0/99"})


def test_the_operator_hands_its_policy_to_task_pods_unchanged() -> None:
    policy = EgressPolicy.cluster(service_cidrs=["10.96.0.0/12"], pod_cidrs=["10.244.0.0/16"],
                                  api_server=["203.0.113.10"], deny=["198.51.100.0/24"],
                                  allow=["wiki.corp", "10.20.0.0/16"])
    rebuilt = EgressPolicy.from_environ(dict(policy_environ(policy)))
    assert rebuilt == policy
    local = EgressPolicy.local(allow=["169.254.0.0/16"])
    assert EgressPolicy.from_environ(dict(policy_environ(local))) == local


# ------------------------------------------------------------------------------ connecting
class FakeConnector:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, target: tuple[str, int], timeout: float | None) -> socket.socket:
        self.calls.append(target)
        a, b = socket.socketpair()
        b.close()
        return a


def test_a_refused_name_never_gets_a_socket() -> None:
    connector = FakeConnector()
    with pytest.raises(EgressRefused) as raised:
        connect_checked(CLUSTER, ("metadata.internal", 80), 1.0,
                        resolver=lambda host, port: ["169.254.169.254"], connector=connector)
    assert connector.calls == []
    assert "metadata.internal (169.254.169.254)" in str(raised.value) and "'link-local'" in str(raised.value)


def test_the_connection_goes_to_the_checked_address_not_to_a_second_lookup() -> None:
    """DNS rebinding: the first answer is harmless, every later one is the metadata address. The name is
    resolved once and the socket goes to the address that was checked."""
    answers = iter([["93.184.216.34"], ["169.254.169.254"], ["169.254.169.254"]])
    connector = FakeConnector()
    sock = connect_checked(CLUSTER, ("rebind.example", 80), 1.0,
                           resolver=lambda host, port: next(answers), connector=connector)
    sock.close()
    assert connector.calls == [("93.184.216.34", 80)]
    with pytest.raises(EgressRefused):
        connect_checked(CLUSTER, ("rebind.example", 80), 1.0,
                        resolver=lambda host, port: next(answers), connector=connector)
    assert connector.calls == [("93.184.216.34", 80)]


def test_an_address_literal_is_checked_like_a_name() -> None:
    connector = FakeConnector()
    with pytest.raises(EgressRefused):
        connect_checked(CLUSTER, ("[::ffff:a9fe:a9fe]", 80), 1.0,
                        resolver=lambda host, port: [host], connector=connector)
    assert connector.calls == []


# ------------------------------------------------------------------------------ urllib, end to end on loopback
def test_the_opener_refuses_loopback_by_default_and_the_server_sees_nothing() -> None:
    with recording_server() as server:
        with pytest.raises(urllib.error.URLError) as raised:
            checked_opener(CLUSTER).open(f"{server.url}/ok", timeout=10)
        refusal = egress_refusal(raised.value)
        assert refusal is not None and refusal.address == "127.0.0.1" and refusal.rule == "loopback"
        # a name is resolved, then checked: the fake resolver sends it to loopback
        with pytest.raises(urllib.error.URLError) as named:
            checked_opener(CLUSTER, resolver=lambda host, port: ["127.0.0.1"]).open(
                f"http://internal.test:{server.port}/ok", timeout=10)
        assert "internal.test (127.0.0.1)" in str(egress_refusal(named.value))
        assert server.paths == []


def test_the_allowlist_lets_the_request_through() -> None:
    with recording_server() as server:
        with checked_opener(EgressPolicy.cluster(allow=["127.0.0.1/32"])).open(f"{server.url}/ok", timeout=10) as r:
            assert r.status == 200
        assert server.paths == ["/ok"]


def test_every_redirect_hop_is_checked_again() -> None:
    """``localhost`` is allowlisted by name; its redirect to 127.0.0.1 (another host, not listed) is not."""
    with recording_server() as server:
        target = urllib.parse.quote(f"{server.url}/ok", safe="")
        with pytest.raises(urllib.error.URLError) as raised:
            checked_opener(EgressPolicy.cluster(allow=["localhost"]),
                           resolver=lambda host, port: ["127.0.0.1"]).open(
                f"http://localhost:{server.port}/redirect?to={target}", timeout=10)
        assert egress_refusal(raised.value) is not None
        assert server.paths == [f"/redirect?to={target}"]


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x"])
def test_a_redirect_to_another_scheme_is_not_followed(target: str) -> None:
    with recording_server() as server:
        quoted = urllib.parse.quote(target, safe="")
        with pytest.raises(urllib.error.URLError):
            checked_opener(LOCAL).open(f"{server.url}/redirect?to={quoted}", timeout=10)
        assert server.paths == [f"/redirect?to={quoted}"]


def test_a_proxy_from_the_environment_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its address would be checked instead of the target's: the opener ignores http_proxy."""
    with recording_server() as proxy, recording_server() as server:
        monkeypatch.setenv("http_proxy", proxy.url)
        with checked_opener(LOCAL).open(f"{server.url}/ok", timeout=10) as reply:
            assert reply.status == 200
        assert proxy.paths == [] and server.paths == ["/ok"]
