"""CronWorkflow: its spec, its cron schedules, and the plan of one reconcile — pure, with ``now`` as an argument.

A Git repository declares schedules, not runs: a CronWorkflow names a workflow (``workflowSpec``) and when
to run it (``schedule`` / ``schedules``, cron syntax, in ``timezone``); the operator creates one Workflow
per scheduled time. Everything that decides *what* to do lives here, as functions of the CronWorkflow, the
runs that exist and the instant ``now`` the caller passes in: no clock, no API calls, so every rule —
time zones and daylight-saving transitions included — is unit-tested with fixed times
(``tests/unit/kube/test_schedule.py``). :mod:`kondukt.kube.cronworkflows` does the I/O.

The rules are Kubernetes CronJob's (the ones GitOps users already know), with Argo's field names where
CronJob has none:

- A run's name is a pure function of the scheduled time (``<cron>-<unix minutes>``, CronJob's scheme): a
  restarted operator that tries to start the same run again meets AlreadyExists, which means "already
  started". A manual run (``kondukt cron trigger``) is ``<cron>-manual-<unix seconds>``.
- Only the most recent due time is ever started. Times missed meanwhile (operator down, CronWorkflow
  suspended, ``Forbid`` with a run still active) are counted and reported in an Event, not run one by one.
- ``startingDeadlineSeconds``: a due time older than that is not started any more (an Event says so).
- ``concurrencyPolicy``: ``Allow`` starts regardless; ``Forbid`` leaves the due time pending while a run is
  active (it starts when that run ends, if still within ``startingDeadlineSeconds``); ``Replace``
  terminates the active runs and starts the new one.
- History: finished runs beyond ``successfulJobsHistoryLimit`` (COMPLETED) and ``failedJobsHistoryLimit``
  (FAILED, TIMED_OUT, TERMINATED) are deleted, oldest first; manual runs count too.
- Cron syntax: five fields (minute hour day-of-month month day-of-week) with names, ranges, steps, ``L``,
  ``W`` and ``#`` (the ``cronsim`` library, Debian cron's semantics), and the macros ``@yearly``,
  ``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``, ``@hourly``. A time that falls into a
  daylight-saving gap runs at the first minute after it; a time that occurs twice runs once (as cron does).

This module must never read a clock or call the API.
"""

from __future__ import annotations

import datetime as dt
import enum
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pydantic
from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field

from kondukt.engine.models import WorkflowSpec, WorkflowStatus
from kondukt.kube import names
from kondukt.kube import resources as r

UTC: Final = dt.UTC

#: How many missed times are counted before the count says "more than" (CronJob stops at 100 too).
MAX_MISSED_COUNTED: Final = 100

MACROS: Final[Mapping[str, str]] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

SUCCESSFUL_PHASES: Final = frozenset({WorkflowStatus.COMPLETED.value})
FAILED_PHASES: Final = frozenset(s.value for s in WorkflowStatus if s.terminal) - SUCCESSFUL_PHASES


# ============================================================================================ the spec
class ConcurrencyPolicy(enum.StrEnum):
    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class WorkflowMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str] = Field(default_factory=dict, description="Labels of every run (Workflow).")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations of every run.")


class CronWorkflowSpec(BaseModel):
    """When to run a workflow, and which (Kubernetes CronJob's rules, Argo CronWorkflow's field names)."""

    model_config = ConfigDict(extra="ignore")

    schedule: str | None = Field(
        None, description="A cron expression (5 fields: minute hour day-of-month month day-of-week, or "
        "@hourly, @daily, @weekly, @monthly, @yearly), as in a Kubernetes CronJob. schedules takes several.")
    schedules: list[str] = Field(
        default_factory=list, description="Several cron expressions (Argo 3.6+): a run starts at every "
        "time any of them names (once for a time several name).")
    timezone: str | None = Field(
        None, description="The IANA time zone the schedules are read in, e.g. Europe/Berlin. Defaults to UTC.")
    workflowSpec: WorkflowSpec = Field(
        ..., description="The spec of each run: workflowDefRef or an inline definition, input, correlationId.")
    workflowMetadata: WorkflowMetadata = Field(
        default_factory=WorkflowMetadata, description="Labels and annotations of each run (Workflow).")
    concurrencyPolicy: ConcurrencyPolicy = Field(
        ConcurrencyPolicy.ALLOW, description="When a run is due while another is active: Allow (start it), "
        "Forbid (start it only once the active runs ended, within startingDeadlineSeconds) or Replace "
        "(terminate the active runs, start the new one).")
    startingDeadlineSeconds: int | None = Field(
        None, ge=0, description="A run not started within this many seconds of its scheduled time is not "
        "started any more (operator down, suspended, Forbid). No deadline when omitted.")
    successfulJobsHistoryLimit: int = Field(3, ge=0, description="How many COMPLETED runs to keep.")
    failedJobsHistoryLimit: int = Field(
        1, ge=0, description="How many FAILED / TIMED_OUT / TERMINATED runs to keep.")
    suspend: bool = Field(False, description="true = no run starts on schedule (kondukt cron trigger still "
                          "starts one); missed times count as missed when it is set back to false.")


class CronSpecError(ValueError):
    """The CronWorkflow's spec cannot be used; the message names the field."""


def parse_spec(raw: Any) -> CronWorkflowSpec:
    """The spec of a CronWorkflow object, or CronSpecError naming the first bad field."""
    try:
        return CronWorkflowSpec.model_validate(raw if isinstance(raw, Mapping) else {})
    except pydantic.ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem.get("loc", ()))
        raise CronSpecError(f"spec.{where}: {problem.get('msg')}") from None


# ======================================================================================== the schedule
@dataclass(frozen=True)
class Schedule:
    """The cron expressions of a CronWorkflow in its time zone; every time is an aware datetime."""

    expressions: tuple[str, ...]
    zone: dt.tzinfo = UTC

    def next_after(self, instant: dt.datetime) -> dt.datetime | None:
        """The first scheduled time strictly after ``instant`` (None: never again)."""
        local = instant.astimezone(self.zone)
        found = [t for t in (_first_after(CronSim(e, local), instant) for e in self.expressions) if t is not None]
        return min(found, key=_utc) if found else None

    def latest_at_or_before(self, instant: dt.datetime) -> dt.datetime | None:
        """The last scheduled time at or before ``instant`` (None: none in the past 50 years)."""
        local = (instant.astimezone(self.zone).replace(microsecond=0) + dt.timedelta(seconds=1))
        found = [t for t in (_first(CronSim(e, local, reverse=True)) for e in self.expressions) if t is not None]
        return max(found, key=_utc) if found else None

    def times_between(self, after: dt.datetime, until: dt.datetime, limit: int) -> list[dt.datetime]:
        """The scheduled times in ``(after, until]``, in order, at most ``limit`` of them."""
        out: list[dt.datetime] = []
        cursor = after
        while len(out) < limit:
            found = self.next_after(cursor)
            if found is None or _utc(found) > _utc(until):
                break
            out.append(found)
            cursor = found
        return out


def _first(times: CronSim) -> dt.datetime | None:
    try:
        return next(times)
    except StopIteration:
        return None


def _first_after(times: CronSim, instant: dt.datetime) -> dt.datetime | None:
    """The first of ``times`` after ``instant``. cronsim walks wall-clock time for fixed-time schedules, so
    from the second pass of a repeated hour (autumn) it may name the first pass, which is earlier: skip it."""
    for _ in range(4):
        found = _first(times)
        if found is None or _utc(found) > _utc(instant):
            return found
    return None


def _utc(instant: dt.datetime) -> dt.datetime:
    return instant.astimezone(UTC)


def parse_expression(text: str, where: str) -> str:
    """One cron expression checked (and a macro expanded), or CronSpecError naming ``where``."""
    expression = " ".join(text.split())
    if expression.lower() in MACROS:
        return MACROS[expression.lower()]
    if expression.startswith("@"):
        raise CronSpecError(f"{where}: {text!r}: unknown macro (known: {', '.join(MACROS)})")
    if expression.upper().startswith(("CRON_TZ=", "TZ=")):
        raise CronSpecError(f"{where}: {text!r}: a time zone inside the schedule is not supported: "
                            "set spec.timezone")
    fields = expression.split(" ")
    if len(fields) != 5:
        raise CronSpecError(f"{where}: {text!r}: expected 5 fields (minute hour day-of-month month "
                            f"day-of-week), found {len(fields) if expression else 0}")
    try:
        CronSim(expression, dt.datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise CronSpecError(f"{where}: {text!r}: {exc}") from None
    except (ValueError, IndexError) as exc:  # cronsim's own range checks, for odd input
        raise CronSpecError(f"{where}: {text!r}: not a cron expression ({exc})") from None
    return expression


def parse_zone(name: str | None) -> dt.tzinfo:
    """``spec.timezone`` as a tzinfo (UTC when omitted), or CronSpecError."""
    if not name:
        return UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise CronSpecError(f"spec.timezone: {name!r} is not a known time zone (an IANA name such as "
                            "Europe/Berlin or America/New_York)") from None


def parse_schedule(spec: CronWorkflowSpec) -> Schedule:
    """The schedule of a spec, or CronSpecError naming the bad field."""
    expressions: list[str] = []
    if spec.schedule is not None:
        expressions.append(parse_expression(spec.schedule, "spec.schedule"))
    for index, text in enumerate(spec.schedules):
        expressions.append(parse_expression(text, f"spec.schedules[{index}]"))
    if not expressions:
        raise CronSpecError("spec.schedule: set spec.schedule or spec.schedules (a cron expression)")
    return Schedule(tuple(dict.fromkeys(expressions)), parse_zone(spec.timezone))


# ============================================================================================ the runs
@dataclass(frozen=True)
class Run:
    """One Workflow of a CronWorkflow, as the plan sees it."""

    name: str
    phase: str
    #: The scheduled time (manual runs: when they were triggered), for ordering the history.
    scheduled: dt.datetime
    manual: bool = False
    #: When it ended (status.endTime), if it did.
    ended: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return self.phase not in SUCCESSFUL_PHASES | FAILED_PHASES

    @property
    def successful(self) -> bool:
        return self.phase in SUCCESSFUL_PHASES


def run_name(cron_name: str, scheduled: dt.datetime) -> str:
    """The run of one scheduled time: ``<cron>-<unix minutes>`` (Kubernetes CronJob's scheme)."""
    return _named(cron_name, str(int(_utc(scheduled).timestamp()) // 60))


def manual_run_name(cron_name: str, triggered: dt.datetime) -> str:
    """A run started by ``kondukt cron trigger``: ``<cron>-manual-<unix seconds>``."""
    return _named(cron_name, f"manual-{int(_utc(triggered).timestamp())}")


def _named(cron_name: str, suffix: str) -> str:
    room = names.MAX_NAME - len(suffix) - 1
    head = names.dns_fragment(cron_name, names.MAX_NAME)
    if len(head) > room or head != cron_name:  # shortened or changed: a hash keeps names apart
        head = f"{names.dns_fragment(cron_name, room - 9)}-{names.digest(cron_name, chars=8)}"
    return f"{head}-{suffix}"


def stamp(instant: dt.datetime) -> str:
    """An RFC 3339 UTC timestamp, as Kubernetes writes them (second resolution)."""
    return _utc(instant).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: Any) -> dt.datetime | None:
    """A Kubernetes timestamp as an aware datetime; None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def run_from_workflow(body: Mapping[str, Any]) -> Run:
    """A Run read off a Workflow object the operator created for a CronWorkflow."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    status = body.get("status") or {}
    scheduled = (parse_stamp(annotations.get(r.ANNOTATION_SCHEDULED_TIME))
                 or parse_stamp(meta.get("creationTimestamp")) or dt.datetime.fromtimestamp(0, UTC))
    end_ms = status.get("endTime")
    ended = dt.datetime.fromtimestamp(end_ms / 1000, UTC) if isinstance(end_ms, int) and end_ms > 0 else None
    return Run(name=str(meta.get("name")), phase=str(status.get("phase") or ""), scheduled=scheduled,
               manual=labels.get(r.LABEL_CRON_TRIGGER) == "manual", ended=ended)


# ========================================================================================== the plan
@dataclass(frozen=True)
class CronEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class CronPlan:
    """What one reconcile of a CronWorkflow does, and the status it writes."""

    #: Start the run of this scheduled time, named ``start_name`` (:func:`run_name`).
    start: dt.datetime | None = None
    start_name: str | None = None
    #: Terminate these active runs first (Replace).
    terminate: tuple[str, ...] = ()
    #: Delete these finished runs (history limits).
    delete: tuple[str, ...] = ()
    events: tuple[CronEvent, ...] = ()
    last_schedule: dt.datetime | None = None
    next_schedule: dt.datetime | None = None
    last_successful: dt.datetime | None = None
    #: The due time not started (Forbid, too late) the status remembers, so its Event is said once.
    last_skipped: dt.datetime | None = None
    #: (type, status, reason, message) of the conditions: Ready, and Stalled when the spec is unusable.
    conditions: tuple[tuple[str, str, str, str], ...] = ()
    #: When to reconcile again at the latest (the next scheduled time).
    wake_at: dt.datetime | None = None
    active: tuple[str, ...] = field(default_factory=tuple)


def _clock(instant: dt.datetime, zone: dt.tzinfo) -> str:
    local = instant.astimezone(zone)
    suffix = "UTC" if zone is UTC else f"{local.strftime('%H:%M %Z')} {getattr(zone, 'key', '')}".strip()
    return f"{stamp(instant)}" + ("" if zone is UTC else f" ({suffix})")


def plan_invalid(error: CronSpecError, status: Mapping[str, Any]) -> CronPlan:
    """The plan for a spec that cannot be used: nothing starts, Ready=False and Stalled=True say why."""
    message = str(error)
    return CronPlan(
        last_schedule=parse_stamp(status.get("lastScheduleTime")),
        last_successful=parse_stamp(status.get("lastSuccessfulTime")),
        last_skipped=parse_stamp(status.get("lastSkippedTime")),
        conditions=(("Ready", "False", "InvalidSpec", message), ("Stalled", "True", "InvalidSpec", message)),
        events=(CronEvent("Warning", "InvalidSpec", message),),
    )


def plan_cron(
    name: str,
    spec: CronWorkflowSpec,
    schedule: Schedule,
    *,
    created: dt.datetime,
    status: Mapping[str, Any],
    runs: Sequence[Run],
    now: dt.datetime,
) -> CronPlan:
    """What to do now: start the due run (if any), terminate or delete runs, the status and next wake-up."""
    last_schedule = parse_stamp(status.get("lastScheduleTime"))
    last_skipped = parse_stamp(status.get("lastSkippedTime"))
    earliest = max(t for t in (created, last_schedule) if t is not None)
    deadline = (dt.timedelta(seconds=spec.startingDeadlineSeconds)
                if spec.startingDeadlineSeconds is not None else None)
    events: list[CronEvent] = []
    active = [run for run in runs if run.active]
    start: dt.datetime | None = None
    terminate: tuple[str, ...] = ()
    due = schedule.latest_at_or_before(now)
    if due is not None and _utc(due) <= _utc(earliest):
        due = None
    if due is not None and not spec.suspend:
        missed = [t for t in schedule.times_between(earliest, due, MAX_MISSED_COUNTED + 2) if t != due]
        if deadline is not None and _utc(now) - _utc(due) > deadline:
            if last_skipped != due:
                events.append(CronEvent("Warning", "MissedSchedule", (
                    f"the run at {_clock(due, schedule.zone)} was not started: it is more than "
                    f"startingDeadlineSeconds ({spec.startingDeadlineSeconds}) late")))
                last_skipped = due
        elif spec.concurrencyPolicy is ConcurrencyPolicy.FORBID and active:
            if last_skipped != due:
                events.append(CronEvent("Normal", "RunPending", (
                    f"concurrencyPolicy Forbid: the run at {_clock(due, schedule.zone)} waits for "
                    f"{', '.join(r.name for r in active)} to end"
                    + (f" (at most startingDeadlineSeconds, {spec.startingDeadlineSeconds})" if deadline else ""))))
                last_skipped = due
        else:
            start = due
            if spec.concurrencyPolicy is ConcurrencyPolicy.REPLACE and active:
                terminate = tuple(r.name for r in active)
            if missed:
                count = f"more than {MAX_MISSED_COUNTED}" if len(missed) > MAX_MISSED_COUNTED else str(len(missed))
                events.append(CronEvent("Warning", "MissedSchedules", (
                    f"{count} scheduled time(s) missed since {_clock(missed[0], schedule.zone)}; "
                    f"starting only the latest, {_clock(due, schedule.zone)}")))
            last_schedule = due
    next_schedule = None if spec.suspend else schedule.next_after(now)
    delete = tuple(_beyond_history(runs, terminate, spec))
    successful = [run.ended or run.scheduled for run in runs if run.successful]
    last_successful = max([*successful, *filter(None, [parse_stamp(status.get("lastSuccessfulTime"))])],
                          key=_utc, default=None)
    if spec.suspend:
        ready = ("Ready", "True", "Suspended", "spec.suspend is true: no run starts on schedule")
    elif next_schedule is None:
        ready = ("Ready", "True", "NoNextTime", "the schedules name no time in the next 50 years")
    else:
        ready = ("Ready", "True", "Scheduled", f"next run at {_clock(next_schedule, schedule.zone)}")
    started_name = run_name(name, start) if start is not None else None
    return CronPlan(
        start=start, start_name=started_name, terminate=terminate, delete=delete, events=tuple(events), last_schedule=last_schedule,
        next_schedule=next_schedule, last_successful=last_successful, last_skipped=last_skipped,
        conditions=(ready,), wake_at=next_schedule,
        active=tuple(sorted({r.name for r in active if r.name not in terminate} | set(filter(None, [started_name])))),
    )


def _beyond_history(runs: Iterable[Run], terminating: Sequence[str], spec: CronWorkflowSpec) -> list[str]:
    finished = sorted((run for run in runs if not run.active and run.name not in terminating),
                      key=lambda run: (_utc(run.scheduled), run.name), reverse=True)
    succeeded = [run.name for run in finished if run.successful]
    failed = [run.name for run in finished if not run.successful]
    return sorted(succeeded[spec.successfulJobsHistoryLimit:] + failed[spec.failedJobsHistoryLimit:])


# ====================================================================================== the run's object
def build_run(cron: Mapping[str, Any], scheduled: dt.datetime, *, manual: bool = False) -> dict[str, Any]:
    """The Workflow of one run: ``spec.workflowSpec`` as written (nothing defaulted into it), owned by the
    CronWorkflow (deleted with it), labelled so the operator and ``kubectl get wf -l`` find the runs."""
    meta = cron.get("metadata") or {}
    spec = cron.get("spec") or {}
    metadata = spec.get("workflowMetadata") or {}
    cron_name = str(meta.get("name"))
    name = manual_run_name(cron_name, scheduled) if manual else run_name(cron_name, scheduled)
    labels = {
        **{str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
        r.LABEL_MANAGED_BY: r.MANAGED_BY,
        r.LABEL_CRON: names.label_value(cron_name),
        r.LABEL_CRON_UID: str(meta.get("uid")),
        r.LABEL_CRON_TRIGGER: "manual" if manual else "schedule",
    }
    annotations = {**{str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()},
                   r.ANNOTATION_SCHEDULED_TIME: stamp(scheduled)}
    return {
        "apiVersion": r.API_VERSION,
        "kind": r.WORKFLOW_KIND,
        "metadata": {
            "name": name,
            "namespace": str(meta.get("namespace")),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": r.API_VERSION, "kind": r.CRONWORKFLOW_KIND, "name": cron_name,
                "uid": str(meta.get("uid")), "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": dict(spec.get("workflowSpec") or {}),
    }


def owner_cron_name(body: Mapping[str, Any]) -> str | None:
    """The CronWorkflow that controls a Workflow (its owner reference), if any."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("kind") == r.CRONWORKFLOW_KIND and str(
            ref.get("apiVersion", "")
        ).startswith(r.GROUP + "/"):
            return str(ref.get("name"))
    return None
