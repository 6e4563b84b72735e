"""The operator's wiring: peering activity, event routing to the work queue, the command's flags."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from typing import Any

import pytest

from kondukt.cli import operator as cli_operator
from kondukt.kube import resources as r
from kondukt.kube.cache import JobRecord, PodRecord
from kondukt.kube.operator import Controller, EventOnlyDiffBase, OperatorOptions, is_active

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def peer(priority: int, seconds_ago: int, lifetime: int = 60) -> dict[str, Any]:
    return {"priority": priority, "lifetime": lifetime,
            "lastseen": (NOW - dt.timedelta(seconds=seconds_ago)).isoformat()}


@pytest.mark.parametrize(
    ("peers", "active"),
    [
        pytest.param({}, True, id="alone"),
        pytest.param({"me": peer(10, 0)}, True, id="only-myself"),
        pytest.param({"me": peer(10, 0), "other": peer(5, 1)}, True, id="lower-priority-peer"),
        pytest.param({"me": peer(10, 0), "other": peer(20, 1)}, False, id="higher-priority-peer"),
        pytest.param({"me": peer(10, 0), "other": peer(10, 1)}, False, id="same-priority-pauses-both"),
        pytest.param({"me": peer(10, 0), "other": peer(20, 120)}, True, id="dead-peer"),
        pytest.param({"me": peer(10, 0), "other": {"priority": "x"}}, True, id="unreadable-peer"),
    ],
)
def test_peering_activity_mirrors_kopf(peers: dict[str, Any], active: bool) -> None:
    assert is_active(peers, "me", 10, NOW) is active


def test_the_diff_base_is_never_built() -> None:
    assert EventOnlyDiffBase(prefix=r.KOPF_ANNOTATION_PREFIX).build(body={"status": {"big": 1}}) == {}


class FakeQueue:
    def __init__(self) -> None:
        self.soon: list[tuple[str, str]] = []

    def add_soon(self, key: tuple[str, str], delay: float) -> None:
        self.soon.append(key)


class FakeReconciler:
    def __init__(self) -> None:
        self.enqueued: list[tuple[str, str]] = []
        self.woken: list[tuple[str, str]] = []
        self.observed: list[Any] = []
        self.forgotten: list[tuple[str, str]] = []
        self.queue = FakeQueue()

    def enqueue(self, key: tuple[str, str]) -> None:
        self.enqueued.append(key)

    def wake_waiters(self, namespace: str, task_def: str) -> None:
        self.woken.append((namespace, task_def))

    def observe(self, body: Any) -> bool:
        news = body not in self.observed
        self.observed.append(body)
        return news

    def forget(self, key: tuple[str, str], uid: str | None = None, *, deleted: bool = False) -> None:
        self.forgotten.append(key)


def controller() -> tuple[Controller, FakeReconciler]:
    instance = Controller.__new__(Controller)
    instance.kopf_indexed = asyncio.Event()
    fake = FakeReconciler()
    instance.reconciler = fake  # type: ignore[assignment]
    return instance, fake


def job(**changes: Any) -> dict[tuple[str, ...], JobRecord]:
    record = JobRecord(name="j", namespace="ns", workflow_name="wf", workflow_uid="u", task_id="t",
                       task_def="echo", dispatched_at_ms=1, **changes)
    return {("wf", "ns", "u"): record, ("td", "ns", "echo"): record}


def pod(**changes: Any) -> dict[tuple[str, ...], PodRecord]:
    values: dict[str, Any] = {"phase": "Pending", **changes}
    record = PodRecord(name="p", namespace="ns", job_name="j", workflow_name="wf", workflow_uid="u", task_id="t",
                       task_def="echo", **values)
    return {("wf", "ns", "u"): record, ("job", "ns", "j"): record}


def test_a_finished_attempt_wakes_its_workflow_and_limit_waiters_at_once() -> None:
    ctl, fake = controller()
    ctl.on_job_change("MODIFIED", job(succeeded=True), job())
    assert fake.enqueued == [("ns", "wf")] and fake.woken == [("ns", "echo")]
    ctl.on_pod_change("MODIFIED", pod(phase="Failed", started=True, terminated=True), pod(phase="Running"))
    assert fake.enqueued == [("ns", "wf")] * 2


def test_a_started_pod_wakes_its_workflow_soon_and_other_news_not_at_all() -> None:
    ctl, fake = controller()
    ctl.on_pod_change("MODIFIED", pod(phase="Running", started=True), pod())
    ctl.on_job_change("ADDED", job(), {})
    ctl.on_pod_change("MODIFIED", pod(), pod())  # nothing the index keeps changed
    assert fake.queue.soon == [("ns", "wf")] and fake.enqueued == [] and fake.woken == []
    ctl.on_job_change("DELETED", {}, job())
    assert fake.enqueued == [("ns", "wf")] and fake.woken == [("ns", "echo")]


def test_a_child_workflow_event_wakes_its_parent() -> None:
    ctl, fake = controller()
    child = {"metadata": {"namespace": "ns", "name": "child", "uid": "c",
                          "ownerReferences": [{"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow",
                                               "name": "parent", "uid": "p"}]}}
    ctl.on_workflow("MODIFIED", child)
    assert fake.enqueued == [("ns", "child"), ("ns", "parent")] and fake.observed == [child]
    ctl.on_workflow("MODIFIED", child)  # an echo of the child's own status write: only the parent wakes
    assert fake.enqueued == [("ns", "child"), ("ns", "parent"), ("ns", "parent")]
    assert ctl.kopf_indexed.is_set(), "Kopf calls event handlers only once its indexes are complete"
    ctl.on_workflow("DELETED", child)
    assert fake.forgotten == [("ns", "child")]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_operator.configure("operator", parser.add_subparsers().add_parser("operator"))
    return parser.parse_args(["operator", *argv])


def test_operator_flags() -> None:
    args = parse("-n", "a", "--namespace", "b", "--peering", "kondukt", "--worker-env", "X=1=2",
                 "--log-level", "debug", "--default-worker-image", "img:1")
    assert args.namespaces == ["a", "b"] and args.peering == "kondukt" and not args.standalone
    assert args.worker_env == [("X", "1=2")] and args.log_level == "DEBUG"
    assert args.default_worker_image == "img:1" and args.metrics_port == 8080
    with pytest.raises(SystemExit):
        parse("--standalone", "--peering", "x")
    with pytest.raises(SystemExit):
        parse("--worker-env", "no-equals-sign")
    assert OperatorOptions().job_ttl_seconds == 600
