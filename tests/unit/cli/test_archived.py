"""``kondukt get|describe|graph --archived`` against a real PostgreSQL archive (tests/postgres.py), through
``kondukt.cli.app.main`` as a user runs them: output, filters, exit codes and error messages."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from kondukt.archive.records import ArchivedWorkflow
from kondukt.archive.store import ArchiveStore
from kondukt.cli import app

END = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
DEFINITION = {"name": "pipe", "version": 2, "tasks": [
    {"name": "echo", "taskReferenceName": "first"}, {"name": "echo", "taskReferenceName": "second"}]}


def archived(uid: str, name: str, phase: str, minutes: int, namespace: str = "team-a",
             labels: dict[str, str] | None = None) -> ArchivedWorkflow:
    end_ms = int((END + dt.timedelta(minutes=minutes)).timestamp() * 1000)
    tasks = [{"taskId": f"{uid}-1", "referenceTaskName": "first", "taskType": "SIMPLE", "taskDefName": "echo",
              "status": "COMPLETED", "retryCount": 0, "startTime": end_ms - 4000, "endTime": end_ms - 2000,
              "outputData": {"v": 1}},
             {"taskId": f"{uid}-2", "referenceTaskName": "second", "taskType": "SIMPLE", "taskDefName": "echo",
              "status": "FAILED" if phase == "FAILED" else "COMPLETED", "retryCount": 0,
              "startTime": end_ms - 2000, "endTime": end_ms, "reasonForIncompletion": "boom" if phase == "FAILED" else None}]
    workflow = {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow",
                "metadata": {"name": name, "namespace": namespace, "uid": uid, "labels": labels or {},
                             "creationTimestamp": "2026-12-06T11:59:00Z"},
                "spec": {"workflowDefRef": {"name": "pipe"}, "input": {"x": 1}},
                "status": {"workflowId": uid, "phase": phase, "status": phase, "workflowName": "pipe",
                           "workflowVersion": 2, "startTime": end_ms - 5000, "endTime": end_ms,
                           "input": {"x": 1}, "output": {"v": 1}, "tasks": tasks, "definition": DEFINITION,
                           "conditions": [{"type": "Archived", "status": "True", "reason": "Archived",
                                           "message": "archived", "lastTransitionTime": "2026-12-06T12:00:01Z"}]}}
    return ArchivedWorkflow(uid=uid, namespace=namespace, name=name, phase=phase,
                            finished_at=END + dt.timedelta(minutes=minutes), definition_name="pipe",
                            definition_version=2, labels=labels or {}, started_at=END - dt.timedelta(seconds=5),
                            workflow=workflow)


@pytest.fixture
def dsn(archive_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    async def fill() -> None:
        store = ArchiveStore(archive_dsn)
        await store.archive(archived("uid-a", "nightly", "COMPLETED", 0, labels={"team": "a"}))
        await store.archive(archived("uid-b", "nightly", "FAILED", 10, labels={"team": "b"}))
        await store.archive(archived("uid-c", "adhoc", "COMPLETED", 20, namespace="team-b"))
        await store.close()
    asyncio.run(fill())
    monkeypatch.setenv("KONDUKT_ARCHIVE_DSN", archive_dsn)
    return archive_dsn


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = app.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_get_lists_every_namespace_newest_first_and_filters(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "get", "--archived")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "PHASE", "FINISHED", "DURATION", "UID"]
    assert [line.split()[-1] for line in lines[1:]] == ["uid-c", "uid-b", "uid-a"]
    assert "2026-12-06T12:10:00Z" in lines[2]

    def uids(*flags: str) -> list[str]:
        code, out, err = run(capsys, "get", "--archived", *flags)
        assert code == 0, err
        return [line.split()[-1] for line in out.splitlines()[1:]]

    assert uids("nightly") == ["uid-b", "uid-a"]
    assert uids("-n", "team-b") == ["uid-c"]
    assert uids("--phase", "failed") == ["uid-b"]
    assert uids("--phase", "COMPLETED,FAILED", "-l", "team in (a,b)") == ["uid-b", "uid-a"]
    assert uids("-l", "team!=a") == ["uid-c", "uid-b"]
    assert uids("--since", "2026-12-06T12:05:00Z", "--until", "2026-12-06T12:15:00Z") == ["uid-b"]
    assert uids("--since", "1h") == []  # these finished on 2026-12-06
    code, out, err = run(capsys, "get", "--archived", "-n", "nowhere")
    assert (code, out, err) == (0, "", "No archived workflows found in namespace nowhere.\n")


def test_get_json_prints_the_archived_workflow_objects(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "get", "--archived", "adhoc", "-o", "json")
    assert code == 0
    [obj] = json.loads(out)["items"] if "items" in json.loads(out) else json.loads(out)
    assert obj["metadata"]["uid"] == "uid-c" and obj["status"]["output"] == {"v": 1}


def test_describe_by_uid_or_by_name_shows_every_attempt(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "describe", "--archived", "uid-b")
    assert code == 0 and err == ""
    assert "FAILED" in out and "boom" in out and "second" in out and "first" in out
    assert "not kept in the archive" in out
    code, out, err = run(capsys, "describe", "--archived", "nightly")
    assert code == 0
    assert "uid-b" in out, "the newest run of that name"
    assert "1 older archived runs of that name: team-a/nightly uid-a" in err


def test_graph_draws_an_archived_run_with_its_task_states(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "graph", "--archived", "uid-b", "--format", "mermaid")
    assert code == 0
    assert out.startswith("flowchart") or "flowchart" in out
    assert "first" in out and "second" in out


@pytest.mark.parametrize(("argv", "message"), [
    pytest.param(["get", "--archived", "--since", "yesterday"], "--since yesterday: expected a duration",
                 id="bad-since"),
    pytest.param(["get", "--archived", "--phase", "DONE"], "--phase DONE: expected one of COMPLETED", id="bad-phase"),
    pytest.param(["get", "--archived", "-l", "a b"], "is not a valid label key", id="bad-selector"),
    pytest.param(["get", "--phase", "FAILED"], "--phase filters the archive: add --archived", id="filter-without-archived"),
    pytest.param(["describe", "--archived", "missing"], "no archived workflow missing", id="not-found"),
])
def test_mistakes_get_one_clear_line(dsn: str, capsys: pytest.CaptureFixture[str], argv: list[str],
                                     message: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code in (1, 2) and out == ""
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_without_a_connection_string_it_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KONDUKT_ARCHIVE_DSN", raising=False)
    code, _, err = run(capsys, "get", "--archived")
    assert code == 2 and "--archive-dsn or $KONDUKT_ARCHIVE_DSN" in err


def test_an_unreachable_archive_is_one_line_without_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.postgres import free_port
    dsn = f"postgresql://kondukt:hunter2-secret@127.0.0.1:{free_port()}/db?connect_timeout=2"
    code, _, err = run(capsys, "get", "--archived", "--archive-dsn", dsn)
    assert code == 1 and err.startswith("the workflow archive: reading the archive:")
    assert "hunter2" not in err and "Traceback" not in err
