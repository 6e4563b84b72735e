"""The worker SDK: the decorator, results and exceptions, the protocol of one process (docs/worker-protocol.md),
external payloads, logs, heartbeats, and ``kondukt-worker`` as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kondukt_workers import (
    TaskContext,
    TaskResult,
    TerminalError,
    encode_task_input,
    execute,
    heartbeat,
    output_uri,
    resolve_result_payload,
    run_attempt,
    worker_task,
)
from kondukt_workers.payloads import load_task_input
from kondukt_workers.registry import get_worker, registered_names, unregister
from kondukt_workers.storage import StorageError

WORKER_BIN = Path(sys.executable).with_name("kondukt-worker")
CONTEXT = TaskContext(workflow_id="wf-1", task_id="t-1", task_ref="greet_ref", task_name="greet")


@pytest.fixture
def greet() -> Iterator[str]:
    @worker_task(task_definition_name="test_greet")
    def greet_worker(task_input: dict[str, Any]) -> dict[str, Any]:
        if "name" not in task_input:
            raise TerminalError("input name is required")
        if task_input["name"] == "boom":
            raise RuntimeError("the greeting service is down")
        return {"greeting": f"Hello {task_input['name']}", "padding": task_input.get("padding", "")}

    yield "test_greet"
    unregister("test_greet")


def read_result(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_bytes())
    assert isinstance(document, dict)
    return document


def log_records(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


# --------------------------------------------------------------------------------------------------
# Decorator and in-process execution
# --------------------------------------------------------------------------------------------------


def test_decorator_registers_the_function_and_returns_it_unchanged(greet: str) -> None:
    function = get_worker(greet)
    assert function({"name": "Ada"})["greeting"] == "Hello Ada"
    assert greet in registered_names()
    assert {"image_convert_resize", "upload_toS3", "image_multiple_convert_resize"} <= set(registered_names())


def test_another_function_cannot_take_a_registered_name(greet: str) -> None:
    with pytest.raises(ValueError, match="already registered"):

        @worker_task(task_definition_name=greet)
        def impostor(task_input: dict[str, Any]) -> dict[str, Any]:
            return {}


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        pytest.param({"a": 1}, TaskResult.completed({"a": 1}), id="dict-is-output"),
        pytest.param(None, TaskResult.completed(), id="none-is-empty-output"),
        pytest.param([1, 2], TaskResult.completed({"result": [1, 2]}), id="non-dict-wrapped-like-conductor"),
        pytest.param(TaskResult.failed("try later"), TaskResult.failed("try later"), id="task-result-as-is"),
        pytest.param(
            TaskResult.failed_terminally("never"),
            TaskResult.failed_terminally("never"),
            id="terminal-result-as-is",
        ),
    ],
)
def test_return_values_become_task_results(returned: object, expected: TaskResult) -> None:
    assert execute(lambda _: returned, {}, CONTEXT) == expected


def test_terminal_error_fails_the_task_without_retry(greet: str) -> None:
    result = execute(greet, {}, CONTEXT)
    assert result.status == "FAILED_WITH_TERMINAL_ERROR"
    assert result.reason_for_incompletion == "input name is required"


def test_other_exceptions_fail_with_a_short_reason_and_log_the_traceback(
    greet: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = execute(greet, {"name": "boom"}, CONTEXT)
    assert result.status == "FAILED"
    assert result.reason_for_incompletion == "RuntimeError: the greeting service is down"
    error = next(r for r in log_records(capsys.readouterr().err) if r["event"] == "task_error")
    assert "Traceback" in error["traceback"] and "greet_worker" in error["traceback"]
    assert error["taskId"] == "t-1" and error["ref"] == "greet_ref"


def test_an_exception_marked_terminal_is_terminal() -> None:
    def worker(_: dict[str, Any]) -> None:
        raise StorageError("s3://b/k: S3 error NoSuchKey", terminal=True)

    assert execute(worker, {}, CONTEXT).status == "FAILED_WITH_TERMINAL_ERROR"


def test_output_that_is_not_json_fails_terminally() -> None:
    result = execute(lambda _: {"when": object()}, {}, CONTEXT)
    assert result.status == "FAILED_WITH_TERMINAL_ERROR"
    assert "cannot be written as JSON" in (result.reason_for_incompletion or "")


def test_long_reasons_are_shortened() -> None:
    result = execute(lambda _: TaskResult.failed("x" * 5000), {}, CONTEXT)
    assert len(result.reason_for_incompletion or "") == 1000


def test_a_task_result_with_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="IN_PROGRESS"):
        TaskResult("IN_PROGRESS")


def test_unknown_worker_name_fails_terminally_and_names_the_known_ones() -> None:
    result = execute("no_such_worker", {}, CONTEXT)
    assert result.status == "FAILED_WITH_TERMINAL_ERROR"
    assert "no_such_worker" in (result.reason_for_incompletion or "")
    assert "image_convert_resize" in (result.reason_for_incompletion or "")


def test_logs_are_json_lines_with_the_attempt_identity_and_duration(
    greet: str, capsys: pytest.CaptureFixture[str]
) -> None:
    execute(greet, {"name": "Ada"}, CONTEXT)
    records = log_records(capsys.readouterr().err)
    assert [r["event"] for r in records] == ["task_started", "task_finished"]
    finished = records[-1]
    assert finished["workflowId"] == "wf-1" and finished["taskId"] == "t-1" and finished["ref"] == "greet_ref"
    assert finished["status"] == "COMPLETED" and finished["duration_ms"] >= 0


# --------------------------------------------------------------------------------------------------
# One process: the environment protocol, in-process
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def protocol_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    output_file = tmp_path / "result.json"
    for name, value in {
        "KONDUKT_OUTPUT_FILE": str(output_file),
        "KONDUKT_WORKFLOW_ID": "wf-7",
        "KONDUKT_TASK_ID": "task-7",
        "KONDUKT_TASK_REF": "greet_ref",
        "KONDUKT_TASK_NAME": "test_greet",
        "KONDUKT_RETRY_COUNT": "2",
        "KONDUKT_ITERATION": "0",
    }.items():
        monkeypatch.setenv(name, value)
    return output_file


def test_run_attempt_writes_the_result_and_exits_zero(
    greet: str, protocol_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONDUKT_INPUT", json.dumps({"name": "Ada"}))
    assert run_attempt(greet) == 0
    assert read_result(protocol_env) == {
        "status": "COMPLETED",
        "outputData": {"greeting": "Hello Ada", "padding": ""},
    }


def test_a_failed_task_still_exits_zero_with_the_status_inside(
    greet: str, protocol_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONDUKT_INPUT", json.dumps({"name": "boom"}))
    assert run_attempt(greet) == 0
    assert read_result(protocol_env)["status"] == "FAILED"


@pytest.mark.parametrize(
    ("raw_input", "reason"),
    [
        pytest.param("{not json", "KONDUKT_INPUT is not valid JSON", id="not-json"),
        pytest.param("[1, 2]", "KONDUKT_INPUT must be a JSON object, not list", id="not-an-object"),
        pytest.param('{"externalInputPayloadStoragePath": 5}', "must be a URI string", id="bad-pointer"),
    ],
)
def test_invalid_input_fails_terminally(
    greet: str, protocol_env: Path, monkeypatch: pytest.MonkeyPatch, raw_input: str, reason: str
) -> None:
    monkeypatch.setenv("KONDUKT_INPUT", raw_input)
    assert run_attempt(greet) == 0
    result = read_result(protocol_env)
    assert result["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert reason in result["reasonForIncompletion"]


def test_a_malformed_setting_fails_terminally_naming_the_variable(
    greet: str, protocol_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONDUKT_INPUT", "{}")
    monkeypatch.setenv("KONDUKT_MAX_RESULT_BYTES", "lots")
    assert run_attempt(greet) == 0
    result = read_result(protocol_env)
    assert result["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert "KONDUKT_MAX_RESULT_BYTES='lots' is not an integer" in result["reasonForIncompletion"]


def test_an_unwritable_output_file_exits_non_zero(
    greet: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KONDUKT_INPUT", json.dumps({"name": "Ada"}))
    monkeypatch.setenv("KONDUKT_OUTPUT_FILE", str(tmp_path / "missing-dir" / "result.json"))
    assert run_attempt(greet) == 1
    assert "could not write the result" in capsys.readouterr().err.splitlines()[-1]


def test_an_external_input_payload_is_fetched(
    greet: str, protocol_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = tmp_path / "input.json"
    payload.write_text(json.dumps({"name": "from a file"}))
    monkeypatch.setenv("KONDUKT_INPUT", json.dumps({"externalInputPayloadStoragePath": payload.as_uri()}))
    assert run_attempt(greet) == 0
    assert read_result(protocol_env)["outputData"]["greeting"] == "Hello from a file"


def test_a_missing_external_input_fails_terminally_naming_it(
    greet: str, protocol_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = (tmp_path / "nowhere.json").as_uri()
    monkeypatch.setenv("KONDUKT_INPUT", json.dumps({"externalInputPayloadStoragePath": missing}))
    assert run_attempt(greet) == 0
    result = read_result(protocol_env)
    assert result["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert missing in result["reasonForIncompletion"]


# --------------------------------------------------------------------------------------------------
# Large results and inputs: external payload storage on a real S3 endpoint (moto)
# --------------------------------------------------------------------------------------------------


def test_a_large_result_goes_to_external_payload_storage(
    greet: str, protocol_env: Path, bucket: str, moto_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONDUKT_PAYLOAD_BUCKET", bucket)
    monkeypatch.setenv("KONDUKT_INPUT", json.dumps({"name": "Ada", "padding": "x" * 10_000}))
    assert run_attempt(greet) == 0
    written = protocol_env.read_bytes()
    assert len(written) <= 4096
    pointer = json.loads(written)
    expected_uri = f"s3://{bucket}/payloads/wf-7/greet_ref/iter0-retry2/output.json"
    assert pointer == {"externalOutputPayloadStoragePath": expected_uri, "status": "COMPLETED"}
    stored = json.loads(moto_s3.get_object(Bucket=bucket, Key=expected_uri.split("/", 3)[3])["Body"].read())
    assert stored["greeting"] == "Hello Ada" and len(stored["padding"]) == 10_000
    resolved = resolve_result_payload(pointer)
    assert resolved == {"status": "COMPLETED", "outputData": stored}


def test_the_result_size_limit_is_configurable(
    greet: str, protocol_env: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONDUKT_PAYLOAD_BUCKET", bucket)
    monkeypatch.setenv("KONDUKT_PAYLOAD_PREFIX", "big-results")
    monkeypatch.setenv("KONDUKT_MAX_RESULT_BYTES", "100")
    monkeypatch.setenv("KONDUKT_INPUT", json.dumps({"name": "Ada", "padding": "y" * 200}))
    assert run_attempt(greet) == 0
    pointer = read_result(protocol_env)
    assert pointer["externalOutputPayloadStoragePath"].startswith(f"s3://{bucket}/big-results/wf-7/")
    assert resolve_result_payload(pointer)["outputData"]["padding"] == "y" * 200


def test_a_large_result_without_payload_storage_fails_instead_of_being_truncated(
    greet: str, protocol_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONDUKT_INPUT", json.dumps({"name": "Ada", "padding": "x" * 10_000}))
    assert run_attempt(greet) == 0
    result = read_result(protocol_env)
    assert result["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert "KONDUKT_PAYLOAD_BUCKET" in result["reasonForIncompletion"]
    assert "KONDUKT_MAX_RESULT_BYTES" in result["reasonForIncompletion"]
    assert "outputData" not in result or result["outputData"] == {}


def test_a_large_result_with_an_unreachable_payload_store_fails_retriably(
    greet: str, protocol_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.workers.conftest import closed_port_url

    monkeypatch.setenv("KONDUKT_S3_ENDPOINT", closed_port_url())
    monkeypatch.setenv("KONDUKT_PAYLOAD_BUCKET", "payloads")
    monkeypatch.setenv("KONDUKT_INPUT", json.dumps({"name": "Ada", "padding": "x" * 10_000}))
    assert run_attempt(greet) == 0
    result = read_result(protocol_env)
    assert result["status"] == "FAILED"
    assert "could not store the" in result["reasonForIncompletion"]


def test_large_task_inputs_travel_through_payload_storage(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONDUKT_PAYLOAD_BUCKET", bucket)
    small = encode_task_input({"a": 1}, CONTEXT)
    assert json.loads(small) == {"a": 1}
    big_input = {"items": list(range(20_000))}
    pointer = encode_task_input(big_input, CONTEXT)
    assert json.loads(pointer) == {
        "externalInputPayloadStoragePath": f"s3://{bucket}/payloads/wf-1/greet_ref/iter0-retry0/input.json"
    }
    assert load_task_input(pointer) == big_input


def test_resolving_an_inline_result_returns_it_unchanged() -> None:
    inline = {"status": "FAILED", "reasonForIncompletion": "nope", "outputData": {"a": 1}}
    assert resolve_result_payload(inline) == inline


# --------------------------------------------------------------------------------------------------
# Names, heartbeats
# --------------------------------------------------------------------------------------------------


def test_output_names_derive_from_the_attempt_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KONDUKT_OUTPUT_PREFIX", "s3://kondukt/outputs")
    first = output_uri({}, "photo_300x200.jpg", context=CONTEXT)
    assert first == "s3://kondukt/outputs/wf-1/greet_ref/iter0-retry0/photo_300x200.jpg"
    assert output_uri({}, "photo_300x200.jpg", context=CONTEXT) == first
    retry = TaskContext(workflow_id="wf-1", task_id="t-2", task_ref="greet_ref", retry_count=1)
    assert output_uri({}, "photo_300x200.jpg", context=retry).endswith("/iter0-retry1/photo_300x200.jpg")
    override = output_uri({"outputLocation": "file:///tmp/elsewhere"}, "a.png", context=CONTEXT)
    assert override == "file:///tmp/elsewhere/wf-1/greet_ref/iter0-retry0/a.png"


def test_without_an_output_location_workers_are_told_what_to_set() -> None:
    with pytest.raises(TerminalError, match="KONDUKT_OUTPUT_PREFIX"):
        output_uri({}, "a.png", context=CONTEXT)


def test_heartbeat_does_nothing_unless_a_file_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert heartbeat() is False
    beat = tmp_path / "heartbeat.json"
    monkeypatch.setenv("KONDUKT_HEARTBEAT_FILE", str(beat))
    assert heartbeat({"done": 3}) is True
    document = json.loads(beat.read_text())
    assert document["progress"] == {"done": 3} and document["heartbeatTime"] > 1_600_000_000_000


# --------------------------------------------------------------------------------------------------
# kondukt-worker as a real subprocess
# --------------------------------------------------------------------------------------------------


def run_worker_process(
    arguments: list[str], task_input: object, tmp_path: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], Path]:
    output_file = tmp_path / "termination-log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONDUKT_")}
    env.update(
        {
            "KONDUKT_INPUT": json.dumps(task_input),
            "KONDUKT_OUTPUT_FILE": str(output_file),
            "KONDUKT_WORKFLOW_ID": "wf-sub",
            "KONDUKT_TASK_ID": "task-sub",
            "KONDUKT_TASK_REF": "sub_ref",
            "KONDUKT_RETRY_COUNT": "0",
        }
    )
    env.update(extra_env or {})
    completed = subprocess.run(
        [str(WORKER_BIN), *arguments], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return completed, output_file


def test_kondukt_worker_runs_a_builtin_worker_under_the_env_protocol(tmp_path: Path) -> None:
    task_input = {
        "fileLocation": "s3://b/photo.jpg",
        "outputFormats": ["png"],
        "outputSizes": [{"width": 10, "height": 20}],
    }
    completed, output_file = run_worker_process(["image_multiple_convert_resize"], task_input, tmp_path)
    assert completed.returncode == 0, completed.stderr
    result = read_result(output_file)
    assert result["status"] == "COMPLETED"
    assert result["outputData"]["dynamicTasks"][0]["taskReferenceName"] == "image_convert_resize_png_10x20_0"
    finished = next(r for r in log_records(completed.stderr) if r["event"] == "task_finished")
    assert finished["workflowId"] == "wf-sub" and finished["ref"] == "sub_ref"


def test_kondukt_worker_imports_user_modules_and_reports_their_failures(tmp_path: Path) -> None:
    module_dir = tmp_path / "user_code"
    module_dir.mkdir()
    (module_dir / "my_workers.py").write_text(
        textwrap.dedent(
            """
            from kondukt_workers import TerminalError, worker_task

            @worker_task(task_definition_name="shout")
            def shout(task_input):
                if not task_input.get("text"):
                    raise TerminalError("input text is required")
                return {"text": task_input["text"].upper()}
            """
        )
    )
    env = {"PYTHONPATH": str(module_dir)}
    completed, output_file = run_worker_process(
        ["--import", "my_workers", "shout"], {"text": "hi"}, tmp_path, env
    )
    assert completed.returncode == 0, completed.stderr
    assert read_result(output_file) == {"status": "COMPLETED", "outputData": {"text": "HI"}}

    env["KONDUKT_WORKER_MODULES"] = "my_workers"
    completed, output_file = run_worker_process(["shout"], {}, tmp_path, env)
    assert completed.returncode == 0
    assert read_result(output_file) == {
        "status": "FAILED_WITH_TERMINAL_ERROR",
        "outputData": {},
        "reasonForIncompletion": "input text is required",
    }


def test_kondukt_worker_with_an_unknown_name_writes_a_terminal_result(tmp_path: Path) -> None:
    completed, output_file = run_worker_process(["image_resize_typo"], {}, tmp_path)
    assert completed.returncode == 0
    result = read_result(output_file)
    assert result["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert "no worker is registered as 'image_resize_typo'" in result["reasonForIncompletion"]


def test_kondukt_worker_without_a_name_is_a_usage_error(tmp_path: Path) -> None:
    completed, output_file = run_worker_process([], {}, tmp_path)
    assert completed.returncode == 2
    assert "NAME is required" in completed.stderr
    assert not output_file.exists()


def test_kondukt_worker_exits_non_zero_when_it_cannot_write_a_result(tmp_path: Path) -> None:
    completed, _ = run_worker_process(
        ["image_multiple_convert_resize"],
        {},
        tmp_path,
        {"KONDUKT_OUTPUT_FILE": str(tmp_path / "no" / "file")},
    )
    assert completed.returncode == 1
    assert completed.stderr.splitlines()[-1].startswith("kondukt-worker: could not write the result")
