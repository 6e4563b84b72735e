"""The cluster-facing `kondukt` commands without a cluster: formatting, parsing, patches, errors, watch logic.

Workflow objects are recorded the way the operator writes them: the engine's execution model dumped into
``status`` plus the display fields (phase, progress, message, conditions, definition snapshot).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gzip
import io
import json
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kondukt import graph as graphs
from kondukt.cli import app, cluster, graph, inspect, operations, workflows
from kondukt.cli import text as cli_text
from kondukt.engine.models import Task, TaskStatus, Workflow, WorkflowDef, WorkflowStatus, WorkflowTask
from kondukt.errors import KonduktUserError
from kondukt.kube import kubeapi

NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)
EXAMPLES = Path(__file__).resolve().parents[4] / "shared" / "conductor-examples"

PIPELINE = WorkflowDef(
    name="image_convert_resize",
    version=1,
    tasks=[
        WorkflowTask(name="image_convert_resize", taskReferenceName="image_convert_resize_ref"),
        WorkflowTask(name="upload_toS3", taskReferenceName="upload_toS3_ref"),
    ],
)


def attempt(ref: str, status: TaskStatus, seq: int, **fields: Any) -> Task:
    name = ref.removesuffix("_ref")
    return Task(
        taskId=f"{ref}-{seq}",
        taskType=fields.pop("taskType", name),
        referenceTaskName=ref,
        taskDefName=name,
        status=status,
        seq=seq,
        **fields,
    )


def workflow_object(
    name: str = "resize-1",
    namespace: str = "media",
    phase: str | None = "RUNNING",
    tasks: list[Task] | None = None,
    created: dt.datetime = NOW - dt.timedelta(minutes=5),
    **status_fields: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "kondukt.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "resourceVersion": "100",
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {
            "workflowDefRef": {"name": "image_convert_resize", "version": 1},
            "input": {"fileLocation": "s3://in/cat.jpg", "recipeParameters": {"outputFormat": "png"}},
            "correlationId": "order-42",
        },
    }
    if phase is None:
        return obj
    execution = Workflow(
        workflowId=f"uid-{name}",
        workflowName="image_convert_resize",
        status=WorkflowStatus(phase),
        tasks=tasks or [],
        startTime=NOW_MS - 90_000,
        endTime=NOW_MS - 10_000 if WorkflowStatus(phase).terminal else 0,
    )
    status = execution.model_dump(mode="json")
    status.update(phase=phase, definition=PIPELINE.model_dump(mode="json"))
    status.update(status_fields)
    obj["status"] = status
    return obj


def two_attempt_run() -> list[Task]:
    return [
        attempt("image_convert_resize_ref", TaskStatus.FAILED, 1, retryCount=0, startTime=NOW_MS - 80_000,
                endTime=NOW_MS - 79_500, reasonForIncompletion="exit code 1: cannot open s3://in/cat.jpg"),
        attempt("image_convert_resize_ref", TaskStatus.COMPLETED, 2, retryCount=1, startTime=NOW_MS - 60_000,
                endTime=NOW_MS - 55_800, jobName="resize-1-image-convert-resize-ref-1"),
        attempt("upload_toS3_ref", TaskStatus.IN_PROGRESS, 3, startTime=NOW_MS - 30_000),
    ]


# ============================================================================================ durations
@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"), (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (150, "2m30s"), (600, "10m"),
        (3 * 3600 - 1, "179m"), (3 * 3600, "3h"), (3 * 3600 + 300, "3h5m"), (8 * 3600, "8h"), (47 * 3600, "47h"),
        (48 * 3600, "2d"), (50 * 3600, "2d2h"), (8 * 86400, "8d"), (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y"),
    ],
)
def test_ages_read_like_kubectl(seconds: float, text: str) -> None:
    assert cli_text.human_duration(seconds) == text


@pytest.mark.parametrize(("ms", "text"), [(0, "0ms"), (850, "850ms"), (4_200, "4.2s"), (192_000, "3m12s")])
def test_task_durations_keep_subsecond_precision(ms: float, text: str) -> None:
    assert cli_text.short_duration(ms) == text


# ============================================================================================ get
def test_get_prints_a_kubectl_like_table() -> None:
    running = workflow_object(tasks=two_attempt_run(), progress="1/2", message="upload_toS3_ref running")
    done = workflow_object(
        name="resize-0", phase="COMPLETED", progress="2/2", created=NOW - dt.timedelta(hours=3, minutes=5)
    )
    assert inspect.format_workflow_table([running, done], NOW) == (
        "NAME       PHASE       PROGRESS   AGE    MESSAGE\n"
        "resize-1   RUNNING     1/2        5m     upload_toS3_ref running\n"
        "resize-0   COMPLETED   2/2        3h5m"
    )


def test_get_cuts_long_messages_but_wide_shows_them_whole() -> None:
    reason = "task image_convert_resize_ref failed after 3 retries: " + "x" * 100
    obj = workflow_object(phase="FAILED", progress="0/2", reasonForIncompletion=reason)
    header, narrow = inspect.format_workflow_table([obj], NOW).splitlines()
    message = narrow[header.index("MESSAGE") :]
    assert message.endswith("…") and len(message) == inspect.MESSAGE_WIDTH and reason.startswith(message[:-1])
    wide = inspect.format_workflow_table([obj], NOW, wide=True).splitlines()
    assert wide[0].split() == ["NAME", "PHASE", "PROGRESS", "AGE", "DEFINITION", "DURATION", "CORRELATION-ID", "MESSAGE"]
    assert wide[1].endswith(reason)
    assert "image_convert_resize v1" in wide[1] and "order-42" in wide[1] and "80s" in wide[1]


def test_get_all_namespaces_leads_with_the_namespace() -> None:
    table = inspect.format_workflow_table([workflow_object(namespace="team-a")], NOW, with_namespace=True)
    assert table.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert table.splitlines()[1].split()[:3] == ["team-a", "resize-1", "RUNNING"]


def test_a_workflow_the_operator_has_not_seen_has_an_empty_phase() -> None:
    row = inspect.workflow_row(workflow_object(phase=None), NOW, wide=False, with_namespace=False)
    assert row == ["resize-1", "", "", "5m", ""]


def test_the_message_falls_back_to_the_reason_then_the_ready_condition() -> None:
    condition = {"type": "Ready", "status": "False", "reason": "Paused", "message": "paused by user"}
    assert workflows.workflow_message(workflow_object(conditions=[condition])) == "paused by user"
    assert workflows.workflow_message(workflow_object(reasonForIncompletion="boom", conditions=[condition])) == "boom"
    assert workflows.workflow_message(workflow_object(message="m", reasonForIncompletion="boom")) == "m"


def test_json_and_yaml_output_drop_managed_fields_and_list_like_kubectl() -> None:
    objs = [workflow_object(), workflow_object(name="resize-2")]
    single = json.loads(inspect.serialize(objs[:1], single=True, fmt="json"))
    assert single["metadata"]["name"] == "resize-1" and "managedFields" not in single["metadata"]
    listed = yaml.safe_load(inspect.serialize(objs, single=False, fmt="yaml"))
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == ["resize-1", "resize-2"]
    assert objs[0]["metadata"]["managedFields"]  # the caller's object is untouched


# ============================================================================================ describe
def test_describe_shows_every_attempt_conditions_and_events() -> None:
    obj = workflow_object(
        tasks=two_attempt_run(),
        progress="1/2",
        output={"fileLocation": "s3://out/" + "k" * 200},
        conditions=[
            {"type": "Ready", "status": "False", "reason": "Running", "message": "1 of 2 tasks done",
             "lastTransitionTime": "2025-03-01T11:58:30Z"},
        ],
    )
    events = [
        {"type": "Normal", "reason": "TaskCompleted", "message": "image_convert_resize_ref COMPLETED",
         "lastTimestamp": "2025-03-01T11:59:04Z", "source": {"component": "kondukt-operator"}},
        {"type": "Warning", "reason": "TaskFailed", "message": "image_convert_resize_ref FAILED:\nexit code 1",
         "firstTimestamp": "2025-03-01T11:58:00Z", "lastTimestamp": "2025-03-01T11:58:40Z", "count": 3,
         "reportingComponent": "kondukt-operator"},
    ]
    text = inspect.describe_workflow(obj, events, NOW)
    lines = text.splitlines()
    assert "Name:            resize-1" in lines
    assert "Definition:      image_convert_resize v1" in lines
    assert "Phase:           RUNNING" in lines
    assert "Correlation ID:  order-42" in lines
    assert "Started:         2025-03-01T11:58:30Z" in lines
    assert "Duration:        90s" in lines
    assert '  fileLocation:      "s3://in/cat.jpg"' in lines
    output_line = next(line for line in lines if line.startswith("  fileLocation:") and "s3://out/" in line)
    assert output_line.endswith("…") and len(output_line) < 130
    table_start = lines.index("Tasks (3 attempts):")
    assert lines[table_start + 1].split() == ["REF", "TYPE", "STATUS", "RETRY", "ITER", "DURATION", "JOB/CHILD", "REASON"]
    failed, retried, running = (lines[table_start + i].split(maxsplit=7) for i in (2, 3, 4))
    assert failed == ["image_convert_resize_ref", "image_convert_resize", "FAILED", "0", "0", "500ms", "-",
                      "exit code 1: cannot open s3://in/cat.jpg"]
    assert retried == ["image_convert_resize_ref", "image_convert_resize", "COMPLETED", "1", "0", "4.2s",
                       "resize-1-image-convert-resize-ref-1"]
    assert running[:6] == ["upload_toS3_ref", "upload_toS3", "IN_PROGRESS", "0", "0", "30.0s+"]
    conditions = lines[lines.index("Conditions:") + 2].split(maxsplit=4)
    assert conditions == ["Ready", "False", "Running", "90s", "1 of 2 tasks done"]
    event_lines = lines[lines.index("Events:") + 1 :]
    assert event_lines[0].split() == ["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]
    assert event_lines[1].split()[:6] == ["Warning", "TaskFailed", "80s", "(x3", "over", "2m)"]
    assert event_lines[1].endswith("image_convert_resize_ref FAILED: exit code 1")
    assert event_lines[2].split()[:4] == ["Normal", "TaskCompleted", "56s", "kondukt-operator"]


def test_describe_a_workflow_not_started_yet() -> None:
    text = inspect.describe_workflow(workflow_object(phase=None), [], NOW)
    assert "Phase:           <not started>" in text
    assert "Definition:      image_convert_resize v1" in text  # from spec.workflowDefRef
    assert "Tasks:\n  <none>\nConditions:\n  <none>\nEvents:\n  <none>\n" in text


def test_describe_still_works_when_events_cannot_be_listed() -> None:
    text = inspect.describe_workflow(workflow_object(), None, NOW, events_error="forbidden: cannot list events")
    assert text.endswith("Events:\n  <cannot list events: forbidden: cannot list events>\n")


def test_describe_shows_a_pending_terminate_request() -> None:
    obj = workflow_object()
    obj["spec"]["terminate"] = {"reason": "wrong input"}
    obj["spec"]["suspend"] = True
    text = inspect.describe_workflow(obj, [], NOW)
    assert "Suspend:         true" in text and "Terminate:       requested: wrong input" in text


def test_a_malformed_attempt_is_named_by_its_place() -> None:
    obj = workflow_object(tasks=two_attempt_run())
    obj["status"]["tasks"][1]["status"] = "EXPLODED"
    with pytest.raises(cluster.ClusterError, match=r"media/resize-1: status\.tasks\[1\]\.status: Input should be"):
        workflows.parse_tasks(obj)


def test_compressed_task_lists_are_decoded() -> None:
    tasks = two_attempt_run()
    obj = workflow_object()
    packed = gzip.compress(json.dumps([t.model_dump(mode="json") for t in tasks]).encode())
    obj["status"].pop("tasks")
    obj["status"]["tasksCompressed"] = base64.b64encode(packed).decode()
    assert [t.taskId for t in workflows.parse_tasks(obj)] == [t.taskId for t in tasks]
    obj["status"]["tasksCompressed"] = "not base64 gzip"
    with pytest.raises(cluster.ClusterError, match=r"media/resize-1: status\.tasksCompressed is not base64 of gzip of JSON"):
        workflows.parse_tasks(obj)


# ============================================================================================ watch
def test_the_watch_frame_shows_the_latest_attempt_of_each_task() -> None:
    frame = inspect.watch_frame(workflow_object(tasks=two_attempt_run(), progress="1/2"), NOW, max_rows=10)
    assert frame[0] == "Workflow media/resize-1  image_convert_resize v1"
    assert frame[1] == "Phase: RUNNING   Progress: 1/2   Duration: 90s"
    assert [line.split()[:4] for line in frame[3:]] == [
        ["TASK", "TYPE", "STATUS", "RETRY"],
        ["image_convert_resize_ref", "image_convert_resize", "COMPLETED", "1"],
        ["upload_toS3_ref", "upload_toS3", "IN_PROGRESS", "0"],
    ]


def test_the_watch_frame_summarises_what_does_not_fit() -> None:
    tasks = [attempt(f"b{i}_ref", TaskStatus.COMPLETED, i) for i in range(50)]
    tasks.append(attempt("last_ref", TaskStatus.IN_PROGRESS, 51))
    frame = inspect.watch_frame(workflow_object(tasks=tasks), NOW, max_rows=5)
    table = frame[frame.index("") + 1 :]
    assert table[1] == "… 47 earlier tasks (47 COMPLETED)"
    assert [line.split()[0] for line in table[2:]] == ["b47_ref", "b48_ref", "b49_ref", "last_ref"]


def test_plain_progress_prints_each_transition_once() -> None:
    out = io.StringIO()
    progress = inspect.LineProgress(out, clock=lambda: "12:00:00")
    first = two_attempt_run()[:1]
    progress.show(workflow_object(tasks=first, progress="0/2"), NOW)
    progress.show(workflow_object(tasks=first, progress="0/2"), NOW)  # nothing new: nothing printed
    progress.show(workflow_object(tasks=two_attempt_run(), progress="1/2"), NOW)
    assert out.getvalue().splitlines() == [
        "12:00:00   image_convert_resize_ref (image_convert_resize) FAILED: exit code 1: cannot open s3://in/cat.jpg",
        "12:00:00 media/resize-1 RUNNING 0/2",
        "12:00:00   image_convert_resize_ref (image_convert_resize) COMPLETED retry 1",
        "12:00:00   upload_toS3_ref (upload_toS3) IN_PROGRESS",
        "12:00:00 media/resize-1 RUNNING 1/2",
    ]


def test_screen_progress_redraws_in_place() -> None:
    out = io.StringIO()
    screen = inspect.ScreenProgress(out)
    screen.show(workflow_object(tasks=two_attempt_run()[:1]), NOW)
    first_height = screen.drawn_lines
    screen.show(workflow_object(tasks=two_attempt_run()), NOW)
    assert f"\x1b[{first_height}F\x1b[J" in out.getvalue()
    assert out.getvalue().count("Workflow media/resize-1") == 2


class FakeApi:
    """Stands in for WorkflowApi: a scripted sequence of reads and watch events."""

    def __init__(self, reads: list[dict[str, Any]], watches: list[list[tuple[str, dict[str, Any]]]]):
        self.reads = reads
        self.watches = watches
        self.watch_calls: list[tuple[str | None, int]] = []

    def get_workflow(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.reads.pop(0)

    def watch_workflow(
        self, name: str, resource_version: str | None, timeout_seconds: int, namespace: str | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        self.watch_calls.append((resource_version, timeout_seconds))
        yield from self.watches.pop(0) if self.watches else []


def run_watch(api: FakeApi, timeout: float = 0, clock: list[float] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    ticks = iter(clock or [])
    code = inspect.watch_until_done(
        api, "resize-1", None, timeout, inspect.LineProgress(out, clock=lambda: "t"), err,
        monotonic=(lambda: next(ticks)) if clock else __import__("time").monotonic,
    )
    return code, out.getvalue(), err.getvalue()


def test_watch_exits_0_when_the_workflow_completes() -> None:
    api = FakeApi(
        [workflow_object(progress="0/2")],
        [[("MODIFIED", workflow_object(progress="1/2")), ("MODIFIED", workflow_object(phase="COMPLETED", progress="2/2"))]],
    )
    code, out, err = run_watch(api)
    assert code == 0 and err == ""
    assert out.splitlines() == ["t media/resize-1 RUNNING 0/2", "t media/resize-1 RUNNING 1/2", "t media/resize-1 COMPLETED 2/2"]
    assert api.watch_calls == [("100", 300)]


@pytest.mark.parametrize("phase", ["FAILED", "TIMED_OUT", "TERMINATED"])
def test_watch_exits_1_for_any_other_end(phase: str) -> None:
    api = FakeApi([workflow_object()], [[("MODIFIED", workflow_object(phase=phase, reasonForIncompletion="it broke"))]])
    code, _, err = run_watch(api)
    assert code == 1
    assert err == f"workflow media/resize-1 ended {phase}: it broke\n"


def test_watch_of_an_already_finished_workflow_returns_at_once() -> None:
    api = FakeApi([workflow_object(phase="COMPLETED")], [])
    assert run_watch(api)[0] == 0 and api.watch_calls == []


def test_watch_rereads_when_the_server_ends_a_quiet_watch() -> None:
    api = FakeApi([workflow_object(), workflow_object(phase="COMPLETED")], [[], []])
    assert run_watch(api)[0] == 0
    assert len(api.watch_calls) == 1


def test_watch_gives_up_after_its_timeout_with_124() -> None:
    api = FakeApi([workflow_object(), workflow_object()], [[("MODIFIED", workflow_object())]])
    code, _, err = run_watch(api, timeout=5, clock=[0.0, 1.0, 6.0, 6.0])
    assert code == inspect.WATCH_TIMEOUT_EXIT_CODE
    assert err == "timed out after 5s: workflow media/resize-1 is still RUNNING\n"
    assert api.watch_calls == [("100", 4)]


def test_watch_reports_a_deleted_workflow() -> None:
    api = FakeApi([workflow_object()], [[("DELETED", workflow_object())]])
    with pytest.raises(cluster.ClusterError, match="was deleted while being watched"):
        run_watch(api)


# ============================================================================================ parsing
def parse(*argv: str) -> argparse.Namespace:
    return app.build_parser().parse_args(list(argv))


def test_get_arguments() -> None:
    args = parse("get", "-A", "-o", "wide", "--kubeconfig", "/k", "--context", "c")
    assert (args.name, args.all_namespaces, args.output, args.kubeconfig, args.context) == (None, True, "wide", "/k", "c")
    assert args.func is inspect.cmd_get
    assert parse("get", "wf", "-n", "ns").namespace == "ns"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["describe", "wf"], {"name": "wf", "func": inspect.cmd_describe}),
        (["watch", "wf", "--timeout", "30", "--plain"], {"timeout": 30.0, "tty": False, "func": inspect.cmd_watch}),
        (["watch", "wf"], {"timeout": 0, "tty": None}),
        (["graph", "wf", "--format", "dot", "-o", "g.dot", "--max-branches", "5"],
         {"source": "wf", "format": "dot", "output": "g.dot", "max_branches": 5, "func": graph.cmd_graph}),
        (["complete", "wf", "--task", "approve_ref", "--output", "{}"],
         {"operation": "complete", "task": "approve_ref", "status": "COMPLETED", "func": operations.cmd_operation}),
        (["terminate", "wf", "--reason", "stop"], {"operation": "terminate", "reason": "stop"}),
    ],
)
def test_command_arguments(argv: list[str], expected: dict[str, Any]) -> None:
    args = parse(*argv)
    for key, value in expected.items():
        assert getattr(args, key) == value, key


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "-o", "table"],
        ["complete", "wf", "--task", "t", "--status", "DONE"],
        ["graph", "wf", "--format", "pdf"],
        ["suspend"],
        ["watch", "wf", "--tty", "--plain"],
        ["retry", "wf", "--task", "t"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert app.main(argv) == 2
    assert "usage: kondukt" in capsys.readouterr().err


# ============================================================================================ operations
NONCE = "5b0c3f9e-5f4a-4b8e-9a59-3a0f7f1e2d11"


def request_for(*argv: str) -> operations.OperationRequest:
    return operations.operation_from_args(parse(*argv), new_nonce=lambda: NONCE)


@pytest.mark.parametrize(
    ("argv", "annotation"),
    [
        (["retry", "wf"], {"nonce": NONCE}),
        (["retry", "wf", "--reason", "fixed the bucket"], {"nonce": NONCE, "reason": "fixed the bucket"}),
        (["restart", "wf", "--input", '{"fileLocation": "s3://in/dog.jpg"}'],
         {"nonce": NONCE, "workflowInput": {"fileLocation": "s3://in/dog.jpg"}}),
        (["rerun", "wf", "--task", "upload_toS3_ref", "--task-input", '{"a": 1}', "--input", '{"b": 2}'],
         {"nonce": NONCE, "taskReferenceName": "upload_toS3_ref", "taskInput": {"a": 1}, "workflowInput": {"b": 2}}),
        (["skip", "wf", "--task", "upload_toS3_ref", "--output", '{"skipped": true}'],
         {"nonce": NONCE, "taskReferenceName": "upload_toS3_ref", "outputData": {"skipped": True}}),
        (["complete", "wf", "--task", "approve_ref", "--status", "FAILED", "--reason", "rejected"],
         {"nonce": NONCE, "taskReferenceName": "approve_ref", "status": "FAILED", "reason": "rejected"}),
        (["complete", "wf", "--task-id", "t-123", "--output", '{"ok": 1}'],
         {"nonce": NONCE, "taskId": "t-123", "status": "COMPLETED", "outputData": {"ok": 1}}),
    ],
)
def test_annotation_operations_patch_one_annotation_with_a_nonce(argv: list[str], annotation: dict[str, Any]) -> None:
    patch = request_for(*argv).patch()
    key = f"ops.kondukt.io/{argv[0]}"
    assert list(patch) == ["metadata"] and list(patch["metadata"]["annotations"]) == [key]
    assert json.loads(patch["metadata"]["annotations"][key]) == annotation


def test_every_request_gets_a_fresh_uuid_nonce() -> None:
    first = operations.operation_from_args(parse("retry", "wf")).nonce
    second = operations.operation_from_args(parse("retry", "wf")).nonce
    assert first != second and len(str(first)) == 36


@pytest.mark.parametrize(
    ("argv", "patch"),
    [
        (["suspend", "wf"], {"spec": {"suspend": True}}),
        (["resume", "wf"], {"spec": {"suspend": False}}),
        (["terminate", "wf"], {"spec": {"terminate": {"reason": "terminated by user"}}}),
        (["terminate", "wf", "--reason", "wrong input"], {"spec": {"terminate": {"reason": "wrong input"}}}),
    ],
)
def test_spec_operations_patch_the_spec(argv: list[str], patch: dict[str, Any]) -> None:
    assert request_for(*argv).patch() == patch


def test_what_was_requested_is_said_plainly() -> None:
    said = request_for("complete", "wf", "--task", "approve_ref", "--output", '{"approved": true}').describe()
    assert said == (
        f"complete requested (annotation ops.kondukt.io/complete, nonce {NONCE}, task approve_ref, "
        'status COMPLETED, output {"approved":true})'
    )
    assert request_for("suspend", "wf").describe() == "suspend requested (spec.suspend=true)"


@pytest.mark.parametrize("op", ["rerun", "skip", "complete"])
def test_task_operations_need_a_task(op: str) -> None:
    with pytest.raises(KonduktUserError, match=f"kondukt {op} needs --task REF"):
        request_for(op, "wf")


def test_json_options_name_the_option_and_the_problem(tmp_path: Path) -> None:
    with pytest.raises(KonduktUserError, match=r"--output \{oops: not valid JSON: .* at line 1 column 2"):
        operations.parse_json_object("{oops", "--output")
    with pytest.raises(KonduktUserError, match=r"--input \[1\]: expected a JSON object, got list"):
        operations.parse_json_object("[1]", "--input")
    payload = tmp_path / "out.json"
    payload.write_text('{"from": "file"}')
    assert operations.parse_json_object(f"@{payload}", "--output") == {"from": "file"}
    with pytest.raises(KonduktUserError, match=r"--output: cannot read .*missing.json"):
        operations.parse_json_object(f"@{tmp_path / 'missing.json'}", "--output")


def test_known_task_refs_cover_nested_dynamic_and_loop_tasks() -> None:
    obj = workflow_object(
        tasks=[attempt("branch_7", TaskStatus.COMPLETED, 1), attempt("step_ref__2", TaskStatus.COMPLETED, 2, iteration=2)]
    )
    obj["status"]["definition"] = WorkflowDef(
        name="w",
        tasks=[
            WorkflowTask(name="f", taskReferenceName="fork_ref", type="FORK_JOIN",
                         forkTasks=[[WorkflowTask(name="a", taskReferenceName="a_ref")]]),
            WorkflowTask(name="l", taskReferenceName="loop_ref", type="DO_WHILE",
                         loopOver=[WorkflowTask(name="s", taskReferenceName="step_ref")]),
        ],
    ).model_dump(mode="json")
    assert operations.known_task_refs(obj) == {"fork_ref", "a_ref", "loop_ref", "step_ref", "step_ref__2", "branch_7"}


def test_warnings_for_requests_the_operator_will_ignore() -> None:
    running = workflow_object()
    assert operations.operation_warnings(running, request_for("retry", "wf")) == [
        "workflow is RUNNING: retry applies to a workflow that has ended"
    ]
    done = workflow_object(phase="COMPLETED")
    assert operations.operation_warnings(done, request_for("skip", "wf", "--task", "t")) == [
        "workflow is COMPLETED: skip applies to a running workflow"
    ]
    failed = workflow_object(phase="FAILED", appliedOperations=["old-applied"])
    failed["metadata"]["annotations"] = {"ops.kondukt.io/retry": json.dumps({"nonce": "still-pending"})}
    assert operations.operation_warnings(failed, request_for("retry", "wf")) == [
        "replacing an earlier retry request (nonce still-pending) not applied yet"
    ]
    failed["status"]["appliedOperations"] = ["still-pending"]
    assert operations.operation_warnings(failed, request_for("retry", "wf")) == []


# ============================================================================================ API errors
@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (404, {"message": 'workflows.kondukt.io "wf" not found', "details": {"name": "wf", "kind": "workflows"}},
         'workflow "wf" not found in namespace media'),
        (404, {"message": "the server could not find the requested resource"},
         "the cluster does not serve kondukt.io/v1alpha1 (the server could not find the requested resource): "
         "install Kondukt's CRDs (`kubectl apply -f crds/`) or its Helm chart"),
        (403, {"message": 'workflows.kondukt.io "wf" is forbidden: User "bob" cannot get resource "workflows"'},
         'forbidden: workflows.kondukt.io "wf" is forbidden: User "bob" cannot get resource "workflows"'),
        (401, {"message": "Unauthorized"}, "unauthorized: the cluster rejected the credentials of this kubeconfig (Unauthorized)"),
        (422, {"message": "spec.input is immutable"},
         'the cluster refused the request on workflow "wf" in namespace media (HTTP 422): spec.input is immutable'),
    ],
)
def test_api_errors_become_clear_messages(status: int, body: dict[str, Any], message: str) -> None:
    response = kubeapi.error_from_response(status, json.dumps(body), 'workflow "wf"')
    error = cluster.api_error(response, 'workflow "wf"', "media", "https://127.0.0.1:6443")
    assert str(error) == message and error.exit_code == 2


def write_kubeconfig(path: Path, server: str, contexts: dict[str, str | None], current: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": name, "context": {"cluster": "c", "user": "u", **({"namespace": ns} if ns else {})}}
            for name, ns in contexts.items()
        ],
        "current-context": current,
    }))
    return path


def test_the_namespace_comes_from_the_flag_then_the_context(tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "kc", "https://127.0.0.1:6443", {"dev": "team-a", "bare": None}, "dev")
    assert cluster.WorkflowApi.connect(cluster.Connection(kubeconfig=str(config))).namespace == "team-a"
    assert cluster.WorkflowApi.connect(cluster.Connection(kubeconfig=str(config), namespace="x")).namespace == "x"
    assert cluster.WorkflowApi.connect(cluster.Connection(kubeconfig=str(config), context="bare")).namespace == "default"


def test_kubeconfig_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_kubeconfig(tmp_path / "kc", "https://127.0.0.1:7443", {"dev": "from-env"}, "dev")
    monkeypatch.setenv("KUBECONFIG", str(config))
    api = cluster.WorkflowApi.connect(cluster.Connection())
    assert (api.namespace, api.host) == ("from-env", "https://127.0.0.1:7443")


def test_inside_a_pod_the_service_account_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes_asyncio import config

    def fake_incluster(client_configuration: Any) -> None:
        client_configuration.host = "https://10.96.0.1:443"

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setattr(config, "load_incluster_config", fake_incluster)
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("workloads\n")
    monkeypatch.setattr(cluster, "IN_CLUSTER_NAMESPACE_FILE", namespace_file)
    api = cluster.WorkflowApi.connect(cluster.Connection())
    assert (api.host, api.namespace) == ("https://10.96.0.1:443", "workloads")
    assert cluster.WorkflowApi.connect(cluster.Connection(namespace="other")).namespace == "other"


def test_missing_kubeconfig_and_unknown_context_are_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(cluster.ClusterError, match=r"no kubeconfig found at .*nope: pass --kubeconfig FILE, set KUBECONFIG"):
        cluster.WorkflowApi.connect(cluster.Connection(kubeconfig=str(tmp_path / "nope")))
    config = write_kubeconfig(tmp_path / "kc", "https://127.0.0.1:6443", {"dev": None, "prod": None}, "dev")
    with pytest.raises(cluster.ClusterError, match=r"context 'staging' not found in .*kc \(contexts: dev, prod\)"):
        cluster.WorkflowApi.connect(cluster.Connection(kubeconfig=str(config), context="staging"))


def test_an_unreachable_cluster_is_said_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = write_kubeconfig(tmp_path / "kc", f"https://127.0.0.1:{port}", {"dev": None}, "dev")
    assert app.main(["get", "--kubeconfig", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cannot reach the Kubernetes API server at https://127.0.0.1:{port}:")
    assert "Traceback" not in err


# ============================================================================================ graph
def test_graph_from_a_cluster_workflow_uses_its_snapshot_and_attempts() -> None:
    g = graph.graph_from_workflow(workflow_object(tasks=two_attempt_run()), None, max_branches=20)
    assert g.node("t_image_convert_resize_ref").label == (
        "image_convert_resize_ref", "image_convert_resize", "COMPLETED · retry 1",
    )
    assert g.node("t_upload_toS3_ref").status is TaskStatus.IN_PROGRESS
    assert g.node(graphs.END_NODE_ID).label == ("end", "RUNNING")


def test_graph_falls_back_to_the_inline_definition_and_explains_when_there_is_none() -> None:
    obj = workflow_object(phase=None)
    obj["spec"] = {"definition": PIPELINE.model_dump(mode="json")}
    assert [n.id for n in graph.graph_from_workflow(obj, None, 20).nodes][1] == "t_image_convert_resize_ref"
    obj["spec"] = {"workflowDefRef": {"name": "image_convert_resize"}}
    with pytest.raises(cluster.ClusterError, match="media/resize-1 has no definition to draw yet"):
        graph.graph_from_workflow(obj, None, 20)


@pytest.mark.parametrize(
    ("explicit", "output", "chosen"),
    [(None, None, "mermaid"), (None, "g.svg", "svg"), (None, "g.PNG", "png"), (None, "g.gv", "dot"),
     (None, "g.txt", "mermaid"), ("dot", "g.svg", "dot")],
)
def test_the_graph_format_follows_the_flag_then_the_file_suffix(explicit: str | None, output: str | None, chosen: str) -> None:
    assert graph.choose_graph_format(explicit, output) == chosen


def test_graph_of_a_conductor_file(capsys: pytest.CaptureFixture[str]) -> None:
    source = EXAMPLES / "workflow__image_convert_resize_multipleformat_subworkflow.json"
    assert app.main(["graph", str(source), "--format", "dot"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('digraph "image_convert_resize_multipleformat_subworkflow v1" {')
    assert "t_subworkflow_jpg_ref [" in out and "peripheries=2" in out


def test_graph_of_a_file_with_several_definitions_needs_a_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifests = tmp_path / "defs.yaml"
    docs = [
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": n},
         "spec": {"name": n, "version": 1, "tasks": [{"name": "noop", "taskReferenceName": f"{n}_ref", "type": "NOOP"}]}}
        for n in ("alpha", "beta")
    ]
    manifests.write_text(yaml.safe_dump_all(docs))
    assert app.main(["graph", str(manifests)]) == 2
    assert "several WorkflowDefs (alpha:1, beta:1): choose one with --definition NAME[:VERSION]" in capsys.readouterr().err
    assert app.main(["graph", str(manifests), "--definition", "beta:1"]) == 0
    assert "t_beta_ref(" in capsys.readouterr().out


def test_png_needs_graphviz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere
    source = EXAMPLES / "workflow__image_convert_resize.json"
    assert app.main(["graph", str(source), "-o", str(tmp_path / "g.png")]) == 2
    assert "rendering PNG needs Graphviz's `dot` command, which is not on PATH" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()


def test_svg_is_written_to_the_output_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dot = tmp_path / "bin" / "dot"
    fake_dot.parent.mkdir()
    fake_dot.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write('<svg>' + sys.argv[1] + '</svg>')\n")
    fake_dot.chmod(fake_dot.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(fake_dot.parent))
    target = tmp_path / "pipeline.svg"
    assert app.main(["graph", str(EXAMPLES / "workflow__image_convert_resize.json"), "-o", str(target)]) == 0
    assert target.read_text() == "<svg>-Tsvg</svg>"
