"""The URI reader in a cluster: no ``file://``, the egress rules for http(s), a time limit on every fetch.

The cluster policy comes from the environment, as the operator sets it on every task pod
(``KONDUKT_EGRESS=cluster``). Targets are a recording server on 127.0.0.1 (refused by default,
allowed through ``KONDUKT_EGRESS_ALLOW``): a refusal is proven by the server never seeing the request.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kondukt_workers.settings import ConfigurationError, Settings
from kondukt_workers.storage import FetchTimedOut, StorageError, UnsupportedUri, read_uri, write_uri
from tests.loopback_http import recording_server


def test_file_uris_are_refused_in_a_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "token"
    secret.write_bytes(b"a mounted secret")
    monkeypatch.setenv("KONDUKT_EGRESS", "cluster")
    for action in (lambda: read_uri(secret.as_uri()), lambda: write_uri((tmp_path / "out").as_uri(), b"x")):
        with pytest.raises(UnsupportedUri) as raised:
            action()
        assert raised.value.terminal and "file:// URIs are refused in a cluster" in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_inside_a_pod_the_cluster_policy_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    with pytest.raises(UnsupportedUri):
        read_uri((tmp_path / "any").as_uri())


def test_file_uris_stay_for_the_local_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KONDUKT_EGRESS", "local")
    (tmp_path / "in.txt").write_bytes(b"local file")
    assert read_uri((tmp_path / "in.txt").as_uri()) == b"local file"


def test_http_to_a_refused_address_fails_terminally_and_never_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KONDUKT_EGRESS", "cluster")
    with recording_server() as server:
        for action in (lambda: read_uri(f"{server.url}/ok"), lambda: write_uri(f"{server.url}/put", b"x")):
            with pytest.raises(StorageError) as raised:
                action()
            assert raised.value.terminal and raised.value.code == "EgressRefused"
            assert "127.0.0.1" in str(raised.value) and "'loopback'" in str(raised.value)
        assert server.paths == []


def test_the_allowlist_lets_a_worker_read_an_internal_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KONDUKT_EGRESS", "cluster")
    monkeypatch.setenv("KONDUKT_EGRESS_ALLOW", "files.internal, 127.0.0.1/32")
    with recording_server() as server:
        assert read_uri(f"{server.url}/ok") == b'{"ok": true}'
        write_uri(f"{server.url}/put", b"stored")
        assert server.paths == ["/ok", "/put"]


def test_a_trickling_server_cannot_hold_a_fetch_beyond_its_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every byte arrives well within the read timeout; the whole fetch still ends at its time limit."""
    monkeypatch.setenv("KONDUKT_FETCH_TIMEOUT_SECONDS", "0.3")
    with recording_server() as server:
        with pytest.raises(FetchTimedOut) as raised:
            read_uri(f"{server.url}/trickle")
        assert "KONDUKT_FETCH_TIMEOUT_SECONDS" in str(raised.value) and not raised.value.terminal


def test_a_bad_egress_setting_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="KONDUKT_EGRESS"):
        Settings.from_environ({"KONDUKT_EGRESS": "wide-open"})


def test_the_worker_process_refuses_a_file_uri_in_a_cluster(tmp_path: Path) -> None:
    """The whole protocol: ``kondukt-worker upload_toS3`` with a file:// source, as in a task pod."""
    secret = tmp_path / "token"
    secret.write_bytes(b"a mounted secret")
    result = tmp_path / "result.json"
    env = {
        "PATH": "/usr/bin:/bin", "KONDUKT_EGRESS": "cluster", "KONDUKT_OUTPUT_FILE": str(result),
        "KONDUKT_INPUT": json.dumps({"fileLocation": secret.as_uri(), "bucket": "b"}),
        "KONDUKT_TASK_ID": "t1", "KONDUKT_WORKFLOW_ID": "w1", "KONDUKT_TASK_REF": "up",
        "KONDUKT_TASK_NAME": "upload_toS3", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
    }
    subprocess.run([sys.executable, "-m", "kondukt_workers.cli", "upload_toS3"], env=env, timeout=120, check=False)
    text = result.read_text()
    assert "FAILED_WITH_TERMINAL_ERROR" in text and "file:// URIs are refused in a cluster" in text
    assert "a mounted secret" not in text
