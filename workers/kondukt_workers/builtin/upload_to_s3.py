"""``upload_toS3``: copy ``fileLocation`` into a bucket and output the object's URL.

Input: ``fileLocation`` (required; s3 / https / http / file URI or a bare local path) and, each
overriding its environment variable: ``bucket`` (``KONDUKT_S3_BUCKET``), ``prefix`` (``KONDUKT_S3_PREFIX``),
``region`` (``AWS_REGION`` / ``AWS_DEFAULT_REGION``), ``endpoint`` (``KONDUKT_S3_ENDPOINT`` /
``AWS_ENDPOINT_URL``: any S3-compatible store), plus optional ``key`` (the whole object key) and
``contentType`` (default: guessed from the name).

The key is ``<prefix><workflow id>/<source file name>`` unless ``key`` is given: deterministic (a re-run
attempt overwrites its own object) and separate per workflow (two runs never overwrite each other).
An ``s3://`` source on the same endpoint is copied server-side (CopyObject); anything else is read and
put.

Output: ``fileLocation`` = the object's URL (``<endpoint>/<bucket>/<key>`` path-style for a custom
endpoint, ``https://<bucket>.s3.<region>.amazonaws.com/<key>`` on AWS), ``s3Uri``, ``bucket``, ``key``,
``etag``, ``contentType``.

It fails loudly: every S3 error ends the task with the error code and message (the upstream 2022
worker swallowed exceptions and reported success); a missing bucket configuration is a terminal error
that names what to set.
"""

from __future__ import annotations

import mimetypes
import urllib.parse
from pathlib import PurePosixPath
from typing import Any

from kondukt_workers.builtin.image_parameters import require_location
from kondukt_workers.context import as_uri, current_task, safe_name
from kondukt_workers.registry import worker_task
from kondukt_workers.results import TerminalError
from kondukt_workers.settings import Settings
from kondukt_workers.storage import boto_errors, parse_s3_uri, read_uri, s3_client, s3_error


def _optional_text(task_input: dict[str, Any], field: str) -> str | None:
    value = task_input.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TerminalError(f"input {field} must be a string, not {type(value).__name__} {value!r}")
    return value.strip() or None


def object_url(bucket: str, key: str, endpoint: str | None, region: str) -> str:
    """The HTTP URL of ``bucket``/``key``: path-style on a custom endpoint, virtual-hosted on AWS."""
    quoted = urllib.parse.quote(key, safe="/~-._")
    if endpoint:
        return f"{endpoint.rstrip('/')}/{bucket}/{quoted}"
    return f"https://{bucket}.s3.{region}.amazonaws.com/{quoted}"


def _source_name(uri: str) -> str:
    name = urllib.parse.unquote(PurePosixPath(urllib.parse.urlsplit(uri).path).name)
    if not name:
        raise TerminalError(f"fileLocation {uri!r} names no file; give the input key")
    return name


@worker_task(task_definition_name="upload_toS3")
def upload_to_s3(task_input: dict[str, Any]) -> dict[str, Any]:
    settings = Settings.from_environ()
    source = as_uri(require_location(task_input.get("fileLocation")))
    bucket = _optional_text(task_input, "bucket") or settings.upload_bucket
    if not bucket:
        raise TerminalError(
            "no target bucket: set the input bucket or the environment variable KONDUKT_S3_BUCKET"
        )
    prefix = _optional_text(task_input, "prefix")
    prefix = (settings.upload_prefix if prefix is None else prefix).lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    region = _optional_text(task_input, "region") or settings.region
    requested_endpoint = _optional_text(task_input, "endpoint")
    endpoint = requested_endpoint or settings.s3_endpoint
    key = _optional_text(task_input, "key") or (
        f"{prefix}{safe_name(current_task().workflow_id, 'no-workflow')}/{_source_name(source)}"
    )
    content_type = (
        _optional_text(task_input, "contentType")
        or mimetypes.guess_type(PurePosixPath(key).name)[0]
        or "application/octet-stream"
    )
    target = f"s3://{bucket}/{key}"
    client = s3_client(endpoint=endpoint, region=region, settings=settings)
    same_store = endpoint == settings.s3_endpoint and region == settings.region
    try:
        if source.startswith("s3://") and same_store:
            source_bucket, source_key = parse_s3_uri(source)
            copied = client.copy_object(
                Bucket=bucket,
                Key=key,
                CopySource={"Bucket": source_bucket, "Key": source_key},
                ContentType=content_type,
                MetadataDirective="REPLACE",
            )
            etag = copied.get("CopyObjectResult", {}).get("ETag", "")
        else:
            data = read_uri(source, settings=settings)
            put = client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
            etag = put.get("ETag", "")
    except boto_errors() as exc:
        raise s3_error(exc, f"upload of {source} to {target}") from exc
    return {
        "fileLocation": object_url(bucket, key, endpoint, region),
        "s3Uri": target,
        "bucket": bucket,
        "key": key,
        "etag": etag.strip('"'),
        "contentType": content_type,
    }
