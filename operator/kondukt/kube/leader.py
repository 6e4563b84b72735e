"""Leader election among the operator's replicas with a Kubernetes Lease (``coordination.k8s.io/v1``).

Why a Lease and not Kopf's peering: Kopf pauses a replica when it *observes* a peer of higher priority in
the peering object. Nothing is ever compared-and-swapped, so nothing stops two replicas acting at once —
both work until each has seen the other, and a standby that misses its peer's keep-alive goes on working
(the takeover test failed in about 3 of 9 runs that way). A Lease written only with resourceVersion-guarded
requests is a lock: of two replicas trying to take it, the API server lets exactly one write succeed. It is
what kube-controller-manager, the scheduler, Argo's workflow controller and every controller-runtime
operator use, with client-go's ``leaderelection`` semantics, mirrored here:

- The record (the Lease's ``spec``): ``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime``,
  ``renewTime``, ``leaseTransitions`` (+1 whenever the holder changes).
- A replica may take the Lease when it has no holder, when it is already its own, or when the record has
  not changed for ``leaseDurationSeconds`` *as measured by this replica's own monotonic clock* since it
  first saw that record: wall clocks of different machines are never compared (``renewTime`` is for
  people).
- Every write is a PUT carrying the resourceVersion just read, or the POST that creates the Lease: a 409
  means another replica moved first, and this one keeps waiting.
- The holder renews every ``retry_period``. It leads only until ``renew_deadline`` after the moment it
  *sent* its last successful renewal. Since ``renew_deadline < lease_duration`` and a standby starts
  counting only once it has *seen* that renewal, the holder has stopped acting before anyone may take
  the Lease: never two actors. The difference is the margin for a request still in flight.
- A graceful stop stops acting first, then releases the Lease (no holder, a 1-second duration), so a
  standby takes over at its next try instead of after a whole lease duration.

The timing decisions are pure functions of records and instants (:func:`observe`, :func:`may_take`,
:func:`next_record`, :func:`released_record`, :meth:`LeaseTiming.problems`), tested without a cluster;
:class:`LeaderElector` does the I/O on a client of its own (its renewals never queue behind reconciles).
This module never acts on anything but its Lease and one Event about it: it only tells the others — the
reconciler's gate and the API client's fence — whether this replica may act.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from kondukt.kube.kubeapi import ApiError, Conflict, KubeClient
from kondukt.kube.metrics import Metrics

logger = logging.getLogger("kondukt.leader")

#: client-go's jitter factor for a standby's retries (retry_period * (1 + up to 1.2)).
JITTER_FACTOR: Final = 1.2
#: leaseDurationSeconds of a released Lease (client-go's value): free for the taking.
RELEASED_DURATION_SECONDS: Final = 1


# ----------------------------------------------------------------------------------------------- pure
@dataclass(frozen=True)
class LeaseTiming:
    """client-go's three durations (their defaults too: kube-controller-manager's 15 s / 10 s / 2 s)."""

    lease_duration: int = 15
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def problems(self) -> list[str]:
        """What makes this timing unsafe, each naming its flag; empty when it is sound."""
        found: list[str] = []
        if self.lease_duration < 1:
            found.append(f"--lease-duration must be at least 1 second, got {self.lease_duration}")
        if self.retry_period <= 0:
            found.append(f"--lease-retry-period must be positive, got {self.retry_period}")
        if self.renew_deadline >= self.lease_duration:
            found.append(f"--lease-renew-deadline ({self.renew_deadline:g}s) must be shorter than --lease-duration "
                         f"({self.lease_duration}s): the holder must stop acting before the lease can be taken")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            found.append(f"--lease-renew-deadline ({self.renew_deadline:g}s) must be longer than "
                         f"{JITTER_FACTOR:g} x --lease-retry-period ({self.retry_period:g}s): a renewal must have "
                         f"time for a retry")
        return found

    @property
    def request_timeout(self) -> float:
        """One Lease request may take this long: a hung request leaves time for another before the deadline."""
        return max(0.5, self.renew_deadline / 2)


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's ``spec``, client-go's LeaderElectionRecord."""

    holder: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> LeaseRecord:
        spec = spec or {}

        def number(key: str) -> int:
            try:
                return int(spec.get(key) or 0)
            except (TypeError, ValueError):
                return 0

        return cls(holder=str(spec.get("holderIdentity") or ""),
                   lease_duration_seconds=number("leaseDurationSeconds"),
                   acquire_time=spec.get("acquireTime"), renew_time=spec.get("renewTime"),
                   transitions=number("leaseTransitions"))

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"holderIdentity": self.holder, "leaseDurationSeconds": self.lease_duration_seconds,
                                "leaseTransitions": self.transitions}
        if self.acquire_time is not None:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time is not None:
            spec["renewTime"] = self.renew_time
        return spec


@dataclass(frozen=True)
class Observed:
    """A record as this replica saw it: since when (its monotonic clock) it has not changed."""

    record: LeaseRecord
    resource_version: str
    since: float


def micro_time(now: dt.datetime) -> str:
    """A ``MicroTime`` (RFC 3339 with microseconds, UTC)."""
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def observe(previous: Observed | None, record: LeaseRecord, resource_version: str, now: float) -> Observed:
    """Record what was read: the clock of a record restarts only when its content changed (client-go's
    observedRecord/observedTime). A replica that first sees a record later than it was written only
    waits longer — it never takes a Lease early."""
    if previous is not None and previous.record == record:
        return replace(previous, resource_version=resource_version)
    return Observed(record=record, resource_version=resource_version, since=now)


def expires_at(observed: Observed) -> float:
    """When (this replica's monotonic clock) the observed record's holder is presumed gone."""
    return observed.since + max(observed.record.lease_duration_seconds, 0)


def may_take(observed: Observed, identity: str, now: float) -> bool:
    """Whether this replica may write itself into the Lease: free, already its own, or expired."""
    holder = observed.record.holder
    return not holder or holder == identity or now >= expires_at(observed)


def next_record(current: LeaseRecord, identity: str, timing: LeaseTiming, now: dt.datetime) -> LeaseRecord:
    """The record this replica writes to acquire (a new holder: transitions + 1) or to renew the Lease."""
    stamp = micro_time(now)
    if current.holder == identity:
        return replace(current, lease_duration_seconds=timing.lease_duration, renew_time=stamp,
                       acquire_time=current.acquire_time or stamp)
    return LeaseRecord(holder=identity, lease_duration_seconds=timing.lease_duration, acquire_time=stamp,
                       renew_time=stamp, transitions=current.transitions + 1)


def first_record(identity: str, timing: LeaseTiming, now: dt.datetime) -> LeaseRecord:
    """The record of a Lease this replica creates."""
    stamp = micro_time(now)
    return LeaseRecord(holder=identity, lease_duration_seconds=timing.lease_duration, acquire_time=stamp,
                       renew_time=stamp, transitions=0)


def released_record(current: LeaseRecord, now: dt.datetime) -> LeaseRecord:
    """The record a holder leaves behind on a graceful stop: no holder, so the next try takes it."""
    stamp = micro_time(now)
    return LeaseRecord(holder="", lease_duration_seconds=RELEASED_DURATION_SECONDS, acquire_time=stamp,
                       renew_time=stamp, transitions=current.transitions)


def leading_until(renewal_sent: float, timing: LeaseTiming) -> float:
    """Until when (monotonic) a holder may act after a successful renewal sent at ``renewal_sent``."""
    return renewal_sent + timing.renew_deadline


def standby_delay(timing: LeaseTiming, jitter: float) -> float:
    """A standby's pause between tries (``jitter`` in [0, 1): client-go's JitterUntil)."""
    return timing.retry_period * (1.0 + JITTER_FACTOR * jitter)


def build_lease(namespace: str, name: str, record: LeaseRecord, resource_version: str | None = None) -> dict[str, Any]:
    """The Lease to create, or to PUT in place of the version read (``resource_version``: the guard)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": record.to_spec()}


def build_lease_event(lease: Mapping[str, Any], message: str, reporting_instance: str,
                      now: dt.datetime) -> dict[str, Any]:
    """client-go's ``LeaderElection`` Event on the Lease (``kubectl describe lease`` shows who leads)."""
    meta = lease.get("metadata") or {}
    stamp = now.astimezone(dt.UTC)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta.get('name')}.{int(stamp.timestamp() * 1e6):x}",
                     "namespace": meta.get("namespace")},
        "involvedObject": {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "name": meta.get("name"),
                           "namespace": meta.get("namespace"), "uid": meta.get("uid")},
        "type": "Normal",
        "reason": "LeaderElection",
        "message": message,
        "count": 1,
        "firstTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lastTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": {"component": "kondukt-operator"},
        "reportingComponent": "kondukt.io/operator",
        "reportingInstance": reporting_instance[:128],
    }


# ------------------------------------------------------------------------------------------------ I/O
class LeaderElector:
    """Campaigns for the Lease, renews it while leading and says at every instant whether this replica leads.

    :meth:`is_leader` is the single source of truth, read synchronously by the reconciler's gate and by the
    API client's fence before every write; it turns false by itself at the renew deadline, even when the
    event loop is too busy for the renewal task to run. ``on_started`` / ``on_stopped`` are called on the
    loop when leadership begins and ends (``on_stopped`` at the deadline at the latest, from a timer).
    """

    def __init__(
        self,
        api: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming,
        metrics: Metrics | None = None,
        on_started: Callable[[], None] | None = None,
        on_stopped: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.namespace, self.name, self.identity, self.timing = api, namespace, name, identity, timing
        self.metrics = metrics
        self.on_started, self.on_stopped = on_started, on_stopped
        self.clock = clock
        self.observed: Observed | None = None
        self._valid_until: float | None = None  # leading while clock() < this
        self._leading = False  # on_started called and on_stopped not yet
        self._deadline: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._random = random.Random()

    @property
    def lease(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{urllib.parse.quote(self.name)}"

    @property
    def leading(self) -> bool:
        """Whether this replica acts under the Lease (started, not yet stopped; :meth:`is_leader` also checks
        the deadline)."""
        return self._leading

    async def hand_over(self, why: str) -> bool:
        """Stop acting under this Lease at once and release it (a replica holding more than its share of the
        shards gives one up). True when released."""
        self._step_down(why, logging.INFO)
        return await self.release()

    def is_leader(self) -> bool:
        return self._valid_until is not None and self.clock() < self._valid_until

    def leader(self) -> str:
        """Who holds the Lease, as last seen (empty: nobody, or not read yet)."""
        return self.observed.record.holder if self.observed is not None else ""

    # ----------------------------------------------------------------------------------- one try
    async def try_acquire_or_renew(self, *, take: bool = True) -> bool:
        """One step of client-go's ``tryAcquireOrRenew``: True when this replica now holds the Lease.

        ``take=False`` (a shard this replica does not want now, see :mod:`kondukt.kube.shards`): the Lease is
        only read and observed (who holds it, since when), never created or written, unless already held."""
        sent = self.clock()  # before anything is sent: the deadline can only come early, never late
        now = dt.datetime.now(dt.UTC)
        observed = self.observed
        if self._leading and observed is not None and observed.record.holder == self.identity:
            # Renewing: one PUT on the resourceVersion this replica wrote last (no read needed).
            return await self._write(observed.record, observed.resource_version, sent, now)
        try:
            lease = await self.api.get(self.path, f"lease {self.lease}")
        except ApiError as err:
            logger.warning("leader election: cannot read lease %s: %s", self.lease, err)
            return False
        if lease is None:
            if not take:
                return False
            record = first_record(self.identity, self.timing, now)
            try:
                created = await self.api.create(self.path.rsplit("/", 1)[0],
                                                build_lease(self.namespace, self.name, record),
                                                f"lease {self.lease}")
            except ApiError as err:
                logger.warning("leader election: cannot create lease %s: %s", self.lease, err)
                return False
            if created is None:  # another replica created it first
                return False
            self._took(created, sent, acquired=True)
            return True
        record = LeaseRecord.from_spec(lease.get("spec"))
        version = str((lease.get("metadata") or {}).get("resourceVersion"))
        self.observed = observe(self.observed, record, version, self.clock())
        if not may_take(self.observed, self.identity, self.clock()):
            if self._leading:  # someone else holds it: stop at once, the deadline would come anyway
                self._step_down(f"lease {self.lease} is held by {record.holder}")
            return False
        if not take and record.holder != self.identity:
            return False
        return await self._write(record, version, sent, now)

    def may_take_now(self) -> bool:
        """Whether the Lease, as last observed, is free, this replica's own, or expired (no request); also when
        it was not seen (it does not exist yet): :meth:`try_acquire_or_renew` reads it again before any write."""
        return self.observed is None or may_take(self.observed, self.identity, self.clock())

    async def _write(self, current: LeaseRecord, version: str, sent: float, now: dt.datetime) -> bool:
        record = next_record(current, self.identity, self.timing, now)
        body = build_lease(self.namespace, self.name, record, resource_version=version)
        try:
            replaced = await self.api.request("PUT", self.path, body=body, what=f"lease {self.lease}")
        except Conflict:
            if current.holder == self.identity:
                self.observed = None  # our own record moved under us: read it fresh next time
            logger.debug("leader election: lease %s changed meanwhile", self.lease)
            return False
        except ApiError as err:
            logger.warning("leader election: cannot update lease %s: %s", self.lease, err)
            return False
        self._took(replaced, sent, acquired=current.holder != self.identity)
        return True

    def _took(self, lease: Mapping[str, Any], sent: float, *, acquired: bool) -> None:
        if self._leading and not self.is_leader():
            # Renewed, but only after the deadline (a busy loop fired no timer yet): this replica did stop
            # leading meanwhile — its gate skipped reconciles and dropped their timers — so it leads anew.
            self._step_down(f"lease {self.lease} renewed only after the renew deadline")
        record = LeaseRecord.from_spec(lease.get("spec"))
        version = str((lease.get("metadata") or {}).get("resourceVersion"))
        self.observed = Observed(record=record, resource_version=version, since=self.clock())
        self._valid_until = leading_until(sent, self.timing)
        loop = asyncio.get_running_loop()
        if self._deadline is not None:
            self._deadline.cancel()
        # The deadline in loop time: leading_until is in self.clock's time, the loop's clock may differ.
        self._deadline = loop.call_later(max(0.0, self._valid_until - self.clock()), self._check_deadline)
        if not self._leading:
            self._leading = True
            logger.info("leader election: %s leads now (lease %s, transitions %d)%s", self.identity, self.lease,
                        record.transitions, "" if acquired else ", renewed")
            if self.metrics is not None:
                self.metrics.leader.labels(self.lease, self.identity).set(1)
                self.metrics.leaderships.inc()
            self._post_event(lease, f"{self.identity} became leader")
            if self.on_started is not None:
                self.on_started()

    def _check_deadline(self) -> None:
        self._deadline = None
        if self._leading and not self.is_leader():
            self._step_down(f"lease {self.lease} not renewed within {self.timing.renew_deadline:g}s")

    def _step_down(self, why: str, level: int = logging.WARNING) -> None:
        """Stop acting now (the fence and the gate see it at once through :meth:`is_leader`)."""
        self._valid_until = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if not self._leading:
            return
        self._leading = False
        logger.log(level, "leader election: %s stopped leading: %s", self.identity, why)
        if self.metrics is not None:
            self.metrics.leader.labels(self.lease, self.identity).set(0)
        if self.on_stopped is not None:
            self.on_stopped()

    def _post_event(self, lease: Mapping[str, Any], message: str) -> None:
        event = build_lease_event(lease, message, self.identity, dt.datetime.now(dt.UTC))

        async def post() -> None:
            try:
                await self.api.request("POST", f"/api/v1/namespaces/{self.namespace}/events", body=event,
                                       what=f"event on lease {self.lease}")
            except ApiError as err:
                logger.debug("leader election: event not posted: %s", err)

        asyncio.get_running_loop().create_task(post(), name="kondukt-lease-event")

    # -------------------------------------------------------------------------------------- loop
    async def run(self) -> None:
        """Campaign while standing by, renew while leading; forever (until cancelled)."""
        announced: str | None = None
        while True:
            try:
                held = await asyncio.wait_for(self.try_acquire_or_renew(), timeout=self.timing.request_timeout * 2)
            except TimeoutError:
                held = False
                logger.warning("leader election: a lease request to %s timed out", self.lease)
            except Exception:  # a surprise must not end the campaign; the deadline still ends a leadership
                held = False
                logger.exception("leader election: trying lease %s failed unexpectedly", self.lease)
            if held or self._leading:  # a leader renews (or retries a failed renewal) every retry period
                announced = None
                await asyncio.sleep(self.timing.retry_period)
                continue
            holder = self.leader()
            if holder and holder != self.identity and holder != announced:
                logger.info("leader election: %s stands by, %s leads (lease %s)", self.identity, holder, self.lease)
                announced = holder
            await asyncio.sleep(standby_delay(self.timing, self._random.random()))

    def start(self) -> None:
        if self.metrics is not None:
            self.metrics.leader.labels(self.lease, self.identity).set(0)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="kondukt-leader-election")

    async def stop(self) -> None:
        """Stop campaigning and acting (the Lease stays as it is: :meth:`release` hands it over)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._step_down("shutting down", logging.INFO)

    async def release(self) -> bool:
        """Give the Lease up if this replica holds it (call after :meth:`stop`, once nothing acts any more):
        a standby takes over at its next try. True when released."""
        observed = self.observed
        if observed is None or observed.record.holder != self.identity:
            return False
        record = released_record(observed.record, dt.datetime.now(dt.UTC))
        body = build_lease(self.namespace, self.name, record, resource_version=observed.resource_version)
        try:
            released = await asyncio.wait_for(
                self.api.request("PUT", self.path, body=body, what=f"lease {self.lease}"),
                timeout=self.timing.request_timeout)
        except (ApiError, TimeoutError) as err:
            logger.warning("leader election: lease %s not released (it expires by itself): %s", self.lease, err)
            return False
        self.observed = Observed(LeaseRecord.from_spec(released.get("spec")),
                                 str((released.get("metadata") or {}).get("resourceVersion")), self.clock())
        logger.info("leader election: %s released lease %s", self.identity, self.lease)
        return True
