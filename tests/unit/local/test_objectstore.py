"""The storage of ``kondukt run``: the embedded S3 endpoint (moto's server on 127.0.0.1) as boto3 sees it,
and the copy of a run's objects to ``<data dir>/s3/<bucket>/<key>`` when the run ends.

Everything goes through real HTTP on loopback with the boto3 the workers use; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from kondukt.local.objectstore import TaskStorage, key_to_relative_path, open_task_storage


def client_of(storage: TaskStorage) -> Any:
    """A boto3 client configured the way a task process is (its environment), not the runner's."""
    env = storage.environment
    return boto3.session.Session().client(
        "s3",
        endpoint_url=env["KONDUKT_S3_ENDPOINT"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )


def test_the_run_objects_are_copied_to_the_data_directory_by_their_keys(tmp_path: Path) -> None:
    data = tmp_path / "data"
    keys = {
        "uploads/wf-1/sample_300x200.png": b"png bytes",
        "runs/wf-1/resize_ref/iter0-retry0/out.webp": b"webp bytes",
        "odd//segments/./and/../dots": b"escaped",
        "100%/sure": b"percent",
    }
    with open_task_storage(data, want_s3=True, environ={}) as storage:
        assert urlparse(storage.endpoint_url).hostname == "127.0.0.1"
        assert storage.bucket == "kondukt" and storage.local_s3_root == data / "s3"
        s3 = client_of(storage)
        for key, body in keys.items():
            s3.put_object(Bucket="kondukt", Key=key, Body=body)
        endpoint = storage.endpoint_url
    for key, body in keys.items():
        assert (data / "s3" / "kondukt" / key_to_relative_path(key)).read_bytes() == body
    assert (data / "s3" / "kondukt" / "odd" / "%" / "segments" / "%2E" / "and" / "%2E%2E" / "dots").is_file()
    assert (data / "s3" / "kondukt" / "100%25" / "sure").is_file()
    png = data / "s3" / "kondukt" / "uploads" / "wf-1" / "sample_300x200.png"
    assert storage.local_path("s3://kondukt/uploads/wf-1/sample_300x200.png") == png
    assert storage.local_path(f"{endpoint}/kondukt/uploads/wf-1/sample_300x200.png") == png
    assert storage.local_path("s3://kondukt/uploads/wf-1/missing.png") is None


def test_a_multipart_upload_with_the_current_clients_checksums_is_stored_whole(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(1024 * 1024) * 11)  # 11 MiB: three parts of 5 MiB at most
    with open_task_storage(tmp_path / "data", want_s3=True, environ={}) as storage:
        client_of(storage).upload_file(
            str(source),
            "kondukt",
            "uploads/big.bin",
            Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024),
        )
    stored = tmp_path / "data" / "s3" / "kondukt" / "uploads" / "big.bin"
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()


def test_every_run_starts_with_an_empty_endpoint(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_task_storage(data, want_s3=True, environ={}) as first:
        client_of(first).put_object(Bucket="kondukt", Key="runs/old/out.txt", Body=b"old")
    with open_task_storage(data, want_s3=True, environ={}) as second:
        listed = client_of(second).list_objects_v2(Bucket="kondukt")
        assert listed.get("KeyCount") == 0, listed.get("Contents")
    assert (data / "s3" / "kondukt" / "runs" / "old" / "out.txt").read_bytes() == b"old"


def test_objects_the_workflow_input_names_are_loaded_from_earlier_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_task_storage(data, want_s3=True, environ={}) as earlier:
        s3 = client_of(earlier)
        s3.put_object(Bucket="kondukt", Key="uploads/wf-0/photo.jpg", Body=b"jpeg")
        s3.put_object(Bucket="kondukt", Key="runs/wf-0/not/named.bin", Body=b"other")
    workflow_input = {
        "fileLocation": "s3://kondukt/uploads/wf-0/photo.jpg",
        "more": [{"again": "s3://kondukt/uploads/wf-0/photo.jpg"}, "s3://kondukt/uploads/never/written.jpg"],
        "elsewhere": "s3://another-bucket/uploads/wf-0/photo.jpg",
    }
    with open_task_storage(data, want_s3=True, environ={}, workflow_input=workflow_input) as later:
        s3 = client_of(later)
        assert s3.get_object(Bucket="kondukt", Key="uploads/wf-0/photo.jpg")["Body"].read() == b"jpeg"
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="kondukt")["Contents"]] == ["uploads/wf-0/photo.jpg"]
    assert (data / "s3" / "kondukt" / "uploads" / "wf-0" / "photo.jpg").read_bytes() == b"jpeg"
    assert (data / "s3" / "kondukt" / "runs" / "wf-0" / "not" / "named.bin").read_bytes() == b"other"


def test_an_object_that_cannot_be_written_is_reported_and_the_others_are_kept(tmp_path: Path) -> None:
    warnings: list[str] = []
    data = tmp_path / "data"
    with open_task_storage(data, want_s3=True, environ={}, warn=warnings.append) as storage:
        s3 = client_of(storage)
        s3.put_object(Bucket="kondukt", Key="clash", Body=b"a file")
        s3.put_object(Bucket="kondukt", Key="clash/child", Body=b"needs clash to be a folder")
        s3.put_object(Bucket="kondukt", Key="fine.txt", Body=b"fine")
    assert (data / "s3" / "kondukt" / "clash").read_bytes() == b"a file"
    assert (data / "s3" / "kondukt" / "fine.txt").read_bytes() == b"fine"
    assert len(warnings) == 1 and "s3://kondukt/clash/child" in warnings[0], warnings


def test_the_objects_are_copied_when_the_run_ends_with_an_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with pytest.raises(KeyboardInterrupt), open_task_storage(data, want_s3=True, environ={}) as storage:
        client_of(storage).put_object(Bucket="kondukt", Key="uploads/partial.txt", Body=b"done before ^C")
        raise KeyboardInterrupt
    assert (data / "s3" / "kondukt" / "uploads" / "partial.txt").read_bytes() == b"done before ^C"


def test_a_bucket_a_task_creates_is_copied_too(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_task_storage(data, want_s3=True, environ={"KONDUKT_S3_BUCKET": "photos"}) as storage:
        assert storage.environment["KONDUKT_S3_BUCKET"] == "photos"
        s3 = client_of(storage)
        s3.create_bucket(Bucket="scratch")
        s3.put_object(Bucket="scratch", Key="a.txt", Body=b"a")
        s3.put_object(Bucket="photos", Key="b.txt", Body=b"b")
    assert (data / "s3" / "scratch" / "a.txt").read_bytes() == b"a"
    assert (data / "s3" / "photos" / "b.txt").read_bytes() == b"b"


def test_no_endpoint_is_started_when_one_is_configured_or_none_is_needed(tmp_path: Path) -> None:
    configured = {"KONDUKT_S3_ENDPOINT": "http://127.0.0.1:9"}
    with open_task_storage(tmp_path, want_s3=True, environ=configured) as storage:
        assert storage.endpoint_url == "http://127.0.0.1:9" and storage.local_s3_root is None
    with open_task_storage(tmp_path, want_s3=False, environ={}) as storage:
        assert not storage.uses_s3
        assert storage.environment["KONDUKT_OUTPUT_PREFIX"] == (tmp_path / "files" / "runs").resolve().as_uri() + "/"
    assert not (tmp_path / "s3").exists()
