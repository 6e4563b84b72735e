"""Conductor's HTTP system task, performed by the operator itself (no Job).

The request is the task's ``http_request`` input (Conductor's shape: ``uri``, ``method``, ``headers``,
``body``, ``accept``, ``contentType``, ``connectionTimeOut`` / ``readTimeOut`` in ms). The output is
Conductor's ``{"response": {"statusCode", "reasonPhrase", "headers", "body"}}``; a 2xx status completes
the task, anything else fails it (retried by the TaskDef's policy), as Conductor's HttpTask does.

Every request has a timeout (the request's own, else the task's ``timeoutSeconds``, else
``DEFAULT_TIMEOUT_SECONDS``) and the response body read is capped: a workflow cannot make the operator
hang or fill its memory. This module only performs one request and describes the result; scheduling and
retrying are the engine's.

Every connection obeys the operator's egress policy (:mod:`kondukt_workers.egress`, shared with
``kondukt run`` and the workers): :class:`CheckedResolver` checks the addresses a name resolves to and
hands aiohttp only those (it connects to what was checked: no DNS rebinding), an address literal in a
URL is checked before the request, and redirects are followed here, hop by hop (at most
``MAX_REDIRECTS``), so each hop's host is checked again. A refusal fails the task terminally (retrying
cannot change the policy) with a reason naming the address and the rule.
"""

from __future__ import annotations

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
from kondukt_workers.egress import EgressPolicy, EgressRefused, egress_refusal

DEFAULT_TIMEOUT_SECONDS: Final = 60.0
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


def checked_session(policy: EgressPolicy) -> aiohttp.ClientSession:
    """The session HTTP tasks use: every name resolved through :class:`CheckedResolver`, no proxy from
    the environment (its address would be checked instead of the target's)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=CheckedResolver(policy)),
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


def _seconds(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number / 1000.0 if number > 0 else None


def request_timeout(request: Mapping[str, Any], task_timeout_seconds: int | None) -> aiohttp.ClientTimeout:
    total = float(task_timeout_seconds) if task_timeout_seconds else DEFAULT_TIMEOUT_SECONDS
    return aiohttp.ClientTimeout(
        total=total,
        connect=_seconds(request.get("connectionTimeOut")),
        sock_read=_seconds(request.get("readTimeOut")),
    )


def _body(request: Mapping[str, Any]) -> tuple[bytes | None, str | None]:
    body = request.get("body")
    content_type = request.get("contentType")
    if body is None:
        return None, content_type
    if isinstance(body, str | bytes):
        return (body.encode() if isinstance(body, str) else body), content_type or "text/plain"
    return json.dumps(body).encode(), content_type or "application/json"


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
    headers = {str(k): str(v) for k, v in (request.get("headers") or {}).items()}
    data, content_type = _body(request)
    if content_type and "Content-Type" not in headers:
        headers["Content-Type"] = str(content_type)
    if request.get("accept") and "Accept" not in headers:
        headers["Accept"] = str(request["accept"])
    guard = policy or EgressPolicy.cluster()
    url = URL(uri)
    try:
        async with _exchange(session, guard, method, url, data, headers,
                             request_timeout(request, task_timeout_seconds)) as response:
            raw = await response.content.read(MAX_RESPONSE_BYTES + 1)
            truncated = len(raw) > MAX_RESPONSE_BYTES
            text = raw[:MAX_RESPONSE_BYTES].decode(response.charset or "utf-8", errors="replace")
            body: Any = text
            if "json" in (response.content_type or "") and not truncated:
                try:
                    body = json.loads(text)
                except ValueError:
                    body = text
            output = {"response": {
                "statusCode": response.status,
                "reasonPhrase": response.reason or "",
                "headers": {k: v for k, v in response.headers.items()},
                "body": body,
            }}
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
