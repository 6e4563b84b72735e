"""Where the API requests and the time go: a fan-out with a join, and many one-task workflows at once.

The API server is the bottleneck on a small machine, so every request the operator causes counts — its own
and those the control plane makes because of the objects it creates (the Job controller's status updates,
its pods' tracking finalizers, the scheduler's bindings, everyone's Events). This benchmark runs each
workload alone in its own namespace, against the control plane of ``bench_operator`` (raised client limits,
kwok pods that finish 10 ms after they start), with a fresh ``kondukt operator`` per workload, and reports:

- the API server's ``apiserver_request_total`` over the workload, by verb and resource (the difference of
  two scrapes; the background traffic of a few seconds — Leases, the controllers' resyncs — is included);
- the operator's own requests (``kondukt_api_request_duration_seconds_count`` by method), its status
  writes and Events, and its CPU seconds and peak RSS;
- the Events in the namespace afterwards, by who reported them and why;
- the control plane's CPU seconds (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok);
- times seen by one watcher: create -> COMPLETED, and for the fan-out the join latency: the last branch's
  pod seen terminated -> the pod of the task after the join seen.

The fan-out is a FORK_JOIN_DYNAMIC of ``N`` branches of one TaskDef, a JOIN, then one more task.

``python -m bench profile`` (all three workloads: fan-outs of 100 and 1,000, 300 one-task workflows);
``--quick``: a fan-out of 50 and 30 workflows. Run alone: ``python -m bench.bench_profile [--quick]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.controlplane import ControlPlane  # noqa: E402

from bench.bench_operator import (  # noqa: E402
    PLAN,
    Operator,
    echo_taskdef,
    inline_workflow,
    kubectl_apply,
    namespace_for,
    start_control_plane,
    wait,
    watching,
)

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
_TICKS = os.sysconf("SC_CLK_TCK")
#: Seconds to wait after a workload ends, so that the requests it caused (the Job controller marking the
#: last Jobs Complete, the last Events) are counted with it.
SETTLE_SECONDS = 3.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its waited-for children (/proc/<pid>/stat)."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:15]) / _TICKS
    return 0.0


def apiserver_requests(cp: ControlPlane) -> Counter[str]:
    """``apiserver_request_total`` summed by "VERB resource[/subresource]"."""
    status, text = cp.api("GET", "/metrics", timeout=30)
    assert status == 200, text
    totals: Counter[str] = Counter()
    for line in str(text).splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition(" ")
        labels = dict(part.split("=", 1) for part in labels_text[len("apiserver_request_total{"):-1].split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        totals[f"{labels.get('verb', '')} {resource}"] += int(float(value))
    return totals


class Sampler:
    """Peak RSS of the operator, sampled every 0.2 s while the workload runs."""

    def __init__(self, operator: Operator) -> None:
        self.operator, self.peak, self._stop = operator, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.operator.rss_mib())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.operator.rss_mib())


@contextlib.contextmanager
def profiled(cp: ControlPlane, operator: Operator, namespace: str, figures: dict[str, object]) -> Iterator[None]:
    """Counts what happens inside the block (plus SETTLE_SECONDS) into ``figures``."""
    before = apiserver_requests(cp)
    cpu_before = {name: cpu_seconds(cp.pids[name]) for name in CONTROL_PLANE if name in cp.pids}
    operator_cpu_before = cpu_seconds(operator.proc.pid)
    with Sampler(operator) as sampler:
        yield
        time.sleep(SETTLE_SECONDS)
    after = apiserver_requests(cp)
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0}
    figures["api_requests_total"] = sum(delta.values())
    figures["api_requests"] = dict(sorted(delta.items(), key=lambda kv: -kv[1]))
    figures["control_plane_cpu_s"] = {name: round(cpu_seconds(cp.pids[name]) - cpu_before[name], 1)
                                      for name in cpu_before}
    figures["control_plane_cpu_s_total"] = round(sum(figures["control_plane_cpu_s"].values()), 1)  # type: ignore[attr-defined]
    figures["operator_cpu_s"] = round(cpu_seconds(operator.proc.pid) - operator_cpu_before, 1)
    figures["operator_peak_rss_mib"] = sampler.peak
    metrics = operator.metrics()
    figures["operator_requests"] = {k.split('method="')[1].split('"')[0]: int(v) for k, v in metrics.items()
                                    if k.startswith("kondukt_api_request_duration_seconds_count{")}
    figures["operator_request_mean_ms"] = {
        k.split('method="')[1].split('"')[0]: round(v / max(1.0, metrics.get(k.replace("_sum{", "_count{"), 0.0)) * 1000, 1)
        for k, v in metrics.items() if k.startswith("kondukt_api_request_duration_seconds_sum{")}
    reconciles = [(k, v) for k, v in metrics.items() if k.startswith("kondukt_reconcile_duration_seconds_sum")]
    figures["operator_reconcile_mean_ms"] = round(sum(v for _, v in reconciles) / max(1.0, sum(
        v for k, v in metrics.items() if k.startswith("kondukt_reconcile_duration_seconds_count"))) * 1000, 1)
    figures["operator_reconciles"] = int(sum(v for k, v in metrics.items()
                                             if k.startswith("kondukt_reconcile_duration_seconds_count")))
    figures["operator_events_dropped"] = int(metrics.get("kondukt_events_dropped_total", 0))
    status, listing = cp.api("GET", f"/api/v1/namespaces/{namespace}/events", timeout=60)
    assert status == 200, listing
    events: Counter[str] = Counter()
    for event in listing.get("items", []):
        who = event.get("reportingComponent") or (event.get("source") or {}).get("component") or "?"
        events[f"{who}: {event.get('reason')}"] += int(event.get("count") or 1)
    figures["events"] = dict(sorted(events.items(), key=lambda kv: -kv[1]))


def fan_out(cp: ControlPlane, scratch: Path, branches: int) -> dict[str, object]:
    namespace = namespace_for(cp, f"fan-{branches}")
    operator = Operator(cp, namespace, scratch / f"operator-fan-{branches}.log")
    figures: dict[str, object] = {"branches": branches}
    try:
        kubectl_apply(cp, namespace, echo_taskdef())
        branch_done: dict[str, float] = {}
        after_seen: list[float] = []
        after_job: list[float] = []
        done: list[tuple[str, float]] = []
        lock = threading.Lock()

        def on_pod(event: dict[str, Any], arrival: float) -> None:
            pod = event.get("object") or {}
            ref = (pod.get("metadata", {}).get("annotations") or {}).get("kondukt.io/task-ref", "")
            with lock:
                if ref == "after":
                    after_seen.append(arrival)
                elif ref.startswith("branch_") and any(
                        "terminated" in (s.get("state") or {}) for s in pod.get("status", {}).get("containerStatuses") or []):
                    branch_done.setdefault(ref, arrival)

        def on_job(event: dict[str, Any], arrival: float) -> None:
            job = event.get("object") or {}
            if (job.get("metadata", {}).get("annotations") or {}).get("kondukt.io/task-ref") == "after":
                with lock:
                    after_job.append(arrival)

        def on_workflow(event: dict[str, Any], arrival: float) -> None:
            phase = ((event.get("object") or {}).get("status") or {}).get("phase")
            if phase in ("COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED"):
                done.append((phase, arrival))

        tasks: list[dict[str, Any]] = [
            {"name": "plan", "taskReferenceName": "plan", "type": "INLINE",
             "inputParameters": {"evaluatorType": "javascript", "expression": PLAN,
                                 "branches": "${workflow.input.count}"}},
            {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN_DYNAMIC",
             "inputParameters": {"dynamicTasks": "${plan.output.result.tasks}",
                                 "dynamicTasksInput": "${plan.output.result.inputs}"},
             "dynamicForkTasksParam": "dynamicTasks", "dynamicForkTasksInputParamName": "dynamicTasksInput"},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
            # a small input: the echo worker's output (its input) must fit a termination message (4 KiB)
            {"name": "echo", "taskReferenceName": "after", "inputParameters": {"n": "${workflow.input.count}"}},
        ]
        with watching(cp, f"/api/v1/namespaces/{namespace}/pods", on_pod), \
                watching(cp, f"/apis/batch/v1/namespaces/{namespace}/jobs", on_job), \
                watching(cp, f"/apis/kondukt.io/v1alpha1/namespaces/{namespace}/workflows", on_workflow), \
                profiled(cp, operator, namespace, figures):
            began = time.monotonic()
            kubectl_apply(cp, namespace, inline_workflow("fan", tasks, input={"count": branches}))
            wait(lambda: bool(done), 120 + branches, f"the {branches}-branch fan-out")
        phase, finished = done[0]
        figures["phase"] = phase
        figures["total_s"] = round(finished - began, 2)
        if branch_done and after_seen:
            last_branch = max(branch_done.values())
            figures["join_latency_ms"] = round((min(after_seen) - last_branch) * 1000, 1)
            if after_job:  # the operator's part (-> the next Job) and the Job controller's (-> its pod)
                figures["join_to_job_ms"] = round((min(after_job) - last_branch) * 1000, 1)
                figures["job_to_pod_ms"] = round((min(after_seen) - min(after_job)) * 1000, 1)
            figures["fork_spread_s"] = round(max(branch_done.values()) - min(branch_done.values()), 2)
    finally:
        operator.stop()
    return figures


def one_task(cp: ControlPlane, scratch: Path, count: int) -> dict[str, object]:
    namespace = namespace_for(cp, f"one-{count}")
    operator = Operator(cp, namespace, scratch / f"operator-one-{count}.log")
    figures: dict[str, object] = {"workflows": count}
    try:
        kubectl_apply(cp, namespace, echo_taskdef())
        completed: dict[str, float] = {}
        path = f"/apis/kondukt.io/v1alpha1/namespaces/{namespace}/workflows"

        def on_workflow(event: dict[str, Any], arrival: float) -> None:
            workflow = event.get("object") or {}
            if (workflow.get("status") or {}).get("phase") == "COMPLETED":
                completed.setdefault(workflow["metadata"]["name"], arrival)

        def create(index: int) -> None:
            document = inline_workflow(f"one-{index}", [{"name": "echo", "taskReferenceName": "only",
                                                        "inputParameters": {"i": index}}])
            status, body = cp.api("POST", path, document, timeout=60)
            if status != 201:
                raise RuntimeError(f"creating one-{index}: HTTP {status}: {body}")

        with watching(cp, path, on_workflow), profiled(cp, operator, namespace, figures), \
                ThreadPoolExecutor(max_workers=16) as pool:
            began = time.monotonic()
            list(pool.map(create, range(count)))
            wait(lambda: len(completed) >= count, 120 + 3 * count, f"{count} one-task workflows")
        elapsed = max(completed.values()) - began
        figures["total_s"] = round(elapsed, 2)
        figures["workflows_per_minute"] = round(count / elapsed * 60, 1)
    finally:
        operator.stop()
    return figures


def run(quick: bool = False, fans: tuple[int, ...] | None = None, one: int | None = None) -> dict[str, object]:
    default_fans, default_one = ((50,), 30) if quick else ((100, 1000), 300)
    fans = default_fans if fans is None else fans
    one = default_one if one is None else one
    results: dict[str, object] = {"load_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="kondukt-profile-") as scratch:
        cp = start_control_plane(Path(scratch))
        try:
            for branches in (b for b in fans if b > 0):
                results[f"fan_out_{branches}"] = fan_out(cp, Path(scratch), branches)
                print(json.dumps({f"fan_out_{branches}": results[f"fan_out_{branches}"]}), file=sys.stderr, flush=True)
            if one:
                results[f"one_task_{one}"] = one_task(cp, Path(scratch), one)
        finally:
            cp.stop()
    results["load_at_end"] = os.getloadavg()
    return results


if __name__ == "__main__":
    # python -m bench.bench_profile [--quick] [--fan N]... [--one N]   (--fan 0: no fan-out, --one 0: no one-task)
    arguments = sys.argv[1:]
    chosen_fans = tuple(int(arguments[i + 1]) for i, a in enumerate(arguments) if a == "--fan") or None
    chosen_one = next((int(arguments[i + 1]) for i, a in enumerate(arguments) if a == "--one"), None)
    print(json.dumps(run("--quick" in arguments, chosen_fans, chosen_one), indent=2))
