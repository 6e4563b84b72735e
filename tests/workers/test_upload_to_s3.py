"""``upload_toS3`` against real S3-compatible endpoints on loopback (moto, and ``kondukt run``'s embedded
endpoint): keys, URLs, server-side copies, configuration by environment and input, and loud failures."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kondukt.local.objectstore import open_task_storage
from kondukt_workers import TaskContext, TaskResult, execute
from kondukt_workers.builtin.upload_to_s3 import object_url
from tests.workers.conftest import closed_port_url

CONTEXT = TaskContext(
    workflow_id="wf-up", task_id="t-up", task_ref="upload_toS3_ref", task_name="upload_toS3"
)


def upload(task_input: dict[str, Any]) -> TaskResult:
    return execute("upload_toS3", task_input, CONTEXT)


def completed_output(result: TaskResult) -> dict[str, Any]:
    assert result.status == "COMPLETED", result.reason_for_incompletion
    return dict(result.output_data)


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "photo_300x200.jpg"
    path.write_bytes(b"\xff\xd8 not really a jpeg, the uploader does not care \xff\xd9")
    return path


def test_uploads_a_file_under_prefix_and_workflow_and_outputs_its_url(
    image_file: Path, bucket: str, moto_s3: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONDUKT_S3_BUCKET", bucket)
    monkeypatch.setenv("KONDUKT_S3_PREFIX", "images")
    output = completed_output(upload({"fileLocation": image_file.as_uri()}))
    key = "images/wf-up/photo_300x200.jpg"
    assert output == {
        "fileLocation": f"{moto_endpoint}/{bucket}/{key}",
        "s3Uri": f"s3://{bucket}/{key}",
        "bucket": bucket,
        "key": key,
        "etag": hashlib.md5(image_file.read_bytes()).hexdigest(),
        "contentType": "image/jpeg",
    }
    stored = moto_s3.get_object(Bucket=bucket, Key=key)
    assert stored["Body"].read() == image_file.read_bytes() and stored["ContentType"] == "image/jpeg"


def test_an_s3_source_on_the_same_endpoint_is_copied_server_side(
    bucket: str, moto_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto_s3.put_object(Bucket=bucket, Key="runs/wf-up/resized.webp", Body=b"webp bytes")
    monkeypatch.setenv("KONDUKT_S3_BUCKET", bucket)
    output = completed_output(
        upload({"fileLocation": f"s3://{bucket}/runs/wf-up/resized.webp", "prefix": "public/"})
    )
    assert output["key"] == "public/wf-up/resized.webp" and output["contentType"] == "image/webp"
    assert moto_s3.get_object(Bucket=bucket, Key="public/wf-up/resized.webp")["Body"].read() == b"webp bytes"
    assert output["etag"] == hashlib.md5(b"webp bytes").hexdigest()


def test_input_overrides_the_environment(
    image_file: Path, bucket: str, moto_s3: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONDUKT_S3_ENDPOINT", closed_port_url())  # the environment points nowhere useful
    monkeypatch.setenv("KONDUKT_S3_BUCKET", "some-other-bucket")
    output = completed_output(
        upload(
            {
                "fileLocation": image_file.as_uri(),
                "bucket": bucket,
                "prefix": "",
                "endpoint": moto_endpoint,
                "key": "chosen/name ü.jpg",
                "contentType": "application/x-test",
            }
        )
    )
    assert output["fileLocation"] == f"{moto_endpoint}/{bucket}/chosen/name%20%C3%BC.jpg"
    stored = moto_s3.get_object(Bucket=bucket, Key="chosen/name ü.jpg")
    assert stored["ContentType"] == "application/x-test"


def test_urls_are_path_style_on_custom_endpoints_and_virtual_hosted_on_aws() -> None:
    assert object_url("b", "a dir/x+y.jpg", "http://127.0.0.1:9000/", "us-east-1") == (
        "http://127.0.0.1:9000/b/a%20dir/x%2By.jpg"
    )
    assert (
        object_url("photos", "wf/x.jpg", None, "eu-west-3")
        == "https://photos.s3.eu-west-3.amazonaws.com/wf/x.jpg"
    )


def test_the_object_url_from_kondukt_runs_embedded_endpoint_can_be_fetched_and_lands_in_the_data_dir(
    image_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    with open_task_storage(data, want_s3=True, environ={}) as storage:
        for name, value in storage.environment.items():  # what every task process of the run is given
            monkeypatch.setenv(name, value)
        output = completed_output(upload({"fileLocation": image_file.as_uri()}))
        with urllib.request.urlopen(output["fileLocation"], timeout=10) as response:
            assert response.read() == image_file.read_bytes()
    assert output["fileLocation"] == f"{storage.endpoint_url}/kondukt/uploads/wf-up/photo_300x200.jpg"
    stored = data / "s3" / "kondukt" / "uploads" / "wf-up" / "photo_300x200.jpg"
    assert stored.read_bytes() == image_file.read_bytes()


def test_missing_bucket_configuration_is_a_terminal_error_naming_what_to_set(image_file: Path) -> None:
    result = upload({"fileLocation": image_file.as_uri()})
    assert result.status == "FAILED_WITH_TERMINAL_ERROR"
    assert "KONDUKT_S3_BUCKET" in (result.reason_for_incompletion or "")


def test_a_bucket_that_does_not_exist_fails_loudly_with_the_s3_error(
    image_file: Path, moto_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONDUKT_S3_BUCKET", "kondukt-never-created")
    result = upload({"fileLocation": image_file.as_uri()})
    assert result.status == "FAILED_WITH_TERMINAL_ERROR"
    reason = result.reason_for_incompletion or ""
    assert "NoSuchBucket" in reason and "s3://kondukt-never-created/wf-up/photo_300x200.jpg" in reason


def test_an_unreachable_endpoint_fails_loudly_and_retriably(image_file: Path) -> None:
    result = upload({"fileLocation": image_file.as_uri(), "bucket": "b", "endpoint": closed_port_url()})
    assert result.status == "FAILED"
    assert "cannot reach the S3 endpoint" in (result.reason_for_incompletion or "")


def test_a_missing_source_fails_terminally(tmp_path: Path, bucket: str) -> None:
    missing = (tmp_path / "nothing.jpg").as_uri()
    result = upload({"fileLocation": missing, "bucket": bucket})
    assert result.status == "FAILED_WITH_TERMINAL_ERROR" and missing in (result.reason_for_incompletion or "")


@pytest.mark.parametrize(
    ("task_input", "reason"),
    [
        pytest.param({}, "fileLocation is required", id="no-file"),
        pytest.param(
            {"fileLocation": "file:///x.jpg", "bucket": 5},
            "input bucket must be a string",
            id="bucket-not-text",
        ),
        pytest.param(
            {"fileLocation": "https://example.invalid/", "bucket": "b"}, "names no file", id="no-file-name"
        ),
    ],
)
def test_bad_input_fails_terminally(task_input: dict[str, Any], reason: str) -> None:
    result = upload(task_input)
    assert result.status == "FAILED_WITH_TERMINAL_ERROR"
    assert reason in (result.reason_for_incompletion or "")
