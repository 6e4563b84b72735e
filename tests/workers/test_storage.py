"""``read_uri`` / ``write_uri`` against real endpoints on loopback: S3 (moto), HTTP, and local files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kondukt_workers.storage import (
    ObjectNotFound,
    ObjectTooLarge,
    StorageError,
    UnsupportedUri,
    parse_s3_uri,
    read_uri,
    write_uri,
)
from tests.workers.conftest import HttpFiles, closed_port_url


def test_file_uris_round_trip_and_create_folders(tmp_path: Path) -> None:
    uri = (tmp_path / "deep" / "er" / "file name ü.bin").as_uri()
    write_uri(uri, b"\x00payload")
    assert read_uri(uri) == b"\x00payload"
    assert [p.name for p in (tmp_path / "deep" / "er").iterdir()] == ["file name ü.bin"]


def test_a_missing_file_is_a_terminal_not_found(tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound) as raised:
        read_uri((tmp_path / "absent.jpg").as_uri())
    assert raised.value.terminal and "no such file" in str(raised.value)


def test_s3_uris_round_trip_through_a_real_endpoint(bucket: str, moto_s3: Any) -> None:
    write_uri(f"s3://{bucket}/a dir/ü.json", b'{"a": 1}', "application/json")
    stored = moto_s3.get_object(Bucket=bucket, Key="a dir/ü.json")
    assert stored["ContentType"] == "application/json"
    assert read_uri(f"s3://{bucket}/a dir/ü.json") == b'{"a": 1}'


@pytest.mark.parametrize(
    ("key_or_bucket", "code"),
    [
        pytest.param("missing-key", "NoSuchKey", id="missing-key"),
        pytest.param(None, "NoSuchBucket", id="missing-bucket"),
    ],
)
def test_missing_s3_objects_are_terminal_and_name_the_uri(
    bucket: str, key_or_bucket: str | None, code: str
) -> None:
    uri = f"s3://{bucket}/{key_or_bucket}" if key_or_bucket else "s3://kondukt-no-such-bucket/key"
    with pytest.raises(ObjectNotFound) as raised:
        read_uri(uri)
    assert raised.value.code == code and uri in str(raised.value)


def test_an_unreachable_s3_endpoint_is_retriable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KONDUKT_S3_ENDPOINT", closed_port_url())
    with pytest.raises(StorageError) as raised:
        read_uri("s3://bucket/key")
    assert raised.value.terminal is False and "cannot reach the S3 endpoint" in str(raised.value)


def test_http_reads_and_writes(http_files: HttpFiles) -> None:
    http_files.files["hello.txt"] = b"hello over http"
    assert read_uri(f"{http_files.url}/files/hello.txt") == b"hello over http"
    write_uri(f"{http_files.url}/files/put.bin", b"stored by PUT")
    assert http_files.files["put.bin"] == b"stored by PUT"


@pytest.mark.parametrize(
    ("path", "error", "terminal"),
    [
        pytest.param("/files/missing", ObjectNotFound, True, id="404-not-found"),
        pytest.param("/status/403", StorageError, True, id="403-permanent"),
        pytest.param("/status/503", StorageError, False, id="503-retriable"),
        pytest.param("/status/429", StorageError, False, id="429-retriable"),
    ],
)
def test_http_errors_say_whether_a_retry_helps(
    http_files: HttpFiles, path: str, error: type[StorageError], terminal: bool
) -> None:
    with pytest.raises(error) as raised:
        read_uri(http_files.url + path)
    assert raised.value.terminal is terminal and http_files.url + path in str(raised.value)


def test_http_connection_refused_is_retriable() -> None:
    with pytest.raises(StorageError) as raised:
        read_uri(closed_port_url() + "/x.jpg")
    assert raised.value.terminal is False


def test_reads_are_size_limited_on_every_scheme(
    http_files: HttpFiles, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"z" * 2048
    http_files.files["big.bin"] = data
    write_uri(f"s3://{bucket}/big.bin", data)
    (tmp_path / "big.bin").write_bytes(data)
    monkeypatch.setenv("KONDUKT_MAX_READ_BYTES", "1000")
    for uri in (f"{http_files.url}/files/big.bin", f"s3://{bucket}/big.bin", (tmp_path / "big.bin").as_uri()):
        with pytest.raises(ObjectTooLarge, match="KONDUKT_MAX_READ_BYTES") as raised:
            read_uri(uri)
        assert raised.value.terminal
    assert read_uri((tmp_path / "big.bin").as_uri(), max_bytes=4096) == data


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("ftp://host/file.jpg", id="unknown-scheme"),
        pytest.param("/just/a/path.jpg", id="not-a-uri"),
        pytest.param("file://otherhost/x.jpg", id="remote-file-uri"),
        pytest.param("s3://bucket-only", id="s3-without-key"),
    ],
)
def test_unsupported_uris_are_terminal_errors(uri: str) -> None:
    with pytest.raises(UnsupportedUri) as raised:
        read_uri(uri)
    assert raised.value.terminal and uri in str(raised.value)


def test_s3_uris_keep_their_key_literally() -> None:
    assert parse_s3_uri("s3://b/photos/2024/a b%20c.jpg") == ("b", "photos/2024/a b%20c.jpg")
