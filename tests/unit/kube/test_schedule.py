"""CronWorkflow scheduling (kondukt.kube.schedule): cron times in time zones and across DST, the plan of a
reconcile (missed runs, startingDeadlineSeconds, concurrencyPolicy, history, suspend), names and the run's
Workflow — all with fixed times."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from kondukt.kube import resources as r
from kondukt.kube import schedule as cron
from kondukt.kube.schedule import ConcurrencyPolicy, CronSpecError, Run

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC) if "+" in text[10:] else \
        dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def spec(**fields: Any) -> cron.CronWorkflowSpec:
    raw: dict[str, Any] = {"schedule": "*/5 * * * *", "workflowSpec": {"workflowDefRef": {"name": "wf"}}, **fields}
    return cron.parse_spec(raw)


def plan(s: cron.CronWorkflowSpec, *, now: str, created: str = "2026-01-01T00:00:00",
         status: dict[str, Any] | None = None, runs: tuple[Run, ...] = ()) -> cron.CronPlan:
    return cron.plan_cron("nightly", s, cron.parse_schedule(s), created=at(created), status=status or {},
                          runs=runs, now=at(now))


def run(name: str, phase: str, scheduled: str, manual: bool = False) -> Run:
    return Run(name=name, phase=phase, scheduled=at(scheduled), manual=manual)


# ============================================================================================ parsing
@pytest.mark.parametrize(("fields", "message"), [
    pytest.param({"schedule": "61 * * * *"}, "spec.schedule: '61 * * * *'", id="minute-out-of-range"),
    pytest.param({"schedule": "* * * *"}, "expected 5 fields", id="four-fields"),
    pytest.param({"schedule": "0 * * * * *"}, "expected 5 fields", id="seconds-field"),
    pytest.param({"schedule": None, "schedules": ["0 1 * * *", "bogus"]}, "spec.schedules[1]: 'bogus'",
                 id="second-of-several"),
    pytest.param({"schedule": "@every 1h"}, "unknown macro", id="unknown-macro"),
    pytest.param({"schedule": "CRON_TZ=Europe/Berlin 0 1 * * *"}, "set spec.timezone", id="tz-inside"),
    pytest.param({"timezone": "Mars/Olympus"}, "spec.timezone: 'Mars/Olympus' is not a known time zone",
                 id="unknown-zone"),
    pytest.param({"timezone": "../../etc/passwd"}, "spec.timezone", id="path-as-zone"),
    pytest.param({"schedule": None}, "set spec.schedule or spec.schedules", id="no-schedule"),
    pytest.param({"schedule": "0 0 31 2 *"}, "spec.schedule", id="never-in-february"),
])
def test_a_bad_schedule_names_its_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(CronSpecError) as caught:
        cron.parse_schedule(spec(**fields))
    assert message in str(caught.value)


def test_a_bad_spec_field_is_named() -> None:
    with pytest.raises(CronSpecError, match=r"spec\.concurrencyPolicy"):
        cron.parse_spec({"schedule": "* * * * *", "workflowSpec": {}, "concurrencyPolicy": "Sometimes"})
    with pytest.raises(CronSpecError, match=r"spec\.workflowSpec"):
        cron.parse_spec({"schedule": "* * * * *"})


@pytest.mark.parametrize(("macro", "expression"), [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"),
                                                   ("@weekly", "0 0 * * 0"), ("@YEARLY", "0 0 1 1 *")])
def test_macros_expand(macro: str, expression: str) -> None:
    assert cron.parse_schedule(spec(schedule=macro)).expressions == (expression,)


def test_schedule_and_schedules_combine_and_a_time_named_twice_is_one_time() -> None:
    schedule = cron.parse_schedule(spec(schedule="0 * * * *", schedules=["*/30 * * * *", "0 * * * *"]))
    assert schedule.expressions == ("0 * * * *", "*/30 * * * *")
    assert schedule.times_between(at("2026-05-01T10:00:00"), at("2026-05-01T11:00:00"), 10) == [
        at("2026-05-01T10:30:00"), at("2026-05-01T11:00:00")]


# ============================================================================================== times
def test_next_and_latest_are_strict_and_inclusive() -> None:
    schedule = cron.parse_schedule(spec(schedule="*/5 * * * *"))
    assert schedule.next_after(at("2026-05-01T10:05:00")) == at("2026-05-01T10:10:00")
    assert schedule.latest_at_or_before(at("2026-05-01T10:05:00")) == at("2026-05-01T10:05:00")
    assert schedule.latest_at_or_before(at("2026-05-01T10:09:59.900000")) == at("2026-05-01T10:05:00")


def test_a_time_zone_moves_the_schedule() -> None:
    schedule = cron.parse_schedule(spec(schedule="30 9 * * *", timezone="Asia/Kolkata"))
    assert schedule.next_after(at("2026-05-01T00:00:00")) == at("2026-05-01T04:00:00")


@pytest.mark.parametrize(("expression", "after", "expected"), [
    # Europe/Berlin springs forward on 2026-03-29 at 02:00 -> 03:00: 02:30 does not exist that day and runs
    # at the first minute after the gap (cron's behaviour), once.
    pytest.param("30 2 * * *", "2026-03-28T12:00:00", ["2026-03-29T01:00:00", "2026-03-30T00:30:00"],
                 id="spring-gap-runs-after-the-gap"),
    # ... and falls back on 2026-10-25 at 03:00 -> 02:00: 02:30 happens twice and runs once (the first).
    pytest.param("30 2 * * *", "2026-10-24T12:00:00", ["2026-10-25T00:30:00", "2026-10-26T01:30:00"],
                 id="autumn-repeat-runs-once"),
    # an hourly schedule keeps running every real hour through the repeated hour
    pytest.param("0 * * * *", "2026-10-24T23:30:00",
                 ["2026-10-25T00:00:00", "2026-10-25T01:00:00", "2026-10-25T02:00:00"], id="hourly-through-autumn"),
])
def test_daylight_saving_transitions(expression: str, after: str, expected: list[str]) -> None:
    schedule = cron.parse_schedule(spec(schedule=expression, timezone="Europe/Berlin"))
    cursor = at(after)
    found = []
    for _ in expected:
        cursor = schedule.next_after(cursor)  # type: ignore[assignment]
        found.append(cursor)
    assert [t.astimezone(UTC) for t in found] == [at(e) for e in expected]


def test_next_after_from_the_second_pass_of_a_repeated_hour_is_later() -> None:
    schedule = cron.parse_schedule(spec(schedule="30 2 * * *", timezone="Europe/Berlin"))
    second_pass = at("2026-10-25T01:15:00")  # 02:15 CET, after 02:30 CEST (00:30 UTC) already happened
    assert schedule.next_after(second_pass) == at("2026-10-26T01:30:00")


# =============================================================================================== plan
def test_nothing_is_due_before_the_first_time_after_creation() -> None:
    p = plan(spec(), created="2026-05-01T10:01:00", now="2026-05-01T10:04:59")
    assert p.start is None and p.next_schedule == at("2026-05-01T10:05:00") == p.wake_at
    assert p.conditions[0][:3] == ("Ready", "True", "Scheduled")


def test_a_due_time_starts_its_run_with_a_name_of_the_minute() -> None:
    p = plan(spec(), created="2026-05-01T10:01:00", now="2026-05-01T10:05:02")
    assert p.start == at("2026-05-01T10:05:00") == p.last_schedule
    assert p.start_name == f"nightly-{int(at('2026-05-01T10:05:00').timestamp()) // 60}"
    assert p.active == (p.start_name,) and not p.events
    assert p.next_schedule == at("2026-05-01T10:10:00")


def test_a_started_time_is_not_started_again() -> None:
    p = plan(spec(), now="2026-05-01T10:07:00", status={"lastScheduleTime": "2026-05-01T10:05:00Z"})
    assert p.start is None


def test_missed_times_start_only_the_latest_and_say_so() -> None:
    p = plan(spec(), now="2026-05-01T10:31:00", status={"lastScheduleTime": "2026-05-01T10:05:00Z"})
    assert p.start == at("2026-05-01T10:30:00")
    (event,) = p.events
    assert (event.type, event.reason) == ("Warning", "MissedSchedules")
    assert event.message.startswith("4 scheduled time(s) missed since 2026-05-01T10:10:00Z")


def test_very_many_missed_times_are_counted_up_to_a_bound() -> None:
    p = plan(spec(schedule="* * * * *"), now="2026-05-03T00:00:30", status={"lastScheduleTime": "2026-05-01T00:00:00Z"})
    assert p.start == at("2026-05-03T00:00:00")
    assert p.events[0].message.startswith(f"more than {cron.MAX_MISSED_COUNTED} scheduled time(s) missed")


def test_a_time_past_the_starting_deadline_is_not_started() -> None:
    s = spec(startingDeadlineSeconds=60)
    p = plan(s, now="2026-05-01T10:06:30", status={"lastScheduleTime": "2026-05-01T10:00:00Z"})
    assert p.start is None and p.last_skipped == at("2026-05-01T10:05:00")
    assert [e.reason for e in p.events] == ["MissedSchedule"]
    again = plan(s, now="2026-05-01T10:07:00", status={"lastScheduleTime": "2026-05-01T10:00:00Z",
                                                        "lastSkippedTime": "2026-05-01T10:05:00Z"})
    assert again.start is None and not again.events  # said once
    within = plan(s, now="2026-05-01T10:05:59", status={"lastScheduleTime": "2026-05-01T10:00:00Z"})
    assert within.start == at("2026-05-01T10:05:00")


ACTIVE = run("nightly-1", "RUNNING", "2026-05-01T10:00:00")


@pytest.mark.parametrize(("policy", "start", "terminate"), [
    pytest.param(ConcurrencyPolicy.ALLOW, True, (), id="allow-starts-beside"),
    pytest.param(ConcurrencyPolicy.FORBID, False, (), id="forbid-waits"),
    pytest.param(ConcurrencyPolicy.REPLACE, True, ("nightly-1",), id="replace-terminates"),
])
def test_concurrency_policy_with_a_run_active(policy: ConcurrencyPolicy, start: bool,
                                              terminate: tuple[str, ...]) -> None:
    p = plan(spec(concurrencyPolicy=policy.value), now="2026-05-01T10:05:01",
             status={"lastScheduleTime": "2026-05-01T10:00:00Z"}, runs=(ACTIVE,))
    assert (p.start is not None) is start
    assert p.terminate == terminate
    assert ("nightly-1" in p.active) is (policy is not ConcurrencyPolicy.REPLACE)


def test_forbid_starts_the_pending_run_once_the_active_one_ended() -> None:
    s = spec(concurrencyPolicy="Forbid")
    waiting = plan(s, now="2026-05-01T10:05:01", status={"lastScheduleTime": "2026-05-01T10:00:00Z"}, runs=(ACTIVE,))
    assert [e.reason for e in waiting.events] == ["RunPending"] and waiting.last_skipped == at("2026-05-01T10:05:00")
    ended = run("nightly-1", "COMPLETED", "2026-05-01T10:00:00")
    status = {"lastScheduleTime": "2026-05-01T10:00:00Z", "lastSkippedTime": "2026-05-01T10:05:00Z"}
    later = plan(s, now="2026-05-01T10:07:00", status=status, runs=(ended,))
    assert later.start == at("2026-05-01T10:05:00") and not later.events


def test_suspend_starts_nothing_and_the_times_count_as_missed_on_resume() -> None:
    status = {"lastScheduleTime": "2026-05-01T10:00:00Z"}
    p = plan(spec(suspend=True), now="2026-05-01T10:21:00", status=status)
    assert p.start is None and p.next_schedule is None and p.wake_at is None
    assert p.conditions[0][:3] == ("Ready", "True", "Suspended")
    resumed = plan(spec(), now="2026-05-01T10:21:00", status=status)
    assert resumed.start == at("2026-05-01T10:20:00") and resumed.events[0].reason == "MissedSchedules"


def test_history_keeps_the_newest_finished_runs_of_each_kind() -> None:
    runs = (
        run("a", "COMPLETED", "2026-05-01T09:00:00"), run("b", "COMPLETED", "2026-05-01T09:05:00"),
        run("c", "COMPLETED", "2026-05-01T09:10:00", manual=True), run("d", "FAILED", "2026-05-01T09:15:00"),
        run("e", "TERMINATED", "2026-05-01T09:20:00"), run("f", "RUNNING", "2026-05-01T08:00:00"),
        run("g", "TIMED_OUT", "2026-05-01T08:00:00"),
    )
    p = plan(spec(successfulJobsHistoryLimit=2, failedJobsHistoryLimit=1), now="2026-05-01T09:21:00",
             status={"lastScheduleTime": "2026-05-01T09:20:00Z"}, runs=runs)
    assert p.delete == ("a", "d", "g")
    assert p.active == ("f",)
    nothing_kept = plan(spec(successfulJobsHistoryLimit=0, failedJobsHistoryLimit=0), now="2026-05-01T09:21:00",
                        status={"lastScheduleTime": "2026-05-01T09:20:00Z"}, runs=runs)
    assert nothing_kept.delete == ("a", "b", "c", "d", "e", "g")


def test_an_invalid_spec_plans_nothing_and_is_stalled() -> None:
    p = cron.plan_invalid(CronSpecError("spec.timezone: bad"), {"lastScheduleTime": "2026-05-01T10:00:00Z"})
    assert p.start is None and p.wake_at is None and p.last_schedule == at("2026-05-01T10:00:00")
    assert [c[:3] for c in p.conditions] == [("Ready", "False", "InvalidSpec"), ("Stalled", "True", "InvalidSpec")]


# ============================================================================================ names, runs
@pytest.mark.parametrize("name", ["nightly", "a" * 63, "Weird_Name.x", "x" * 50])
def test_run_names_are_dns_labels_and_distinct_per_time(name: str) -> None:
    first = cron.run_name(name, at("2026-05-01T10:05:00"))
    second = cron.run_name(name, at("2026-05-01T10:06:00"))
    manual = cron.manual_run_name(name, at("2026-05-01T10:05:00"))
    for produced in (first, second, manual):
        assert len(produced) <= 63 and produced == produced.lower() and produced[0].isalnum()
    assert len({first, second, manual}) == 3
    assert cron.run_name(name, at("2026-05-01T10:05:59")) == first  # one name per scheduled minute


def test_long_names_sharing_a_prefix_stay_apart() -> None:
    when = at("2026-05-01T10:05:00")
    assert cron.run_name("p" * 60 + "one", when) != cron.run_name("p" * 60 + "two", when)


def test_the_run_is_owned_labelled_and_carries_the_spec_as_written() -> None:
    body = {"metadata": {"name": "nightly", "namespace": "ns", "uid": "u-1"},
            "spec": {"schedule": "0 * * * *", "workflowSpec": {"workflowDefRef": {"name": "wf"}, "input": {"a": 1}},
                     "workflowMetadata": {"labels": {"team": "x"}, "annotations": {"note": "y"}}}}
    made = cron.build_run(body, at("2026-05-01T10:00:00"))
    assert made["spec"] == {"workflowDefRef": {"name": "wf"}, "input": {"a": 1}}
    meta = made["metadata"]
    assert meta["labels"][r.LABEL_CRON_UID] == "u-1" and meta["labels"]["team"] == "x"
    assert meta["labels"][r.LABEL_CRON_TRIGGER] == "schedule"
    assert meta["annotations"] == {"note": "y", r.ANNOTATION_SCHEDULED_TIME: "2026-05-01T10:00:00Z"}
    assert meta["ownerReferences"][0]["kind"] == "CronWorkflow" and meta["ownerReferences"][0]["controller"]
    assert cron.owner_cron_name(made) == "nightly"
    read = cron.run_from_workflow({**made, "status": {"phase": "COMPLETED", "endTime": 1_777_630_000_000}})
    assert read.scheduled == at("2026-05-01T10:00:00") and read.successful and not read.manual and read.ended
    manual = cron.build_run(body, at("2026-05-01T10:00:07"), manual=True)
    assert manual["metadata"]["name"].startswith("nightly-manual-")
    assert cron.run_from_workflow(manual).manual and cron.run_from_workflow(manual).active
