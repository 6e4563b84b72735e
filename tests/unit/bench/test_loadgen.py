"""The soak's open-loop load generator (bench/loadgen.py) with a `send` that never touches a network: every
offer is counted once as dropped or sent, a server that answers slowly shows as drops (never as a lower
offered rate), refusals are counted with their reason, and a run ends. No timing is asserted."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from bench.loadgen import Connection, run_open_loop


class NoCluster:
    server = "https://127.0.0.1:9"
    ca_file = "/nonexistent/ca.crt"  # a Connection only reads it when it opens one: never, here
    token = "t"


def test_every_offer_is_sent_and_accepted_when_the_server_keeps_up() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def send(connection: Connection, index: int) -> tuple[int, Any]:
        with lock:
            seen.append(index)
        return 201, {"metadata": {"name": str(index)}}

    report = run_open_loop(NoCluster(), send, rate_per_minute=1200, seconds=1.0, workers=4)
    assert report.offered == 20
    assert report.dropped == 0
    assert sorted(seen) == list(range(20))
    assert report.sent == report.accepted == 20
    assert report.refused == 0
    figures = report.figures()
    assert figures["offered_per_minute"] == [20]
    assert sum(figures["accepted_per_minute"]) == 20  # type: ignore[arg-type]
    assert figures["accepted_rate_per_minute"] == 1200.0


def test_a_server_that_does_not_answer_makes_drops_not_a_lower_offered_rate() -> None:
    gate = threading.Event()
    offers: list[tuple[int, bool]] = []

    def on_offer(index: int, queued: bool) -> None:
        offers.append((index, queued))
        if len(offers) == 30:  # every offer made: let the stuck request answer
            gate.set()

    def send(connection: Connection, index: int) -> tuple[int, Any]:
        gate.wait(timeout=60)
        return 201, {}

    report = run_open_loop(NoCluster(), send, rate_per_minute=3000, seconds=0.6, workers=1, queue_seconds=0.0,
                           on_offer=on_offer)
    assert report.offered == 30 == len(offers)
    assert report.queue_size == 1
    # One request in the worker, one in the queue: at most two of the 30 offers were taken, the rest dropped.
    assert report.dropped == sum(1 for _, queued in offers if not queued) >= 28
    assert report.sent + report.dropped == report.offered
    assert report.accepted == report.sent


def test_refusals_are_counted_with_their_reason() -> None:
    def send(connection: Connection, index: int) -> tuple[int, Any]:
        if index % 2:
            return 429, {"message": "too many requests"}
        if index == 4:
            return 0, "ConnectionResetError: reset by peer"
        return 201, {}

    report = run_open_loop(NoCluster(), send, rate_per_minute=6000, seconds=0.1, workers=2)
    assert report.offered == 10
    assert report.accepted == 4 and report.refused == 6
    assert any("HTTP 429: too many requests" in r for r in report.refusals)
    assert any("HTTP 0: ConnectionResetError" in r for r in report.refusals)


def test_stop_ends_the_offering_early() -> None:
    stop = threading.Event()

    def send(connection: Connection, index: int) -> tuple[int, Any]:
        if index == 2:
            stop.set()
        return 201, {}

    report = run_open_loop(NoCluster(), send, rate_per_minute=600, seconds=3600, workers=1, stop=stop)
    assert report.offered < 36000
    assert report.sent + report.dropped == report.offered


@pytest.mark.parametrize(("rate", "seconds"), [(0, 10), (-5, 10), (100, 0)])
def test_a_rate_or_duration_that_is_not_positive_is_refused(rate: float, seconds: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        run_open_loop(NoCluster(), lambda c, i: (201, {}), rate_per_minute=rate, seconds=seconds)
