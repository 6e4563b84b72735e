"""The conditions helper: kstatus's conventions (Ready, abnormal-true Reconciling/Stalled), transition times."""

from __future__ import annotations

import datetime as dt

import pytest

from kondukt.kube import conditions

NOW = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=1)


def by_type(items: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {c["type"]: c for c in items}


def test_health_adds_abnormal_true_conditions_only_when_true() -> None:
    assert [w.type for w in conditions.health(ready="True", reason="Ready", message="ok")] == ["Ready"]
    waiting = conditions.health(ready="False", reason="Waiting", message="m", reconciling=True)
    assert [(w.type, w.status) for w in waiting] == [("Ready", "False"), ("Reconciling", "True")]
    stuck = conditions.health(ready="False", reason="Invalid", message="m", stalled=True)
    assert [(w.type, w.status, w.reason) for w in stuck] == [("Ready", "False", "Invalid"), ("Stalled", "True", "Invalid")]


@pytest.mark.parametrize("kwargs", [
    pytest.param({"ready": "False", "reconciling": True, "stalled": True}, id="reconciling-and-stalled"),
    pytest.param({"ready": "true"}, id="ready-not-a-condition-status"),
])
def test_health_refuses_contradictions(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        conditions.health(reason="r", message="m", **kwargs)  # type: ignore[arg-type]


def test_merge_moves_transition_time_only_on_a_status_change_and_drops_what_is_not_wanted() -> None:
    first = conditions.merge(conditions.health(ready="False", reason="Waiting", message="a", reconciling=True),
                             [], 1, NOW)
    assert by_type(first)["Ready"]["lastTransitionTime"] == "2026-05-01T12:00:00Z"
    same_status = conditions.merge([("Ready", "False", "Other", "b")], first, 2, LATER)
    assert same_status == [{"type": "Ready", "status": "False", "reason": "Other", "message": "b",
                            "observedGeneration": 2, "lastTransitionTime": "2026-05-01T12:00:00Z"}]
    flipped = conditions.merge(conditions.health(ready="True", reason="Ready", message="c"), first, 2, LATER)
    assert [c["type"] for c in flipped] == ["Ready"]  # Reconciling left out once it is no longer True
    assert flipped[0]["lastTransitionTime"] == "2026-05-01T12:01:00Z"


def test_same_ignores_transition_times_and_order() -> None:
    a = conditions.merge(conditions.health(ready="False", reason="R", message="m", stalled=True), [], 1, NOW)
    b = conditions.merge(list(reversed(conditions.health(ready="False", reason="R", message="m", stalled=True))),
                         [], 1, LATER)
    assert conditions.same(a, b)
    assert not conditions.same(a, conditions.merge([("Ready", "False", "R", "m")], [], 1, NOW))
    assert conditions.find(a, "Stalled") is not None and conditions.find(a, "Reconciling") is None
