"""Perform an HTTP task's request for the local runner (Conductor's ``http_request`` input).

The engine resolves the request (uri, method, headers, body, contentType, accept, connectionTimeOut,
readTimeOut); this module sends it with urllib and shapes the reply as Conductor's HTTP task output,
``{"response": {"statusCode", "headers", "body", "reasonPhrase"}}``, with a JSON body decoded when it is
JSON. A status outside 2xx fails the task (retried by policy), as in Conductor.

It is blocking by design (the runner calls it in a thread) and must never follow other schemes than
http/https: an HTTP task must not read local files through ``file://``. Every connection, redirects
included, goes through :func:`kondukt_workers.egress.checked_opener` (the rules shared with the operator
and the workers; ``kondukt run``'s default is the ``local`` policy): a refused address fails the task
terminally with a reason naming the address and the rule.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kondukt.engine.models import TaskStatus
from kondukt_workers.egress import EgressPolicy, Resolver, checked_opener, egress_refusal, system_resolver

DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class HttpOutcome:
    status: TaskStatus
    output_data: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


def _timeout_seconds(request: Mapping[str, Any], task_timeout: int | None) -> float:
    for key in ("readTimeOut", "connectionTimeOut"):
        value = request.get(key)
        if isinstance(value, int | float) and value > 0:
            return float(value) / 1000.0
    if task_timeout:
        return float(task_timeout)
    return DEFAULT_TIMEOUT_SECONDS


def _decode_body(raw: bytes, content_type: str) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if not text:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _encode_body(body: Any, content_type: str) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, bytes):
        return body
    if isinstance(body, str) and "json" not in content_type:
        return body.encode()
    return json.dumps(body).encode()


def call_http(
    request: Mapping[str, Any],
    task_timeout: int | None = None,
    egress: EgressPolicy | None = None,
    resolver: Resolver = system_resolver,
) -> HttpOutcome:
    """Send ``request`` (Conductor's http_request) under ``egress`` (default: the local policy) and
    return the task's outcome; never raises."""
    uri = request.get("uri") or request.get("url")
    if not isinstance(uri, str) or not uri:
        return HttpOutcome(TaskStatus.FAILED_WITH_TERMINAL_ERROR, reason="http_request.uri is missing")
    if not uri.lower().startswith(("http://", "https://")):
        return HttpOutcome(
            TaskStatus.FAILED_WITH_TERMINAL_ERROR, reason=f"http_request.uri {uri!r} is not an http(s) URL"
        )
    method = str(request.get("method") or "GET").upper()
    content_type = str(request.get("contentType") or "application/json")
    headers = {str(k): str(v) for k, v in dict(request.get("headers") or {}).items()}
    headers.setdefault("Accept", str(request.get("accept") or "application/json"))
    data = _encode_body(request.get("body"), content_type)
    if data is not None:
        headers.setdefault("Content-Type", content_type)
    http_request = urllib.request.Request(uri, data=data, method=method, headers=headers)
    timeout = _timeout_seconds(request, task_timeout)
    try:
        opener = checked_opener(egress or EgressPolicy.local(), resolver)
        with opener.open(http_request, timeout=timeout) as reply:
            status_code = int(reply.status)
            reason_phrase = str(reply.reason or "")
            reply_headers = dict(reply.headers.items())
            raw = reply.read(MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as e:
        status_code = int(e.code)
        reason_phrase = str(e.reason or "")
        reply_headers = dict(e.headers.items()) if e.headers else {}
        raw = e.read(MAX_RESPONSE_BYTES) if e.fp is not None else b""
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as e:
        refusal = egress_refusal(e)
        if refusal is not None:
            return HttpOutcome(TaskStatus.FAILED_WITH_TERMINAL_ERROR, reason=f"{method} {uri}: {refusal}")
        reason = getattr(e, "reason", e)
        return HttpOutcome(TaskStatus.FAILED, reason=f"{method} {uri} failed: {reason}")
    response = {
        "statusCode": status_code,
        "headers": reply_headers,
        "body": _decode_body(raw, reply_headers.get("Content-Type", "")),
        "reasonPhrase": reason_phrase,
    }
    output = {"response": response}
    if 200 <= status_code < 300:
        return HttpOutcome(TaskStatus.COMPLETED, output)
    return HttpOutcome(
        TaskStatus.FAILED, output, f"{method} {uri} answered {status_code} {reason_phrase}".strip()
    )
