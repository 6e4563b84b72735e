"""Limits across shards (kondukt.kube.claims): the claims' pure rules, and two replicas whose Job caches do not
show each other's Jobs reconciling against one in-memory API server — the claims alone keep a concurrency
limit, and a claim written meanwhile by the other replica (409) makes a reconcile decide again."""

from __future__ import annotations

import copy
from typing import Any

from kondukt.kube import cache
from kondukt.kube.claims import (
    CLAIMS_ANNOTATION,
    UNSEEN_GRACE_MS,
    Claim,
    LimitClaims,
    claims_lease,
    claims_lease_name,
    counted,
    encode_claims,
    parse_claims,
    pruned,
)
from tests.unit.kube.harness import ECHO, FakeCluster, Harness, chain, run_of

NOW = 1_767_225_600_000


def test_claims_round_trip_through_the_lease_and_bad_ones_count_as_none() -> None:
    claims = {"job-a": Claim(NOW, "uid-a"), "job-b": Claim(NOW - 5, "uid-b")}
    lease = claims_lease("ns", "echo", claims, "replica_1", None)
    assert lease["metadata"]["name"] == claims_lease_name("echo") and len(claims_lease_name("x" * 300)) <= 63
    assert parse_claims(lease) == claims
    assert parse_claims({"metadata": {"annotations": {CLAIMS_ANNOTATION: "not json"}}}) == {}
    assert parse_claims({"metadata": {"annotations": {CLAIMS_ANNOTATION: '{"j": "x", "k": [1, "u"]}'}}}) == {
        "k": Claim(1, "u")}
    assert encode_claims(claims).startswith('{"job-a"')


def test_a_claim_is_kept_while_it_counts() -> None:
    claims = {"running": Claim(NOW - 60_000, "u"), "done-recently": Claim(NOW - 1_000, "u"),
              "done-long-ago": Claim(NOW - 60_000, "u"), "unseen-fresh": Claim(NOW - 1_000, "u"),
              "unseen-stale": Claim(NOW - UNSEEN_GRACE_MS - 1, "u")}
    finished = {"running": False, "done-recently": True, "done-long-ago": True}
    assert set(pruned(claims, finished, 30_000, NOW)) == {"running", "done-recently", "unseen-fresh"}


def test_only_claims_the_informer_has_not_shown_count_and_not_this_workflows_own_retry() -> None:
    claims = {"seen": Claim(NOW, "other"), "other-unseen": Claim(NOW, "other"), "mine-again": Claim(NOW, "me"),
              "mine-dispatched": Claim(NOW, "me"), "stale": Claim(NOW - UNSEEN_GRACE_MS - 1, "other")}
    assert counted(claims, {"seen"}, "me", {"mine-dispatched"}, NOW) == {"other-unseen": NOW, "mine-dispatched": NOW}


# ----------------------------------------------------------------------------- two replicas, one API
def limited_cluster() -> FakeCluster:
    cluster = FakeCluster()
    limited = copy.deepcopy(ECHO)
    limited["spec"]["concurrentExecLimit"] = 1
    cluster.apply(limited)
    cluster.apply(chain(steps=1))
    return cluster


def blind_replica(cluster: FakeCluster, identity: str) -> Harness:
    """A replica with claims on, whose Job informer shows nothing (it lags behind every other replica)."""
    harness = Harness(cluster=cluster)
    harness.reconciler.view = cache.ClusterView({
        key: value for key, value in cluster.view()._indices.items()  # type: ignore[attr-defined]
        if key != cache.JOBS_INDEX})
    harness.reconciler.actor.view = harness.reconciler.view
    harness.reconciler.claims = LimitClaims(cluster, identity)
    return harness


async def test_claims_hold_a_concurrency_limit_across_replicas_that_cannot_see_each_others_jobs() -> None:
    cluster = limited_cluster()
    left, right = blind_replica(cluster, "left_1"), blind_replica(cluster, "right_1")
    cluster.apply(run_of("a"))
    cluster.apply(run_of("b"))
    await left.reconcile("a")
    outcome = await right.reconcile("b")
    assert len(cluster.jobs()) == 1, "the second replica waits for the slot the first one claimed"
    assert outcome.waiting_on == ("echo",)
    await left.reconcile("a")  # nothing new: its claim is its own dispatched attempt, no second Job
    assert len(cluster.jobs()) == 1


async def test_a_claim_written_meanwhile_by_another_replica_is_read_and_decided_again() -> None:
    cluster = limited_cluster()
    left = blind_replica(cluster, "left_1")
    cluster.apply(run_of("a"))
    claims = left.reconciler.claims
    assert claims is not None
    original_write = claims.write
    raced: list[str] = []

    async def write_after_a_rival(namespace: str, read: Any, wanted: Any) -> bool:
        if not raced:  # the other replica claims the only slot between our read and our write
            raced.append("rival")
            rival = {"rival-job": Claim(left.clock.ms, "rival-uid")}
            assert await LimitClaims(cluster, "rival_1").write(namespace, read, rival)
        return await original_write(namespace, read, wanted)

    claims.write = write_after_a_rival  # type: ignore[method-assign]
    outcome = await left.reconcile("a")
    assert raced and not cluster.jobs(), "the slot went to the rival: no Job, the workflow waits"
    assert outcome.waiting_on == ("echo",)
    assert left.reconciler.metrics.limit_claim_conflicts._value.get() == 1  # type: ignore[attr-defined]
