"""Conductor's HTTP system task, performed by the operator itself (no Job).

The request is the task's ``http_request`` input (Conductor's shape: ``uri``, ``method``, ``headers``,
``body``, ``accept``, ``contentType``, ``connectionTimeOut`` / ``readTimeOut`` in ms). The output is
Conductor's ``{"response": {"statusCode", "reasonPhrase", "headers", "body"}}``; a 2xx status completes
the task, anything else fails it (retried by the TaskDef's policy), as Conductor's HttpTask does.

Every request has a timeout (the request's own, else the task's ``timeoutSeconds``, else
``DEFAULT_TIMEOUT_SECONDS``) and the response body read is capped: a workflow cannot make the operator
hang or fill its memory. This module only performs one request and describes the result; scheduling and
retrying are the engine's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import aiohttp

from kondukt.engine.decision import TaskUpdate
from kondukt.engine.models import TaskStatus

DEFAULT_TIMEOUT_SECONDS: Final = 60.0
MAX_RESPONSE_BYTES: Final = 1024 * 1024


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
) -> TaskUpdate:
    """Perform the request and describe the outcome as the task's result. Never raises (but cancels)."""
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
    try:
        async with session.request(method, uri, data=data, headers=headers,
                                   timeout=request_timeout(request, task_timeout_seconds)) as response:
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
    except aiohttp.ClientError as err:
        return TaskUpdate(taskId=task_id, status=TaskStatus.FAILED,
                          reasonForIncompletion=f"HTTP {method} {uri} failed: {err}")
    if 200 <= response.status < 300:
        return TaskUpdate(taskId=task_id, status=TaskStatus.COMPLETED, outputData=output)
    return TaskUpdate(taskId=task_id, status=TaskStatus.FAILED, outputData=output,
                      reasonForIncompletion=f"HTTP {method} {uri} answered {response.status} {response.reason or ''}"
                      .strip())
