"""Which addresses a workflow may make Kondukt connect to: the one home of the egress rules.

Why it exists: a workflow's author chooses URLs (an HTTP task's ``uri``, a worker's input URI), and the
process that sends the request sits inside the cluster's network: the operator's pod for HTTP tasks, a
task's pod for the workers' URI reader. Unchecked, one Workflow could make the operator fetch the cloud's
metadata endpoint (169.254.169.254: the node's cloud credentials), call the API server or any in-cluster
service, and return the answer in its status or copy it into a bucket.

How it decides: on *addresses*, after DNS resolution, never on the text of the URL (a name can resolve
anywhere; ``0x7f.1``, ``[::ffff:127.0.0.1]`` and friends are all just addresses once resolved). A host is
refused when any of its addresses falls under a rule (``link-local``, ``loopback``, ``unspecified``,
``multicast``, ``reserved``, ``private``, ``service-range``, ``pod-range``, ``api-server``, ``denied``),
unless the allowlist names the host or a network holding the address. The connection then goes to the
very address that was checked (no second lookup that a rebinding DNS server could answer differently),
and every redirect hop opens a new, newly checked connection.

Two policies:

- ``cluster`` (the operator, and every task pod it creates): everything above is refused. When the
  cluster's service and pod ranges are not configured, every private range is refused instead (those
  ranges are among them), so the default is safe on any cluster; naming them narrows the refusal.
- ``local`` (``kondukt run`` on a laptop): loopback and private addresses are allowed (calling a
  service on localhost or the LAN is the common case there), link-local (cloud metadata), unspecified,
  multicast and reserved addresses are refused.

It lives in ``kondukt_workers`` because the workers must not import ``kondukt`` (import-linter), while
the operator and ``kondukt run`` import it from here. It never connects anywhere on its own:
:func:`connect_checked` opens the one socket it is asked for, to a checked address, and
:func:`checked_opener` is a urllib opener built on it (http and https only: no ``file://``, no ``ftp://``
through a redirect, no proxy from the environment, whose address would be checked instead of the
target's).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    import urllib.request

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``(host, port) -> addresses``: the system's resolver by default, a fake one in tests.
Resolver = Callable[[str, int], Sequence[str]]
#: ``((address, port), timeout) -> socket``: :func:`socket.create_connection` by default.
Connector = Callable[[tuple[str, int], float | None], socket.socket]
Mode = Literal["cluster", "local"]

#: Environment of the workers (set by the operator on every task's pod; see :func:`policy_environ`).
ENV_MODE: Final = "KONDUKT_EGRESS"
ENV_ALLOW: Final = "KONDUKT_EGRESS_ALLOW"
ENV_DENY: Final = "KONDUKT_EGRESS_DENY"
ENV_SERVICE_CIDRS: Final = "KONDUKT_SERVICE_CIDRS"
ENV_POD_CIDRS: Final = "KONDUKT_POD_CIDRS"
ENV_API_SERVER: Final = "KONDUKT_API_SERVER_ADDRESSES"

_ALWAYS: Final[tuple[tuple[str, str], ...]] = (
    ("unspecified", "0.0.0.0/8"),
    ("unspecified", "::/128"),
    ("link-local", "169.254.0.0/16"),
    ("link-local", "fe80::/10"),
    ("multicast", "224.0.0.0/4"),
    ("multicast", "ff00::/8"),
    ("reserved", "240.0.0.0/4"),
)
_LOOPBACK: Final = (("loopback", "127.0.0.0/8"), ("loopback", "::1/128"))
_PRIVATE: Final = (
    ("private", "10.0.0.0/8"),
    ("private", "172.16.0.0/12"),
    ("private", "192.168.0.0/16"),
    ("private", "100.64.0.0/10"),
    ("private", "fc00::/7"),
)


class EgressRefused(OSError):
    """A connection the egress policy refuses. An ``OSError``, so that urllib and aiohttp pass it on
    as the reason of their own connection errors; the message names the address and the rule."""

    def __init__(self, host: str, address: str, rule: str) -> None:
        self.host = host
        self.address = address
        self.rule = rule
        named = address if host == address else f"{host} ({address})"
        super().__init__(
            f"egress to {named} is refused by the rule {rule!r}; an administrator can allow it "
            f"(operator --egress-allow / chart egress.allow, kondukt run --egress-allow)"
        )


def parse_address(text: str) -> IPAddress:
    """An address as resolvers print it (an IPv6 scope ``%eth0`` is dropped), IPv4-mapped IPv6 unwrapped."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


def _network(text: str, where: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not an address or a CIDR (e.g. 10.96.0.0/12)") from None


def split_list(text: str | None) -> tuple[str, ...]:
    """``"a, b,,c"`` → ``("a", "b", "c")``: the form of every list setting (flags, environment)."""
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


@dataclass(frozen=True)
class Allowlist:
    """What an administrator lets through despite the rules: host names (exact, or ``*.suffix``) and
    networks. A listed host is allowed whatever it resolves to: the administrator chose the name."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str], where: str = "the egress allowlist") -> Allowlist:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            text = entry.strip().lower().rstrip(".")
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if "/" in text or ":" in text or " " in text:
                raise ValueError(f"{where}: {entry!r} is neither a host name nor an address or CIDR")
            hosts.add(text)
        return cls(frozenset(hosts), tuple(networks))

    def names(self, host: str) -> bool:
        name = host.strip("[]").lower().rstrip(".")
        if name in self.hosts:
            return True
        return any(pattern.startswith("*.") and name.endswith(pattern[1:]) for pattern in self.hosts)

    def holds(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)

    def entries(self) -> tuple[str, ...]:
        return tuple(sorted(self.hosts)) + tuple(str(net) for net in self.networks)


@dataclass(frozen=True)
class EgressPolicy:
    """The rules (ordered ``(rule name, network)`` pairs) and the allowlist. Build one with
    :meth:`cluster`, :meth:`local` or :meth:`from_environ`."""

    mode: Mode
    rules: tuple[tuple[str, IPNetwork], ...]
    allow: Allowlist = field(default_factory=Allowlist)
    #: Inputs of :meth:`cluster`, kept to hand the same policy to task pods (:func:`policy_environ`).
    service_cidrs: tuple[str, ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    api_server: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    @classmethod
    def cluster(
        cls,
        *,
        service_cidrs: Sequence[str] = (),
        pod_cidrs: Sequence[str] = (),
        api_server: Sequence[str] = (),
        deny: Sequence[str] = (),
        allow: Sequence[str] = (),
    ) -> EgressPolicy:
        """Inside a cluster. Raises ``ValueError`` naming a setting that is not a CIDR or host."""
        named: list[tuple[str, str]] = [*_ALWAYS, *_LOOPBACK]
        named += [("service-range", text) for text in service_cidrs]
        named += [("pod-range", text) for text in pod_cidrs]
        if not service_cidrs and not pod_cidrs:
            named += _PRIVATE  # the cluster's ranges are unknown: they are private ones
        named += [("api-server", text) for text in api_server]
        named += [("denied", text) for text in deny]
        return cls(
            mode="cluster",
            rules=tuple((rule, _network(text, f"the {rule} setting")) for rule, text in named),
            allow=Allowlist.parse(allow),
            service_cidrs=tuple(service_cidrs),
            pod_cidrs=tuple(pod_cidrs),
            api_server=tuple(api_server),
            deny=tuple(deny),
        )

    @classmethod
    def local(cls, *, allow: Sequence[str] = (), deny: Sequence[str] = ()) -> EgressPolicy:
        """On a laptop or a CI machine (``kondukt run``): loopback and private networks are allowed."""
        named = [*_ALWAYS, *(("denied", text) for text in deny)]
        return cls(
            mode="local",
            rules=tuple((rule, _network(text, f"the {rule} setting")) for rule, text in named),
            allow=Allowlist.parse(allow),
            deny=tuple(deny),
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> EgressPolicy:
        """The workers' policy. ``KONDUKT_EGRESS`` says which (the operator sets ``cluster`` on every
        task pod); unset, it is ``cluster`` inside a Kubernetes pod (``KUBERNETES_SERVICE_HOST`` is set in
        every one) and ``local`` elsewhere. Raises ``ValueError`` naming the variable that is wrong."""
        env = os.environ if environ is None else environ
        mode = env.get(ENV_MODE, "").strip().lower()
        if not mode:
            mode = "cluster" if env.get("KUBERNETES_SERVICE_HOST") else "local"
        if mode not in ("cluster", "local"):
            raise ValueError(f"{ENV_MODE}={env.get(ENV_MODE)!r} must be 'cluster' or 'local'")

        def listed(name: str) -> tuple[str, ...]:
            return split_list(env.get(name))

        try:
            if mode == "local":
                return cls.local(allow=listed(ENV_ALLOW), deny=listed(ENV_DENY))
            return cls.cluster(
                service_cidrs=listed(ENV_SERVICE_CIDRS),
                pod_cidrs=listed(ENV_POD_CIDRS),
                api_server=listed(ENV_API_SERVER),
                deny=listed(ENV_DENY),
                allow=listed(ENV_ALLOW),
            )
        except ValueError as err:
            raise ValueError(f"the egress environment ({ENV_MODE}_*, KONDUKT_*_CIDRS): {err}") from None

    @property
    def in_cluster(self) -> bool:
        return self.mode == "cluster"

    def refusal(self, host: str, address: str) -> EgressRefused | None:
        """Why connecting to ``address`` (one of ``host``'s) is refused, or None when it is allowed."""
        if self.allow.names(host):
            return None
        try:
            ip = parse_address(address)
        except ValueError:
            return EgressRefused(host, address, "unparsable-address")
        if self.allow.holds(ip):
            return None
        for rule, network in self.rules:
            if ip.version == network.version and ip in network:
                return EgressRefused(host, address, rule)
        return None

    def check(self, host: str, addresses: Iterable[str]) -> list[str]:
        """The addresses, when every one is allowed; else raises :class:`EgressRefused` for the first
        refused one (a name with one good and one bad address is refused whole: which one a client
        would use is not ours to guess)."""
        checked = list(addresses)
        if not checked:
            raise EgressRefused(host, host, "no-address")
        for address in checked:
            refused = self.refusal(host, address)
            if refused is not None:
                raise refused
        return checked

    def describe(self) -> str:
        """One line for logs: the mode, the rules' names and the allowlist."""
        rules = sorted({rule for rule, _ in self.rules})
        allowed = ", ".join(self.allow.entries()) or "nothing"
        return f"egress policy {self.mode}: refuses {', '.join(rules)}; allowlist: {allowed}"


def policy_environ(policy: EgressPolicy) -> list[tuple[str, str]]:
    """The environment that makes :meth:`EgressPolicy.from_environ` rebuild ``policy`` in a task's pod."""
    pairs = [
        (ENV_MODE, policy.mode),
        (ENV_ALLOW, ",".join(policy.allow.entries())),
        (ENV_DENY, ",".join(policy.deny)),
    ]
    if policy.in_cluster:
        pairs += [
            (ENV_SERVICE_CIDRS, ",".join(policy.service_cidrs)),
            (ENV_POD_CIDRS, ",".join(policy.pod_cidrs)),
            (ENV_API_SERVER, ",".join(policy.api_server)),
        ]
    return pairs


def system_resolver(host: str, port: int) -> list[str]:
    """Every address of ``host`` for a TCP connection (an address literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def connect_checked(
    policy: EgressPolicy,
    address: tuple[str, int],
    timeout: float | None = None,
    *,
    resolver: Resolver = system_resolver,
    connector: Connector | None = None,
) -> socket.socket:
    """A TCP connection to ``address`` = (host, port), made only to addresses ``policy`` allows.

    The host is resolved once; when any of its addresses is refused, :class:`EgressRefused` is raised
    before any socket exists. Then the checked addresses are tried in order (as
    :func:`socket.create_connection` does), never the name again."""
    host, port = address
    name = host.strip("[]")
    try:
        resolved = resolver(name, port)
    except socket.gaierror as err:
        raise OSError(f"cannot resolve {name}: {err.strerror or err}") from err
    checked = policy.check(name, resolved)
    connect: Connector = connector or (lambda target, limit: socket.create_connection(target, limit))
    last: OSError | None = None
    for ip in checked:
        try:
            return connect((ip, port), timeout)
        except OSError as err:
            last = err
    assert last is not None
    raise last


def _create(
    policy: EgressPolicy,
    resolver: Resolver,
    address: tuple[str, int],
    timeout: Any = None,
    source_address: Any = None,
) -> socket.socket:
    limit = timeout if isinstance(timeout, int | float) else None
    return connect_checked(policy, address, limit, resolver=resolver)


@functools.cache
def _handler_classes() -> tuple[type[Any], type[Any]]:
    """urllib's HTTP and HTTPS handlers, their connections' sockets made by :func:`connect_checked`.
    Built on first use: ``kondukt-worker`` starts once per attempt and must not pay for urllib before."""
    import http.client
    import urllib.request

    class CheckedHTTPConnection(http.client.HTTPConnection):
        def __init__(self, *args: Any, policy: EgressPolicy, resolver: Resolver, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = functools.partial(_create, policy, resolver)

    class CheckedHTTPSConnection(http.client.HTTPSConnection):
        # HTTPSConnection.connect() calls HTTPConnection.connect() (our socket), then wraps it in TLS
        # with server_hostname = the URL's host: the certificate is still verified against the name.
        def __init__(self, *args: Any, policy: EgressPolicy, resolver: Resolver, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = functools.partial(_create, policy, resolver)

    class CheckedHTTPHandler(urllib.request.HTTPHandler):
        def __init__(self, policy: EgressPolicy, resolver: Resolver) -> None:
            super().__init__()
            self._connection = functools.partial(CheckedHTTPConnection, policy=policy, resolver=resolver)

        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(self._connection, req)

    class CheckedHTTPSHandler(urllib.request.HTTPSHandler):
        def __init__(self, policy: EgressPolicy, resolver: Resolver) -> None:
            super().__init__()
            self._connection = functools.partial(CheckedHTTPSConnection, policy=policy, resolver=resolver)

        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(self._connection, req, context=self._context)  # type: ignore[attr-defined]

    return CheckedHTTPHandler, CheckedHTTPSHandler


def checked_opener(policy: EgressPolicy, resolver: Resolver = system_resolver) -> urllib.request.OpenerDirector:
    """A urllib opener for http and https only, every connection (redirects included) checked."""
    import urllib.request

    http_handler, https_handler = _handler_classes()
    opener = urllib.request.OpenerDirector()
    for handler in (
        http_handler(policy, resolver),
        https_handler(policy, resolver),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.UnknownHandler(),
    ):
        opener.add_handler(handler)
    return opener


def egress_refusal(error: BaseException) -> EgressRefused | None:
    """The :class:`EgressRefused` behind ``error`` (urllib and aiohttp wrap it), or None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, EgressRefused):
            return current
        seen.add(id(current))
        nested = getattr(current, "reason", None) or getattr(current, "os_error", None)
        current = nested if isinstance(nested, BaseException) else (current.__cause__ or current.__context__)
    return None
