"""The local runner's process layer: the worker protocol's environment, results, deadlines, process trees."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from kondukt.driver.limits import INPUT_ENV_LIMIT_BYTES
from kondukt.engine.models import ContainerTemplate, TaskStatus
from kondukt.local.process import (
    AttemptProcess,
    AttemptRequest,
    TemplateError,
    attempt_argv,
    outcome_from_result,
    template_environment,
)
from tests.unit.local.processes import FAKE_WORKER, process_alive, wait_until


def request(tmp_path: Path, task_input: dict[str, object], timeout: int | None = None, **env: str) -> AttemptRequest:
    return AttemptRequest(
        task_id="task-1",
        workflow_id="wf-1",
        reference_task_name="ref_1",
        task_def_name="fake",
        retry_count=2,
        iteration=3,
        input_data=task_input,
        argv=[sys.executable, str(FAKE_WORKER)],
        base_environment={**os.environ, **env},
        work_dir=tmp_path / "attempts",
        timeout_seconds=timeout,
    )


# --------------------------------------------------------------------------------------------------
# Reading a result (pure)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "exit_code", "stderr", "status", "reason_part"),
    [
        ("empty file, exit 0", "", 0, "", TaskStatus.COMPLETED, None),
        ("empty file, exit 3", "", 3, "boom\nlast words", TaskStatus.FAILED, "exit code 3: boom\nlast words"),
        ("killed", "", -signal.SIGKILL, "", TaskStatus.FAILED, "killed by SIGKILL"),
        ("status wins over exit code", '{"status": "COMPLETED"}', 1, "", TaskStatus.COMPLETED, None),
        ("terminal failure", '{"status": "FAILED_WITH_TERMINAL_ERROR", "reasonForIncompletion": "bad"}', 0, "",
         TaskStatus.FAILED_WITH_TERMINAL_ERROR, "bad"),
        ("not JSON", "nope", 0, "", TaskStatus.FAILED, "not JSON"),
        ("not an object", "[1, 2]", 0, "", TaskStatus.FAILED, "JSON list, not an object"),
        ("unknown status", '{"status": "DONE"}', 0, "", TaskStatus.FAILED, "'DONE' is not one of"),
        ("outputData not an object", '{"outputData": 3}', 0, "", TaskStatus.FAILED, "outputData is not an object"),
    ],
)
def test_outcome_from_result(
    name: str, text: str, exit_code: int, stderr: str, status: TaskStatus, reason_part: str | None
) -> None:
    outcome = outcome_from_result(text, exit_code, stderr)
    assert outcome.status == status, name
    if reason_part is None:
        assert outcome.reason is None
    else:
        assert outcome.reason is not None and reason_part in outcome.reason


def test_outcome_keeps_output_and_external_path() -> None:
    outcome = outcome_from_result(
        json.dumps({"outputData": {"a": 1}, "externalOutputPayloadStoragePath": "s3://b/k"}), 0, ""
    )
    assert outcome.status == TaskStatus.COMPLETED
    assert outcome.output_data == {"a": 1}
    assert outcome.external_output_path == "s3://b/k"


# --------------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------------


def test_argv_is_command_plus_args_and_finds_programs_beside_the_interpreter() -> None:
    template = ContainerTemplate(command=[Path(sys.executable).name, "-c"], args=["pass"])
    argv = attempt_argv(template, "t")
    assert argv[1:] == ["-c", "pass"]
    assert Path(argv[0]).name == Path(sys.executable).name and os.path.isabs(argv[0])


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (None, "has no template.command"),
        (ContainerTemplate(image="x"), "has no template.command"),
        (ContainerTemplate(command=["no-such-program-kondukt"]), "'no-such-program-kondukt' not found"),
    ],
)
def test_argv_errors_name_the_task_def(template: ContainerTemplate | None, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        attempt_argv(template, "my_task")


def test_template_env_literal_values() -> None:
    template = ContainerTemplate(env=[{"name": "A", "value": "1"}, {"name": "B", "value": 2}, {"name": "C"}])
    assert template_environment(template, "t") == {"A": "1", "B": "2", "C": ""}


def test_template_env_value_from_is_a_clear_error() -> None:
    template = ContainerTemplate(env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])
    with pytest.raises(TemplateError, match=r"TaskDef 'my_task': template.env\[0\] \(TOKEN\) uses valueFrom"):
        template_environment(template, "my_task")


def test_template_env_from_is_a_clear_error() -> None:
    with pytest.raises(TemplateError, match="envFrom"):
        template_environment(ContainerTemplate(envFrom=[{"configMapRef": {"name": "x"}}]), "t")


# --------------------------------------------------------------------------------------------------
# Real processes
# --------------------------------------------------------------------------------------------------


async def test_attempt_gets_the_protocol_environment(tmp_path: Path) -> None:
    attempt = AttemptProcess(request(tmp_path, {"x": [1, 2], "echoEnv": ["EXTRA"]}, EXTRA="yes"))
    await attempt.start()
    outcome = await attempt.wait()
    assert outcome.status == TaskStatus.COMPLETED, outcome.reason
    out = outcome.output_data
    assert out["input"] == {"x": [1, 2], "echoEnv": ["EXTRA"]}
    assert (out["taskRef"], out["taskName"], out["taskId"], out["workflowId"]) == ("ref_1", "fake", "task-1", "wf-1")
    assert (out["retryCount"], out["iteration"]) == (2, 3)
    assert out["env"] == {"EXTRA": "yes"}


async def test_non_zero_exit_fails_with_the_end_of_stderr(tmp_path: Path) -> None:
    attempt = AttemptProcess(request(tmp_path, {"exitCode": 7, "stderr": "disk on fire"}))
    await attempt.start()
    outcome = await attempt.wait()
    assert outcome.status == TaskStatus.FAILED
    assert outcome.reason is not None and "exit code 7" in outcome.reason and "disk on fire" in outcome.reason


async def test_timeout_kills_the_whole_process_tree(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    attempt = AttemptProcess(
        request(tmp_path, {"spawnChild": True, "pidFile": str(pid_file), "sleepSeconds": 60}, timeout=1)
    )
    await attempt.start()
    # The deadline counts from wait(): both processes exist before it starts, however slow the machine.
    assert wait_until(pid_file.exists)
    outcome = await attempt.wait()
    assert outcome.status == TaskStatus.TIMED_OUT
    assert outcome.reason is not None and "timeoutSeconds=1" in outcome.reason
    worker_pid, child_pid = (int(p) for p in pid_file.read_text().split())
    assert wait_until(lambda: not process_alive(worker_pid) and not process_alive(child_pid))


async def test_cancel_kills_the_tree_and_reports_canceled(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    attempt = AttemptProcess(request(tmp_path, {"spawnChild": True, "pidFile": str(pid_file), "sleepSeconds": 60}))
    await attempt.start()
    assert wait_until(pid_file.exists)
    attempt.cancel()
    outcome = await attempt.wait()
    assert outcome.status == TaskStatus.CANCELED
    worker_pid, child_pid = (int(p) for p in pid_file.read_text().split())
    assert wait_until(lambda: not process_alive(worker_pid) and not process_alive(child_pid))


async def test_a_leader_that_exits_takes_its_group_with_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    attempt = AttemptProcess(request(tmp_path, {"spawnChild": True, "pidFile": str(pid_file)}))
    await attempt.start()
    outcome = await attempt.wait()
    assert outcome.status == TaskStatus.COMPLETED
    _, child_pid = (int(p) for p in pid_file.read_text().split())
    assert wait_until(lambda: not process_alive(child_pid))


async def test_large_input_travels_through_external_storage(tmp_path: Path) -> None:
    stored: dict[str, bytes] = {}

    def store(key: str, data: bytes) -> str:
        path = tmp_path / "payloads" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stored[key] = data
        return path.as_uri()

    big = {"blob": "x" * (INPUT_ENV_LIMIT_BYTES + 10)}
    attempt = AttemptProcess(request(tmp_path, big), store_input=store)
    await attempt.start()
    outcome = await attempt.wait()
    assert outcome.status == TaskStatus.COMPLETED, outcome.reason
    assert list(stored) == ["wf-1/ref_1/iter3-retry2/input.json"]
    assert outcome.output_data["externalInput"].startswith("file://")
    assert outcome.output_data["input"] == {"size": len(json.dumps(big))}


async def test_large_input_without_storage_is_a_template_error(tmp_path: Path) -> None:
    attempt = AttemptProcess(request(tmp_path, {"blob": "x" * (INPUT_ENV_LIMIT_BYTES + 10)}))
    with pytest.raises(TemplateError, match="no external payload storage"):
        await attempt.start()


async def test_result_that_is_not_json_fails_the_attempt(tmp_path: Path) -> None:
    attempt = AttemptProcess(request(tmp_path, {"garbage": True}))
    await attempt.start()
    outcome = await attempt.wait()
    assert outcome.status == TaskStatus.FAILED
    assert outcome.reason is not None and "not JSON" in outcome.reason


async def test_external_output_path_is_reported(tmp_path: Path) -> None:
    attempt = AttemptProcess(request(tmp_path, {"externalOutput": True}))
    await attempt.start()
    outcome = await attempt.wait()
    assert outcome.status == TaskStatus.COMPLETED
    assert outcome.external_output_path is not None and outcome.external_output_path.startswith("file://")
