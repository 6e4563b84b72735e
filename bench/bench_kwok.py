"""The kwok tier alone: how many bare one-pod Jobs a minute go through it, with kwok's defaults and with ours.

Issue 10's first soak completed 0-77 workflows a minute while kwok used <1 % CPU: kwok v0.8.0 has no client
rate limit, but plays the pods' stages with ``podPlayStageParallelism`` workers (4 by default), each waiting
for its request. ``hack/control-plane/kwok-config.yaml`` raises it. This benchmark shows the difference with no
operator in the way: the same control plane as the soak (``bench_soak.SoakControlPlane``: the Job controller
and the scheduler at 300 requests/s), bare Jobs like the operator's (one pod, ``restartPolicy: Never``, kwok's
fast pod) offered at a fixed rate by the open-loop generator (``bench/loadgen.py``) for a minute, then up to
two minutes for the backlog. Measured from a watch on pods: pods terminated per minute (kwok's work: Running,
then terminated), the time from a Job's create to its pod's termination, p50/p95, and where that time went (the
Job controller's pod create, the scheduler's binding, kwok's Running, kwok's termination; each p50/p95). Both configurations run
one after the other on fresh control planes in the same run; the load average is recorded with each.

``python -m bench kwok`` (``--rate``, ``--minutes`` change the offered load).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.controlplane import KWOK_CONFIG_FILE, bin_dir, check_binaries, kondukt_crds  # noqa: E402

from bench.bench_operator import WORKER_IMAGE, namespace_for, percentile, watching  # noqa: E402
from bench.bench_soak import SoakControlPlane, load_average  # noqa: E402
from bench.loadgen import Connection, run_open_loop  # noqa: E402

#: The repository's configuration with kwok's default pod workers (kwok defaults nothing in a file it reads).
KWOK_DEFAULTS = KWOK_CONFIG_FILE.read_text().replace("podPlayStageParallelism: 32", "podPlayStageParallelism: 4")
DRAIN_SECONDS = 120.0


def bare_job(index: int) -> dict[str, Any]:
    environment = [{"name": "KONDUKT_INPUT", "value": json.dumps({"index": index})}]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"bare-{index:06d}"},
            "spec": {"backoffLimit": 0, "template": {
                "metadata": {"annotations": {"kwok.kondukt.io/echo-input": "true"}},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": "worker", "image": WORKER_IMAGE, "env": environment}]}}}}


def measure(kwok_config: Path, scratch: Path, rate: float, seconds: float) -> dict[str, object]:
    binaries = bin_dir()
    check_binaries(binaries)
    (scratch / "owner.pid").write_text(str(os.getpid()))
    cp = SoakControlPlane(workdir=scratch, binaries=binaries, nodes=3, crds=kondukt_crds(),
                          kwok_config=kwok_config).start(timeout=180)
    try:
        namespace = namespace_for(cp, "bare")
        path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        sent: dict[str, float] = {}
        created: dict[str, float] = {}  # the Job controller made the pod
        scheduled: dict[str, float] = {}  # the scheduler bound it
        running: dict[str, float] = {}  # kwok: Running
        terminated: dict[str, float] = {}
        lock = threading.Lock()

        def on_pod(event: dict[str, Any], arrival: float) -> None:
            pod = event.get("object") or {}
            job = (pod.get("metadata") or {}).get("labels", {}).get("job-name", "")
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            with lock:
                created.setdefault(job, arrival)
                if (pod.get("spec") or {}).get("nodeName"):
                    scheduled.setdefault(job, arrival)
                if any("running" in (s.get("state") or {}) for s in statuses):
                    running.setdefault(job, arrival)
                if any("terminated" in (s.get("state") or {}) for s in statuses):
                    terminated.setdefault(job, arrival)

        def send(connection: Connection, index: int) -> tuple[int, Any]:
            with lock:
                sent[f"bare-{index:06d}"] = time.monotonic()
            return connection.request("POST", path, bare_job(index))

        load_before = load_average()
        with watching(cp, f"/api/v1/namespaces/{namespace}/pods", on_pod):
            began = time.monotonic()
            report = run_open_loop(cp, send, rate_per_minute=rate, seconds=seconds)
            deadline = time.monotonic() + DRAIN_SECONDS
            while time.monotonic() < deadline:
                with lock:
                    if len(terminated) >= report.accepted:
                        break
                time.sleep(0.5)
            ended = time.monotonic()
        def stage(later: dict[str, float], earlier: dict[str, float]) -> list[float] | None:
            gaps = [later[n] - earlier[n] for n in later if n in earlier]
            return [round(percentile(gaps, 0.5), 2), round(percentile(gaps, 0.95), 2)] if gaps else None

        with lock:
            latencies = [terminated[n] - sent[n] for n in terminated if n in sent]
            stages = {"create_to_pod_p50_p95_s": stage(created, sent),
                      "pod_to_scheduled_p50_p95_s": stage(scheduled, created),
                      "scheduled_to_running_p50_p95_s": stage(running, scheduled),
                      "running_to_terminated_p50_p95_s": stage(terminated, running)}
            per_minute = [sum(1 for at in terminated.values() if began + m * 60 <= at < began + (m + 1) * 60)
                          for m in range(int((ended - began) // 60) + 1)]
        return {
            "pod_play_stage_parallelism": next(line.split(":")[1].strip() for line in kwok_config.read_text().splitlines()
                                               if line.strip().startswith("podPlayStageParallelism:")),
            "load": report.figures(),
            "pods_running": len(running), "pods_terminated": len(terminated),
            "terminated_per_minute": per_minute, **stages,
            "create_to_terminated_p50_s": round(percentile(latencies, 0.5), 2) if latencies else None,
            "create_to_terminated_p95_s": round(percentile(latencies, 0.95), 2) if latencies else None,
            "seconds_until_all_terminated": round(ended - began, 1) if len(terminated) >= report.accepted else None,
            "load_before": load_before, "load_after": load_average(),
        }
    finally:
        cp.stop()


def run(quick: bool = False, minutes: float | None = None, rate: float | None = None) -> dict[str, object]:
    rate = rate if rate is not None else (300.0 if quick else 1000.0)
    seconds = 60.0 * (minutes if minutes is not None else (0.5 if quick else 1.0))
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="kondukt-kwok-bench-", dir=shm) as scratch_dir:
        scratch = Path(scratch_dir)
        defaults = scratch / "kwok-defaults.yaml"
        if "podPlayStageParallelism: 4\n" not in KWOK_DEFAULTS:
            raise RuntimeError(f"{KWOK_CONFIG_FILE} has no `podPlayStageParallelism: 32` line to compare against")
        defaults.write_text(KWOK_DEFAULTS)
        for label, config in (("kwok_defaults", defaults), ("kondukt_config", KWOK_CONFIG_FILE)):
            workdir = scratch / label
            workdir.mkdir()
            results[label] = measure(config, workdir, rate, seconds)
            print(f"   kwok {label}: {json.dumps(results[label], default=str)}", flush=True)
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2, default=str))
