"""The Workflow status codec: round trips, compactness, conditions, progress."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from kondukt.engine.models import Task, TaskStatus, Workflow, WorkflowDef, WorkflowStatus, WorkflowTask
from kondukt.kube import status as codec

NOW = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=5)
DEFINITION = WorkflowDef(name="chain", tasks=[WorkflowTask(name="echo", taskReferenceName=f"t{i}") for i in range(5)])


def attempt(seq: int, ref: str, status: TaskStatus, **extra: object) -> Task:
    return Task(taskId=f"id-{seq}", taskType="echo", referenceTaskName=ref, taskDefName="echo", status=status,
                seq=seq, **extra)  # type: ignore[arg-type]


def workflow(tasks: list[Task], state: WorkflowStatus = WorkflowStatus.RUNNING, **extra: object) -> Workflow:
    return Workflow(workflowId="uid-1", workflowName="chain", status=state, input={"x": 1}, tasks=tasks,
                    **extra)  # type: ignore[arg-type]


def build(wf: Workflow, previous: tuple[dict[str, object], ...] = (), now: dt.datetime = NOW,
          **kwargs: object) -> dict[str, object]:
    return codec.build_status(wf, DEFINITION, generation=3, observed_suspend=False, previous_conditions=previous,
                              now=now, **kwargs)  # type: ignore[arg-type]


def test_round_trip_keeps_the_engine_state() -> None:
    wf = workflow([attempt(1, "t0", TaskStatus.COMPLETED, outputData={"a": [1, 2]}, executed=True),
                   attempt(2, "t1", TaskStatus.IN_PROGRESS, dispatched=True)], nextSeq=3,
                  appliedOperations=["n1"])
    stored = codec.read_status(json.loads(json.dumps(build(wf))))
    assert stored.workflow == wf
    assert stored.definition is not None and stored.definition.name == "chain"
    assert stored.observed_generation == 3


def test_unstarted_status_has_no_workflow() -> None:
    assert codec.read_status(None).workflow is None
    waiting = codec.build_waiting_status("WorkflowDefNotFound", "waiting", generation=1, previous_conditions=(), now=NOW)
    assert codec.read_status(waiting).workflow is None


def test_defaults_are_omitted_but_key_fields_stay() -> None:
    entry = codec.encode_task(attempt(1, "t0", TaskStatus.SCHEDULED), job_name="wf-t0-abc")
    assert entry["status"] == "SCHEDULED" and entry["retryCount"] == 0
    assert "outputData" not in entry and "heartbeat" not in entry and "iteration" not in entry
    assert entry["jobName"] == "wf-t0-abc"


def test_large_task_lists_are_compressed_and_still_readable() -> None:
    tasks = [attempt(i, f"branch_{i}", TaskStatus.COMPLETED, inputData={"fileLocation": f"s3://b/img-{i}.jpg",
                     "outputWidth": 300, "outputHeight": 300}, outputData={"fileLocation": f"s3://b/out-{i}.png"},
                     executed=True) for i in range(2000)]
    wf = workflow(tasks, WorkflowStatus.COMPLETED)
    body = build(wf, compress_over_bytes=64 * 1024)
    assert "tasks" not in body and isinstance(body["tasksCompressed"], str)
    assert body["taskCounts"] == {"COMPLETED": 2000}
    assert len(json.dumps(body)) < 200_000
    assert len(codec.tasks_from_status(body)) == 2000
    assert codec.read_status(body).workflow == wf


def test_corrupt_status_is_reported_not_crashed_on() -> None:
    with pytest.raises(codec.StatusError, match="tasksCompressed"):
        codec.read_status({"workflowId": "u", "tasksCompressed": "not-base64!"})
    with pytest.raises(codec.StatusError, match=r"status\.tasks\.0"):
        codec.read_status({"workflowId": "u", "tasks": [{"taskId": "x"}]})


@pytest.mark.parametrize(
    ("tasks", "state", "expected"),
    [
        pytest.param([], WorkflowStatus.RUNNING, "0/5", id="not-started"),
        pytest.param([attempt(1, "t0", TaskStatus.COMPLETED), attempt(2, "t1", TaskStatus.IN_PROGRESS)],
                     WorkflowStatus.RUNNING, "1/5", id="running"),
        pytest.param([attempt(1, "t0", TaskStatus.FAILED, retried=True), attempt(2, "t0", TaskStatus.IN_PROGRESS)],
                     WorkflowStatus.RUNNING, "0/5", id="a-retry-counts-once"),
        pytest.param([attempt(1, "t0", TaskStatus.COMPLETED), attempt(2, "t1", TaskStatus.FAILED)],
                     WorkflowStatus.FAILED, "2/2", id="failed-counts-what-ran"),
        pytest.param([attempt(1, "t0", TaskStatus.COMPLETED), attempt(2, "dyn_a", TaskStatus.COMPLETED)],
                     WorkflowStatus.RUNNING, "2/6", id="tasks-beyond-the-definition"),
    ],
)
def test_progress(tasks: list[Task], state: WorkflowStatus, expected: str) -> None:
    assert codec.progress(workflow(tasks, state), DEFINITION) == expected


def test_messages() -> None:
    running = workflow([attempt(i, f"t{i}", TaskStatus.IN_PROGRESS) for i in range(5)])
    assert codec.status_message(running) == "running: t0, t1, t2 (+2 more)"
    failed = workflow([], WorkflowStatus.FAILED, reasonForIncompletion="task 't1' failed: " + "x" * 1000)
    assert codec.status_message(failed).startswith("task 't1' failed") and len(codec.status_message(failed)) <= 300
    assert codec.status_message(workflow([], WorkflowStatus.COMPLETED)) == "completed"


def conditions(body: dict[str, object]) -> dict[str, dict[str, object]]:
    return {c["type"]: c for c in body["conditions"]}  # type: ignore[attr-defined, index]


def test_conditions_follow_the_phase_and_keep_transition_times() -> None:
    running = build(workflow([attempt(1, "t0", TaskStatus.IN_PROGRESS)]))
    first = conditions(running)
    assert first["Ready"]["status"] == "Unknown" and first["Succeeded"]["status"] == "Unknown"
    assert first["Reconciling"]["status"] == "True" and "Stalled" not in first
    assert first["Failed"]["status"] == "False" and first["Ready"]["observedGeneration"] == 3
    still = conditions(build(workflow([attempt(1, "t0", TaskStatus.COMPLETED)]), previous=tuple(running["conditions"]),
                             now=LATER))  # type: ignore[arg-type]
    assert still["Ready"]["lastTransitionTime"] == first["Ready"]["lastTransitionTime"]
    failed = conditions(build(workflow([], WorkflowStatus.TIMED_OUT, reasonForIncompletion="too slow"),
                              previous=tuple(running["conditions"]), now=LATER))  # type: ignore[arg-type]
    assert failed["Failed"]["status"] == "True" and failed["Failed"]["reason"] == "TimedOut"
    assert failed["Failed"]["lastTransitionTime"] == "2026-05-01T12:05:00Z"
    assert failed["Ready"]["message"] == "too slow"


@pytest.mark.parametrize(("state", "ready", "reconciling", "stalled"), [
    pytest.param(WorkflowStatus.RUNNING, "Unknown", True, False, id="running-is-reconciling"),
    pytest.param(WorkflowStatus.PAUSED, "False", False, False, id="paused-is-not-ready"),
    pytest.param(WorkflowStatus.COMPLETED, "True", False, False, id="completed-is-ready"),
    pytest.param(WorkflowStatus.FAILED, "False", False, True, id="failed-is-stalled"),
    pytest.param(WorkflowStatus.TIMED_OUT, "False", False, True, id="timed-out-is-stalled"),
    pytest.param(WorkflowStatus.TERMINATED, "False", False, True, id="terminated-is-stalled"),
])
def test_conditions_follow_kstatus_conventions(state: WorkflowStatus, ready: str, reconciling: bool,
                                               stalled: bool) -> None:
    """Ready always; Reconciling and Stalled only while True (kstatus's abnormal-true conditions)."""
    body = build(workflow([], state))
    found = conditions(body)
    assert found["Ready"]["status"] == ready and found["Ready"]["observedGeneration"] == body["observedGeneration"]
    assert ("Reconciling" in found) is reconciling and ("Stalled" in found) is stalled
    assert all(found[kind]["status"] == "True" for kind in ("Reconciling", "Stalled") if kind in found)


def test_a_waiting_workflow_is_reconciling() -> None:
    waiting = conditions(codec.build_waiting_status("TaskDefNotFound", "waiting for TaskDef(s) a", generation=2,
                                                    previous_conditions=(), now=NOW))
    assert waiting["Ready"]["status"] == "False" and waiting["Reconciling"]["reason"] == "TaskDefNotFound"
    assert "Stalled" not in waiting


def test_paused_workflows_are_suspended() -> None:
    body = build(workflow([], WorkflowStatus.PAUSED))
    assert body["phase"] == "PAUSED" and conditions(body)["Suspended"]["status"] == "True"


def test_reason_override_names_why_a_run_never_started() -> None:
    body = build(workflow([], WorkflowStatus.FAILED, reasonForIncompletion="WorkflowDef 'x' not found"),
                 reason_override="WorkflowDefNotFound")
    assert conditions(body)["Failed"]["reason"] == "WorkflowDefNotFound"


def test_the_encoder_reuses_entries_of_unchanged_tasks() -> None:
    encoder = codec.TaskEncoder()
    same = attempt(1, "t0", TaskStatus.COMPLETED)
    first = encoder.encoded([same], lambda task: None)
    second = encoder.encoded([same, attempt(2, "t1", TaskStatus.SCHEDULED)], lambda task: None)
    assert second[0] is first[0] and len(second) == 2
    assert encoder.encode([same], lambda task: None) == [codec.encode_task(same)]


def test_large_outputs_are_compressed_and_read_back() -> None:
    output = {f"branch_{i}": {"fileLocation": f"s3://b/out-{i}.png", "width": 300} for i in range(3000)}
    wf = workflow([attempt(1, "t0", TaskStatus.COMPLETED)], WorkflowStatus.COMPLETED, output=output)
    body = build(wf, compress_over_bytes=64 * 1024)
    assert "output" not in body and isinstance(body["outputCompressed"], str)
    assert len(body["outputCompressed"]) < 20_000  # type: ignore[arg-type]
    assert codec.output_from_status(body) == output
    assert codec.read_status(body).workflow == wf
    small = build(workflow([], WorkflowStatus.COMPLETED, output={"a": 1}))
    assert small["output"] == {"a": 1} and codec.output_from_status(small) == {"a": 1}


def test_gzip_packed_task_lists_are_still_read() -> None:
    import base64
    import gzip

    entries = [codec.encode_task(attempt(1, "t0", TaskStatus.COMPLETED))]
    packed = base64.b64encode(gzip.compress(json.dumps(entries).encode())).decode()
    assert codec.tasks_from_status({"tasksCompressed": packed}) == entries


def test_packing_reuses_the_blocks_of_unchanged_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    import lzma

    tasks = [attempt(i, f"b{i}", TaskStatus.SCHEDULED, inputData={"i": i, "pad": "x" * 100}) for i in range(600)]
    encoder = codec.TaskEncoder()
    first = encoder.pack(encoder.encoded(tasks, lambda task: None))
    compressed: list[int] = []
    real = lzma.compress
    monkeypatch.setattr(lzma, "compress", lambda data, **kw: compressed.append(len(data)) or real(data, **kw))
    tasks[300] = tasks[300].model_copy(update={"status": TaskStatus.COMPLETED})
    second = encoder.pack(encoder.encoded(tasks, lambda task: None))
    assert len(compressed) == 1, "only the block holding the changed task is compressed again"
    entries = codec.tasks_from_status({"tasksCompressed": second})
    assert [e["status"] for e in entries].count("COMPLETED") == 1 and len(entries) == 600
    assert codec.tasks_from_status({"tasksCompressed": first})[300]["status"] == "SCHEDULED"
    assert codec.tasks_from_status({"tasksCompressed": encoder.pack([])}) == []


def test_values_stored_outside_the_status_leave_pointers_that_read_back_as_external() -> None:
    wf = workflow([attempt(1, "t0", TaskStatus.COMPLETED, inputData={"i": 1}, outputData={"big": "x" * 10},
                           executed=True)], output={"big": "y"})
    external = {"id-1": {"outputData": "s3://b/uid-1/status/id-1-outputData.json"},
                codec.WORKFLOW_KEY: {"output": "s3://b/uid-1/status/workflow-output.json"}}
    status = json.loads(json.dumps(build(wf, external=external)))
    entry = codec.tasks_from_status(status)[0]
    assert entry["externalOutputPayloadStoragePath"] == "s3://b/uid-1/status/id-1-outputData.json"
    assert "outputData" not in entry and entry["inputData"] == {"i": 1}
    assert status["externalOutputPayloadStoragePath"] == "s3://b/uid-1/status/workflow-output.json"
    assert "output" not in status and "outputCompressed" not in status
    stored = codec.read_status(status)
    assert stored.external == external
    assert stored.workflow is not None
    assert stored.workflow.tasks[0].outputData == {} and stored.workflow.output == {}
    assert stored.workflow.tasks[0].inputData == {"i": 1}
