"""Read and write whole files by URI: ``s3://bucket/key``, ``https://`` / ``http://`` and ``file://``.

Files travel between tasks as URIs, never as local paths (each attempt may run in another pod), so
every worker fetches its inputs and stores its outputs through :func:`read_uri` and :func:`write_uri`.

- ``s3://`` goes through boto3. The endpoint is ``KONDUKT_S3_ENDPOINT``, else ``AWS_ENDPOINT_URL_S3`` /
  ``AWS_ENDPOINT_URL`` (any S3-compatible store; path-style addressing is used for custom endpoints),
  the region ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (default us-east-1); credentials come from boto3's
  usual chain; retries follow ``AWS_MAX_ATTEMPTS`` / ``AWS_RETRY_MODE``.
- ``https://`` / ``http://`` use urllib with a timeout (``KONDUKT_HTTP_TIMEOUT_SECONDS``); writing PUTs
  the bytes (e.g. to a presigned URL). Every connection, redirects included, obeys the egress policy
  (:mod:`kondukt_workers.egress`, ``KONDUKT_EGRESS``): in a cluster a workflow's URI must not reach the
  cloud's metadata endpoint, the API server or in-cluster services through a worker.
- ``file://`` reads and writes local files; writes are atomic (temporary file, then rename). Only under
  the ``local`` policy (``kondukt run``): in a cluster, a ``file://`` URI would let a workflow copy any
  file of the worker's container (its ServiceAccount token, mounted Secrets) into a bucket.

Reads are size-limited (``KONDUKT_MAX_READ_BYTES``, default 100 MiB) and time-limited
(``KONDUKT_FETCH_TIMEOUT_SECONDS``, default 300 s, checked between chunks, each chunk bounded by the
read timeout): a worker must never be made to fill its memory or wait for ever by a large, endless or
trickling input. The S3 endpoint is the administrator's choice (often an in-cluster MinIO), so the
egress policy does not apply to it; a bucket name cannot point elsewhere (path-style addressing for
custom endpoints). Every failure is a :class:`StorageError` whose ``terminal``
flag says whether a retry could help (a missing object: no; a refused connection: yes) and whose
message names the URI. boto3 and urllib.request are imported only when used (``kondukt-worker`` starts
once per task attempt, and those imports cost more than the rest of the SDK). boto3 is an optional
dependency (``kondukt-workers[s3]``): without it, an ``s3://`` URI is a terminal error saying what to install.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kondukt_workers.egress import egress_refusal
from kondukt_workers.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: S3 error codes that a retry cannot fix.
_PERMANENT_S3_CODES = frozenset(
    {
        "NoSuchKey",
        "NoSuchBucket",
        "404",
        "NotFound",
        "InvalidBucketName",
        "AccessDenied",
        "403",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidObjectState",
        "AllAccessDisabled",
        "InvalidArgument",
        "KeyTooLongError",
        "EntityTooLarge",
        "MethodNotAllowed",
        "InvalidRequest",
    }
)
_NOT_FOUND_S3_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})


class StorageError(Exception):
    """Reading or writing a URI failed. ``terminal`` is true when retrying cannot help."""

    def __init__(self, message: str, *, terminal: bool, code: str | None = None) -> None:
        super().__init__(message)
        self.terminal = terminal
        self.code = code


class ObjectNotFound(StorageError):
    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message, terminal=True, code=code)


class ObjectTooLarge(StorageError):
    def __init__(self, message: str) -> None:
        super().__init__(message, terminal=True, code="TooLarge")


class UnsupportedUri(StorageError):
    def __init__(self, message: str) -> None:
        super().__init__(message, terminal=True, code="UnsupportedUri")


class FetchTimedOut(StorageError):
    def __init__(self, message: str) -> None:
        super().__init__(message, terminal=False, code="FetchTimeout")


def _read_within(read: Callable[[int], bytes], uri: str, limit: int, settings: Settings) -> bytes:
    """Read up to ``limit + 1`` bytes in chunks, giving up after ``settings.fetch_timeout_seconds``."""
    deadline = time.monotonic() + settings.fetch_timeout_seconds
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        if time.monotonic() > deadline:
            raise FetchTimedOut(
                f"{uri}: not read within {settings.fetch_timeout_seconds:g} s (KONDUKT_FETCH_TIMEOUT_SECONDS)"
            )
        chunk = read(min(_CHUNK_BYTES, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


_CHUNK_BYTES = 1024 * 1024


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` → ``("bucket", "some/key")`` (the key is taken literally, not decoded)."""
    if not uri.startswith("s3://"):
        raise UnsupportedUri(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise UnsupportedUri(f"{uri!r} must look like s3://bucket/key")
    return bucket, key


def file_uri_path(uri: str) -> Path:
    """The local path of a ``file://`` URI (``file:///abs/path``; percent-escapes are decoded)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme != "file":
        raise UnsupportedUri(f"{uri!r} is not a file:// URI")
    if parts.netloc not in ("", "localhost"):
        raise UnsupportedUri(f"{uri!r} names a remote host; file:// URIs must be local (file:///path)")
    path = urllib.parse.unquote(parts.path)
    if not path.startswith("/"):
        raise UnsupportedUri(f"{uri!r} must hold an absolute path (file:///path)")
    return Path(path)


def _scheme(uri: str) -> str:
    scheme, separator, _ = uri.partition("://")
    if not separator:
        raise UnsupportedUri(f"{uri!r} is not a URI (expected s3://, https://, http:// or file://)")
    return scheme.lower()


# --------------------------------------------------------------------------------------------------
# S3
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _cached_s3_client(endpoint: str | None, region: str, credential_hint: str) -> S3Client:
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=region,
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"} if endpoint else {},
        user_agent_extra="kondukt-workers",
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint, region_name=region, config=config)


def s3_client(
    endpoint: str | None = None, region: str | None = None, settings: Settings | None = None
) -> S3Client:
    """A boto3 S3 client for ``endpoint`` (default: the configured one) in ``region``.

    Clients are cached per endpoint, region and access key id (creating one costs tens of ms).
    """
    try:
        import boto3  # noqa: F401  (the optional dependency: kondukt-workers[s3])
    except ImportError:
        raise StorageError(
            "s3:// URIs need boto3, which is not installed: pip install 'kondukt-workers[s3]'",
            terminal=True,
            code="MissingDependency",
        ) from None
    configured = settings or Settings.from_environ()
    return _cached_s3_client(
        endpoint or configured.s3_endpoint,
        region or configured.region,
        os.environ.get("AWS_ACCESS_KEY_ID", "") + "|" + os.environ.get("AWS_PROFILE", ""),
    )


def s3_error(exc: Exception, what: str) -> StorageError:
    """Translate a boto3/botocore exception into a :class:`StorageError` naming ``what`` (a URI)."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        ParamValidationError,
    )

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        message = str(error.get("Message") or "").strip() or "no message"
        text = f"{what}: S3 error {code}: {message}"
        if code in _NOT_FOUND_S3_CODES:
            return ObjectNotFound(text, code=code)
        return StorageError(text, terminal=code in _PERMANENT_S3_CODES, code=code)
    if isinstance(exc, NoCredentialsError):
        return StorageError(
            f"{what}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or give the pod an IAM role)",
            terminal=True,
            code="NoCredentials",
        )
    if isinstance(exc, ParamValidationError):
        return StorageError(f"{what}: {exc}", terminal=True, code="InvalidParameter")
    if isinstance(exc, EndpointConnectionError):
        return StorageError(
            f"{what}: cannot reach the S3 endpoint: {exc}", terminal=False, code="EndpointConnection"
        )
    return StorageError(f"{what}: {type(exc).__name__}: {exc}", terminal=False)


def boto_errors() -> tuple[type[Exception], ...]:
    """botocore's exceptions, for ``except`` clauses; none when boto3 is not installed."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return ()

    return (BotoCoreError, ClientError)


def _read_s3(uri: str, limit: int, settings: Settings) -> bytes:
    bucket, key = parse_s3_uri(uri)
    client = s3_client(settings=settings)
    try:
        response = client.get_object(Bucket=bucket, Key=key)
        length = int(response.get("ContentLength") or 0)
        if length > limit:
            response["Body"].close()
            raise ObjectTooLarge(
                f"{uri}: {length} bytes is above the read limit of {limit} (KONDUKT_MAX_READ_BYTES)"
            )
        data = _read_within(response["Body"].read, uri, limit, settings)
    except boto_errors() as exc:
        raise s3_error(exc, uri) from exc
    if len(data) > limit:
        raise ObjectTooLarge(f"{uri}: more than {limit} bytes (KONDUKT_MAX_READ_BYTES)")
    return data


def _write_s3(uri: str, data: bytes, content_type: str, settings: Settings) -> None:
    bucket, key = parse_s3_uri(uri)
    try:
        s3_client(settings=settings).put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    except boto_errors() as exc:
        raise s3_error(exc, uri) from exc


# --------------------------------------------------------------------------------------------------
# HTTP(S)
# --------------------------------------------------------------------------------------------------


def _http_error(uri: str, exc: Exception) -> StorageError:
    import urllib.error

    refusal = egress_refusal(exc)
    if refusal is not None:
        return StorageError(f"{uri}: {refusal}", terminal=True, code="EgressRefused")
    if isinstance(exc, urllib.error.HTTPError):
        text = f"{uri}: HTTP {exc.code} {exc.reason}"
        if exc.code in (404, 410):
            return ObjectNotFound(text, code=str(exc.code))
        retriable = exc.code >= 500 or exc.code in (408, 425, 429)
        return StorageError(text, terminal=not retriable, code=str(exc.code))
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return StorageError(f"{uri}: {reason}", terminal=False, code="Connection")


def _read_http(uri: str, limit: int, settings: Settings) -> bytes:
    import urllib.error
    import urllib.request

    from kondukt_workers.egress import checked_opener

    request = urllib.request.Request(uri, headers={"User-Agent": "kondukt-workers"})
    timeout = min(settings.http_timeout_seconds, settings.fetch_timeout_seconds)
    try:
        with checked_opener(settings.egress).open(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise ObjectTooLarge(
                    f"{uri}: {declared} bytes is above the read limit of {limit} (KONDUKT_MAX_READ_BYTES)"
                )
            # read1: what has arrived (at most one read timeout), so the deadline is checked in between
            data = _read_within(response.read1, uri, limit, settings)
    except StorageError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _http_error(uri, exc) from exc
    if len(data) > limit:
        raise ObjectTooLarge(f"{uri}: more than {limit} bytes (KONDUKT_MAX_READ_BYTES)")
    return data


def _write_http(uri: str, data: bytes, content_type: str, settings: Settings) -> None:
    import urllib.error
    import urllib.request

    from kondukt_workers.egress import checked_opener

    request = urllib.request.Request(
        uri, data=data, method="PUT", headers={"Content-Type": content_type, "User-Agent": "kondukt-workers"}
    )
    try:
        with checked_opener(settings.egress).open(request, timeout=settings.http_timeout_seconds) as response:
            _read_within(response.read1, uri, 1024 * 1024, settings)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _http_error(uri, exc) from exc


# --------------------------------------------------------------------------------------------------
# file://
# --------------------------------------------------------------------------------------------------


def _read_file(uri: str, limit: int) -> bytes:
    path = file_uri_path(uri)
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                raise ObjectTooLarge(
                    f"{uri}: {size} bytes is above the read limit of {limit} (KONDUKT_MAX_READ_BYTES)"
                )
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise ObjectNotFound(f"{uri}: no such file") from None
    except IsADirectoryError:
        raise StorageError(f"{uri}: is a directory, not a file", terminal=True) from None
    except PermissionError:
        raise StorageError(f"{uri}: permission denied", terminal=True) from None
    if len(data) > limit:
        raise ObjectTooLarge(f"{uri}: more than {limit} bytes (KONDUKT_MAX_READ_BYTES)")
    return data


def _write_file(uri: str, data: bytes) -> None:
    path = file_uri_path(uri)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".kondukt-", dir=path.parent)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        raise StorageError(f"{uri}: cannot write: {exc.strerror or exc}", terminal=False) from exc


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------


def _refuse_files_in_cluster(uri: str, settings: Settings) -> None:
    if settings.egress.in_cluster:
        raise UnsupportedUri(
            f"{uri!r}: file:// URIs are refused in a cluster (KONDUKT_EGRESS=cluster): a workflow must not "
            "read or write the files of a task's container; use s3:// or https://"
        )


def read_uri(uri: str, *, max_bytes: int | None = None, settings: Settings | None = None) -> bytes:
    """The whole content of ``uri`` (s3, https/http or file), at most ``max_bytes`` (default
    ``KONDUKT_MAX_READ_BYTES``). Raises :class:`StorageError`."""
    configured = settings or Settings.from_environ()
    limit = configured.max_read_bytes if max_bytes is None else max_bytes
    scheme = _scheme(uri)
    if scheme == "s3":
        return _read_s3(uri, limit, configured)
    if scheme in ("http", "https"):
        return _read_http(uri, limit, configured)
    if scheme == "file":
        _refuse_files_in_cluster(uri, configured)
        return _read_file(uri, limit)
    raise UnsupportedUri(f"{uri!r}: unsupported scheme {scheme!r} (use s3://, https://, http:// or file://)")


def write_uri(
    uri: str, data: bytes, content_type: str = "application/octet-stream", *, settings: Settings | None = None
) -> None:
    """Store ``data`` at ``uri`` (s3 PutObject, HTTP PUT, or an atomic local write). Raises :class:`StorageError`."""
    configured = settings or Settings.from_environ()
    scheme = _scheme(uri)
    if scheme == "s3":
        _write_s3(uri, data, content_type, configured)
    elif scheme in ("http", "https"):
        _write_http(uri, data, content_type, configured)
    elif scheme == "file":
        _refuse_files_in_cluster(uri, configured)
        _write_file(uri, data)
    else:
        raise UnsupportedUri(
            f"{uri!r}: unsupported scheme {scheme!r} (use s3://, https://, http:// or file://)"
        )
