"""Kondukt's embedded S3 endpoint (``kondukt.local.s3server``) driven by boto3 and by raw HTTP requests:
buckets, objects, awkward keys, ranges, listings and pagination, copies, multipart uploads, the
streaming encodings SDKs send, integrity checks, S3's error documents, and the files on disk."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from botocore.exceptions import ClientError

from kondukt.local.s3server import LocalS3Server
from tests.workers.conftest import s3_client_for


@pytest.fixture(scope="module")
def s3(local_s3: LocalS3Server) -> Any:
    return s3_client_for(local_s3.endpoint_url)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"local-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def error_code(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = raised.value.response
    return str(response["Error"]["Code"]), int(response["ResponseMetadata"]["HTTPStatusCode"])


def raw_request(
    server: LocalS3Server,
    method: str,
    path: str,
    body: bytes | Iterator[bytes] | None = None,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    host, port = urllib.parse.urlsplit(server.endpoint_url).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


# --------------------------------------------------------------------------------------------------
# Buckets
# --------------------------------------------------------------------------------------------------


def test_bucket_lifecycle(s3: Any, local_s3: LocalS3Server) -> None:
    name = f"life-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    assert (local_s3.root / name).is_dir()
    s3.head_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as raised:
        s3.create_bucket(Bucket=name)
    assert error_code(raised) == ("BucketAlreadyOwnedByYou", 409)
    s3.put_object(Bucket=name, Key="k", Body=b"1")
    with pytest.raises(ClientError) as raised:
        s3.delete_bucket(Bucket=name)
    assert error_code(raised) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as raised:
        s3.head_bucket(Bucket=name)
    assert error_code(raised) == ("404", 404)


def test_invalid_bucket_names_are_refused(s3: Any) -> None:
    with pytest.raises(ClientError) as raised:
        s3.create_bucket(Bucket="Not_A_Valid_Name")
    assert error_code(raised) == ("InvalidBucketName", 400)


# --------------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------------


def test_put_and_get_keep_content_type_metadata_and_md5_etag(
    s3: Any, bucket: str, local_s3: LocalS3Server
) -> None:
    data = os.urandom(5000)
    put = s3.put_object(
        Bucket=bucket,
        Key="photos/cat.jpg",
        Body=data,
        ContentType="image/jpeg",
        Metadata={"source": "camera"},
    )
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="photos/cat.jpg")
    assert got["Body"].read() == data
    assert (got["ContentType"], got["Metadata"], got["ETag"]) == (
        "image/jpeg",
        {"source": "camera"},
        put["ETag"],
    )
    assert (local_s3.root / bucket / "photos" / "cat.jpg").read_bytes() == data
    head = s3.head_object(Bucket=bucket, Key="photos/cat.jpg")
    assert (head["ContentLength"], head["ContentType"], head["ETag"]) == (5000, "image/jpeg", put["ETag"])


AWKWARD_KEYS = [
    "a b/c d.txt",
    "ünïcödé/日本語.jpg",
    "x+y=z&w;v.txt",
    "question?mark#hash.txt",
    "100%/50%25.txt",
    "dots/../up.txt",
    "./here.txt",
    "folder/",
    "double//slash.txt",
    "tilde~/*star(1).txt",
]


def test_awkward_keys_round_trip_and_list_exactly(s3: Any, bucket: str, local_s3: LocalS3Server) -> None:
    for index, key in enumerate(AWKWARD_KEYS):
        s3.put_object(Bucket=bucket, Key=key, Body=f"object {index}".encode())
    for index, key in enumerate(AWKWARD_KEYS):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == f"object {index}".encode(), key
    listed = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(AWKWARD_KEYS)
    assert (local_s3.root / bucket / "ünïcödé" / "日本語.jpg").read_bytes() == b"object 1"
    assert not (local_s3.root / "up.txt").exists()  # ".." never escapes the bucket directory


@pytest.mark.parametrize(
    ("header", "expected", "content_range"),
    [
        pytest.param("bytes=2-5", b"2345", "bytes 2-5/10", id="closed"),
        pytest.param("bytes=7-", b"789", "bytes 7-9/10", id="open-ended"),
        pytest.param("bytes=-3", b"789", "bytes 7-9/10", id="suffix"),
        pytest.param("bytes=8-100", b"89", "bytes 8-9/10", id="past-the-end-is-clipped"),
    ],
)
def test_range_requests(s3: Any, bucket: str, header: str, expected: bytes, content_range: str) -> None:
    s3.put_object(Bucket=bucket, Key="digits", Body=b"0123456789")
    got = s3.get_object(Bucket=bucket, Key="digits", Range=header)
    assert got["Body"].read() == expected
    assert got["ContentRange"] == content_range and got["ResponseMetadata"]["HTTPStatusCode"] == 206


def test_an_unsatisfiable_range_is_invalid_range(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="digits", Body=b"0123456789")
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket=bucket, Key="digits", Range="bytes=10-20")
    assert error_code(raised) == ("InvalidRange", 416)


def test_missing_objects_and_buckets_get_s3_error_documents(
    s3: Any, bucket: str, local_s3: LocalS3Server
) -> None:
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket=bucket, Key="nothing/here.txt")
    assert error_code(raised) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as raised:
        s3.head_object(Bucket=bucket, Key="nothing/here.txt")
    assert error_code(raised) == ("404", 404)
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket="kondukt-no-such-bucket", Key="k", Body=b"")
    assert error_code(raised) == ("NoSuchBucket", 404)
    status, headers, body = raw_request(local_s3, "GET", f"/{bucket}/nothing/here.txt")
    assert status == 404 and headers["content-type"] == "application/xml"
    document = ElementTree.fromstring(body)
    assert document.tag == "Error" and document.findtext("Code") == "NoSuchKey"
    assert (
        document.findtext("Key") == "nothing/here.txt"
        and document.findtext("Resource") == f"/{bucket}/nothing/here.txt"
    )


def test_delete_is_idempotent_and_prunes_empty_folders(s3: Any, bucket: str, local_s3: LocalS3Server) -> None:
    s3.put_object(Bucket=bucket, Key="deep/er/file.txt", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="deep/er/file.txt")
    s3.delete_object(Bucket=bucket, Key="deep/er/file.txt")
    with pytest.raises(ClientError):
        s3.get_object(Bucket=bucket, Key="deep/er/file.txt")
    assert list((local_s3.root / bucket).iterdir()) == []


def test_a_key_needing_a_file_and_a_folder_of_the_same_name_is_refused(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="report", Body=b"file")
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=bucket, Key="report/2024.txt", Body=b"x")
    assert error_code(raised) == ("InvalidRequest", 400)


def test_unsupported_operations_say_so(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as raised:
        s3.get_object_tagging(Bucket=bucket, Key="k")
    assert error_code(raised) == ("NotImplemented", 501)


# --------------------------------------------------------------------------------------------------
# Listings
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def tree(s3: Any, bucket: str) -> str:
    for key in [
        "a.txt",
        "photos/2023/x.jpg",
        "photos/2024/y.jpg",
        "photos/2024/z.jpg",
        "photos/top.jpg",
        "videos/v.mp4",
        "z.txt",
    ]:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return bucket


def test_list_with_prefix_and_delimiter(s3: Any, tree: str) -> None:
    listed = s3.list_objects_v2(Bucket=tree, Prefix="photos/", Delimiter="/")
    assert [c["Key"] for c in listed["Contents"]] == ["photos/top.jpg"]
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["photos/2023/", "photos/2024/"]
    top = s3.list_objects_v2(Bucket=tree, Delimiter="/")
    assert [c["Key"] for c in top["Contents"]] == ["a.txt", "z.txt"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["photos/", "videos/"]
    assert top["KeyCount"] == 4


def test_v2_pagination_visits_everything_once(s3: Any, tree: str) -> None:
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=tree, PaginationConfig={"PageSize": 2}))
    assert len(pages) == 4 and all(p["KeyCount"] <= 2 for p in pages)
    keys = [c["Key"] for p in pages for c in p.get("Contents", [])]
    assert keys == [
        "a.txt",
        "photos/2023/x.jpg",
        "photos/2024/y.jpg",
        "photos/2024/z.jpg",
        "photos/top.jpg",
        "videos/v.mp4",
        "z.txt",
    ]
    grouped = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket=tree, Delimiter="/", PaginationConfig={"PageSize": 1}
        )
    )
    entries = [c["Key"] for p in grouped for c in p.get("Contents", [])]
    entries += [c["Prefix"] for p in grouped for c in p.get("CommonPrefixes", [])]
    assert sorted(entries) == ["a.txt", "photos/", "videos/", "z.txt"]


def test_v1_listing_with_markers(s3: Any, tree: str) -> None:
    pages = list(s3.get_paginator("list_objects").paginate(Bucket=tree, PaginationConfig={"PageSize": 3}))
    assert [c["Key"] for p in pages for c in p.get("Contents", [])][:3] == [
        "a.txt",
        "photos/2023/x.jpg",
        "photos/2024/y.jpg",
    ]
    assert sum(len(p.get("Contents", [])) for p in pages) == 7


# --------------------------------------------------------------------------------------------------
# Copies and multipart uploads
# --------------------------------------------------------------------------------------------------


def test_copy_object_copies_or_replaces_metadata(s3: Any, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket, Key="src/a b.txt", Body=b"copy me", ContentType="text/plain", Metadata={"k": "v"}
    )
    copied = s3.copy_object(
        Bucket=bucket, Key="dst/same.txt", CopySource={"Bucket": bucket, "Key": "src/a b.txt"}
    )
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"copy me").hexdigest()}"'
    same = s3.get_object(Bucket=bucket, Key="dst/same.txt")
    assert (same["Body"].read(), same["ContentType"], same["Metadata"]) == (
        b"copy me",
        "text/plain",
        {"k": "v"},
    )
    s3.copy_object(
        Bucket=bucket,
        Key="dst/new.txt",
        CopySource={"Bucket": bucket, "Key": "src/a b.txt"},
        MetadataDirective="REPLACE",
        ContentType="application/x-new",
        Metadata={"n": "1"},
    )
    new = s3.head_object(Bucket=bucket, Key="dst/new.txt")
    assert (new["ContentType"], new["Metadata"]) == ("application/x-new", {"n": "1"})
    with pytest.raises(ClientError) as raised:
        s3.copy_object(Bucket=bucket, Key="dst/x", CopySource={"Bucket": bucket, "Key": "src/none"})
    assert error_code(raised) == ("NoSuchKey", 404)


def test_upload_file_uses_multipart_and_download_file_uses_ranges(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    data = os.urandom(12 * 1024 * 1024)
    source.write_bytes(data)
    s3.upload_file(str(source), bucket, "big/big.bin")
    head = s3.head_object(Bucket=bucket, Key="big/big.bin")
    part_digests = (
        hashlib.md5(data[: 8 * 1024 * 1024]).digest() + hashlib.md5(data[8 * 1024 * 1024 :]).digest()
    )
    assert head["ETag"] == f'"{hashlib.md5(part_digests).hexdigest()}-2"' and head["ContentLength"] == len(
        data
    )
    s3.download_file(bucket, "big/big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data


def test_multipart_uploads_check_parts_and_can_be_aborted(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="m.bin")["UploadId"]
    first = s3.upload_part(Bucket=bucket, Key="m.bin", UploadId=upload_id, PartNumber=1, Body=b"a" * 100)
    second = s3.upload_part(Bucket=bucket, Key="m.bin", UploadId=upload_id, PartNumber=2, Body=b"b" * 100)
    with pytest.raises(ClientError) as raised:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="m.bin",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]},
        )
    assert error_code(raised) == ("InvalidPart", 400)
    with pytest.raises(ClientError) as raised:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="m.bin",
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 2, "ETag": second["ETag"]}]
            },
        )
    assert error_code(raised) == ("EntityTooSmall", 400)  # every part but the last needs 5 MiB
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="m.bin",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": second["ETag"]}]},
    )
    assert s3.get_object(Bucket=bucket, Key="m.bin")["Body"].read() == b"b" * 100
    aborted = s3.create_multipart_upload(Bucket=bucket, Key="n.bin")["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key="n.bin", UploadId=aborted)
    with pytest.raises(ClientError) as raised:
        s3.upload_part(Bucket=bucket, Key="n.bin", UploadId=aborted, PartNumber=1, Body=b"late")
    assert error_code(raised) == ("NoSuchUpload", 404)


# --------------------------------------------------------------------------------------------------
# Streaming encodings and integrity checks (raw HTTP, as other SDKs send them)
# --------------------------------------------------------------------------------------------------


def aws_chunked(data: bytes, chunk_size: int, signed: bool, trailer: str | None) -> bytes:
    signature = ";chunk-signature=" + "ab" * 32 if signed else ""
    framed = b""
    for start in range(0, len(data), chunk_size):
        chunk = data[start : start + chunk_size]
        framed += f"{len(chunk):x}{signature}\r\n".encode() + chunk + b"\r\n"
    framed += f"0{signature}\r\n".encode()
    if trailer:
        framed += trailer.encode() + b"\r\n"
    return framed + b"\r\n"


@pytest.mark.parametrize(
    ("content_sha256", "signed", "trailer"),
    [
        pytest.param("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", True, None, id="signed-chunks"),
        pytest.param(
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            False,
            "x-amz-checksum-crc32:AAAAAA==",
            id="unsigned-trailer",
        ),
        pytest.param(
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
            True,
            "x-amz-checksum-crc32:AAAAAA==\r\nx-amz-trailer-signature:" + "cd" * 32,
            id="signed-trailer",
        ),
    ],
)
def test_aws_chunked_payloads_are_decoded(
    s3: Any, bucket: str, local_s3: LocalS3Server, content_sha256: str, signed: bool, trailer: str | None
) -> None:
    data = os.urandom(70_000)
    body = aws_chunked(data, 16_384, signed, trailer)
    status, headers, _ = raw_request(
        local_s3,
        "PUT",
        f"/{bucket}/streamed.bin",
        body,
        {
            "x-amz-content-sha256": content_sha256,
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(data)),
            "Content-Length": str(len(body)),
        },
    )
    assert status == 200 and headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert s3.get_object(Bucket=bucket, Key="streamed.bin")["Body"].read() == data


def test_http_chunked_transfer_encoding_is_accepted(s3: Any, bucket: str, local_s3: LocalS3Server) -> None:
    parts = [os.urandom(1000), os.urandom(3000), os.urandom(10)]
    status, _, _ = raw_request(local_s3, "PUT", f"/{bucket}/chunked.bin", iter(parts), chunked=True)
    assert status == 200
    assert s3.get_object(Bucket=bucket, Key="chunked.bin")["Body"].read() == b"".join(parts)


@pytest.mark.parametrize(
    ("header", "value", "code"),
    [
        pytest.param(
            "Content-MD5", base64.b64encode(hashlib.md5(b"other").digest()).decode(), "BadDigest", id="md5"
        ),
        pytest.param(
            "x-amz-content-sha256",
            hashlib.sha256(b"other").hexdigest(),
            "XAmzContentSHA256Mismatch",
            id="sha256",
        ),
    ],
)
def test_payload_checksums_are_verified(
    s3: Any, bucket: str, local_s3: LocalS3Server, header: str, value: str, code: str
) -> None:
    status, _, body = raw_request(local_s3, "PUT", f"/{bucket}/checked.bin", b"payload", {header: value})
    assert status == 400 and ElementTree.fromstring(body).findtext("Code") == code
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="checked.bin")


# --------------------------------------------------------------------------------------------------
# The server itself
# --------------------------------------------------------------------------------------------------


def test_serves_on_loopback_and_data_outlives_the_server(tmp_path: Path) -> None:
    root = tmp_path / "s3"
    with LocalS3Server(root, buckets=["kondukt"]) as server:
        assert server.endpoint_url.startswith("http://127.0.0.1:")
        assert server.start() == server.endpoint_url  # idempotent
        s3_client_for(server.endpoint_url).put_object(Bucket="kondukt", Key="runs/keep.txt", Body=b"kept")
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.endpoint_url
    (root / "kondukt" / "by-hand.txt").write_bytes(b"dropped in by a person")
    with LocalS3Server(root) as server:
        client = s3_client_for(server.endpoint_url)
        assert client.get_object(Bucket="kondukt", Key="runs/keep.txt")["Body"].read() == b"kept"
        by_hand = client.get_object(Bucket="kondukt", Key="by-hand.txt")
        assert by_hand["ETag"] == f'"{hashlib.md5(b"dropped in by a person").hexdigest()}"'


def test_concurrent_writers_all_land(s3: Any, bucket: str) -> None:
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            client = s3_client_for(s3.meta.endpoint_url)
            for n in range(5):
                client.put_object(Bucket=bucket, Key=f"w{index}/obj{n}", Body=f"{index}-{n}".encode())
            client.put_object(Bucket=bucket, Key="shared", Body=f"writer {index}".encode() * 1000)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 31
    shared = s3.get_object(Bucket=bucket, Key="shared")
    body = shared["Body"].read()
    assert shared["ETag"] == f'"{hashlib.md5(body).hexdigest()}"' and len(set(body.split(b"writer"))) == 2
