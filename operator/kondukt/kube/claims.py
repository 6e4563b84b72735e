"""Rate and concurrency limits that hold across shards: claims written with optimistic concurrency.

Why: a TaskDef's ``concurrentExecLimit`` and ``rateLimitPerFrequency`` count the attempts of every workflow of
the namespace. One replica counts them from its Job informer plus the Jobs it just created and has not seen
yet (:class:`~kondukt.kube.actions.Actor`'s reservations, in its memory). With several shards that memory is
not enough: two replicas could each see one free slot in their (lagging) caches and both take it.

The mechanism: before a reconcile creates the Jobs of a limited TaskDef, it *claims* them in the TaskDef's claim
Lease (``coordination.k8s.io``, ``kondukt-limit-<taskdef>-<hash>`` in the workflow's namespace; the claims in
its annotation ``kondukt.io/limit-claims``: Job name -> dispatch time and workflow uid):

1. read the claim Lease fresh from the API server (a quorum read, never a cache);
2. count the load: the Jobs the informer shows, plus every claim whose Job it has not shown yet;
3. ``decide`` with that load;
4. write the Lease back with the new claims, guarded by the resourceVersion read in 1 — when another replica
   claimed meanwhile the write fails (409) and the reconcile goes back to 1. Only then are the Jobs created.

So claims for one TaskDef are serialized by the API server; a replica that dies after claiming leaves claims
whose Jobs never appear, and they stop counting after :data:`UNSEEN_GRACE_MS` (as the reservations do). A
claim is dropped from the Lease (on the next write) once its Job is seen finished and out of the rate window,
or when it has not been seen for the grace period; so a Lease holds about ``concurrentExecLimit`` +
``rateLimitPerFrequency`` claims. Used only with ``--shards`` above 1: one replica needs none of this.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from kondukt.kube import names
from kondukt.kube.kubeapi import Conflict, KubeClient

logger = logging.getLogger(__name__)

CLAIMS_ANNOTATION: Final = "kondukt.io/limit-claims"
LABEL_CLAIMS_TASK_DEF: Final = "kondukt.io/limit-claims-for"
#: A claim whose Job was never seen stops counting (and is dropped) after this long.
UNSEEN_GRACE_MS: Final = 120_000


@dataclass(frozen=True)
class Claim:
    at_ms: int
    workflow_uid: str


@dataclass(frozen=True)
class ClaimSet:
    """A TaskDef's claims as read, and the resourceVersion that guards their update (None: no Lease yet)."""

    task_def: str
    claims: Mapping[str, Claim]
    resource_version: str | None


def claims_lease_name(task_def: str) -> str:
    suffix = names.digest(task_def)
    return f"kondukt-limit-{names.dns_fragment(task_def, 63 - 15 - len(suffix) - 1)}-{suffix}".replace("--", "-")


def parse_claims(lease: Mapping[str, Any] | None) -> dict[str, Claim]:
    """The claims of a claim Lease (an unreadable annotation or entry counts as none)."""
    annotations = ((lease or {}).get("metadata") or {}).get("annotations") or {}
    try:
        raw = json.loads(annotations.get(CLAIMS_ANNOTATION) or "{}")
    except ValueError:
        return {}
    found: dict[str, Claim] = {}
    if isinstance(raw, dict):
        for job, entry in raw.items():
            if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int):
                found[str(job)] = Claim(at_ms=entry[0], workflow_uid=str(entry[1]))
    return found


def encode_claims(claims: Mapping[str, Claim]) -> str:
    return json.dumps({job: [c.at_ms, c.workflow_uid] for job, c in sorted(claims.items())}, separators=(",", ":"))


def pruned(claims: Mapping[str, Claim], finished: Mapping[str, bool], window_ms: int, now_ms: int) -> dict[str, Claim]:
    """The claims still worth keeping. ``finished``: the Jobs the informer shows (name -> finished). A claim
    goes once its Job is finished and out of the rate window, or when its Job has not been seen within
    :data:`UNSEEN_GRACE_MS` (never created, or long gone)."""
    kept: dict[str, Claim] = {}
    for job, claim in claims.items():
        if job in finished:
            if finished[job] and now_ms - claim.at_ms > window_ms:
                continue
        elif now_ms - claim.at_ms > max(UNSEEN_GRACE_MS, window_ms):
            continue
        kept[job] = claim
    return kept


def counted(claims: Mapping[str, Claim], seen: Iterable[str], own_uid: str, own_dispatched: set[str],
            now_ms: int) -> dict[str, int]:
    """The claims that add to the informer's count (job -> dispatch ms): not seen yet, within the grace — except
    this workflow's own claims for attempts it has not recorded as dispatched (it is about to create those
    Jobs again: a reconcile that claimed and then lost its status write)."""
    seen = set(seen)
    return {job: c.at_ms for job, c in claims.items()
            if job not in seen and now_ms - c.at_ms <= UNSEEN_GRACE_MS
            and not (c.workflow_uid == own_uid and job not in own_dispatched)}


def claims_lease(namespace: str, task_def: str, claims: Mapping[str, Claim], identity: str,
                 resource_version: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": claims_lease_name(task_def), "namespace": namespace,
        "labels": {LABEL_CLAIMS_TASK_DEF: names.label_value(task_def), "app.kubernetes.io/managed-by": "kondukt"},
        "annotations": {CLAIMS_ANNOTATION: encode_claims(claims)},
    }
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
            "spec": {"holderIdentity": identity[:128]}}


class LimitClaims:
    """Reads and writes the claim Leases (through the reconciler's fenced client)."""

    def __init__(self, api: KubeClient, identity: str) -> None:
        self.api, self.identity = api, identity

    @staticmethod
    def path(namespace: str, task_def: str | None = None) -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        return f"{base}/{urllib.parse.quote(claims_lease_name(task_def))}" if task_def else base

    async def read(self, namespace: str, task_def: str) -> ClaimSet:
        lease = await self.api.get(self.path(namespace, task_def), f"limit claims of {namespace}/{task_def}")
        if lease is None:
            return ClaimSet(task_def, {}, None)
        return ClaimSet(task_def, parse_claims(lease),
                        str((lease.get("metadata") or {}).get("resourceVersion")))

    async def write(self, namespace: str, read: ClaimSet, claims: Mapping[str, Claim]) -> bool:
        """Store ``claims`` in place of what was read; False when another replica wrote meanwhile."""
        body = claims_lease(namespace, read.task_def, claims, self.identity, read.resource_version)
        what = f"limit claims of {namespace}/{read.task_def}"
        if read.resource_version is None:
            created = await self.api.create(self.path(namespace), body, what)
            return created is not None
        try:
            await self.api.request("PUT", self.path(namespace, read.task_def), body=body, what=what)
        except Conflict:
            return False
        return True
