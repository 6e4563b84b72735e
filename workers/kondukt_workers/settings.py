"""The worker side's configuration, read from the environment at the moment it is needed.

Every knob of the SDK and the built-in workers is an environment variable (a Job's container and a
local process are configured the same way); this module is the one place that reads them, converts
them and says clearly which variable is wrong when a value cannot be used. The list with defaults is in
the package docstring (``kondukt_workers.__doc__``).

It must never cache values across calls (tests and drivers change the environment between tasks) and
never import boto3 or Pillow (the CLI imports it on every start).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from kondukt_workers.egress import EgressPolicy
from kondukt_workers.results import TerminalError

DEFAULT_MAX_RESULT_BYTES = 4096
DEFAULT_MAX_READ_BYTES = 100 * 1024 * 1024
DEFAULT_HTTP_TIMEOUT_SECONDS = 30.0
DEFAULT_FETCH_TIMEOUT_SECONDS = 300.0
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
DEFAULT_PAYLOAD_PREFIX = "payloads/"
DEFAULT_REGION = "us-east-1"
DEFAULT_OUTPUT_FILE = "/dev/termination-log"


class ConfigurationError(TerminalError):
    """An environment variable holds a value the workers cannot use (retrying would not help)."""


def _first(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not an integer") from None
    if value <= 0:
        raise ConfigurationError(f"{name}={raw!r} must be a positive integer")
    return value


def _positive_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise ConfigurationError(f"{name}={raw!r} must be a positive number")
    return value


@dataclass(frozen=True)
class Settings:
    """A snapshot of the worker configuration; build one with :meth:`from_environ`."""

    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    max_read_bytes: int = DEFAULT_MAX_READ_BYTES
    http_timeout_seconds: float = DEFAULT_HTTP_TIMEOUT_SECONDS
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    payload_bucket: str | None = None
    payload_prefix: str = DEFAULT_PAYLOAD_PREFIX
    output_prefix: str | None = None
    s3_endpoint: str | None = None
    region: str = DEFAULT_REGION
    upload_bucket: str | None = None
    upload_prefix: str = ""
    heartbeat_file: str | None = None
    output_file: str = DEFAULT_OUTPUT_FILE
    fetch_timeout_seconds: float = DEFAULT_FETCH_TIMEOUT_SECONDS
    #: Where the URI reader may connect, and whether ``file://`` is allowed (``local`` only).
    egress: EgressPolicy = field(default_factory=EgressPolicy.local)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        try:
            egress = EgressPolicy.from_environ(env)
        except ValueError as err:
            raise ConfigurationError(str(err)) from None
        return cls(
            max_result_bytes=_positive_int(env, "KONDUKT_MAX_RESULT_BYTES", DEFAULT_MAX_RESULT_BYTES),
            max_read_bytes=_positive_int(env, "KONDUKT_MAX_READ_BYTES", DEFAULT_MAX_READ_BYTES),
            http_timeout_seconds=_positive_float(
                env, "KONDUKT_HTTP_TIMEOUT_SECONDS", DEFAULT_HTTP_TIMEOUT_SECONDS
            ),
            max_image_pixels=_positive_int(env, "KONDUKT_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS),
            payload_bucket=_first(env, "KONDUKT_PAYLOAD_BUCKET"),
            payload_prefix=env.get("KONDUKT_PAYLOAD_PREFIX", DEFAULT_PAYLOAD_PREFIX).strip().lstrip("/"),
            output_prefix=_first(env, "KONDUKT_OUTPUT_PREFIX"),
            s3_endpoint=_first(env, "KONDUKT_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
            region=_first(env, "AWS_REGION", "AWS_DEFAULT_REGION") or DEFAULT_REGION,
            upload_bucket=_first(env, "KONDUKT_S3_BUCKET"),
            upload_prefix=env.get("KONDUKT_S3_PREFIX", "").strip().lstrip("/"),
            heartbeat_file=_first(env, "KONDUKT_HEARTBEAT_FILE"),
            output_file=_first(env, "KONDUKT_OUTPUT_FILE") or DEFAULT_OUTPUT_FILE,
            fetch_timeout_seconds=_positive_float(
                env, "KONDUKT_FETCH_TIMEOUT_SECONDS", DEFAULT_FETCH_TIMEOUT_SECONDS
            ),
            egress=egress,
        )
