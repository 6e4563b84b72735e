"""An open-loop load generator for the benchmarks: requests offered at a fixed rate, whatever the server does.

A closed loop (N clients, each sending its next create when the last returned) offers only what the server lets
it: issue 10's first soak asked for 1,000 workflows a minute and offered ~380, because the API server took each
create in ~2.5 s on a loaded machine and 16 clients could not go faster. Here a ticker offers request ``i`` at
``start + i * 60 / rate`` into a bounded queue; a bounded pool of workers, each on its own kept-alive HTTPS
connection to the API server, sends them. When the workers fall behind, the queue fills and further offers are
dropped — counted, never sent late without bound — so a run lasts its time and reports what was **offered**
(every tick), **dropped** (queue full), **sent**, **accepted** (the server's 2xx) and **refused** (an HTTP error or
a broken connection), per minute and in total, with how long requests waited in the queue and took to answer.

Only the standard library: no client library's rate limiter or retries between the ticker and the server.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Cluster(Protocol):
    """What the generator needs of a control plane (tests.e2e.controlplane.ControlPlane has it)."""

    @property
    def server(self) -> str: ...

    @property
    def ca_file(self) -> Any: ...

    token: str


class Connection:
    """One kept-alive HTTPS connection to the API server (reopened after an error)."""

    def __init__(self, cluster: Cluster, timeout: float = 60.0) -> None:
        url = urllib.parse.urlparse(cluster.server)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 443
        self.ca_file = str(cluster.ca_file)
        self.headers = {"Authorization": f"Bearer {cluster.token}", "Accept": "application/json",
                        "Content-Type": "application/json"}
        self.timeout = timeout
        self._connection: http.client.HTTPSConnection | None = None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body); status 0 and the error's text when the connection broke."""
        data = None if body is None else json.dumps(body).encode()
        if self._connection is None:
            context = ssl.create_default_context(cafile=self.ca_file)
            self._connection = http.client.HTTPSConnection(self.host, self.port, context=context,
                                                           timeout=self.timeout)
        try:
            self._connection.request(method, path, body=data, headers=self.headers)
            response = self._connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            return 0, f"{type(error).__name__}: {error}"
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None


@dataclass
class Offer:
    index: int
    scheduled: float  # time.monotonic() at which the ticker offered it


@dataclass
class Report:
    """What one run offered and what the server took, in total and per minute of the run."""

    rate_per_minute: float
    seconds: float
    workers: int
    queue_size: int
    offered: int = 0
    dropped: int = 0  # offered while the queue was full: never sent
    sent: int = 0
    accepted: int = 0
    refused: int = 0  # an HTTP error status, or the connection broke
    refusals: list[str] = field(default_factory=list)  # the first few, for the report
    queue_waits: list[float] = field(default_factory=list)  # offered -> sent, seconds
    answer_times: list[float] = field(default_factory=list)  # sent -> answered, seconds
    offered_per_minute: list[int] = field(default_factory=list)
    accepted_per_minute: list[int] = field(default_factory=list)
    wall_seconds: float = 0.0

    def figures(self) -> dict[str, object]:
        def pct(values: list[float], q: float) -> float | None:
            if not values:
                return None
            ordered = sorted(values)
            return round(ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))], 3)

        return {
            "asked_rate_per_minute": self.rate_per_minute, "load_seconds": self.seconds,
            "workers": self.workers, "queue_size": self.queue_size,
            "offered": self.offered, "dropped_queue_full": self.dropped, "sent": self.sent,
            "accepted": self.accepted, "refused": self.refused, "refusals_first": self.refusals[:5],
            "offered_per_minute": self.offered_per_minute, "accepted_per_minute": self.accepted_per_minute,
            "accepted_rate_per_minute": round(self.accepted / (self.seconds / 60), 1) if self.seconds else None,
            "queue_wait_p50_s": pct(self.queue_waits, 0.5), "queue_wait_p95_s": pct(self.queue_waits, 0.95),
            "answer_p50_s": pct(self.answer_times, 0.5), "answer_p95_s": pct(self.answer_times, 0.95),
            "answer_max_s": round(max(self.answer_times), 3) if self.answer_times else None,
            "wall_seconds": round(self.wall_seconds, 1),
        }


#: ``send(connection, index) -> (status, body)``: makes request ``index`` (e.g. creates object number ``index``).
Send = Callable[[Connection, int], tuple[int, Any]]


def run_open_loop(cluster: Cluster, send: Send, *, rate_per_minute: float, seconds: float, workers: int = 32,
                  queue_seconds: float = 5.0, on_sent: Callable[[int, float], None] | None = None,
                  on_answer: Callable[[int, int, Any], None] | None = None,
                  on_offer: Callable[[int, bool], None] | None = None,
                  stop: threading.Event | None = None) -> Report:
    """Offer ``rate_per_minute`` requests a minute for ``seconds`` (open loop, see the module docstring).

    The queue holds ``queue_seconds`` worth of offers (at least ``workers``). ``on_sent(index, monotonic)`` is
    called just before request ``index`` goes out, ``on_answer(index, status, body)`` when it came back,
    ``on_offer(index, queued)`` when it was offered (``queued`` False: dropped, the queue was full). Returns
    when every offer was dropped or answered: at most the queue's worth of requests after ``seconds`` (each
    bounded by the connection timeout). ``stop`` ends the offering early."""
    if rate_per_minute <= 0 or seconds <= 0:
        raise ValueError(f"rate_per_minute and seconds must be positive (got {rate_per_minute}, {seconds})")
    interval = 60.0 / rate_per_minute
    total = int(round(seconds * rate_per_minute / 60.0, 6))  # rounded first: 0.6 s at 3,000/min is 30
    size = max(workers, int(queue_seconds / interval))
    report = Report(rate_per_minute=rate_per_minute, seconds=seconds, workers=workers, queue_size=size)
    minutes = int(seconds // 60) + (1 if seconds % 60 else 0)
    report.offered_per_minute = [0] * minutes
    report.accepted_per_minute = [0] * (minutes + 1)  # the last: answers that came after the load
    offers: queue.Queue[Offer | None] = queue.Queue(maxsize=size)
    lock = threading.Lock()
    began = time.monotonic()

    def work() -> None:
        connection = Connection(cluster)
        try:
            while (offer := offers.get()) is not None:
                sent = time.monotonic()
                if on_sent is not None:
                    on_sent(offer.index, sent)
                status, body = send(connection, offer.index)
                answered = time.monotonic()
                minute = min(int((answered - began) // 60), minutes)
                with lock:
                    report.sent += 1
                    report.queue_waits.append(sent - offer.scheduled)
                    report.answer_times.append(answered - sent)
                    if 200 <= status < 300:
                        report.accepted += 1
                        report.accepted_per_minute[minute] += 1
                    else:
                        report.refused += 1
                        if len(report.refusals) < 20:
                            reason = body.get("message") if isinstance(body, dict) else body
                            report.refusals.append(f"#{offer.index}: HTTP {status}: {str(reason)[:200]}")
                if on_answer is not None:
                    on_answer(offer.index, status, body)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, daemon=True, name=f"loadgen-{i}") for i in range(workers)]
    for thread in threads:
        thread.start()
    try:
        for index in range(total):
            scheduled = began + index * interval
            delay = scheduled - time.monotonic()
            if stop is not None and stop.wait(max(0.0, delay)):
                break
            if stop is None and delay > 0:
                time.sleep(delay)
            report.offered += 1
            report.offered_per_minute[min(int((scheduled - began) // 60), minutes - 1)] += 1
            try:
                offers.put_nowait(Offer(index, scheduled))
                queued = True
            except queue.Full:
                report.dropped += 1
                queued = False
            if on_offer is not None:
                on_offer(index, queued)
    finally:
        for _ in threads:
            offers.put(None)  # after whatever is queued: the queue is drained, then each worker ends
        for thread in threads:
            thread.join()
    report.wall_seconds = time.monotonic() - began
    return report
