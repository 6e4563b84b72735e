"""External payload storage: task inputs and results too big for an environment variable or a
termination message travel through S3 (Conductor's ``externalInputPayloadStoragePath`` /
``externalOutputPayloadStoragePath``).

As in Conductor, the stored object is the payload itself (the task's ``inputData`` or ``outputData``
JSON object); the small document that points to it keeps ``status`` and ``reasonForIncompletion``:

    {"externalOutputPayloadStoragePath": "s3://bucket/payloads/<wf>/<ref>/iter0-retry0/output.json",
     "status": "COMPLETED"}

Workers use :func:`load_task_input` and :func:`encode_result`; drivers use :func:`encode_task_input`
and :func:`resolve_result_payload`. Payloads go to ``s3://$KONDUKT_PAYLOAD_BUCKET/$KONDUKT_PAYLOAD_PREFIX``
under the attempt's own deterministic key. Without a bucket a large result fails the task with a
reason that says so: a result is never truncated silently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kondukt_workers.context import TaskContext
from kondukt_workers.logs import log_event
from kondukt_workers.results import TaskResult, TerminalError
from kondukt_workers.settings import Settings
from kondukt_workers.storage import StorageError, read_uri, write_uri

INPUT_POINTER = "externalInputPayloadStoragePath"
OUTPUT_POINTER = "externalOutputPayloadStoragePath"

#: Larger task inputs are not put in ``KONDUKT_INPUT`` (Linux caps one variable at 128 KiB).
DEFAULT_MAX_INPUT_ENV_BYTES = 32 * 1024


class PayloadError(TerminalError):
    """A payload document is malformed (not JSON, or not a JSON object)."""


def _compact_json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def payload_uri(context: TaskContext, kind: str, settings: Settings) -> str:
    """``s3://<bucket>/<prefix><workflow>/<ref>/iter<N>-retry<M>/<kind>.json`` for this attempt."""
    if not settings.payload_bucket:
        raise TerminalError(
            "no external payload storage: set KONDUKT_PAYLOAD_BUCKET (and optionally KONDUKT_PAYLOAD_PREFIX)"
        )
    prefix = settings.payload_prefix
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return f"s3://{settings.payload_bucket}/{prefix}{context.attempt_path}/{kind}.json"


def _parse_object(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise PayloadError(f"{what} must be a JSON object, not {type(document).__name__}")
    return document


# --------------------------------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------------------------------


def load_task_input(raw: str | None, settings: Settings | None = None) -> dict[str, Any]:
    """The task's ``inputData`` from the ``KONDUKT_INPUT`` text (fetching an external payload)."""
    if raw is None or not raw.strip():
        return {}
    document = _parse_object(raw, "KONDUKT_INPUT")
    pointer = document.get(INPUT_POINTER)
    if pointer is None:
        return document
    if not isinstance(pointer, str) or not pointer:
        raise PayloadError(f"KONDUKT_INPUT: {INPUT_POINTER} must be a URI string")
    return _parse_object(read_uri(pointer, settings=settings), f"the input payload {pointer}")


def encode_result(result: TaskResult, context: TaskContext, settings: Settings) -> bytes:
    """The bytes to write to ``KONDUKT_OUTPUT_FILE``: the result itself when it fits in
    ``settings.max_result_bytes``, else a pointer to its ``outputData`` stored externally."""
    inline = _compact_json(result.to_json_dict())
    if len(inline) <= settings.max_result_bytes:
        return inline
    output = _compact_json(dict(result.output_data))
    try:
        uri = payload_uri(context, "output", settings)
        write_uri(uri, output, "application/json", settings=settings)
    except StorageError as exc:
        reason = f"could not store the {len(inline)}-byte result in external payload storage: {exc}"
        fallback = TaskResult.failed_terminally(reason) if exc.terminal else TaskResult.failed(reason)
        return _compact_json(fallback.to_json_dict())
    except TerminalError as exc:
        reason = (
            f"the result is {len(inline)} bytes, more than the {settings.max_result_bytes} a result file holds "
            f"(KONDUKT_MAX_RESULT_BYTES), and {exc}"
        )
        return _compact_json(TaskResult.failed_terminally(reason).to_json_dict())
    log_event("result_offloaded", uri=uri, bytes=len(output))
    pointer: dict[str, Any] = {OUTPUT_POINTER: uri, "status": result.status}
    if result.reason_for_incompletion:
        pointer["reasonForIncompletion"] = result.reason_for_incompletion
        if len(_compact_json(pointer)) > settings.max_result_bytes:
            del pointer["reasonForIncompletion"]
    return _compact_json(pointer)


# --------------------------------------------------------------------------------------------------
# Driver side
# --------------------------------------------------------------------------------------------------


def encode_task_input(
    input_data: Mapping[str, Any],
    context: TaskContext,
    settings: Settings | None = None,
    max_env_bytes: int = DEFAULT_MAX_INPUT_ENV_BYTES,
) -> str:
    """The value of ``KONDUKT_INPUT`` for ``input_data``: the JSON itself when it is at most
    ``max_env_bytes`` long, else a pointer to a copy stored in external payload storage."""
    configured = settings or Settings.from_environ()
    inline = _compact_json(dict(input_data))
    if len(inline) <= max_env_bytes:
        return inline.decode("utf-8")
    uri = payload_uri(context, "input", configured)
    write_uri(uri, inline, "application/json", settings=configured)
    return _compact_json({INPUT_POINTER: uri}).decode("utf-8")


def resolve_result_payload(result: Mapping[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """The full TaskResult for a result document read from a worker's output file: a pointer
    (``externalOutputPayloadStoragePath``) is replaced by the stored ``outputData``; any other
    document is returned as is. Raises :class:`StorageError` or :class:`PayloadError`."""
    pointer = result.get(OUTPUT_POINTER)
    if pointer is None:
        return dict(result)
    if not isinstance(pointer, str) or not pointer:
        raise PayloadError(f"{OUTPUT_POINTER} must be a URI string, not {pointer!r}")
    output = _parse_object(read_uri(pointer, settings=settings), f"the output payload {pointer}")
    resolved = {key: value for key, value in result.items() if key != OUTPUT_POINTER}
    resolved["outputData"] = output
    return resolved
