"""A misbehaving cluster loses nothing: control-plane faults in the middle of running workflows (issue 16).

Each test starts a few workflows (chains of kwok fake-pod steps), injects one fault while they run, and then
checks the same things: every workflow COMPLETED, none lost, exactly one Job per attempt (Jobs counted by
their attempt labels), and the operator's ``/metrics`` said what happened meanwhile
(``kondukt_api_errors_total{code}``, ``kondukt_watch_restarts_total{resource,reason}``,
``kondukt_api_retry_after_seconds_total``). Faults come from restarting components of the test's control
plane (same data dir and ports) and from a loopback proxy (:mod:`tests.e2e.faultproxy`) between the operator
and the API server. The control plane is whole again after each test, whatever happened.

Every wait is bounded; what was observed (times, metric values) is printed (``pytest -s``), never asserted
on speed.
"""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kondukt.kube import resources as r
from tests.e2e.controlplane import ControlPlane, free_port, write_kubeconfig
from tests.e2e.faultproxy import FaultProxy
from tests.e2e.test_operator_support import ECHO, Cluster, OperatorProcess, taskdef, workflow

pytestmark = pytest.mark.e2e

WORKFLOWS = 3
STEPS = 4
WAIT_SECONDS = 5


class Faulty:
    """The test's operator (metrics on a loopback port), its cluster view and the fault proxy."""

    def __init__(self, control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
        self.cp = control_plane
        self.namespace = namespace
        self.tmp_path = tmp_path
        self.proxy = FaultProxy(control_plane.ports["apiserver"], control_plane.workdir / "pki").start()
        self.proxied_kubeconfig = tmp_path / "proxied.kubeconfig"
        write_kubeconfig(self.proxied_kubeconfig, f"https://127.0.0.1:{self.proxy.port}", control_plane.ca_file,
                         control_plane.token)
        self.metrics_port = free_port()
        self.operator: OperatorProcess | None = None
        self.cluster = Cluster(control_plane, namespace)

    def start_operator(self, *, through_proxy: bool) -> OperatorProcess:
        extra = ["--metrics-port", str(self.metrics_port), "--metrics-address", "127.0.0.1"]
        if through_proxy:
            extra += ["--kubeconfig", str(self.proxied_kubeconfig)]  # the last --kubeconfig wins
        self.operator = OperatorProcess(self.cp, self.namespace, self.tmp_path, *extra).start()
        self.cluster.operator = self.operator
        self.cluster.wait_until(self.metrics, "the operator's /metrics")
        return self.operator

    def metrics(self) -> dict[str, float]:
        """``name{label="v",...}`` -> value, from the operator's /metrics ({} while it does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        values = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return values

    def fault_metrics(self) -> dict[str, float]:
        prefixes = ("kondukt_api_errors_total", "kondukt_watch_restarts_total", "kondukt_api_retry_after",
                    "kondukt_reconcile_errors_total", "kondukt_job_creates_total")
        return {k: v for k, v in self.metrics().items() if k.startswith(prefixes) and not k.endswith("_created")}

    def slow_requests(self, over: str = "1.0") -> int:
        """How many of the operator's API requests took more than ``over`` seconds (its histogram)."""
        values = self.metrics()
        total = sum(v for k, v in values.items() if k.startswith("kondukt_api_request_duration_seconds_count"))
        fast = sum(v for k, v in values.items()
                   if k.startswith("kondukt_api_request_duration_seconds_bucket") and f'le="{over}"' in k)
        return int(total - fast)

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        self.proxy.stop()

    # ------------------------------------------------------------------------------------- the workload
    def start_workflows(self, step_duration: str = "600ms", wait_first: int | None = None) -> list[str]:
        """WORKFLOWS chains of STEPS fake-pod steps (after a WAIT of ``wait_first`` seconds, if given)."""
        self.cluster.apply(taskdef("step", annotations={**ECHO, "kwok.kondukt.io/duration": step_duration}))
        names = [f"chain-{i}" for i in range(WORKFLOWS)]
        chain = [{"name": "step", "taskReferenceName": f"s{j}", "inputParameters": {"j": j}} for j in range(STEPS)]
        if wait_first is not None:
            chain.insert(0, {"name": "pause", "taskReferenceName": "pause", "type": "WAIT",
                             "inputParameters": {"duration": f"{wait_first}s"}})
        self.cluster.apply(*(workflow(n, definition={"name": "chain", "tasks": chain,
                                                     "outputParameters": {"last": f"${{s{STEPS - 1}.output.j}}"}})
                             for n in names))
        return names

    def wait_jobs(self, at_least: int) -> None:
        self.cluster.wait_until(lambda: len(self.cluster.jobs()) >= at_least, f"{at_least} Jobs", timeout=120)

    def all_completed_once(self, names: list[str]) -> float:
        """Every workflow COMPLETED with the right output and exactly one Job per attempt; returns when the
        last one was seen done (time.monotonic())."""
        for name in names:
            status = self.cluster.wait_phase(name, timeout=180)
            assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
            assert status["output"] == {"last": STEPS - 1}
            conditions = {c["type"]: c["status"] for c in status["conditions"]}
            assert conditions == {"Ready": "True", "Succeeded": "True", "Failed": "False", "Suspended": "False"}
            attempts = [t for t in self.cluster.tasks(name) if "jobName" in t]
            assert len(attempts) == STEPS, f"{name}: {len(attempts)} attempts"
            assert all(t["retryCount"] == 0 and t["status"] == "COMPLETED" for t in attempts)
        done = time.monotonic()
        jobs = self.cluster.jobs()
        per_attempt = Counter((j["metadata"]["labels"][r.LABEL_WORKFLOW], j["metadata"]["labels"][r.LABEL_TASK_REF],
                               j["metadata"]["annotations"][r.ANNOTATION_RETRY_COUNT]) for j in jobs)
        assert len(per_attempt) == WORKFLOWS * STEPS, sorted(per_attempt)
        assert set(per_attempt.values()) == {1}, f"an attempt has several Jobs: {per_attempt}"
        task_ids = Counter(j["metadata"]["labels"][r.LABEL_TASK_ID] for j in jobs)
        assert set(task_ids.values()) == {1}
        assert self.operator is not None and "Traceback" not in self.operator.logs()
        return done


@pytest.fixture
def faulty(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Faulty]:
    f = Faulty(control_plane, namespace, tmp_path)
    try:
        yield f
    finally:
        f.stop()
        control_plane.heal()  # whatever happened, the session's control plane is whole again


def report(what: str, **observed: object) -> None:
    print(f"\n[fault] {what}: " + ", ".join(f"{k}={v}" for k, v in observed.items()))


def test_api_server_restarted_twice_mid_run_loses_nothing(faulty: Faulty) -> None:
    operator = faulty.start_operator(through_proxy=False)
    names = faulty.start_workflows()
    for jobs_before in (2, 6):
        faulty.wait_jobs(jobs_before)
        faulty.cp.restart_component("kube-apiserver")
    back = time.monotonic()
    done = faulty.all_completed_once(names)
    seen = faulty.fault_metrics()
    report("kube-apiserver restarted twice", seconds_from_second_restart_to_all_done=round(
        done - back, 1), metrics=seen)
    assert operator.alive() and operator.starts == 1
    assert sum(v for k, v in seen.items() if k.startswith("kondukt_watch_restarts_total")) >= 2
    assert sum(v for k, v in seen.items() if k.startswith("kondukt_api_errors_total")) >= 1


def test_etcd_restarted_mid_run_loses_nothing(faulty: Faulty) -> None:
    """etcd down while the operator must write: every workflow first WAITs, and etcd is down across the
    instant their timers fire, so the operator's status writes meet the outage (the API server holds them)."""
    operator = faulty.start_operator(through_proxy=False)
    names = faulty.start_workflows(wait_first=WAIT_SECONDS)

    def wake_times() -> list[float] | None:
        waits = [[t for t in faulty.cluster.tasks(n) if t.get("referenceTaskName") == "pause"] for n in names]
        if not all(w and w[0].get("status") == "IN_PROGRESS" and w[0].get("startTime") for w in waits):
            return None
        return [w[0]["startTime"] / 1000 + WAIT_SECONDS for w in waits]

    wakes = faulty.cluster.wait_until(wake_times, "every workflow's WAIT to be in progress")
    assert time.time() < min(wakes) - 1, "the WAITs were seen too late to put the outage across their end"
    down_at = time.monotonic()
    faulty.cp.stop_component("etcd")
    time.sleep(max(0.0, max(wakes) + 1 - time.time()))  # bounded: WAIT_SECONDS + 1 at most
    faulty.cp.start_component("etcd")
    back = time.monotonic()
    done = faulty.all_completed_once(names)
    seen = faulty.fault_metrics()
    slow = faulty.slow_requests()
    report("etcd stopped across the workflows' timers", seconds_down=round(back - down_at, 1),
           seconds_from_restart_to_all_done=round(done - back, 1), requests_over_1s=slow, metrics=seen)
    assert operator.alive() and operator.starts == 1
    assert slow + sum(v for k, v in seen.items()
                      if k.startswith(("kondukt_api_errors_total", "kondukt_watch_restarts_total"))) >= 1, seen


def test_watches_expired_410_and_connections_cut_lose_nothing(faulty: Faulty) -> None:
    """Connections cut by the proxy (the watches break and resume from their resourceVersion), then the API
    server restarted over a compacted etcd while the proxy holds reconnections: the resumed watches'
    resourceVersions are gone (410 Gone), and the informers list again."""
    operator = faulty.start_operator(through_proxy=True)
    names = faulty.start_workflows()
    faulty.wait_jobs(2)
    cut = [faulty.proxy.cut()]
    faulty.wait_jobs(5)
    cut.append(faulty.proxy.cut())
    faulty.wait_jobs(8)
    faulty.proxy.upstream_wait = 30
    faulty.cp.stop_component("kube-apiserver")
    compacted_at = faulty.cp.compact_etcd()
    faulty.cp.start_component("kube-apiserver")
    back = time.monotonic()
    done = faulty.all_completed_once(names)
    seen = faulty.fault_metrics()
    report("connections cut twice, then etcd compacted under a restarted kube-apiserver",
           connections_cut=cut, compacted_at_revision=compacted_at,
           seconds_from_restart_to_all_done=round(done - back, 1), metrics=seen)
    assert operator.alive() and operator.starts == 1
    assert seen.get('kondukt_watch_restarts_total{reason="error",resource="jobs"}', 0) >= 2
    assert sum(v for k, v in seen.items() if k.startswith("kondukt_watch_restarts_total")
               and 'reason="expired"' in k) >= 1, seen
    assert "410 Gone" in operator.logs()


def test_api_throttling_429_with_retry_after_and_slow_answers_lose_nothing(faulty: Faulty) -> None:
    operator = faulty.start_operator(through_proxy=True)
    faulty.proxy.latency = 0.05  # every chunk, each way: a slow API server
    names = faulty.start_workflows()
    faulty.wait_jobs(3)
    faulty.proxy.throttle(requests=40, retry_after=1)
    faulty.cluster.wait_until(lambda: not faulty.proxy.throttling, "the proxy's 429 answers to be used up")
    stopped = time.monotonic()
    done = faulty.all_completed_once(names)
    seen = faulty.fault_metrics()
    report("40 requests answered 429 Retry-After: 1, 50 ms latency per chunk each way",
           seconds_from_throttle_end_to_all_done=round(done - stopped, 1), throttled=faulty.proxy.throttled,
           requests_over_250ms=faulty.slow_requests("0.25"), metrics=seen)
    assert operator.alive() and operator.starts == 1
    assert seen.get('kondukt_api_errors_total{code="429"}', 0) >= 1, seen
    assert "Retry-After" in operator.logs() or seen.get("kondukt_api_retry_after_seconds_total", 0) >= 1


def test_operator_sigkilled_as_the_oom_killer_would_while_it_holds_work_loses_nothing(faulty: Faulty) -> None:
    """Simulated: the kernel's OOM killer sends SIGKILL; so does this test (no memory is exhausted)."""
    operator = faulty.start_operator(through_proxy=False)
    names = faulty.start_workflows(step_duration="300ms")
    for jobs_before in (2, 5, 9):
        faulty.wait_jobs(jobs_before)
        operator.kill()
        assert not operator.alive()
        operator.start()
    back = time.monotonic()
    done = faulty.all_completed_once(names)
    faulty.cluster.wait_until(faulty.metrics, "the restarted operator's /metrics")
    seen = faulty.fault_metrics()
    report("operator SIGKILLed 3 times while holding work", seconds_from_last_start_to_all_done=round(
        done - back, 1), metrics=seen)
    assert operator.starts == 4
