"""LocalRunner with the real engine and real processes (a fake worker steered by its input).

Each test builds a small workflow in Python, runs it in-process and checks the final execution: what
ran, in which order, with which attempts, and that no process outlived its attempt.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kondukt.cli.progress import ProgressView
from kondukt.driver.limits import INPUT_ENV_LIMIT_BYTES
from kondukt.engine import TaskDef, TaskStatus, WorkflowDef, WorkflowStatus
from kondukt.local.objectstore import open_task_storage
from kondukt.local.runner import LocalRunner, RunEvent, RunResult, TaskEvent, WorkflowEvent
from kondukt.manifests import Bundle
from tests.unit.local.processes import FAKE_WORKER, process_alive, wait_until


def fake_def(name: str = "fake", **policy: Any) -> TaskDef:
    spec: dict[str, Any] = {
        "name": name,
        "retryCount": 0,
        "retryDelaySeconds": 0,
        "responseTimeoutSeconds": 0,
        "template": {"command": [sys.executable, str(FAKE_WORKER)]},
    }
    spec.update(policy)
    return TaskDef.model_validate(spec)


def simple(
    ref: str, inputs: Mapping[str, Any] | None = None, name: str = "fake", **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "taskReferenceName": ref,
        "type": "SIMPLE",
        "inputParameters": dict(inputs or {}),
        **extra,
    }


def workflow(name: str, tasks: list[dict[str, Any]], **extra: Any) -> WorkflowDef:
    return WorkflowDef.model_validate({"name": name, "version": 1, "tasks": tasks, **extra})


def run(
    tmp_path: Path,
    main: WorkflowDef,
    *,
    task_defs: list[TaskDef] | None = None,
    others: list[WorkflowDef] | None = None,
    workflow_input: Mapping[str, Any] | None = None,
    parallelism: int | None = None,
    events: list[RunEvent] | None = None,
    interrupt_when: Callable[[], bool] | None = None,
    timeout: float = 300.0,
) -> RunResult:
    bundle = Bundle(
        task_defs={d.name: d for d in (task_defs or [fake_def()])},
        workflow_defs={(w.name, w.version): w for w in [main, *(others or [])]},
    )
    runner = LocalRunner(
        bundle,
        bundle.blueprint_for(main),
        workflow_input or {},
        attempt_dir=tmp_path / "runs",
        parallelism=parallelism,
        on_event=None if events is None else events.append,
    )

    async def go() -> RunResult:
        if interrupt_when is not None:
            asyncio.get_running_loop().create_task(terminate_when(interrupt_when))
        return await asyncio.wait_for(runner.run(), timeout)

    async def terminate_when(ready: Callable[[], bool]) -> None:
        """Terminate the run once ``ready()`` holds (a readiness signal, not a guess at how long it takes)."""
        while not ready():
            await asyncio.sleep(0.02)
        runner.terminate("stop")

    return asyncio.run(go())


def by_ref(result: RunResult, ref: str) -> list[Any]:
    return [t for t in result.workflow.tasks if t.referenceTaskName == ref]


# --------------------------------------------------------------------------------------------------
# Sequencing, data flow, the worker protocol
# --------------------------------------------------------------------------------------------------


def test_a_chain_passes_outputs_along(tmp_path: Path) -> None:
    main = workflow(
        "chain",
        [
            simple("first", {"value": "${workflow.input.value}"}),
            simple("second", {"previous": "${first.output.input.value}"}),
        ],
        outputParameters={"result": "${second.output.input.previous}"},
    )
    result = run(tmp_path, main, workflow_input={"value": 42})
    assert result.status == WorkflowStatus.COMPLETED
    assert result.workflow.output == {"result": 42}
    first, second = by_ref(result, "first")[0], by_ref(result, "second")[0]
    assert (
        first.outputData["taskRef"] == "first"
        and first.outputData["workflowId"] == result.workflow.workflowId
    )
    assert first.outputData["taskId"] == first.taskId
    assert second.startTime >= first.endTime
    assert result.stats.processes_started == 2 and len(result.stats.step_gaps_ms) == 1


def test_progress_events_follow_each_attempt(tmp_path: Path) -> None:
    events: list[RunEvent] = []
    run(tmp_path, workflow("one", [simple("only")]), events=events)
    statuses = [e.status for e in events if isinstance(e, TaskEvent) and e.reference_task_name == "only"]
    assert statuses == [TaskStatus.SCHEDULED, TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED]


def test_a_task_def_env_reaches_the_process(tmp_path: Path) -> None:
    task_def = fake_def(
        template={"command": [sys.executable, str(FAKE_WORKER)], "env": [{"name": "GREETING", "value": "hi"}]}
    )
    result = run(tmp_path, workflow("env", [simple("t", {"echoEnv": ["GREETING"]})]), task_defs=[task_def])
    assert by_ref(result, "t")[0].outputData["env"] == {"GREETING": "hi"}


def test_an_external_output_payload_is_fetched(tmp_path: Path) -> None:
    result = run(tmp_path, workflow("ext", [simple("t", {"externalOutput": True, "mark": "m"})]))
    assert result.status == WorkflowStatus.COMPLETED
    assert by_ref(result, "t")[0].outputData["input"]["mark"] == "m"


# --------------------------------------------------------------------------------------------------
# Failures, retries, timeouts
# --------------------------------------------------------------------------------------------------


def test_retries_wait_their_delay_and_are_new_attempts(tmp_path: Path) -> None:
    task_def = fake_def(retryCount=2, retryDelaySeconds=1)
    result = run(tmp_path, workflow("retry", [simple("flaky", {"failUntilRetry": 2})]), task_defs=[task_def])
    assert result.status == WorkflowStatus.COMPLETED
    attempts = by_ref(result, "flaky")
    assert [(a.retryCount, a.status) for a in attempts] == [
        (0, TaskStatus.FAILED),
        (1, TaskStatus.FAILED),
        (2, TaskStatus.COMPLETED),
    ]
    assert len({a.taskId for a in attempts}) == 3
    assert (
        attempts[0].reasonForIncompletion
        and "transient failure on attempt 0" in attempts[0].reasonForIncompletion
    )
    for failed, retry in itertools.pairwise(attempts):
        assert retry.startTime - failed.endTime >= 1000  # the retry delay was really waited


def test_a_failing_task_fails_the_workflow_with_its_reason(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        workflow("fail", [simple("bad", {"exitCode": 3, "stderr": "no such thing"}), simple("after")]),
    )
    assert result.status == WorkflowStatus.FAILED
    assert result.workflow.reasonForIncompletion and "no such thing" in result.workflow.reasonForIncompletion
    assert by_ref(result, "after") == []


def test_a_terminal_error_is_not_retried(tmp_path: Path) -> None:
    task_def = fake_def(retryCount=3, retryDelaySeconds=0)
    result = run(
        tmp_path,
        workflow("terminal", [simple("t", {"status": "FAILED_WITH_TERMINAL_ERROR", "reason": "bad input"})]),
        task_defs=[task_def],
    )
    assert result.status == WorkflowStatus.FAILED
    assert [a.status for a in by_ref(result, "t")] == [TaskStatus.FAILED_WITH_TERMINAL_ERROR]


def test_a_timeout_kills_the_process_tree_and_times_out_the_workflow(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    # Five seconds: the worker must have started its child before the deadline, whatever the machine's load.
    task_def = fake_def(timeoutSeconds=5, timeoutPolicy="TIME_OUT_WF")
    main = workflow(
        "slow", [simple("sleepy", {"spawnChild": True, "pidFile": str(pid_file), "sleepSeconds": 60})]
    )
    result = run(tmp_path, main, task_defs=[task_def])
    assert result.status == WorkflowStatus.TIMED_OUT
    assert by_ref(result, "sleepy")[0].status == TaskStatus.TIMED_OUT
    worker_pid, child_pid = (int(p) for p in pid_file.read_text().split())
    assert wait_until(lambda: not process_alive(worker_pid) and not process_alive(child_pid))


def test_a_template_that_cannot_run_fails_the_task_terminally(tmp_path: Path) -> None:
    task_def = fake_def(
        template={"command": [sys.executable], "env": [{"name": "X", "valueFrom": {"fieldRef": {}}}]}
    )
    result = run(tmp_path, workflow("novalue", [simple("t")]), task_defs=[task_def])
    assert result.status == WorkflowStatus.FAILED
    (attempt,) = by_ref(result, "t")
    assert attempt.status == TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert attempt.reasonForIncompletion and "valueFrom" in attempt.reasonForIncompletion


# --------------------------------------------------------------------------------------------------
# Concurrency and rate limits
# --------------------------------------------------------------------------------------------------


def _fork(refs: list[str], inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": "fork",
            "taskReferenceName": "fork",
            "type": "FORK_JOIN",
            "forkTasks": [[simple(ref, inputs)] for ref in refs],
        },
        {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": refs},
    ]


def _never_overlap(result: RunResult, refs: list[str]) -> bool:
    spans = sorted((by_ref(result, r)[0].startTime, by_ref(result, r)[0].endTime) for r in refs)
    return all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


def test_concurrent_exec_limit_holds_locally(tmp_path: Path) -> None:
    refs = ["a", "b", "c"]
    result = run(
        tmp_path,
        workflow("limited", _fork(refs, {"sleepSeconds": 0.3})),
        task_defs=[fake_def(concurrentExecLimit=1)],
    )
    assert result.status == WorkflowStatus.COMPLETED
    assert _never_overlap(result, refs)


def test_parallelism_bounds_the_processes_at_once(tmp_path: Path) -> None:
    refs = ["a", "b", "c"]
    result = run(tmp_path, workflow("narrow", _fork(refs, {"sleepSeconds": 0.3})), parallelism=1)
    assert result.status == WorkflowStatus.COMPLETED
    assert _never_overlap(result, refs)


def test_rate_limit_spaces_the_starts(tmp_path: Path) -> None:
    refs = ["a", "b"]
    result = run(
        tmp_path,
        workflow("rated", _fork(refs, {})),
        task_defs=[fake_def(rateLimitPerFrequency=1, rateLimitFrequencyInSeconds=1)],
    )
    assert result.status == WorkflowStatus.COMPLETED
    (_, first), (_, second) = result.stats.dispatches
    assert second - first >= 1000  # the engine held the second start until the window reopened


# --------------------------------------------------------------------------------------------------
# Sub-workflows, started workflows, HTTP
# --------------------------------------------------------------------------------------------------


def test_a_sub_workflow_runs_in_process_and_returns_its_output(tmp_path: Path) -> None:
    child = workflow(
        "child",
        [simple("inner", {"v": "${workflow.input.v}"})],
        outputParameters={"got": "${inner.output.input.v}"},
    )
    main = workflow(
        "parent",
        [
            {
                "name": "child",
                "taskReferenceName": "sub",
                "type": "SUB_WORKFLOW",
                "inputParameters": {"v": "${workflow.input.v}"},
                "subWorkflowParam": {"name": "child", "version": 1},
            }
        ],
        outputParameters={"fromChild": "${sub.output.got}"},
    )
    result = run(tmp_path, main, others=[child], workflow_input={"v": "x"})
    assert result.status == WorkflowStatus.COMPLETED
    assert result.workflow.output == {"fromChild": "x"}
    (sub,) = by_ref(result, "sub")
    children = [r for r in result.workflows if r.purpose == "sub_workflow"]
    assert len(children) == 1 and sub.subWorkflowId == children[0].workflow.workflowId
    assert children[0].workflow.parentWorkflowId == result.workflow.workflowId


def test_a_failing_sub_workflow_fails_its_task(tmp_path: Path) -> None:
    child = workflow("child", [simple("inner", {"exitCode": 1, "stderr": "child broke"})])
    main = workflow(
        "parent",
        [
            {
                "name": "child",
                "taskReferenceName": "sub",
                "type": "SUB_WORKFLOW",
                "subWorkflowParam": {"name": "child"},
            }
        ],
    )
    result = run(tmp_path, main, others=[child])
    assert result.status == WorkflowStatus.FAILED
    (sub,) = by_ref(result, "sub")
    assert sub.status == TaskStatus.FAILED
    assert sub.reasonForIncompletion and "child broke" in sub.reasonForIncompletion


def test_the_failure_workflow_runs_before_the_run_ends(tmp_path: Path) -> None:
    cleanup = workflow("cleanup", [simple("note", {"failed": "${workflow.input.workflowId}"})])
    main = workflow("fragile", [simple("bad", {"exitCode": 1})], failureWorkflow="cleanup")
    result = run(tmp_path, main, others=[cleanup])
    assert result.status == WorkflowStatus.FAILED
    (failure,) = [r for r in result.workflows if r.purpose == "failureWorkflow"]
    assert failure.workflow.status == WorkflowStatus.COMPLETED
    assert failure.workflow.tasks[0].outputData["input"]["failed"] == result.workflow.workflowId


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status = 200 if self.path == "/ok" else 404
        payload = json.dumps({"path": self.path, "got": json.loads(body or b"null")}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _http_task(ref: str, uri: str) -> dict[str, Any]:
    return {
        "name": "http",
        "taskReferenceName": ref,
        "type": "HTTP",
        "inputParameters": {"http_request": {"uri": uri, "method": "POST", "body": {"n": 1}}},
    }


def test_an_http_task_calls_and_decodes_json(tmp_path: Path, http_server: str) -> None:
    result = run(tmp_path, workflow("http", [_http_task("call", f"{http_server}/ok")]))
    assert result.status == WorkflowStatus.COMPLETED
    response = by_ref(result, "call")[0].outputData["response"]
    assert response["statusCode"] == 200 and response["body"] == {"path": "/ok", "got": {"n": 1}}
    assert response["reasonPhrase"] == "OK"


def test_an_http_error_status_fails_the_task(tmp_path: Path, http_server: str) -> None:
    result = run(tmp_path, workflow("http", [_http_task("call", f"{http_server}/missing")]))
    assert result.status == WorkflowStatus.FAILED
    (call,) = by_ref(result, "call")
    assert call.status == TaskStatus.FAILED and call.outputData["response"]["statusCode"] == 404
    assert call.reasonForIncompletion and "404" in call.reasonForIncompletion


# --------------------------------------------------------------------------------------------------
# Interruption and heartbeats
# --------------------------------------------------------------------------------------------------


def test_terminate_kills_everything_and_ends_terminated(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    main = workflow(
        "long",
        [
            {
                "name": "fork",
                "taskReferenceName": "fork",
                "type": "FORK_JOIN",
                "forkTasks": [
                    [simple("direct", {"spawnChild": True, "pidFile": str(pid_file), "sleepSeconds": 60})],
                    [
                        {
                            "name": "child",
                            "taskReferenceName": "sub",
                            "type": "SUB_WORKFLOW",
                            "subWorkflowParam": {"name": "child"},
                        }
                    ],
                ],
            },
            {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": ["direct", "sub"]},
        ],
    )
    # Both branches are running (the child workflow's task too) before the terminate comes.
    inner_started = tmp_path / "inner-started"
    child = workflow("child", [simple("inner", {"sleepSeconds": 60, "spawnChild": True,
                                                 "pidFile": str(inner_started)})])
    result = run(tmp_path, main, others=[child], interrupt_when=lambda: pid_file.exists() and inner_started.exists())
    assert result.interrupted
    assert result.status == WorkflowStatus.TERMINATED
    assert by_ref(result, "direct")[0].status == TaskStatus.CANCELED
    (child_run,) = [r for r in result.workflows if r.purpose == "sub_workflow"]
    assert child_run.workflow.status == WorkflowStatus.TERMINATED
    worker_pid, child_pid = (int(p) for p in pid_file.read_text().split())
    assert wait_until(lambda: not process_alive(worker_pid) and not process_alive(child_pid))


def test_worker_heartbeats_reach_the_engine(tmp_path: Path) -> None:
    # The runner looks at the heartbeat file every second: the worker outlives several looks, even when a
    # loaded machine delays one.
    result = run(tmp_path, workflow("beat", [simple("t", {"heartbeat": True, "sleepSeconds": 4})]))
    assert result.status == WorkflowStatus.COMPLETED
    assert by_ref(result, "t")[0].heartbeat


def test_a_workflow_no_one_can_move_on_ends_terminated_with_the_reason(tmp_path: Path) -> None:
    main = workflow(
        "approval", [simple("prepare"), {"name": "approve", "taskReferenceName": "approve", "type": "HUMAN"}]
    )
    result = run(tmp_path, main)
    assert result.status == WorkflowStatus.TERMINATED
    reason = result.workflow.reasonForIncompletion
    assert reason is not None and "approve (HUMAN)" in reason and "local run" in reason


# --------------------------------------------------------------------------------------------------
# The embedded S3: large inputs travel through it
# --------------------------------------------------------------------------------------------------


def test_a_large_input_travels_through_the_embedded_s3(tmp_path: Path) -> None:
    blob = "y" * (INPUT_ENV_LIMIT_BYTES + 1000)
    main = workflow("big", [simple("t", {"blob": "${workflow.input.blob}"})])
    bundle = Bundle(task_defs={"fake": fake_def()}, workflow_defs={("big", 1): main})
    with open_task_storage(tmp_path / "data", want_s3=True, environ={}) as storage:
        runner = LocalRunner(
            bundle,
            bundle.blueprint_for(main),
            {"blob": blob},
            attempt_dir=tmp_path / "runs",
            base_environment=storage.task_environment(os.environ),
            store_input=storage.store_payload,
            fetch_payload=storage.fetch_json,
        )
        result = asyncio.run(asyncio.wait_for(runner.run(), 60))
    assert result.status == WorkflowStatus.COMPLETED, result.workflow.reasonForIncompletion
    output = by_ref(result, "t")[0].outputData
    assert output["externalInput"].startswith("s3://kondukt/payloads/")
    assert output["input"] == {"size": len(json.dumps({"blob": blob}))}
    stored = storage.local_path(output["externalInput"])
    assert stored is not None and json.loads(stored.read_text()) == {"blob": blob}


# --------------------------------------------------------------------------------------------------
# The progress view
# --------------------------------------------------------------------------------------------------


def _events() -> list[RunEvent]:
    return [
        WorkflowEvent(1_000, "", "wf-1", "demo", WorkflowStatus.RUNNING),
        TaskEvent(1_010, "", "wf-1", "t1", "resize_ref", "resize", TaskStatus.IN_PROGRESS),
        TaskEvent(
            1_020, "sub_ref/", "wf-2", "t2", "inner_ref", "resize", TaskStatus.FAILED, "exit code 1: boom"
        ),
        TaskEvent(1_030, "", "wf-1", "t1", "resize_ref", "resize", TaskStatus.COMPLETED),
    ]


def test_plain_progress_has_one_line_per_transition() -> None:
    stream = io.StringIO()
    view = ProgressView(stream)
    for event in _events():
        view(event)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and "\x1b" not in stream.getvalue()
    assert lines[1].split()[1:] == ["IN_PROGRESS", "resize_ref"]
    assert lines[2].split()[1:3] == ["FAILED", "sub_ref/inner_ref"] and lines[2].endswith("exit code 1: boom")


def test_live_progress_colours_statuses_and_keeps_a_footer() -> None:
    stream = io.StringIO()
    view = ProgressView(stream, live=True, colour=True)
    for event in _events()[:2]:
        view(event)
    text = stream.getvalue()
    assert "\x1b[34mIN_PROGRESS" in text  # running statuses are blue
    assert text.rstrip().endswith("1 running: resize_ref\x1b[0m")  # the footer names what runs
    view.tick()
    view.close()
    assert stream.getvalue().endswith("\r\x1b[K")  # the footer is erased before the summary
