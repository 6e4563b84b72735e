"""An embedded S3-compatible endpoint for ``kondukt run``: the image pipeline's ``upload_toS3`` really
speaks S3 through boto3 on a laptop with no cloud account.

``LocalS3Server(root)`` serves path-style requests (``http://127.0.0.1:<port>/<bucket>/<key>``) from a
``ThreadingHTTPServer`` on loopback and keeps every object as a plain file at ``<root>/<bucket>/<key>``,
so the results of a run are found on disk by their key. Supported: ListBuckets, CreateBucket,
HeadBucket, DeleteBucket, GetBucketLocation, ListObjects (v1 and v2: prefix, delimiter, max-keys,
markers / continuation tokens, ``encoding-type=url``), PutObject (plain, ``aws-chunked`` streaming
payloads with or without signatures and trailing checksums, HTTP chunked transfer; ``Content-MD5``
checked), GetObject (with ``Range``), HeadObject, DeleteObject, CopyObject (``x-amz-copy-source``,
metadata COPY / REPLACE), multipart uploads (Create / UploadPart / Complete / Abort, as boto3's
``upload_file`` uses above 8 MiB). Errors are S3's XML documents with S3's codes and HTTP statuses
(NoSuchBucket, NoSuchKey, InvalidRange, ...). ETags are quoted MD5 hex digests (multipart:
``md5(part digests)-N``).

For local development only: it binds to 127.0.0.1, and request signatures are accepted without
verification (any credentials work). It must never listen on another interface. Metadata (content
type, user metadata, ETag) lives beside the data under ``<root>/.s3meta/``; uploads in progress under
``<root>/.s3uploads/``. Keys are stored as paths: segments that cannot be file names (``""``, ``.``,
``..``) are escaped (``%``, ``%2E``, ``%2E%2E``) and ``%`` itself as ``%25``; a key that would need a
file and a directory of the same name (``a`` and ``a/b``) is refused with ``InvalidRequest``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.etree import ElementTree

_log = logging.getLogger("kondukt.local.s3server")

_S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
_META_DIR = ".s3meta"
_UPLOADS_DIR = ".s3uploads"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MAX_KEY_BYTES = 1024
_COPY_CHUNK = 1024 * 1024
_REGION = "us-east-1"
_MIN_PART_BYTES = 5 * 1024 * 1024
_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


class S3Error(Exception):
    """An S3 error response: ``code`` and ``status`` as S3 sends them."""

    def __init__(self, code: str, message: str, status: int, **details: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details


def _no_such_bucket(bucket: str) -> S3Error:
    return S3Error("NoSuchBucket", "The specified bucket does not exist", 404, BucketName=bucket)


def _no_such_key(key: str) -> S3Error:
    return S3Error("NoSuchKey", "The specified key does not exist.", 404, Key=key)


# --------------------------------------------------------------------------------------------------
# Keys on disk
# --------------------------------------------------------------------------------------------------


def _escape_segment(segment: str) -> str:
    if segment == "":
        return "%"
    if segment in (".", ".."):
        return segment.replace(".", "%2E")
    return segment.replace("%", "%25")


def _unescape_segment(segment: str) -> str:
    if segment == "%":
        return ""
    return segment.replace("%2E", ".").replace("%25", "%")


def key_to_relative_path(key: str) -> Path:
    """The path of ``key`` below its bucket directory (``a/b.jpg`` → ``a/b.jpg``)."""
    return Path(*(_escape_segment(segment) for segment in key.split("/")))


def _relative_path_to_key(parts: Iterable[str]) -> str:
    return "/".join(_unescape_segment(part) for part in parts)


@dataclass
class _ObjectMeta:
    etag: str
    size: int
    content_type: str
    last_modified: float
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> _ObjectMeta:
        document = json.loads(text)
        return cls(
            etag=str(document["etag"]),
            size=int(document["size"]),
            content_type=str(document.get("content_type") or "application/octet-stream"),
            last_modified=float(document["last_modified"]),
            metadata={str(k): str(v) for k, v in dict(document.get("metadata") or {}).items()},
        )


class _Store:
    """Buckets, objects and uploads on disk. All methods raise :class:`S3Error` for S3-level problems."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        (root / _META_DIR).mkdir(parents=True, exist_ok=True)
        (root / _UPLOADS_DIR).mkdir(parents=True, exist_ok=True)

    # buckets -------------------------------------------------------------------------------------

    def bucket_dir(self, bucket: str) -> Path:
        return self.root / bucket

    def require_bucket(self, bucket: str) -> Path:
        if not _BUCKET_NAME.match(bucket) or not self.bucket_dir(bucket).is_dir():
            raise _no_such_bucket(bucket)
        return self.bucket_dir(bucket)

    def buckets(self) -> list[tuple[str, float]]:
        found = []
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and _BUCKET_NAME.match(entry.name):
                found.append((entry.name, entry.stat().st_mtime))
        return found

    def create_bucket(self, bucket: str) -> None:
        if not _BUCKET_NAME.match(bucket) or ".." in bucket:
            raise S3Error("InvalidBucketName", "The specified bucket is not valid.", 400, BucketName=bucket)
        with self.lock:
            if self.bucket_dir(bucket).is_dir():
                raise S3Error(
                    "BucketAlreadyOwnedByYou",
                    "Your previous request to create the named bucket succeeded and you already own it.",
                    409,
                    BucketName=bucket,
                )
            self.bucket_dir(bucket).mkdir()
            (self.root / _META_DIR / bucket).mkdir(exist_ok=True)

    def delete_bucket(self, bucket: str) -> None:
        with self.lock:
            directory = self.require_bucket(bucket)
            if any(True for _ in self._walk(directory)):
                raise S3Error(
                    "BucketNotEmpty", "The bucket you tried to delete is not empty", 409, BucketName=bucket
                )
            shutil.rmtree(directory)
            shutil.rmtree(self.root / _META_DIR / bucket, ignore_errors=True)

    # objects -------------------------------------------------------------------------------------

    def _paths(self, bucket: str, key: str) -> tuple[Path, Path]:
        if not key:
            raise S3Error("InvalidArgument", "An object key must not be empty.", 400)
        if len(key.encode("utf-8")) > _MAX_KEY_BYTES:
            raise S3Error("KeyTooLongError", "Your key is too long", 400, Key=key)
        relative = key_to_relative_path(key)
        data = self.bucket_dir(bucket) / relative
        meta = self.root / _META_DIR / bucket / relative.parent / (relative.name + ".json")
        return data, meta

    def meta(self, bucket: str, key: str) -> tuple[Path, _ObjectMeta]:
        self.require_bucket(bucket)
        data, meta_path = self._paths(bucket, key)
        with self.lock:
            if not data.is_file():
                raise _no_such_key(key)
            try:
                meta = _ObjectMeta.from_json(meta_path.read_text("utf-8"))
            except (OSError, ValueError, KeyError):
                meta = self._meta_from_file(data)
        return data, meta

    @staticmethod
    def _meta_from_file(data: Path) -> _ObjectMeta:
        """Metadata for a file put in the bucket directory by hand."""
        digest = hashlib.md5()
        with data.open("rb") as handle:
            for chunk in iter(lambda: handle.read(_COPY_CHUNK), b""):
                digest.update(chunk)
        stat = data.stat()
        return _ObjectMeta(f'"{digest.hexdigest()}"', stat.st_size, "application/octet-stream", stat.st_mtime)

    def open_object(self, bucket: str, key: str) -> tuple[BinaryIO, _ObjectMeta]:
        """An open handle and the metadata of one consistent version of the object."""
        with self.lock:
            data, meta = self.meta(bucket, key)
            return data.open("rb"), meta

    def _check_parents(self, bucket: str, data: Path) -> None:
        bucket_dir = self.bucket_dir(bucket)
        parent = data.parent
        while parent != bucket_dir:
            if parent.is_file():
                raise S3Error(
                    "InvalidRequest",
                    "This local S3 server stores keys as files: the key needs a directory where an object "
                    f"already is ({parent.relative_to(bucket_dir)}).",
                    400,
                )
            parent = parent.parent
        if data.is_dir():
            raise S3Error(
                "InvalidRequest",
                "This local S3 server stores keys as files: the key names a directory of other keys.",
                400,
            )

    def new_temporary(self) -> tuple[BinaryIO, Path]:
        descriptor, name = tempfile.mkstemp(prefix="put-", dir=self.root / _UPLOADS_DIR)
        return os.fdopen(descriptor, "wb"), Path(name)

    def commit(self, bucket: str, key: str, temporary: Path, meta: _ObjectMeta) -> None:
        """Move a fully written temporary file into place as ``key``, with its metadata."""
        data, meta_path = self._paths(bucket, key)
        with self.lock:
            try:
                self.require_bucket(bucket)
                self._check_parents(bucket, data)
                data.parent.mkdir(parents=True, exist_ok=True)
                meta_path.parent.mkdir(parents=True, exist_ok=True)
                meta.last_modified = time.time()
                os.replace(temporary, data)
                meta_path.write_text(meta.to_json(), "utf-8")
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()

    def delete_object(self, bucket: str, key: str) -> None:
        self.require_bucket(bucket)
        data, meta_path = self._paths(bucket, key)
        with self.lock:
            if data.is_file():
                data.unlink()
            with contextlib.suppress(FileNotFoundError):
                meta_path.unlink()
            self._prune_empty_dirs(self.bucket_dir(bucket), data.parent)
            self._prune_empty_dirs(self.root / _META_DIR / bucket, meta_path.parent)

    @staticmethod
    def _prune_empty_dirs(top: Path, directory: Path) -> None:
        while directory != top and top in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def _walk(self, directory: Path, relative: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), (*relative, entry.name))
            elif entry.is_file() and not entry.name.startswith(".kondukt-"):
                yield (*relative, entry.name)

    def keys(self, bucket: str) -> list[str]:
        directory = self.require_bucket(bucket)
        return sorted(_relative_path_to_key(parts) for parts in self._walk(directory))

    # multipart uploads ---------------------------------------------------------------------------

    def upload_dir(self, upload_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise S3Error("NoSuchUpload", "The specified upload does not exist.", 404, UploadId=upload_id)
        return self.root / _UPLOADS_DIR / upload_id

    def create_upload(self, bucket: str, key: str, content_type: str, metadata: dict[str, str]) -> str:
        self.require_bucket(bucket)
        self._paths(bucket, key)
        upload_id = uuid.uuid4().hex
        directory = self.upload_dir(upload_id)
        directory.mkdir()
        (directory / "upload.json").write_text(
            json.dumps({"bucket": bucket, "key": key, "content_type": content_type, "metadata": metadata}),
            "utf-8",
        )
        return upload_id

    def upload_info(self, bucket: str, key: str, upload_id: str) -> dict[str, Any]:
        directory = self.upload_dir(upload_id)
        try:
            info: dict[str, Any] = json.loads((directory / "upload.json").read_text("utf-8"))
        except (OSError, ValueError):
            raise S3Error(
                "NoSuchUpload", "The specified upload does not exist.", 404, UploadId=upload_id
            ) from None
        if info.get("bucket") != bucket or info.get("key") != key:
            raise S3Error("NoSuchUpload", "The upload belongs to another key.", 404, UploadId=upload_id)
        return info

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self.upload_info(bucket, key, upload_id)
        shutil.rmtree(self.upload_dir(upload_id), ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Request bodies
# --------------------------------------------------------------------------------------------------


class _BodyReader:
    """The request body as a stream: Content-Length or HTTP chunked framing, then ``aws-chunked``."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self._rfile = handler.rfile
        headers = handler.headers
        self._http_chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self._remaining = int(headers.get("Content-Length") or 0) if not self._http_chunked else 0
        self._http_chunk_left = 0
        self._http_done = False
        sha256 = headers.get("x-amz-content-sha256", "")
        encodings = [e.strip().lower() for e in headers.get("Content-Encoding", "").split(",")]
        self._aws_chunked = sha256.startswith("STREAMING-") or "aws-chunked" in encodings
        self._aws_chunk_left = 0
        self._aws_done = False

    # raw framing ---------------------------------------------------------------------------------

    def _raw_read(self, size: int) -> bytes:
        if not self._http_chunked:
            size = min(size, self._remaining)
            if size <= 0:
                return b""
            data = self._rfile.read(size)
            if not data:
                raise S3Error("IncompleteBody", "The request body ended early.", 400)
            self._remaining -= len(data)
            return data
        if self._http_done:
            return b""
        if self._http_chunk_left == 0:
            size_line = self._rfile.readline(1024)
            try:
                self._http_chunk_left = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise S3Error("IncompleteBody", "Malformed chunked transfer encoding.", 400) from None
            if self._http_chunk_left == 0:
                while self._rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass
                self._http_done = True
                return b""
        data = self._rfile.read(min(size, self._http_chunk_left))
        if not data:
            raise S3Error("IncompleteBody", "The request body ended early.", 400)
        self._http_chunk_left -= len(data)
        if self._http_chunk_left == 0:
            self._rfile.readline(16)
        return data

    def _raw_readline(self) -> bytes:
        line = bytearray()
        while not line.endswith(b"\n"):
            byte = self._raw_read(1)
            if not byte:
                break
            line += byte
            if len(line) > 8192:
                raise S3Error("IncompleteBody", "Malformed aws-chunked encoding.", 400)
        return bytes(line)

    def _raw_read_exactly(self, size: int) -> bytes:
        parts = []
        while size > 0:
            data = self._raw_read(size)
            if not data:
                raise S3Error("IncompleteBody", "The request body ended early.", 400)
            parts.append(data)
            size -= len(data)
        return b"".join(parts)

    # decoded payload -----------------------------------------------------------------------------

    def read(self, size: int = _COPY_CHUNK) -> bytes:
        if not self._aws_chunked:
            return self._raw_read(size)
        if self._aws_done:
            return b""
        if self._aws_chunk_left == 0:
            header = self._raw_readline().strip()
            try:
                self._aws_chunk_left = int(header.split(b";")[0], 16)
            except ValueError:
                raise S3Error("IncompleteBody", "Malformed aws-chunked encoding.", 400) from None
            if self._aws_chunk_left == 0:
                while self._raw_readline().strip():  # trailing headers (x-amz-checksum-*, signature)
                    pass
                self._drain()
                self._aws_done = True
                return b""
        data = self._raw_read_exactly(min(size, self._aws_chunk_left))
        self._aws_chunk_left -= len(data)
        if self._aws_chunk_left == 0:
            self._raw_readline()  # the CRLF after a chunk's data
        return data

    def _drain(self) -> None:
        while self._raw_read(_COPY_CHUNK):
            pass

    def read_all(self, limit: int = 16 * 1024 * 1024) -> bytes:
        parts = []
        total = 0
        while chunk := self.read():
            total += len(chunk)
            if total > limit:
                raise S3Error("EntityTooLarge", "The request body is too large.", 400)
            parts.append(chunk)
        return b"".join(parts)


# --------------------------------------------------------------------------------------------------
# XML
# --------------------------------------------------------------------------------------------------


def _xml(root_tag: str, children: Iterable[tuple[str, Any]]) -> bytes:
    root = ElementTree.Element(root_tag, xmlns=_S3_NAMESPACE)
    _append(root, children)
    return _XML_DECLARATION + bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=False))


def _append(parent: ElementTree.Element, children: Iterable[tuple[str, Any]]) -> None:
    for tag, value in children:
        element = ElementTree.SubElement(parent, tag)
        if isinstance(value, list):
            _append(element, value)
        elif value is not None:
            element.text = str(value)


def _iso_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


def _strip_namespace(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


# --------------------------------------------------------------------------------------------------
# The request handler
# --------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KonduktLocalS3/1"
    server: _Server

    # plumbing ------------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s %s", self.address_string(), format % args)

    def _target(self) -> tuple[str, str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        bucket, _, key = path.lstrip("/").partition("/")
        return bucket, key, parse_qs(parts.query, keep_blank_values=True)

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str | None = "application/xml",
    ) -> None:
        """Send a response. ``headers`` may carry ``Content-Length`` (HEAD, streamed GET bodies)."""
        extra = headers or {}
        self.send_response(status)
        self.send_header("x-amz-request-id", uuid.uuid4().hex[:16].upper())
        self.send_header("Date", formatdate(usegmt=True))
        for name, value in extra.items():
            self.send_header(name, value)
        if content_type and status != 204 and (body or self.command == "HEAD" or "Content-Length" in extra):
            self.send_header("Content-Type", content_type)
        if "Content-Length" not in extra:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, error: S3Error, resource: str) -> None:
        children: list[tuple[str, Any]] = [("Code", error.code), ("Message", error.message)]
        children += list(error.details.items())
        children += [("Resource", resource), ("RequestId", uuid.uuid4().hex[:16].upper())]
        body = _XML_DECLARATION + bytes(
            ElementTree.tostring(_error_element(children), encoding="utf-8", xml_declaration=False)
        )
        if self.command == "HEAD":
            body = b""
        self.close_connection = self.close_connection or self._body_left_unread
        self._send(error.status, body)

    def _dispatch(self) -> None:
        self._body_left_unread = self.command in ("PUT", "POST")
        bucket, key, query = self._target()
        try:
            self._route(bucket, key, query)
        except S3Error as error:
            self._send_error(error, f"/{bucket}/{key}" if key else f"/{bucket}")
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as error:  # report a bug as S3 would, and keep serving
            _log.exception("local S3 server: %s %s failed", self.command, self.path)
            self._send_error(S3Error("InternalError", f"{type(error).__name__}: {error}", 500), self.path)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _dispatch

    def _body(self) -> _BodyReader:
        self._body_left_unread = False
        return _BodyReader(self)

    def _discard_body(self) -> None:
        reader = self._body()
        while reader.read():
            pass

    @property
    def store(self) -> _Store:
        return self.server.store

    # routing -------------------------------------------------------------------------------------

    def _route(self, bucket: str, key: str, query: dict[str, list[str]]) -> None:
        method = self.command
        if not bucket:
            if method in ("GET", "HEAD"):
                return self._list_buckets()
            raise S3Error(
                "MethodNotAllowed", "The specified method is not allowed against this resource.", 405
            )
        if not key:
            return self._route_bucket(method, bucket, query)
        if method == "POST" and "uploads" in query:
            return self._create_multipart(bucket, key)
        if "uploadId" in query:
            upload_id = query["uploadId"][0]
            if method == "PUT" and "partNumber" in query:
                return self._upload_part(bucket, key, upload_id, query["partNumber"][0])
            if method == "POST":
                return self._complete_multipart(bucket, key, upload_id)
            if method == "DELETE":
                self.store.abort_upload(bucket, key, upload_id)
                return self._send(204)
        unsupported = {
            "acl",
            "tagging",
            "retention",
            "legal-hold",
            "torrent",
            "attributes",
            "uploadId",
        } & set(query)
        if unsupported:
            raise S3Error(
                "NotImplemented", f"?{sorted(unsupported)[0]} is not implemented by the local S3 server.", 501
            )
        if method == "PUT":
            if self.headers.get("x-amz-copy-source"):
                return self._copy_object(bucket, key)
            return self._put_object(bucket, key)
        if method in ("GET", "HEAD"):
            return self._get_object(bucket, key)
        if method == "DELETE":
            self.store.delete_object(bucket, key)
            return self._send(204)
        raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.", 405)

    def _route_bucket(self, method: str, bucket: str, query: dict[str, list[str]]) -> None:
        if method == "PUT" and not query:
            self._discard_body()  # an optional CreateBucketConfiguration: every bucket is in us-east-1
            self.store.create_bucket(bucket)
            return self._send(200, headers={"Location": f"/{bucket}"})
        if method == "HEAD" and not query:
            self.store.require_bucket(bucket)
            return self._send(200, headers={"x-amz-bucket-region": _REGION})
        if method == "DELETE" and not query:
            self.store.delete_bucket(bucket)
            return self._send(204)
        if method == "GET" and "location" in query:
            self.store.require_bucket(bucket)
            return self._send(200, _xml("LocationConstraint", []))
        if method == "GET" and not set(query) - {
            "list-type",
            "prefix",
            "delimiter",
            "max-keys",
            "marker",
            "continuation-token",
            "start-after",
            "encoding-type",
            "fetch-owner",
        }:
            return self._list_objects(bucket, query)
        raise S3Error(
            "NotImplemented",
            f"This bucket operation ({method} ?{'&'.join(query)}) is not implemented by the local S3 server.",
            501,
        )

    # buckets -------------------------------------------------------------------------------------

    def _list_buckets(self) -> None:
        buckets = [
            ("Bucket", [("Name", name), ("CreationDate", _iso_time(created))])
            for name, created in self.store.buckets()
        ]
        owner = [("ID", "kondukt-local"), ("DisplayName", "kondukt-local")]
        self._send(200, _xml("ListAllMyBucketsResult", [("Owner", owner), ("Buckets", buckets)]))

    def _list_objects(self, bucket: str, query: dict[str, list[str]]) -> None:
        def first(name: str, default: str = "") -> str:
            return query.get(name, [default])[0]

        version_2 = first("list-type") == "2"
        prefix, delimiter = first("prefix"), first("delimiter")
        url_encoded = first("encoding-type") == "url"
        try:
            max_keys = max(0, min(1000, int(first("max-keys", "1000"))))
        except ValueError:
            raise S3Error("InvalidArgument", "max-keys must be an integer.", 400) from None
        if version_2:
            token = first("continuation-token")
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode() if token else first("start-after")
            except (ValueError, binascii.Error):
                raise S3Error(
                    "InvalidArgument", "The continuation token provided is incorrect.", 400
                ) from None
        else:
            after = first("marker")

        def encode(text: str) -> str:
            return quote(text, safe="/") if url_encoded else text

        contents: list[tuple[str, Any]] = []
        prefixes: list[str] = []
        truncated = False
        last = ""
        for key in self.store.keys(bucket):
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            if delimiter and delimiter in rest:
                entry = prefix + rest[: rest.index(delimiter) + len(delimiter)]
                # a group ends before the marker, or the marker is inside it: returned on an earlier page
                if (after and (entry <= after or after.startswith(entry))) or (
                    prefixes and prefixes[-1] == entry
                ):
                    continue
            else:
                entry = key
                if after and key <= after:
                    continue
            if len(contents) + len(prefixes) >= max_keys:
                truncated = True
                break
            last = entry
            if entry == key:
                _, meta = self.store.meta(bucket, key)
                contents.append(
                    (
                        "Contents",
                        [
                            ("Key", encode(key)),
                            ("LastModified", _iso_time(meta.last_modified)),
                            ("ETag", meta.etag),
                            ("Size", meta.size),
                            ("StorageClass", "STANDARD"),
                        ],
                    )
                )
            else:
                prefixes.append(entry)
        children: list[tuple[str, Any]] = [("Name", bucket), ("Prefix", encode(prefix))]
        if version_2:
            children.append(("KeyCount", len(contents) + len(prefixes)))
            if first("continuation-token"):
                children.append(("ContinuationToken", first("continuation-token")))
            if first("start-after"):
                children.append(("StartAfter", encode(first("start-after"))))
        else:
            children.append(("Marker", encode(after)))
        children += [("MaxKeys", max_keys)]
        if delimiter:
            children.append(("Delimiter", encode(delimiter)))
        if url_encoded:
            children.append(("EncodingType", "url"))
        children.append(("IsTruncated", "true" if truncated else "false"))
        if truncated and version_2:
            children.append(("NextContinuationToken", base64.urlsafe_b64encode(last.encode()).decode()))
        elif truncated and delimiter:
            children.append(("NextMarker", encode(last)))
        children += contents
        children += [("CommonPrefixes", [("Prefix", encode(p))]) for p in prefixes]
        self._send(200, _xml("ListBucketResult", children))

    # objects -------------------------------------------------------------------------------------

    def _user_metadata(self) -> dict[str, str]:
        return {
            name.lower()[len("x-amz-meta-") :]: value
            for name, value in self.headers.items()
            if name.lower().startswith("x-amz-meta-")
        }

    def _receive(self, reader: _BodyReader) -> tuple[Path, str, int]:
        """Write the body to a temporary file; returns it, its MD5 hex and its size.

        A hex ``x-amz-content-sha256`` (a signed payload) is checked against the bytes received.
        """
        declared_sha256 = self.headers.get("x-amz-content-sha256", "").lower()
        sha256 = hashlib.sha256() if re.fullmatch(r"[0-9a-f]{64}", declared_sha256) else None
        handle, temporary = self.store.new_temporary()
        digest = hashlib.md5()
        size = 0
        try:
            with handle:
                while chunk := reader.read():
                    digest.update(chunk)
                    if sha256 is not None:
                        sha256.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
            if sha256 is not None and sha256.hexdigest() != declared_sha256:
                raise S3Error(
                    "XAmzContentSHA256Mismatch",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                    400,
                )
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return temporary, digest.hexdigest(), size

    def _check_content_md5(self, md5_hex: str, temporary: Path) -> None:
        expected = self.headers.get("Content-MD5")
        if not expected:
            return
        try:
            matches = base64.b64decode(expected, validate=True).hex() == md5_hex
        except (ValueError, binascii.Error):
            matches = False
        if not matches:
            temporary.unlink(missing_ok=True)
            raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.", 400)

    def _put_object(self, bucket: str, key: str) -> None:
        self.store.require_bucket(bucket)
        self.store._paths(bucket, key)
        temporary, md5_hex, size = self._receive(self._body())
        self._check_content_md5(md5_hex, temporary)
        meta = _ObjectMeta(
            etag=f'"{md5_hex}"',
            size=size,
            content_type=self.headers.get("Content-Type") or "application/octet-stream",
            last_modified=time.time(),
            metadata=self._user_metadata(),
        )
        self.store.commit(bucket, key, temporary, meta)
        self._send(200, headers={"ETag": meta.etag})

    def _object_headers(self, meta: _ObjectMeta) -> dict[str, str]:
        headers = {
            "ETag": meta.etag,
            "Last-Modified": formatdate(meta.last_modified, usegmt=True),
            "Accept-Ranges": "bytes",
        }
        headers.update({f"x-amz-meta-{name}": value for name, value in meta.metadata.items()})
        return headers

    def _get_object(self, bucket: str, key: str) -> None:
        handle, meta = self.store.open_object(bucket, key)
        with handle:
            size = os.fstat(handle.fileno()).st_size
            headers = self._object_headers(meta)
            start, end, status = 0, size - 1, 200
            range_header = self.headers.get("Range")
            if range_header:
                start, end = _parse_range(range_header, size)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            length = max(0, end - start + 1)
            headers["Content-Length"] = str(length)
            self._send(status, b"", headers, content_type=meta.content_type)
            if self.command == "HEAD":
                return
            handle.seek(start)
            while length > 0:
                chunk = handle.read(min(_COPY_CHUNK, length))
                if not chunk:
                    break
                self.wfile.write(chunk)
                length -= len(chunk)

    def _copy_object(self, bucket: str, key: str) -> None:
        self._discard_body()
        source = unquote(self.headers["x-amz-copy-source"].split("?", 1)[0]).lstrip("/")
        source_bucket, _, source_key = source.partition("/")
        if not source_key:
            raise S3Error("InvalidArgument", "x-amz-copy-source must name /bucket/key.", 400)
        source_handle, source_meta = self.store.open_object(source_bucket, source_key)
        self.store.require_bucket(bucket)
        self.store._paths(bucket, key)
        replace = self.headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE"
        handle, temporary = self.store.new_temporary()
        with source_handle, handle:
            shutil.copyfileobj(source_handle, handle, _COPY_CHUNK)
        meta = _ObjectMeta(
            etag=source_meta.etag,
            size=source_meta.size,
            content_type=(self.headers.get("Content-Type") or "application/octet-stream")
            if replace
            else source_meta.content_type,
            last_modified=time.time(),
            metadata=self._user_metadata() if replace else dict(source_meta.metadata),
        )
        self.store.commit(bucket, key, temporary, meta)
        self._send(
            200,
            _xml("CopyObjectResult", [("LastModified", _iso_time(meta.last_modified)), ("ETag", meta.etag)]),
        )

    # multipart -----------------------------------------------------------------------------------

    def _create_multipart(self, bucket: str, key: str) -> None:
        self._discard_body()
        upload_id = self.store.create_upload(
            bucket, key, self.headers.get("Content-Type") or "application/octet-stream", self._user_metadata()
        )
        self._send(
            200,
            _xml(
                "InitiateMultipartUploadResult", [("Bucket", bucket), ("Key", key), ("UploadId", upload_id)]
            ),
        )

    def _upload_part(self, bucket: str, key: str, upload_id: str, part_number_text: str) -> None:
        self.store.upload_info(bucket, key, upload_id)
        try:
            part_number = int(part_number_text)
        except ValueError:
            part_number = 0
        if not 1 <= part_number <= 10000:
            raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000.", 400)
        temporary, md5_hex, _ = self._receive(self._body())
        self._check_content_md5(md5_hex, temporary)
        directory = self.store.upload_dir(upload_id)
        os.replace(temporary, directory / f"part-{part_number:05d}")
        (directory / f"part-{part_number:05d}.md5").write_text(md5_hex, "ascii")
        self._send(200, headers={"ETag": f'"{md5_hex}"'})

    def _complete_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        info = self.store.upload_info(bucket, key, upload_id)
        try:
            document = ElementTree.fromstring(self._body().read_all())
        except ElementTree.ParseError:
            raise S3Error("MalformedXML", "The XML you provided was not well-formed.", 400) from None
        requested: list[tuple[int, str]] = []
        for part in document:
            if _strip_namespace(part.tag) != "Part":
                continue
            fields = {_strip_namespace(child.tag): (child.text or "").strip() for child in part}
            try:
                requested.append((int(fields.get("PartNumber", "")), fields.get("ETag", "").strip('"')))
            except ValueError:
                raise S3Error("MalformedXML", "A Part has no valid PartNumber.", 400) from None
        if not requested:
            raise S3Error("MalformedXML", "The request lists no parts.", 400)
        if [number for number, _ in requested] != sorted({number for number, _ in requested}):
            raise S3Error("InvalidPartOrder", "The list of parts was not in ascending order.", 400)
        directory = self.store.upload_dir(upload_id)
        digests = []
        for index, (number, etag) in enumerate(requested):
            part_path = directory / f"part-{number:05d}"
            md5_path = directory / f"part-{number:05d}.md5"
            if not part_path.is_file() or not md5_path.is_file() or md5_path.read_text("ascii") != etag:
                raise S3Error(
                    "InvalidPart", f"Part {number} was not uploaded or its ETag does not match.", 400
                )
            if index < len(requested) - 1 and part_path.stat().st_size < _MIN_PART_BYTES:
                raise S3Error(
                    "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size.", 400
                )
            digests.append(bytes.fromhex(etag))
        handle, temporary = self.store.new_temporary()
        size = 0
        with handle:
            for number, _ in requested:
                with (directory / f"part-{number:05d}").open("rb") as part_handle:
                    shutil.copyfileobj(part_handle, handle, _COPY_CHUNK)
                size += (directory / f"part-{number:05d}").stat().st_size
        etag = f'"{hashlib.md5(b"".join(digests)).hexdigest()}-{len(digests)}"'
        meta = _ObjectMeta(
            etag,
            size,
            str(info.get("content_type") or "application/octet-stream"),
            time.time(),
            {str(k): str(v) for k, v in dict(info.get("metadata") or {}).items()},
        )
        self.store.commit(bucket, key, temporary, meta)
        shutil.rmtree(directory, ignore_errors=True)
        location = f"{self.server.endpoint_url}/{bucket}/{quote(key)}"
        self._send(
            200,
            _xml(
                "CompleteMultipartUploadResult",
                [("Location", location), ("Bucket", bucket), ("Key", key), ("ETag", etag)],
            ),
        )


def _error_element(children: list[tuple[str, Any]]) -> ElementTree.Element:
    root = ElementTree.Element("Error")
    _append(root, children)
    return root


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` → inclusive (start, end); raises InvalidRange."""
    invalid = S3Error(
        "InvalidRange",
        "The requested range is not satisfiable",
        416,
        RangeRequested=header,
        ActualObjectSize=str(size),
    )
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not match or match.group(1) == match.group(2) == "":
        raise invalid
    first, last = match.group(1), match.group(2)
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise invalid
        return max(0, size - suffix), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or end < start:
        raise invalid
    return start, end


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, store: _Store, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.store = store
        self.endpoint_url = f"http://127.0.0.1:{self.server_address[1]}"


class LocalS3Server:
    """A file-backed S3-compatible endpoint on loopback. Use ``start()`` / ``stop()`` or ``with``.

    ``root`` holds the data (``<root>/<bucket>/<key>``); ``port`` 0 picks a free one; ``buckets`` are
    created at start when missing. Point boto3 at :attr:`endpoint_url` with any credentials::

        with LocalS3Server(Path(".kondukt/s3"), buckets=["kondukt"]) as server:
            s3 = boto3.client("s3", endpoint_url=server.endpoint_url, aws_access_key_id="x", ...)
    """

    def __init__(self, root: Path, port: int = 0, buckets: Iterable[str] = ()) -> None:
        self.root = Path(root)
        self.port = port
        self._initial_buckets = tuple(buckets)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local S3 server is not running")
        return self._server.endpoint_url

    def start(self) -> str:
        """Start serving (idempotent) and return the endpoint URL, ``http://127.0.0.1:<port>``."""
        if self._server is not None:
            return self._server.endpoint_url
        self.root.mkdir(parents=True, exist_ok=True)
        store = _Store(self.root)
        for bucket in self._initial_buckets:
            with contextlib.suppress(S3Error):
                store.create_bucket(bucket)
        server = _Server(store, self.port)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="kondukt-local-s3", daemon=True
        )
        self._thread.start()
        return server.endpoint_url

    def create_bucket(self, bucket: str) -> None:
        """Create ``bucket`` directly on disk (no error when it exists)."""
        with contextlib.suppress(S3Error):
            _Store(self.root).create_bucket(bucket)

    def stop(self) -> None:
        """Stop serving and wait for the server thread (idempotent). The data stays on disk."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=10)

    def __enter__(self) -> LocalS3Server:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
