"""The leader election's timing decisions, as pure functions (the elector's I/O against a real API server
is in tests/e2e/test_leader_election.py): who may take the Lease when, what is written, and the safety rule
that a holder stops acting before any other replica may take its Lease. Also the API client's fence (a
replica that does not lead sends no write) and the elector's steps on a fake clock against an in-memory
Lease with the API server's resourceVersion rules."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from kondukt.kube.kubeapi import (
    AlreadyExists,
    ApiError,
    Conflict,
    KubeClient,
    NotFound,
    NotLeader,
    TransientApiError,
)
from kondukt.kube.leader import (
    RELEASED_DURATION_SECONDS,
    LeaderElector,
    LeaseRecord,
    LeaseTiming,
    Observed,
    build_lease,
    build_lease_event,
    expires_at,
    first_record,
    leading_until,
    may_take,
    micro_time,
    next_record,
    observe,
    released_record,
    standby_delay,
)
from tests.profiles import examples
from tests.unit.kube.loopback import serve

NOW = dt.datetime(2026, 12, 6, 17, 0, 0, 123456, tzinfo=dt.UTC)
TIMING = LeaseTiming()
HELD = LeaseRecord(holder="other_1", lease_duration_seconds=15, acquire_time="2026-12-06T16:00:00.000000Z",
                   renew_time="2026-12-06T16:59:58.000000Z", transitions=3)


def seen(record: LeaseRecord, since: float) -> Observed:
    return Observed(record=record, resource_version="7", since=since)


# ----------------------------------------------------------------------------------- the record
def test_the_record_round_trips_through_the_lease_spec() -> None:
    assert LeaseRecord.from_spec(HELD.to_spec()) == HELD
    assert HELD.to_spec() == {"holderIdentity": "other_1", "leaseDurationSeconds": 15, "leaseTransitions": 3,
                              "acquireTime": "2026-12-06T16:00:00.000000Z",
                              "renewTime": "2026-12-06T16:59:58.000000Z"}


@pytest.mark.parametrize(
    ("spec", "record"),
    [
        pytest.param(None, LeaseRecord(), id="no-spec"),
        pytest.param({}, LeaseRecord(), id="empty-spec"),
        pytest.param({"holderIdentity": None, "leaseDurationSeconds": "x"}, LeaseRecord(), id="unreadable-fields"),
        pytest.param({"holderIdentity": "a", "leaseDurationSeconds": 9}, LeaseRecord(holder="a", lease_duration_seconds=9),
                     id="holder-only"),
    ],
)
def test_a_lease_written_by_someone_else_is_read_without_failing(spec: dict[str, object] | None,
                                                                 record: LeaseRecord) -> None:
    assert LeaseRecord.from_spec(spec) == record


def test_times_are_micro_times_in_utc() -> None:
    assert micro_time(NOW) == "2026-12-06T17:00:00.123456Z"
    assert micro_time(NOW.astimezone(dt.timezone(dt.timedelta(hours=2)))) == "2026-12-06T17:00:00.123456Z"


# ------------------------------------------------------------------------------------ observing
def test_the_clock_of_an_unchanged_record_keeps_running() -> None:
    first = observe(None, HELD, "7", now=100.0)
    again = observe(first, HELD, "8", now=110.0)
    assert (again.since, again.resource_version) == (100.0, "8")


def test_a_renewal_restarts_the_clock() -> None:
    first = observe(None, HELD, "7", now=100.0)
    renewed = observe(first, LeaseRecord(**{**HELD.__dict__, "renew_time": "2026-12-06T17:00:00.000000Z"}), "8",
                      now=110.0)
    assert renewed.since == 110.0


@pytest.mark.parametrize(
    ("record", "identity", "now", "allowed"),
    [
        pytest.param(LeaseRecord(), "me_1", 100.0, True, id="never-held"),
        pytest.param(LeaseRecord(holder="", lease_duration_seconds=1), "me_1", 100.0, True, id="released"),
        pytest.param(HELD, "me_1", 100.0, False, id="held-just-seen"),
        pytest.param(HELD, "me_1", 114.9, False, id="held-not-yet-expired"),
        pytest.param(HELD, "me_1", 115.0, True, id="held-expired"),
        pytest.param(HELD, "other_1", 100.0, True, id="our-own"),
        pytest.param(LeaseRecord(holder="other_1", lease_duration_seconds=0), "me_1", 100.0, True,
                     id="no-duration-expires-at-once"),
    ],
)
def test_who_may_take_the_lease(record: LeaseRecord, identity: str, now: float, allowed: bool) -> None:
    assert may_take(seen(record, since=100.0), identity, now) is allowed


def test_a_late_observer_waits_longer_never_shorter() -> None:
    # Another replica that first reads the record only at 120 counts its lease duration from 120.
    assert expires_at(observe(None, HELD, "7", now=120.0)) == 135.0


# ------------------------------------------------------------------------------------- writing
def test_acquiring_from_another_holder_counts_a_transition() -> None:
    taken = next_record(HELD, "me_1", TIMING, NOW)
    assert taken == LeaseRecord(holder="me_1", lease_duration_seconds=15, acquire_time=micro_time(NOW),
                                renew_time=micro_time(NOW), transitions=4)


def test_renewing_keeps_the_acquire_time_and_the_transitions() -> None:
    mine = LeaseRecord(**{**HELD.__dict__, "holder": "me_1"})
    renewed = next_record(mine, "me_1", LeaseTiming(lease_duration=20, renew_deadline=12), NOW)
    assert renewed == LeaseRecord(holder="me_1", lease_duration_seconds=20, acquire_time=HELD.acquire_time,
                                  renew_time=micro_time(NOW), transitions=3)


def test_a_released_lease_is_free_and_keeps_its_count() -> None:
    released = released_record(LeaseRecord(**{**HELD.__dict__, "holder": "me_1"}), NOW)
    assert (released.holder, released.lease_duration_seconds, released.transitions) == (
        "", RELEASED_DURATION_SECONDS, 3)
    assert may_take(seen(released, since=100.0), "other_2", 100.0)
    # ... and taking a released Lease is a transition, as in client-go.
    assert next_record(released, "other_2", TIMING, NOW).transitions == 4


def test_a_created_lease_starts_at_zero_transitions() -> None:
    assert first_record("me_1", TIMING, NOW).transitions == 0


def test_the_update_is_guarded_by_the_version_read() -> None:
    body = build_lease("ops", "kondukt", HELD, resource_version="42")
    assert body["metadata"] == {"name": "kondukt", "namespace": "ops", "resourceVersion": "42"}
    assert (body["apiVersion"], body["kind"]) == ("coordination.k8s.io/v1", "Lease")
    assert "resourceVersion" not in build_lease("ops", "kondukt", HELD)["metadata"]


def test_the_event_names_the_new_leader_on_the_lease() -> None:
    lease = {"metadata": {"name": "kondukt", "namespace": "ops", "uid": "u-1"}}
    event = build_lease_event(lease, "me_1 became leader", "me_1", NOW)
    assert event["involvedObject"] == {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                       "name": "kondukt", "namespace": "ops", "uid": "u-1"}
    assert (event["reason"], event["message"], event["metadata"]["namespace"]) == (
        "LeaderElection", "me_1 became leader", "ops")


# -------------------------------------------------------------------------------------- timing
@pytest.mark.parametrize(
    ("timing", "complaints"),
    [
        pytest.param(LeaseTiming(), [], id="client-go-defaults"),
        pytest.param(LeaseTiming(lease_duration=4, renew_deadline=3, retry_period=1), [], id="short"),
        pytest.param(LeaseTiming(lease_duration=10, renew_deadline=10), ["must be shorter than --lease-duration"],
                     id="deadline-equals-duration"),
        pytest.param(LeaseTiming(renew_deadline=2.4, retry_period=2), ["must be longer than 1.2 x"],
                     id="no-time-for-a-retry"),
        pytest.param(LeaseTiming(lease_duration=0, renew_deadline=0.5, retry_period=0),
                     ["at least 1 second", "must be positive", "must be shorter"], id="zeros"),
    ],
)
def test_unsafe_timings_are_named(timing: LeaseTiming, complaints: list[str]) -> None:
    found = timing.problems()
    assert len(found) == len(complaints)
    for problem, complaint in zip(found, complaints, strict=True):
        assert complaint in problem


def test_a_lease_request_leaves_time_for_another_before_the_deadline() -> None:
    assert TIMING.request_timeout == 5.0 and LeaseTiming(renew_deadline=0.6, retry_period=0.1).request_timeout == 0.5


@examples(100)
@given(jitter=st.floats(min_value=0.0, max_value=0.999))
def test_a_standby_retries_between_one_and_2_2_retry_periods(jitter: float) -> None:
    assert 2.0 <= standby_delay(TIMING, jitter) < 2.0 * 2.2


@examples(300)
@given(
    duration=st.integers(min_value=1, max_value=120),
    deadline_fraction=st.floats(min_value=0.05, max_value=0.99),
    sent=st.floats(min_value=0.0, max_value=1e6),
    in_flight=st.floats(min_value=0.0, max_value=30.0),
    seen_late=st.floats(min_value=0.0, max_value=60.0),
)
def test_the_holder_stops_before_anyone_may_take_its_lease(duration: int, deadline_fraction: float, sent: float,
                                                           in_flight: float, seen_late: float) -> None:
    """Never two actors: a renewal sent at ``sent`` lands after ``in_flight`` seconds and another replica sees
    it ``seen_late`` later still; that replica may take the Lease only after the holder stopped acting, by
    the margin ``lease_duration - renew_deadline`` at least."""
    timing = LeaseTiming(lease_duration=duration, renew_deadline=duration * deadline_fraction, retry_period=0.01)
    holder_stops = leading_until(sent, timing)
    observed = observe(None, next_record(LeaseRecord(), "holder_1", timing, NOW), "9", now=sent + in_flight + seen_late)
    assert not may_take(observed, "standby_1", holder_stops)
    assert expires_at(observed) - holder_stops >= timing.lease_duration - timing.renew_deadline - 1e-6


# --------------------------------------------------------------------------------------- the fence
@pytest.fixture
async def recording_server() -> AsyncIterator[tuple[list[str], KubeClient]]:
    """An API stand-in on 127.0.0.1 that answers everything with {} and records each request's method."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.method)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with serve(app) as client:
        yield seen, client


async def test_a_replica_that_does_not_lead_sends_no_write(recording_server: tuple[list[str], KubeClient]) -> None:
    seen, client = recording_server
    leads = False
    client.fence = lambda: leads
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        with pytest.raises(NotLeader, match="does not lead"):
            await client.request(method, "/apis/batch/v1/namespaces/ns/jobs", what="a job", body={})
    assert await client.get("/apis/batch/v1/namespaces/ns/jobs/j", "a job") == {}  # reading is fine
    assert seen == ["GET"]
    leads = True
    await client.create("/apis/batch/v1/namespaces/ns/jobs", {}, "a job")
    assert seen == ["GET", "POST"]


# ------------------------------------------------------------------------- the elector, on a fake clock
class OneLease(KubeClient):
    """An in-memory API holding one Lease with the API server's resourceVersion rules (POST: AlreadyExists;
    PUT: Conflict unless the version read is current); ``down`` makes every request fail like a lost network."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.down = False
        self.events: list[str] = []

    async def request(self, method: str, path: str, *, what: str, body: Any = None, params: Any = None,
                      content_type: str = "application/json", on_conflict: type[ApiError] = Conflict) -> Any:
        if self.down:
            raise TransientApiError(0, "ClientConnectorError", "connection refused", what)
        if path.endswith("/events"):
            self.events.append(body["message"])
            return body
        if method == "GET":
            if self.lease is None:
                raise NotFound(404, "NotFound", "no lease", what)
            return copy.deepcopy(self.lease)
        if method == "POST":
            if self.lease is not None:
                raise AlreadyExists(409, "AlreadyExists", "exists", what)
        elif self.lease is None or body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "the object has been modified", what)
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(api: OneLease, clock: FakeClock, identity: str, calls: list[str] | None = None) -> LeaderElector:
    log = calls if calls is not None else []
    return LeaderElector(api, namespace="ops", name="kondukt", identity=identity, timing=TIMING, clock=clock,
                         on_started=lambda: log.append(f"{identity} started"),
                         on_stopped=lambda: log.append(f"{identity} stopped"))


async def test_a_leader_that_cannot_renew_stops_at_its_renew_deadline() -> None:
    api, clock, calls = OneLease(), FakeClock(), []
    leader = elector(api, clock, "a_1", calls)
    assert await leader.try_acquire_or_renew() and leader.is_leader() and calls == ["a_1 started"]
    api.down = True
    clock.now += 9.9
    assert not await leader.try_acquire_or_renew() and leader.is_leader()  # still within the deadline
    clock.now += 0.1
    assert not leader.is_leader()  # at the deadline, whether or not a timer fired yet
    leader._check_deadline()  # the timer
    assert calls == ["a_1 started", "a_1 stopped"]


async def test_a_standby_waits_a_lease_duration_after_the_last_renewal_it_saw() -> None:
    api, clock = OneLease(), FakeClock()
    a, b = elector(api, clock, "a_1"), elector(api, clock, "b_1")
    assert await a.try_acquire_or_renew()
    clock.now += 1
    assert not await b.try_acquire_or_renew() and b.leader() == "a_1"
    clock.now += 1
    assert await a.try_acquire_or_renew()  # a renewal b has not seen yet
    clock.now += 1
    assert not await b.try_acquire_or_renew()  # b sees it now: its clock restarts here (t = 3)
    await a.stop()  # a crash, for b: no more renewals, nothing released
    clock.now += 14.9
    assert not await b.try_acquire_or_renew()
    clock.now += 0.1
    assert await b.try_acquire_or_renew() and b.is_leader()
    assert api.lease is not None and api.lease["spec"]["leaseTransitions"] == 1


async def test_a_renewal_that_lands_after_the_deadline_is_a_new_leadership() -> None:
    """The loop was too busy to fire the deadline's timer: the gate already refused work (and dropped its
    timers), so the replica must lead anew — its on_started reconciles every workflow again."""
    api, clock, calls = OneLease(), FakeClock(), []
    leader = elector(api, clock, "a_1", calls)
    assert await leader.try_acquire_or_renew()
    clock.now += 11
    assert not leader.is_leader()
    assert await leader.try_acquire_or_renew() and leader.is_leader()
    assert calls == ["a_1 started", "a_1 stopped", "a_1 started"]


async def test_a_leader_that_sees_another_holder_stops_at_once() -> None:
    api, clock, calls = OneLease(), FakeClock(), []
    leader = elector(api, clock, "a_1", calls)
    assert await leader.try_acquire_or_renew()
    assert api.lease is not None
    api.lease["spec"]["holderIdentity"] = "intruder_1"  # someone edited the Lease by hand
    api.lease["metadata"]["resourceVersion"] = "99"
    assert not await leader.try_acquire_or_renew()  # the renewal conflicts ...
    assert not await leader.try_acquire_or_renew()  # ... the fresh read shows the other holder
    assert not leader.is_leader() and calls == ["a_1 started", "a_1 stopped"]


async def test_a_graceful_stop_releases_the_lease_for_the_next_try() -> None:
    api, clock = OneLease(), FakeClock()
    a, b = elector(api, clock, "a_1"), elector(api, clock, "b_1")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    await a.stop()
    assert await a.release()
    assert await b.try_acquire_or_renew()  # at once, no lease duration to wait
    assert not await a.release()  # not its Lease any more: nothing is written
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == "b_1"
