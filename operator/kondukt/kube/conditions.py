"""Status conditions the way GitOps tools read them: one place for every Kondukt resource's conditions.

Argo CD, Flux (through the kstatus library of ``sigs.k8s.io/cli-utils``) and ``kubectl wait`` decide
whether a resource is healthy from its ``status``. kstatus's rules, in the order it applies them:

1. ``status.observedGeneration`` lower than ``metadata.generation``: InProgress (the controller has not
   looked at the latest spec yet);
2. a ``Reconciling`` condition with status True: InProgress; a ``Stalled`` condition True: Failed. These
   are "abnormal-true" conditions: present (True) only while that is the case, removed otherwise;
3. otherwise ``Ready``: True means Current, False means InProgress.

So every Kondukt resource writes ``status.observedGeneration`` and a ``Ready`` condition, adds
``Reconciling=True`` while it is on its way (a running workflow, a definition waited for) and
``Stalled=True`` when it will not get anywhere without a change (a failed workflow, an invalid
definition). Conditions are Kubernetes' ``metav1.Condition``: each carries the generation it was
computed from, and ``lastTransitionTime`` moves only when its status changes (an unchanged condition
keeps its time, so a status written again with the same content is the same status).

Pure: no I/O, "now" is an argument. Used by the Workflow status codec (:mod:`kondukt.kube.status`),
the definitions' health (:mod:`kondukt.kube.definitions`) and every other resource with conditions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

READY: Final = "Ready"
RECONCILING: Final = "Reconciling"
STALLED: Final = "Stalled"

#: Conditions present only while True (kstatus's "abnormal-true" conditions).
ABNORMAL_TRUE: Final = frozenset({RECONCILING, STALLED})


class Wanted(NamedTuple):
    """A condition to set: its type, status ("True", "False" or "Unknown"), reason and message."""

    type: str
    status: str
    reason: str
    message: str


def stamp(now: dt.datetime) -> str:
    """A Kubernetes timestamp (RFC 3339, seconds, UTC)."""
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(
    wanted: Iterable[Wanted | tuple[str, str, str, str]],
    previous: Sequence[Mapping[str, Any]],
    generation: int,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """The conditions list holding exactly ``wanted``, in that order, computed from ``generation``.

    ``lastTransitionTime`` is ``now`` for a condition that is new or whose status changed, and the
    previous one otherwise. Types not in ``wanted`` are dropped (an abnormal-true condition that is no
    longer True is left out rather than written False).
    """
    before = {c.get("type"): c for c in previous if isinstance(c, Mapping)}
    out: list[dict[str, Any]] = []
    for kind, state, reason, message in wanted:
        old = before.get(kind)
        unchanged = old is not None and old.get("status") == state and isinstance(old.get("lastTransitionTime"), str)
        out.append({
            "type": kind,
            "status": state,
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": old["lastTransitionTime"] if unchanged and old is not None else stamp(now),
        })
    return out


def health(*, ready: str, reason: str, message: str, reconciling: bool = False,
           stalled: bool = False) -> list[Wanted]:
    """``Ready`` (``ready`` = "True", "False" or "Unknown"), plus ``Reconciling`` / ``Stalled`` when True.

    Reconciling and Stalled exclude each other (a resource on its way is not stuck): asking for both is
    a programming error.
    """
    if reconciling and stalled:
        raise ValueError("a resource cannot be Reconciling and Stalled at once")
    if ready not in ("True", "False", "Unknown"):
        raise ValueError(f"Ready must be True, False or Unknown, not {ready!r}")
    out = [Wanted(READY, ready, reason, message)]
    if reconciling:
        out.append(Wanted(RECONCILING, "True", reason, message))
    if stalled:
        out.append(Wanted(STALLED, "True", reason, message))
    return out


def find(conditions: Iterable[Mapping[str, Any]] | None, kind: str) -> Mapping[str, Any] | None:
    """The condition of type ``kind``, if any."""
    for condition in conditions or ():
        if isinstance(condition, Mapping) and condition.get("type") == kind:
            return condition
    return None


def same(a: Sequence[Mapping[str, Any]] | None, b: Sequence[Mapping[str, Any]] | None) -> bool:
    """Whether two conditions lists say the same thing (lastTransitionTime aside), so that a status
    is not written again when nothing changed."""
    def key(items: Sequence[Mapping[str, Any]] | None) -> list[tuple[Any, ...]]:
        return sorted((str(c.get("type")), c.get("status"), c.get("reason"), c.get("message"),
                       c.get("observedGeneration")) for c in items or () if isinstance(c, Mapping))
    return key(a) == key(b)
