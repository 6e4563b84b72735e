"""Conductor's HTTP system task: the one implementation both drivers perform (no Job, no process).

The operator and ``kondukt run`` used to carry one each, with different defaults; the same workflow
could give a different output locally and in a cluster. This module follows Conductor's ``HttpTask``:

- the request is the task's ``http_request`` input (``uri``, ``method``, ``headers``, ``body``,
  ``accept``, ``contentType``, ``connectionTimeOut`` / ``readTimeOut`` in ms);
- ``accept`` and ``contentType`` default to ``application/json`` and are always sent (a header of the
  same name in ``headers`` wins); a string body is sent as it is, any other body as JSON;
- ``connectionTimeOut`` and ``readTimeOut`` default to 3000 ms each (0 means no limit on that phase);
  the whole exchange is also bounded by the task's ``timeoutSeconds``, else ``DEFAULT_TIMEOUT_SECONDS``;
- the response body is decoded as JSON whenever it parses as JSON, whatever its Content-Type, else it
  stays text; a body larger than ``MAX_RESPONSE_BYTES`` fails the task (naming the limit) instead of
  being cut;
- the output is ``{"response": {"statusCode", "reasonPhrase", "headers", "body"}}``; a 2xx status
  completes the task, anything else fails it (retried by the TaskDef's policy).

Every connection obeys the driver's egress policy (:mod:`kondukt_workers.egress`, shared with the
workers): :class:`CheckedResolver` checks the addresses a name resolves to and hands aiohttp only those
(it connects to what was checked: no DNS rebinding), an address literal in a URL is checked before the
request, and redirects are followed here, hop by hop (at most ``MAX_REDIRECTS``), so each hop's host is
checked again. A refusal fails the task terminally (retrying cannot change the policy) with a reason
naming the address and the rule. This module only performs one request and describes the result;
scheduling and retrying are the engine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from kondukt.engine.decision import TaskUpdate
from kondukt.engine.models import TaskStatus
from kondukt_workers.egress import EgressPolicy, EgressRefused, Resolver, egress_refusal

#: The bound of one whole exchange (redirects included) when the task has no ``timeoutSeconds``.
DEFAULT_TIMEOUT_SECONDS: Final = 60.0
#: Conductor's ``connectionTimeOut`` and ``readTimeOut`` defaults (``HttpTask.Input``), in ms.
DEFAULT_CONNECTION_TIMEOUT_MS: Final = 3000
DEFAULT_READ_TIMEOUT_MS: Final = 3000
#: Conductor's ``accept`` and ``contentType`` default.
DEFAULT_MEDIA_TYPE: Final = "application/json"
#: The largest response body a task accepts; the driver holds it in memory and writes it to the status.
MAX_RESPONSE_BYTES: Final = 1024 * 1024
MAX_REDIRECTS: Final = 10
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


class CheckedResolver(AbstractResolver):
    """aiohttp's resolver, filtered by the egress policy: a name whose addresses are refused raises
    :class:`EgressRefused` (aiohttp wraps it in a connection error), so aiohttp never connects to it."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = aiohttp.ThreadedResolver()
        found = await self._inner.resolve(host, port, family)
        self.policy.check(host, [str(entry["host"]) for entry in found])
        return found

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


class BlockingResolver(AbstractResolver):
    """A blocking :data:`kondukt_workers.egress.Resolver` (``host, port -> addresses``) as aiohttp's
    resolver, called in a thread."""

    def __init__(self, resolve: Resolver) -> None:
        self._resolve = resolve

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        addresses = await asyncio.to_thread(self._resolve, host, port)
        return [{"hostname": host, "host": address, "port": port,
                 "family": socket.AF_INET6 if ":" in address else socket.AF_INET, "proto": 0, "flags": 0}
                for address in addresses]

    async def close(self) -> None:
        return None


def checked_session(policy: EgressPolicy, resolver: Resolver | None = None) -> aiohttp.ClientSession:
    """The session HTTP tasks use: every name resolved through :class:`CheckedResolver` (over
    ``resolver`` if given, else aiohttp's threaded resolver), no proxy from the environment (its
    address would be checked instead of the target's)."""
    inner = BlockingResolver(resolver) if resolver is not None else None
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=CheckedResolver(policy, inner)),
                                 trust_env=False)


def _check_literal(policy: EgressPolicy, url: URL) -> None:
    """aiohttp does not resolve an address literal (``http://169.254.169.254/``): check it here."""
    host = (url.raw_host or "").strip("[]")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return  # a name: the resolver checks it
    policy.check(host, [host])


def _refused(task_id: str, method: str, uri: str, refusal: EgressRefused) -> TaskUpdate:
    return TaskUpdate(taskId=task_id, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
                      reasonForIncompletion=f"HTTP {method} {uri}: {refusal}")


def _seconds(value: Any, default_ms: int) -> float | None:
    """A phase's limit in seconds: the request's ms (Conductor's default when absent or not a number),
    ``None`` (no limit) for 0 or less, as Conductor's 0 means infinity."""
    try:
        number = float(default_ms if value is None else value)
    except (TypeError, ValueError):
        number = float(default_ms)
    return number / 1000.0 if number > 0 else None


def request_timeout(request: Mapping[str, Any], task_timeout_seconds: int | None) -> aiohttp.ClientTimeout:
    total = float(task_timeout_seconds) if task_timeout_seconds else DEFAULT_TIMEOUT_SECONDS
    return aiohttp.ClientTimeout(
        total=total,
        connect=_seconds(request.get("connectionTimeOut"), DEFAULT_CONNECTION_TIMEOUT_MS),
        sock_read=_seconds(request.get("readTimeOut"), DEFAULT_READ_TIMEOUT_MS),
    )


def _body(request: Mapping[str, Any]) -> bytes | None:
    """Conductor's encoding: a string as it is, anything else as JSON, nothing for no body."""
    body = request.get("body")
    if body is None:
        return None
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def decode_body(text: str) -> Any:
    """Conductor's ``extractBody``: the JSON value when the text parses as JSON, else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


async def perform_http_task(
    task_id: str,
    request: Mapping[str, Any],
    task_timeout_seconds: int | None,
    session: aiohttp.ClientSession,
    policy: EgressPolicy | None = None,
) -> TaskUpdate:
    """Perform the request and describe the outcome as the task's result. Never raises (but cancels).

    ``session`` should come from :func:`checked_session` with the same ``policy``: the session checks
    names, this function address literals and redirects."""
    uri = request.get("uri") or request.get("url")
    if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
        return TaskUpdate(taskId=task_id, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
                          reasonForIncompletion=f"http_request.uri must be an http(s) URL, not {uri!r}")
    method = str(request.get("method") or "GET").upper()
    headers = {str(k): str(v) for k, v in dict(request.get("headers") or {}).items() if v is not None}
    data = _body(request)
    named = {k.lower() for k in headers}
    if "content-type" not in named:
        headers["Content-Type"] = str(request.get("contentType") or DEFAULT_MEDIA_TYPE)
    if "accept" not in named:
        headers["Accept"] = str(request.get("accept") or DEFAULT_MEDIA_TYPE)
    guard = policy or EgressPolicy.cluster()
    url = URL(uri)
    try:
        async with _exchange(session, guard, method, url, data, headers,
                             request_timeout(request, task_timeout_seconds)) as response:
            raw = await _read_capped(response)
            described = {
                "statusCode": response.status,
                "reasonPhrase": response.reason or "",
                "headers": {k: v for k, v in response.headers.items()},
            }
            if raw is None:
                return TaskUpdate(taskId=task_id, status=TaskStatus.FAILED, outputData={"response": described},
                                  reasonForIncompletion=f"HTTP {method} {uri}: the response body is larger than "
                                                        f"{MAX_RESPONSE_BYTES} bytes (the HTTP task's limit)")
            text = raw.decode(response.charset or "utf-8", errors="replace")
            output = {"response": {**described, "body": decode_body(text)}}
    except TimeoutError:
        return TaskUpdate(taskId=task_id, status=TaskStatus.FAILED,
                          reasonForIncompletion=f"HTTP {method} {uri} timed out")
    except (aiohttp.ClientError, OSError, ValueError) as err:
        refusal = egress_refusal(err)
        if refusal is not None:
            return _refused(task_id, method, uri, refusal)
        return TaskUpdate(taskId=task_id, status=TaskStatus.FAILED,
                          reasonForIncompletion=f"HTTP {method} {uri} failed: {err}")
    if 200 <= response.status < 300:
        return TaskUpdate(taskId=task_id, status=TaskStatus.COMPLETED, outputData=output)
    return TaskUpdate(taskId=task_id, status=TaskStatus.FAILED, outputData=output,
                      reasonForIncompletion=f"HTTP {method} {uri} answered {response.status} {response.reason or ''}"
                      .strip())


async def _read_capped(response: aiohttp.ClientResponse) -> bytes | None:
    """The whole body, or ``None`` when it is larger than ``MAX_RESPONSE_BYTES``."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.read(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.asynccontextmanager
async def _exchange(session: aiohttp.ClientSession, policy: EgressPolicy, method: str, url: URL,
                    data: bytes | None, headers: dict[str, str],
                    timeout: aiohttp.ClientTimeout) -> AsyncIterator[aiohttp.ClientResponse]:
    """The request and its redirects (at most ``MAX_REDIRECTS``), each hop checked; yields the final response."""
    for _hop in range(MAX_REDIRECTS + 1):
        _check_literal(policy, url)
        response = await session.request(method, url, data=data, headers=headers, timeout=timeout,
                                         allow_redirects=False)
        location = response.headers.get("Location")
        if response.status not in _REDIRECTS or not location:
            try:
                yield response
            finally:
                response.release()
            return
        response.release()
        target = url.join(URL(location))
        if target.scheme not in ("http", "https"):
            raise ValueError(f"redirected to {target} (only http and https are followed)")
        if (response.status == 303 and method != "HEAD") or (response.status in (301, 302) and method == "POST"):
            method, data = "GET", None
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        if target.origin() != url.origin():
            headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}
        url = target
    raise ValueError(f"more than {MAX_REDIRECTS} redirects")
