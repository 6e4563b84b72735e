"""Fixtures of the worker tests: real S3-compatible endpoints on loopback, a clean environment, images.

One S3 endpoint runs for the whole session: moto's server mode on 127.0.0.1 (``kondukt run``'s embedded
endpoint is the same server, tested through ``kondukt.local.objectstore``). Every test gets
an environment without any ``KONDUKT_*`` / ``AWS_*`` variable from the machine, with dummy credentials,
and makes its own bucket (names are unique per test) so tests never see each other's objects.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from PIL import Image, ImageDraw

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("KONDUKT_", "AWS_")):
            monkeypatch.delenv(name)
    # Inside a pod (CI on Kubernetes) the workers would apply the cluster egress policy by default.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/kondukt-tests")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kondukt-tests")


def s3_client_for(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def moto_s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client for moto, with the workers' environment pointing at moto too."""
    monkeypatch.setenv("KONDUKT_S3_ENDPOINT", moto_endpoint)
    return s3_client_for(moto_endpoint)


@pytest.fixture
def bucket(moto_s3: Any) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    moto_s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def output_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local output prefix (``KONDUKT_OUTPUT_PREFIX=file://...``) for the workers."""
    directory = tmp_path / "outputs"
    monkeypatch.setenv("KONDUKT_OUTPUT_PREFIX", directory.as_uri() + "/")
    return directory


def photo(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A photo-like test image: a gradient with a few shapes (compresses like a real picture)."""
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.merge(
        "RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient.rotate(90))
    )
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 5, height // 5, width // 2, height // 2), fill=(250, 200, 40))
    draw.rectangle((width // 2, height // 2, width - width // 6, height - height // 6), fill=(30, 90, 200))
    return image.convert(mode) if mode != "RGB" else image


def encode(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


@pytest.fixture
def write_image(tmp_path: Path) -> Callable[..., Path]:
    """Write a test image file and return its path."""

    def write(
        name: str,
        width: int = 300,
        height: int = 200,
        image_format: str = "JPEG",
        mode: str = "RGB",
        **options: Any,
    ) -> Path:
        path = tmp_path / "sources" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(photo(width, height, mode), image_format, **options))
        return path

    return write


class HttpFiles:
    """A tiny HTTP server on loopback: GET /files/<name> serves ``files[name]``, PUT stores into it,
    GET /status/<code> answers with that status."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from threading import Thread

        files: dict[str, bytes] = {}
        self.files = files

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/status/"):
                    self.send_response(int(self.path.rsplit("/", 1)[1]))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = files.get(self.path.removeprefix("/files/"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self) -> None:
                files[self.path.removeprefix("/files/")] = self.rfile.read(
                    int(self.headers["Content-Length"])
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture(scope="session")
def http_files() -> Iterator[HttpFiles]:
    server = HttpFiles()
    yield server
    server.stop()


def closed_port_url() -> str:
    """An http URL on loopback where nothing listens."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
