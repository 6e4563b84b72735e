"""Sharding the Workflows among the operator's replicas, one Kubernetes Lease per shard.

Why: one leader doing all the work caps a cluster at what one process does (issue 10: about 700 workflows a
minute all day). With ``--shards N`` (N > 1) the Workflows are split into N shards and every replica holds
some of them; each shard is a Lease (``<lease>-shard-<i>-of-<n>``) elected with exactly the rules of
:mod:`kondukt.kube.leader` (client-go's: resourceVersion-guarded writes, expiry measured on the candidate's
own monotonic clock, a holder stops acting at its renew deadline, before anyone may take the Lease). So the
guarantee of the one-leader design holds per shard: never two replicas acting on one workflow at once.

- A workflow's shard is a stable hash of its ``metadata.uid`` (:func:`shard_of`): the only identifier the API
  server guarantees immutable, so no edit can move a running workflow to another shard while two replicas
  disagree about it. A SUB_WORKFLOW family is not kept together, and needs not be: parent and child only meet
  through the API server (the parent creates the child and patches its ``spec.terminate``; the child's status
  reaches the parent through every replica's watch), each object still written by one replica at a time.
- The fence: :meth:`ShardManager.may_act` is the API client's fence and the reconciler's gate. A reconcile sets
  :data:`acting_shard` to its workflow's shard (a context variable: tasks it starts inherit it), and every write
  — Job creation, child Workflows, status, limit claims — is refused unless this replica holds that shard at the
  moment it is sent. Writes outside any workflow (Events) need some shard held.
- Balance: every replica keeps a *member* Lease (``<lease>-member-<hash>``, labelled
  ``kondukt.io/shard-members=<lease>``) renewed like the others, as kube-apiserver's identity Leases. The
  replicas alive are the member Leases whose record changed within their duration (by this replica's clock).
  A replica takes free or expired shards only while it holds fewer than ``ceil(shards / replicas alive)``
  (:func:`fair_share`) and no other replica alive holds fewer (:func:`may_take_more`; who holds what is read
  from the shard Leases), and hands one over (stop acting, release) per round while it holds more than its
  share or two more than the poorest replica (:func:`surplus`) — so a new replica gets its share within a few
  retry periods and a dead one's shards go to the others once its Leases
  expire (within the lease duration and a retry period or two). Member Leases of replicas gone for long are
  deleted by the others.
- When a shard is taken its workflows are all reconciled (the watches kept every replica's caches warm); when it
  is lost, their timers and in-flight HTTP requests and jq evaluations are dropped (:class:`Reconciler` ``lead``
  / ``stand_by`` with the shard).

Changing the shard count: the count is in the shard Leases' names and on every member Lease; while replicas
with different counts are alive (a rolling update), none takes a shard, so the old ones keep acting on theirs
until they stop and release them, and only then do the new ones take the new shards.

With one shard (the default) nothing here is used: ``--lease`` is the one-leader election of
:mod:`kondukt.kube.leader`, unchanged. Rate and concurrency limits across shards: :mod:`kondukt.kube.claims`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import logging
import math
import random
import time
import urllib.parse
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, Final

from kondukt.kube import names
from kondukt.kube.kubeapi import ApiError, Conflict, KubeClient
from kondukt.kube.leader import (
    LeaderElector,
    LeaseRecord,
    LeaseTiming,
    Observed,
    build_lease,
    expires_at,
    first_record,
    next_record,
    observe,
)
from kondukt.kube.metrics import Metrics

logger = logging.getLogger("kondukt.shards")

#: The label of the member Leases: its value is the shard Leases' base name.
MEMBER_LABEL: Final = "kondukt.io/shard-members"
#: On a member Lease: the replica's shard count. While replicas with different counts are alive (a rollout
#: that changes ``--shards``), nobody takes a shard: the old replicas keep theirs until they stop.
SHARDS_ANNOTATION: Final = "kondukt.io/shards"
#: A member Lease not renewed for this many lease durations is deleted by the other replicas.
MEMBER_GARBAGE_DURATIONS: Final = 10
#: The shard of the workflow the current reconcile acts on (None: no workflow, e.g. an Event).
acting_shard: ContextVar[int | None] = ContextVar("kondukt_acting_shard", default=None)


# ----------------------------------------------------------------------------------------------- pure
def shard_of(uid: str, shards: int) -> int:
    """The shard of the workflow with this uid: a stable hash (the same in every replica and release)."""
    if shards <= 1:
        return 0
    return int(hashlib.sha256(uid.encode("utf-8")).hexdigest()[:12], 16) % shards


def shard_lease_names(base: str, shards: int) -> list[str]:
    """The shards' Leases: ``base`` itself with one shard (the one-leader Lease), else ``base-shard-<i>-of-<n>``:
    the count is in the name, so a Lease never stands for two different splits of the workflows."""
    return [base] if shards <= 1 else [f"{base}-shard-{i}-of-{shards}" for i in range(shards)]


def member_lease_name(base: str, identity: str) -> str:
    return f"{base}-member-{names.digest(identity, chars=12)}"


def fair_share(shards: int, replicas: int) -> int:
    """How many shards one replica may hold while ``replicas`` are alive (itself included)."""
    return math.ceil(shards / max(1, replicas))


def alive_members(observed: Mapping[str, Observed], own: str, now: float) -> int:
    """How many replicas are alive: member Leases with a holder, renewed within their duration (``own``: this
    replica's, alive by definition)."""
    return sum(1 for name, seen in observed.items()
               if name == own or (seen.record.holder and now < expires_at(seen)))


def surplus(held: list[int], share: int, fewest_other: int | None = None) -> int | None:
    """The shard to hand over (the highest held), else None: while holding more than ``share``, or more than one
    above the replica alive that holds the fewest (``fewest_other``; None: no other replica)."""
    if len(held) > share or (fewest_other is not None and len(held) > fewest_other + 1):
        return max(held)
    return None


def may_take_more(held: int, share: int, fewest_other: int | None) -> bool:
    """Whether a replica holding ``held`` shards may take one more: below its share, and no other replica alive
    holds fewer (that one takes first: so 4 shards on 3 replicas end as 2/1/1, never 2/2/0)."""
    return held < share and (fewest_other is None or held <= fewest_other)


# ------------------------------------------------------------------------------------------------ I/O
class ShardManager:
    """Holds this replica's shards: one :class:`LeaderElector` per shard Lease, driven by one loop that renews
    what is held, hands over a surplus, watches the rest and takes free or expired ones up to the fair share."""

    def __init__(
        self,
        api: KubeClient,
        *,
        namespace: str,
        base: str,
        shards: int,
        identity: str,
        timing: LeaseTiming,
        metrics: Metrics | None = None,
        on_started: Callable[[int], None] | None = None,
        on_stopped: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.namespace, self.base, self.shards = api, namespace, base, shards
        self.identity, self.timing, self.metrics, self.clock = identity, timing, metrics, clock
        self.electors = [
            LeaderElector(api, namespace=namespace, name=name, identity=identity, timing=timing, metrics=metrics,
                          on_started=functools.partial(on_started, i) if on_started else None,
                          on_stopped=functools.partial(on_stopped, i) if on_stopped else None, clock=clock)
            for i, name in enumerate(shard_lease_names(base, shards))
        ]
        self.member_name = member_lease_name(base, identity)
        #: Member Leases as last seen (name -> record, since when unchanged by this replica's clock).
        self.members: dict[str, Observed] = {}
        self._member: Observed | None = None  # this replica's own member Lease, as written last
        self.replicas = 1
        #: Replicas with another shard count are alive (a rollout changing --shards): take nothing.
        self.mixed = False
        self._rounds = 0
        self._task: asyncio.Task[None] | None = None
        self._random = random.Random()

    @property
    def leases_path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    # ---------------------------------------------------------------------------- the fence and gate
    def shard_of(self, uid: str) -> int:
        return shard_of(uid, self.shards)

    def holds(self, shard: int) -> bool:
        return 0 <= shard < self.shards and self.electors[shard].is_leader()

    def held(self) -> list[int]:
        return [i for i, elector in enumerate(self.electors) if elector.is_leader()]

    def may_act(self) -> bool:
        """The fence: whether a write may be sent now for the workflow being reconciled (:data:`acting_shard`),
        or, outside any workflow, whether this replica holds any shard."""
        shard = acting_shard.get()
        if shard is None:
            return any(elector.is_leader() for elector in self.electors)
        return self.holds(shard)

    # ------------------------------------------------------------------------------------ one round
    async def _bounded(self, elector: LeaderElector, take: bool) -> bool:
        try:
            return await asyncio.wait_for(elector.try_acquire_or_renew(take=take),
                                          timeout=self.timing.request_timeout * 2)
        except TimeoutError:
            logger.warning("shards: a request on lease %s timed out", elector.lease)
        except Exception:  # a surprise must not end the loop; the deadline still ends a leadership
            logger.exception("shards: trying lease %s failed unexpectedly", elector.lease)
        return False

    async def heartbeat(self) -> int:
        """Renew this replica's member Lease and count the replicas alive (itself included)."""
        now = dt.datetime.now(dt.UTC)
        path = f"{self.leases_path}/{urllib.parse.quote(self.member_name)}"
        try:
            if self._member is None:
                current = await self.api.get(path, f"lease {self.member_name}")
                if current is None:
                    body = build_lease(self.namespace, self.member_name, first_record(self.identity, self.timing, now))
                    self._member_metadata(body)
                    written = await self.api.create(self.leases_path, body, f"lease {self.member_name}")
                else:
                    record = next_record(LeaseRecord.from_spec(current.get("spec")), self.identity, self.timing, now)
                    body = build_lease(self.namespace, self.member_name, record,
                                       str((current.get("metadata") or {}).get("resourceVersion")))
                    self._member_metadata(body)
                    written = await self.api.request("PUT", path, body=body, what=f"lease {self.member_name}")
            else:
                record = next_record(self._member.record, self.identity, self.timing, now)
                body = build_lease(self.namespace, self.member_name, record, self._member.resource_version)
                self._member_metadata(body)
                written = await self.api.request("PUT", path, body=body, what=f"lease {self.member_name}")
            if written is not None:
                self._member = Observed(LeaseRecord.from_spec(written.get("spec")),
                                        str((written.get("metadata") or {}).get("resourceVersion")), self.clock())
        except (Conflict, ApiError) as err:
            self._member = None  # read it afresh next round
            logger.debug("shards: member lease %s not renewed: %s", self.member_name, err)
        try:
            items = await self.api.list_items(self.leases_path, "member leases",
                                              label_selector=f"{MEMBER_LABEL}={names.label_value(self.base)}")
        except ApiError as err:
            logger.warning("shards: cannot list the member leases: %s", err)
            return self.replicas
        now_mono = self.clock()
        seen: dict[str, Observed] = {}
        counts: dict[str, str] = {}
        for item in items:
            meta = item.get("metadata") or {}
            name = str(meta.get("name"))
            seen[name] = observe(self.members.get(name), LeaseRecord.from_spec(item.get("spec")),
                                 str(meta.get("resourceVersion")), now_mono)
            counts[name] = str((meta.get("annotations") or {}).get(SHARDS_ANNOTATION) or "")
        self.members = seen
        await self._collect_garbage(now_mono)
        other_count = {name for name, member in self.members.items()
                       if name != self.member_name and member.record.holder and now_mono < expires_at(member)
                       and counts.get(name) != str(self.shards)}
        if other_count and not self.mixed:
            logger.warning("shards: replicas with another shard count are alive (%s): taking no shard until they "
                           "stop", ", ".join(sorted(self.members[n].record.holder for n in other_count)))
        self.mixed = bool(other_count)
        self.replicas = max(1, alive_members({n: m for n, m in self.members.items() if n not in other_count},
                                             self.member_name, now_mono))
        return self.replicas

    def _member_metadata(self, body: dict[str, Any]) -> None:
        body["metadata"]["labels"] = {MEMBER_LABEL: names.label_value(self.base)}
        body["metadata"]["annotations"] = {SHARDS_ANNOTATION: str(self.shards)}

    async def _collect_garbage(self, now: float) -> None:
        for name, seen in list(self.members.items()):
            gone_for = now - expires_at(seen)
            if name == self.member_name or gone_for < self.timing.lease_duration * MEMBER_GARBAGE_DURATIONS:
                continue
            with contextlib.suppress(ApiError):
                await self.api.request(
                    "DELETE", f"{self.leases_path}/{urllib.parse.quote(name)}", what=f"lease {name}",
                    body={"kind": "DeleteOptions", "apiVersion": "v1",
                          "preconditions": {"resourceVersion": seen.resource_version}})
                logger.info("shards: deleted the member lease %s of a replica gone for %.0fs", name, gone_for)
            self.members.pop(name, None)

    def fewest_held_by_others(self) -> int | None:
        """The fewest shards any other replica alive holds, as this replica last saw the Leases (None: alone)."""
        now = self.clock()
        counts = {seen.record.holder: 0 for name, seen in self.members.items()
                  if name != self.member_name and seen.record.holder and seen.record.holder != self.identity
                  and now < expires_at(seen)}
        for elector in self.electors:
            seen = elector.observed
            if seen is not None and seen.record.holder in counts and now < expires_at(seen):
                counts[seen.record.holder] += 1
        return min(counts.values(), default=None)

    async def round(self) -> None:
        """Count the replicas, hand over a surplus, watch the rest, take up to the fair share (renewals are
        :meth:`renew`'s)."""
        try:  # bounded: the next round's renewals must not wait behind a slow list
            replicas = await asyncio.wait_for(self.heartbeat(), timeout=self.timing.request_timeout)
        except TimeoutError:
            logger.warning("shards: the member leases could not be read in time; %d replicas as last seen",
                           self.replicas)
            replicas = self.replicas
        share = fair_share(self.shards, replicas)
        held = self.held()
        extra = None if self.mixed else surplus(held, share, self.fewest_held_by_others())
        if extra is not None:
            await self.electors[extra].hand_over(
                f"handing shard {extra} over: {len(held)} held, the fair share of {replicas} replicas is {share}")
            held = self.held()
        others = [i for i in range(self.shards) if i not in held]
        await asyncio.gather(*(self._bounded(self.electors[i], False) for i in others))
        if self._rounds > 0 and not self.mixed:  # the first round only looks: the members show first
            fewest = self.fewest_held_by_others()
            offset = self._random.randrange(len(others)) if others else 0
            for i in others[offset:] + others[:offset]:
                if not may_take_more(len(self.held()), share, fewest):
                    break
                if self.electors[i].may_take_now():
                    await self._bounded(self.electors[i], True)
        self._rounds += 1
        if self.metrics is not None:
            self.metrics.shards_held.set(len(self.held()))
            self.metrics.shard_replicas.set(replicas)

    async def renew(self) -> None:
        """Renew every held shard every retry period, on its own: a round's reads (member Leases, the other
        shards) on a slow API server never delay a renewal towards the renew deadline."""
        while True:
            await self.renew_once()
            await asyncio.sleep(self.timing.retry_period)

    async def renew_once(self) -> None:
        held = [elector for elector in self.electors if elector.leading]
        await asyncio.gather(*(self._bounded(elector, True) for elector in held))

    async def run(self) -> None:
        renewals = asyncio.get_running_loop().create_task(self.renew(), name="kondukt-shards-renew")
        try:
            await self._rounds_forever()
        finally:
            renewals.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewals

    async def _rounds_forever(self) -> None:
        announced: tuple[int, ...] | None = None
        while True:
            try:
                await self.round()
            except Exception:  # never end the loop; each shard's deadline still ends its leadership
                logger.exception("shards: a round failed unexpectedly")
            held = tuple(self.held())
            if held != announced:
                logger.info("shards: %s holds %s of %d shards (%d replicas alive)", self.identity,
                            list(held) or "none", self.shards, self.replicas)
                announced = held
            await asyncio.sleep(self.timing.retry_period * (1.0 + 0.1 * self._random.random()))

    def start(self) -> None:
        if self.metrics is not None:
            for elector in self.electors:
                self.metrics.leader.labels(elector.lease, self.identity).set(0)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="kondukt-shards")

    async def stop(self) -> None:
        """Stop campaigning and acting on every shard (the Leases stay: :meth:`release` hands them over)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for elector in self.electors:
            await elector.stop()

    async def release(self) -> None:
        """Give every held shard Lease up and delete the member Lease (after :meth:`stop`): the other replicas
        take the shards at their next round."""
        await asyncio.gather(*(elector.release() for elector in self.electors), return_exceptions=True)
        with contextlib.suppress(ApiError, TimeoutError):
            await asyncio.wait_for(self.api.delete(f"{self.leases_path}/{urllib.parse.quote(self.member_name)}",
                                                   f"lease {self.member_name}"),
                                   timeout=self.timing.request_timeout)
