"""Where a local run's tasks keep their files, and how their processes reach that place.

The built-in workers pass files between tasks as URIs and write their outputs under
``KONDUKT_OUTPUT_PREFIX``; ``upload_toS3`` really speaks S3. On a laptop with no S3 endpoint configured,
``kondukt run`` starts an embedded S3 endpoint on 127.0.0.1 — moto's ``ThreadedMotoServer``, a maintained
S3 implementation that follows the clients' changes (checksums, chunked uploads) — creates the bucket
(readable without signature, so the object URLs ``upload_toS3`` returns can be fetched while the run lasts)
and hands the task processes the endpoint, the bucket, the output prefix and dummy credentials. When an
endpoint is configured (``KONDUKT_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL[_S3]``), the tasks use it as it is.
Oversized task inputs (docs/worker-protocol.md) go to the same store, and results stored externally by workers are read
back from it.

moto keeps objects in the memory of this process, so the run's objects are copied to the data directory
when the storage closes (the run ended, failed or was interrupted with Ctrl-C): the object ``<key>`` of
bucket ``<bucket>`` becomes the file ``<data dir>/s3/<bucket>/<key>`` (key segments that cannot be file
names — empty, ``.``, ``..`` — are escaped as ``%``, ``%2E``, ``%2E%2E``, and ``%`` as ``%25``). Each run's
endpoint starts empty: of the objects earlier runs left in ``<data dir>/s3``, only those the workflow input
names literally as ``s3://<bucket>/<key>`` are loaded into it; any other earlier result is read as a file
(``file:.kondukt/s3/kondukt/uploads/...``). A run killed with SIGKILL loses the objects it had not copied.

This module must never touch the user's real AWS account on its own: it only creates buckets on the
embedded server it started itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

#: Variables that configure an S3 endpoint for the workers (the first one set wins, as in kondukt_workers).
S3_ENDPOINT_VARIABLES = ("KONDUKT_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
DEFAULT_BUCKET = "kondukt"
LOCAL_ACCESS_KEY = "kondukt-local"
LOCAL_SECRET_KEY = "kondukt-local-secret"
LOCAL_REGION = "us-east-1"
#: Outputs of a run go under ``<prefix><workflow id>/<task ref>/iter<N>-retry<M>/`` (kondukt_workers).
RUNS_PREFIX = "runs/"
PAYLOADS_PREFIX = "payloads/"
#: Where ``upload_toS3`` puts its objects in the embedded S3 (``<prefix><workflow id>/<file>``).
UPLOADS_PREFIX = "uploads/"
#: AWS variables that would point boto3 in a task away from the embedded server's dummy credentials.
_CREDENTIAL_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE")
#: How long the embedded server may take to bind its socket before the run gives up.
_START_TIMEOUT_SECONDS = 30.0
#: Objects listed per request when the run's objects are copied out (S3's maximum page).
_PAGE = 1000


class ObjectStoreError(RuntimeError):
    """The embedded S3 endpoint could not be started or prepared."""


def configured_endpoint(environ: Mapping[str, str]) -> str | None:
    for name in S3_ENDPOINT_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


# --------------------------------------------------------------------------------------------------
# Keys on disk
# --------------------------------------------------------------------------------------------------


def _escape_segment(segment: str) -> str:
    if segment == "":
        return "%"
    if segment in (".", ".."):
        return segment.replace(".", "%2E")
    return segment.replace("%", "%25")


def key_to_relative_path(key: str) -> Path:
    """The path of ``key`` below its bucket's directory (``a/b.jpg`` → ``a/b.jpg``, ``a//../b`` →
    ``a/%/%2E%2E/b``): every segment is one plain file or directory name."""
    return Path(*(_escape_segment(segment) for segment in key.split("/")))


def _md5_of_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _s3_uris(value: Any, bucket: str) -> Iterator[str]:
    """Every string ``s3://<bucket>/...`` inside a JSON value."""
    if isinstance(value, str):
        if value.startswith(f"s3://{bucket}/"):
            yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _s3_uris(item, bucket)
    elif isinstance(value, list):
        for item in value:
            yield from _s3_uris(item, bucket)


@dataclass
class TaskStorage:
    """What the task processes of one run are told about storage, and how the runner uses it too."""

    environment: dict[str, str]
    """Added to (or, for ``None`` values in ``removed``, taken out of) every task process's environment."""
    files_root: Path
    """Where payloads go when there is no S3 (``file://`` URIs)."""
    endpoint_url: str | None = None
    bucket: str | None = None
    local_s3_root: Path | None = None
    """Where the embedded endpoint's objects are copied (``<data dir>/s3``), when this run started one."""
    removed: tuple[str, ...] = ()
    credentials: dict[str, str] = field(default_factory=dict)

    @property
    def uses_s3(self) -> bool:
        return self.bucket is not None

    def task_environment(self, base: Mapping[str, str]) -> dict[str, str]:
        env = {name: value for name, value in base.items() if name not in self.removed}
        env.update(self.environment)
        return env

    def _client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.credentials.get("region", LOCAL_REGION),
            aws_access_key_id=self.credentials.get("access_key"),
            aws_secret_access_key=self.credentials.get("secret_key"),
            config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=60),
        )

    def store_payload(self, key: str, data: bytes) -> str:
        """Store an oversized input; returns its URI (``s3://`` on S3, else ``file://``)."""
        if self.uses_s3:
            object_key = f"{PAYLOADS_PREFIX}{key}"
            self._client().put_object(
                Bucket=self.bucket, Key=object_key, Body=data, ContentType="application/json"
            )
            return f"s3://{self.bucket}/{object_key}"
        path = self.files_root / PAYLOADS_PREFIX / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path.resolve().as_uri()

    def fetch_json(self, uri: str, max_bytes: int = 64 * 1024 * 1024) -> Any:
        """Read a JSON payload a worker stored externally (``externalOutputPayloadStoragePath``)."""
        if uri.startswith("s3://"):
            parsed = urlparse(uri)
            if self.endpoint_url is None and not self.credentials:
                from kondukt_workers.storage import read_uri

                return json.loads(read_uri(uri, max_bytes=max_bytes))
            body = self._client().get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"]
            return json.loads(body.read(max_bytes + 1)[: max_bytes + 1])
        from kondukt_workers.storage import read_uri

        return json.loads(read_uri(uri, max_bytes=max_bytes))

    def local_path(self, uri: str) -> Path | None:
        """The file behind ``uri`` on this machine, when there is one: a ``file://`` URI, or an object of the
        embedded S3 (``s3://bucket/key``, or its ``http://127.0.0.1:<port>/bucket/key`` URL) once copied
        to the data directory (when the storage has closed)."""
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            return Path(unquote(parsed.path))
        if self.local_s3_root is None:
            return None
        if parsed.scheme == "s3":
            bucket, key = parsed.netloc, unquote(parsed.path.lstrip("/"))
        elif self.endpoint_url and uri.startswith(self.endpoint_url.rstrip("/") + "/"):
            bucket, _, key = unquote(uri[len(self.endpoint_url.rstrip("/")) + 1 :]).partition("/")
        else:
            return None
        candidate = self.local_s3_root / bucket / key_to_relative_path(key)
        return candidate if candidate.is_file() else None

    def describe(self) -> str:
        if self.local_s3_root is not None:
            return (
                f"embedded S3 at {self.endpoint_url} (bucket {self.bucket}; "
                f"objects copied to {self.local_s3_root} when the run ends)"
            )
        if self.uses_s3:
            return f"S3 at {self.endpoint_url or 'the AWS default endpoint'} (bucket {self.bucket})"
        return f"files under {self.files_root}"


# --------------------------------------------------------------------------------------------------
# The embedded endpoint
# --------------------------------------------------------------------------------------------------


class _EmbeddedS3:
    """moto's ``ThreadedMotoServer`` on 127.0.0.1 (a free port), and the copy of its objects to disk."""

    def __init__(self) -> None:
        self._server: Any = None
        self.endpoint_url = ""

    def start(self) -> str:
        # werkzeug logs every request at INFO on stderr: that would interleave with the run's progress.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        failure: list[BaseException] = []

        def start() -> None:
            try:
                server.start()
            except BaseException as e:  # reported to the caller below
                failure.append(e)

        # ThreadedMotoServer.start() waits without a bound for its thread to bind the socket; a bind that
        # fails (no loopback interface) would hang the run, so the wait happens in a thread of its own.
        starter = threading.Thread(target=start, name="kondukt-embedded-s3-start", daemon=True)
        starter.start()
        starter.join(_START_TIMEOUT_SECONDS)
        if failure:
            raise failure[0]
        if starter.is_alive():
            raise ObjectStoreError(f"moto's server did not bind 127.0.0.1 within {_START_TIMEOUT_SECONDS:.0f} s")
        self._server = server
        host, port = server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    def stop(self) -> None:
        """Stop serving, in the background: werkzeug's loop notices a shutdown only at its next 0.5 s poll,
        and nothing waits for the endpoint once the run's objects are copied out."""
        server, self._server = self._server, None
        if server is None:
            return

        def stop() -> None:
            server.stop()
            # stop() ends the serving loop but leaves the listening socket open until it is collected.
            werkzeug_server = getattr(server, "_server", None)
            if werkzeug_server is not None:
                werkzeug_server.server_close()

        threading.Thread(target=stop, name="kondukt-embedded-s3-stop", daemon=True).start()


def _public_read_policy(bucket: str) -> str:
    """Anyone on this machine may GET the run's objects: ``upload_toS3``'s ``fileLocation`` is a plain
    ``http://127.0.0.1:<port>/<bucket>/<key>`` URL, fetched unsigned (by a browser, curl, an HTTP task)."""
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _preload(client: Any, root: Path, uris: set[str]) -> dict[tuple[str, str], str]:
    """Put into the embedded bucket the objects an earlier run left at ``root`` that ``uris`` name.

    Returns ``{(bucket, key): md5}`` of what was loaded, so the copy back skips them when unchanged."""
    loaded: dict[tuple[str, str], str] = {}
    for uri in sorted(uris):
        bucket, _, key = uri.removeprefix("s3://").partition("/")  # the key is literal, as for the workers
        if not key:
            continue
        path = root / bucket / key_to_relative_path(key)
        if path.is_file():
            with path.open("rb") as body:
                client.put_object(Bucket=bucket, Key=key, Body=body)
            loaded[(bucket, key)] = _md5_of_file(path)
    return loaded


def _copy_out(
    client: Any, root: Path, buckets: list[str], unchanged: Mapping[tuple[str, str], str]
) -> list[str]:
    """Write every object of ``buckets`` to ``root/<bucket>/<key>``; returns the problems (one per object
    that could not be written), never raises for one object."""
    problems: list[str] = []
    for bucket in buckets:
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": _PAGE}
        ):
            for item in page.get("Contents", []):
                key = item["Key"]
                if unchanged.get((bucket, key)) == str(item.get("ETag", "")).strip('"'):
                    continue
                path = root / bucket / key_to_relative_path(key)
                temporary = path.with_name(f".{path.name}.kondukt-tmp")
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    client.download_file(bucket, key, str(temporary))
                    os.replace(temporary, path)
                except Exception as e:  # one object that cannot be written must not lose the others
                    with contextlib.suppress(OSError):
                        temporary.unlink()
                    problems.append(f"s3://{bucket}/{key} -> {path}: {e}")
    return problems


def _empty_and_delete(client: Any, buckets: list[str]) -> None:
    """Leave moto's in-process store as it was found (another embedded endpoint in this process starts
    empty; tests open several)."""
    for bucket in buckets:
        with contextlib.suppress(Exception):
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            client.delete_bucket(Bucket=bucket)


@contextlib.contextmanager
def open_task_storage(
    data_dir: Path,
    *,
    want_s3: bool,
    environ: Mapping[str, str] | None = None,
    workflow_input: Mapping[str, Any] | None = None,
    warn: Callable[[str], object] | None = None,
) -> Iterator[TaskStorage]:
    """The storage of one run: the configured S3, the embedded one (started here), or plain files.

    ``want_s3``: some task of the run speaks S3 (the built-in workers). Without it and without a
    configured endpoint, outputs go to files under ``<data dir>/files/``. ``workflow_input``: its literal
    ``s3://<bucket>/<key>`` strings name objects of earlier runs to load into the embedded endpoint.
    ``warn(text)`` is told about objects that could not be copied to the data directory.
    """
    env = os.environ if environ is None else environ
    files_root = data_dir / "files"
    bucket = env.get("KONDUKT_S3_BUCKET", "").strip() or DEFAULT_BUCKET
    endpoint = configured_endpoint(env)
    if endpoint is not None:
        storage = TaskStorage(
            environment={
                "KONDUKT_S3_BUCKET": bucket,
                "KONDUKT_PAYLOAD_BUCKET": env.get("KONDUKT_PAYLOAD_BUCKET", "").strip() or bucket,
                "KONDUKT_OUTPUT_PREFIX": env.get("KONDUKT_OUTPUT_PREFIX", "").strip()
                or f"s3://{bucket}/{RUNS_PREFIX}",
            },
            files_root=files_root,
            endpoint_url=endpoint,
            bucket=bucket,
        )
        yield storage
        return
    if not want_s3:
        yield TaskStorage(
            environment={
                "KONDUKT_OUTPUT_PREFIX": env.get("KONDUKT_OUTPUT_PREFIX", "").strip()
                or (files_root / "runs").resolve().as_uri() + "/"
            },
            files_root=files_root,
        )
        return

    s3_root = data_dir / "s3"
    server = _EmbeddedS3()
    try:
        s3_root.mkdir(parents=True, exist_ok=True)
        endpoint = server.start()
    except Exception as e:  # moto's and the socket's errors vary; say what failed
        raise ObjectStoreError(f"cannot start the embedded S3 endpoint (objects go to {s3_root}): {e}") from e
    try:
        storage = TaskStorage(
            environment={
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ENDPOINT_URL_S3": endpoint,
                "KONDUKT_S3_ENDPOINT": endpoint,
                "KONDUKT_S3_BUCKET": bucket,
                "KONDUKT_PAYLOAD_BUCKET": bucket,
                "KONDUKT_OUTPUT_PREFIX": env.get("KONDUKT_OUTPUT_PREFIX", "").strip()
                or f"s3://{bucket}/{RUNS_PREFIX}",
                "KONDUKT_S3_PREFIX": env.get("KONDUKT_S3_PREFIX", "").strip() or UPLOADS_PREFIX,
                "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_KEY,
                "AWS_REGION": LOCAL_REGION,
                "AWS_DEFAULT_REGION": LOCAL_REGION,
            },
            files_root=files_root,
            endpoint_url=endpoint,
            bucket=bucket,
            local_s3_root=s3_root,
            removed=_CREDENTIAL_VARIABLES,
            credentials={
                "access_key": LOCAL_ACCESS_KEY,
                "secret_key": LOCAL_SECRET_KEY,
                "region": LOCAL_REGION,
            },
        )
        client = storage._client()
        try:
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
            client.put_bucket_policy(Bucket=bucket, Policy=_public_read_policy(bucket))
        except Exception as e:
            raise ObjectStoreError(
                f"the embedded S3 endpoint at {endpoint} refused to create bucket {bucket}: {e}"
            ) from e
        try:
            unchanged = _preload(client, s3_root, set(_s3_uris(dict(workflow_input or {}), bucket)))
        except Exception as e:
            _empty_and_delete(client, [bucket])
            raise ObjectStoreError(f"cannot load the objects the workflow input names from {s3_root}: {e}") from e
        try:
            yield storage
        finally:
            # Buckets a task created count too; those that were there before (another endpoint of this
            # process, in tests) are not this run's.
            problems: list[str] = []
            try:
                listed = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                ours = sorted(listed - (existing - {bucket}))
                problems = _copy_out(client, s3_root, ours, unchanged)
                _empty_and_delete(client, ours)
            except Exception as e:  # the run's own outcome must still be reported
                problems.append(f"listing the embedded S3's objects failed: {e}")
            if problems and warn is not None:
                warn(
                    f"{len(problems)} object(s) of the embedded S3 could not be copied to {s3_root}:\n  "
                    + "\n  ".join(problems[:20])
                )
    finally:
        server.stop()
