"""The CronWorkflow controller's own decisions (kondukt.kube.cronworkflows): which events wake a CronWorkflow,
and the status it writes for a plan. Its API calls run against the real control plane in
tests/e2e/test_operator_cron.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kondukt.kube import cronworkflows
from kondukt.kube import schedule as cron
from kondukt.kube.cronworkflows import CronWorkflows

NOW = dt.datetime(2026, 5, 1, 10, 0, 30, tzinfo=dt.UTC)


class Woken:
    """Stands in for the work queue: records the keys added."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []

    def add(self, key: tuple[str, str]) -> None:
        self.keys.append(key)

    def cancel_timer(self, key: tuple[str, str]) -> None:
        pass


def controller() -> tuple[CronWorkflows, Woken]:
    made = CronWorkflows.__new__(CronWorkflows)
    woken = Woken()
    made.queue = woken  # type: ignore[assignment]
    made._objects = {}
    made._run_phases = {}
    return made, woken


def workflow(phase: str | None, rv: str = "1") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "nightly-1", "resourceVersion": rv},
            "status": {"phase": phase} if phase else {}}


def test_only_a_new_phase_of_a_run_wakes_its_cron_workflow() -> None:
    made, woken = controller()
    made.on_run_changed("ADDED", workflow(None), "nightly")
    made.on_run_changed("MODIFIED", workflow("RUNNING", "2"), "nightly")
    for rv in range(3, 10):  # progress of a running workflow
        made.on_run_changed("MODIFIED", workflow("RUNNING", str(rv)), "nightly")
    made.on_run_changed("MODIFIED", workflow("COMPLETED", "11"), "nightly")
    made.on_run_changed("DELETED", workflow("COMPLETED", "12"), "nightly")
    assert woken.keys == [("ns", "nightly")] * 4


def test_an_echo_of_the_known_version_does_not_wake_it() -> None:
    made, woken = controller()
    body = {"metadata": {"namespace": "ns", "name": "nightly", "resourceVersion": "5"}}
    made.on_event("ADDED", body)
    made.on_event("MODIFIED", body)
    made.on_event("MODIFIED", {"metadata": {**body["metadata"], "resourceVersion": "4"}})
    made.on_event("MODIFIED", {"metadata": {**body["metadata"], "resourceVersion": "6"}})
    assert woken.keys == [("ns", "nightly")] * 2
    made.on_event("DELETED", body)
    assert ("ns", "nightly") not in made._objects


def test_the_status_of_a_plan_removes_what_is_gone() -> None:
    s = cron.parse_spec({"schedule": "@hourly", "suspend": True, "workflowSpec": {}})
    schedule = cron.parse_schedule(s)
    plan = cron.plan_cron("nightly", s, schedule, created=NOW - dt.timedelta(days=1),
                          status={"lastScheduleTime": "2026-05-01T09:00:00Z"}, runs=(), now=NOW)
    status = cronworkflows.build_status(plan, schedule, generation=3, previous={}, now=NOW)
    assert status["schedule"] == "0 * * * *" and status["observedGeneration"] == 3
    assert status["lastScheduleTime"] == "2026-05-01T09:00:00Z"
    assert status["nextScheduleTime"] is None  # a merge patch with null removes it
    assert status["active"] == [] and status["activeCount"] == 0
    (ready,) = status["conditions"]
    assert (ready["type"], ready["status"], ready["reason"], ready["observedGeneration"]) == (
        "Ready", "True", "Suspended", 3)
    assert ready["lastTransitionTime"] == "2026-05-01T10:00:30Z"
    later = cronworkflows.build_status(plan, schedule, generation=3, previous=status, now=NOW + dt.timedelta(hours=1))
    assert later["conditions"][0]["lastTransitionTime"] == "2026-05-01T10:00:30Z"  # no transition, same time
