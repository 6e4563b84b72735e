"""Where a local run's tasks keep their files, and how their processes reach that place.

The built-in workers pass files between tasks as URIs and write their outputs under
``KONDUKT_OUTPUT_PREFIX``; ``upload_toS3`` really speaks S3. On a laptop with no S3 endpoint configured,
``kondukt run`` starts the embedded S3-compatible server (``LocalS3Server``) on loopback with its data
under ``<data dir>/s3/``, creates the bucket and hands the task processes the endpoint, the bucket, the
output prefix and dummy credentials. When an endpoint is configured (``KONDUKT_S3_ENDPOINT`` or
``AWS_ENDPOINT_URL[_S3]``), the tasks use it as it is. Oversized task inputs (DESIGN §5) go to the same
store, and results stored externally by workers are read back from it.

This module must never touch the user's real AWS account on its own: it only creates a bucket on the
embedded server it started itself.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
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


class ObjectStoreError(RuntimeError):
    """The embedded S3 endpoint could not be started or prepared."""


def configured_endpoint(environ: Mapping[str, str]) -> str | None:
    for name in S3_ENDPOINT_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


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
    """The embedded server's data directory, when this run started one."""
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
        embedded S3 (``s3://bucket/key``, or its ``http://127.0.0.1:<port>/bucket/key`` URL)."""
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
        from kondukt.local.s3server import key_to_relative_path

        try:
            candidate = self.local_s3_root / bucket / key_to_relative_path(key)
        except ValueError:
            return None
        return candidate if candidate.is_file() else None

    def describe(self) -> str:
        if self.local_s3_root is not None:
            return f"embedded S3 at {self.endpoint_url} (bucket {self.bucket}, data in {self.local_s3_root})"
        if self.uses_s3:
            return f"S3 at {self.endpoint_url or 'the AWS default endpoint'} (bucket {self.bucket})"
        return f"files under {self.files_root}"


def _create_bucket(storage: TaskStorage) -> None:
    client = storage._client()
    try:
        client.head_bucket(Bucket=storage.bucket)
    except Exception:
        client.create_bucket(Bucket=storage.bucket)


@contextlib.contextmanager
def open_task_storage(
    data_dir: Path,
    *,
    want_s3: bool,
    environ: Mapping[str, str] | None = None,
) -> Iterator[TaskStorage]:
    """The storage of one run: the configured S3, the embedded one (started here), or plain files.

    ``want_s3``: some task of the run speaks S3 (the built-in workers). Without it and without a
    configured endpoint, outputs go to files under ``<data dir>/files/``.
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

    from kondukt.local.s3server import LocalS3Server

    s3_root = data_dir / "s3"
    s3_root.mkdir(parents=True, exist_ok=True)
    server = LocalS3Server(s3_root)
    try:
        endpoint = server.start()
    except Exception as e:  # the server's own errors vary; say what failed
        raise ObjectStoreError(f"cannot start the embedded S3 endpoint (data in {s3_root}): {e}") from e
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
        try:
            _create_bucket(storage)
        except Exception as e:
            raise ObjectStoreError(
                f"the embedded S3 endpoint at {endpoint} refused to create bucket {bucket}: {e}"
            ) from e
        yield storage
    finally:
        server.stop()
