"""The operator on the local control plane: step latency, throughput, a 2,000-branch fork.

Starts its own control plane (``tests.e2e.controlplane``, kwok fake pods that finish 10 ms after they
start) and ``kondukt operator`` as a subprocess, exactly as a user runs it.

Step latency — "a Job completes -> the next Job exists" — over a 50-step chain, measured from outside:
this process watches pods and Jobs (two watch streams on the same API server) and timestamps each event
on arrival with a monotonic clock. For step i, latency = arrival of the ADDED event of step i+1's Job
minus arrival of the event in which step i's pod shows its container terminated (the moment its result
exists). Both events travel the same path (apiserver watch cache -> this process), so the watch delivery
delay cancels out to first order; Kubernetes' own timestamps (1 s resolution) are not used. The operator
reacts to the pod's termination, which comes before the Job controller marks the Job Complete; the
latency from the Job's Complete event is reported too (it can be negative: the next Job already
existed when the Job was marked Complete).

The fork's floor: the same number of bare Jobs created by 16 parallel clients (no operator), until their
pods terminate, in the same run; the ratio fork / floor is the operator's overhead factor.

Throughput: N one-task Workflows created at once (16 parallel clients); completed per minute =
N / (last completion seen - first create sent). The 2,000-branch fork: time from create to COMPLETED, and the size in bytes of the
Workflow object (its JSON as the API returns it). Also reported: the operator's resident memory, and
its own step-latency histogram (``kondukt_step_latency_seconds``).

The control plane is the e2e one with one change: kube-controller-manager and kube-scheduler get client
rate limits of 300 requests/s (``--kube-api-qps``; defaults 20 and 50) and 50 concurrent Job syncs
(default 5), as busy clusters configure them. With the defaults, the Job controller's 20 requests/s (about
three per Job: create the pod, update the status twice) bound a 2,000-branch fork to several minutes
whatever the operator does; the benchmark is about the operator.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.controlplane import ControlPlane, bin_dir, check_binaries, free_port, kondukt_crds  # noqa: E402

RAISED_LIMITS = {
    "kube-controller-manager": ["--kube-api-qps=300", "--kube-api-burst=600", "--concurrent-job-syncs=50"],
    "kube-scheduler": ["--kube-api-qps=300", "--kube-api-burst=600"],
}


class BenchControlPlane(ControlPlane):
    """The e2e control plane with the client rate limits of a busy cluster (see the module docstring)."""

    def _spawn(self, name: str, args: Any) -> None:
        super()._spawn(name, [*args, *RAISED_LIMITS.get(name, [])])


def start_control_plane(workdir: Path) -> ControlPlane:
    binaries = bin_dir()
    check_binaries(binaries)
    (workdir / "owner.pid").write_text(str(os.getpid()))
    cp = BenchControlPlane(workdir=workdir, binaries=binaries, nodes=3, crds=kondukt_crds())
    return cp.start(timeout=180)

WORKER_IMAGE = "kondukt.bench/worker:1"
PLAN = (
    "(function () { var tasks = [], inputs = {};"
    " for (var i = 0; i < $.branches; i++) {"
    "   tasks.push({name: 'echo', taskReferenceName: 'branch_' + i});"
    "   inputs['branch_' + i] = {index: i, fileLocation: 's3://bench/in/' + i + '.jpg'}; }"
    " return {tasks: tasks, inputs: inputs}; })()"
)


# ------------------------------------------------------------------------------------------ watching
class Watcher(threading.Thread):
    """One watch stream; calls ``on_event(event, arrival)`` for every event, arrival = time.monotonic().

    A stream the API server ends (its request timeout, a broken connection) is reopened from the last event's
    resourceVersion, so no event between the two streams is missed (a workflow deleted by its TTL in between
    would otherwise never be seen COMPLETED); when that version is gone (410 Gone), from the current state."""

    def __init__(self, cp: ControlPlane, path: str, on_event: Callable[[dict[str, Any], float], None]) -> None:
        super().__init__(daemon=True)
        self.cp, self.path, self.on_event = cp, path, on_event
        self.ready = threading.Event()
        self.stopped = False
        self.streams = 0  # watch requests made: more than 1 means the stream was reopened
        self._connection: http.client.HTTPSConnection | None = None

    def run(self) -> None:
        url = urllib.parse.urlparse(self.cp.server)
        context = ssl.create_default_context(cafile=str(self.cp.ca_file))
        resource_version: str | None = None
        while not self.stopped:
            connection = http.client.HTTPSConnection(url.hostname or "127.0.0.1", url.port, context=context,
                                                     timeout=600)
            self._connection = connection
            since = f"&resourceVersion={resource_version}" if resource_version else ""
            self.streams += 1
            try:
                connection.request("GET", f"{self.path}?watch=1&allowWatchBookmarks=false{since}",
                                   headers={"Authorization": f"Bearer {self.cp.token}"})
                response = connection.getresponse()
                self.ready.set()
                pending = b""
                while not self.stopped:
                    chunk = response.read1(1 << 16)  # events can be longer than readline()'s 64 KiB limit
                    if not chunk:
                        break
                    arrival = time.monotonic()
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        if line.strip():
                            event = json.loads(line)
                            version = ((event.get("object") or {}).get("metadata") or {}).get("resourceVersion")
                            if event.get("type") == "ERROR":
                                if (event.get("object") or {}).get("code") == 410:
                                    resource_version = None
                            elif version:
                                resource_version = str(version)
                            self.on_event(event, arrival)
            except (OSError, http.client.HTTPException, ValueError):
                if self.stopped:
                    return
                time.sleep(0.2)
            finally:
                connection.close()

    def stop(self) -> None:
        self.stopped = True
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.sock.shutdown(2)


@contextlib.contextmanager
def watching(cp: ControlPlane, path: str, on_event: Callable[[dict[str, Any], float], None]) -> Iterator[None]:
    watcher = Watcher(cp, path, on_event)
    watcher.start()
    watcher.ready.wait(30)
    try:
        yield
    finally:
        watcher.stop()


# ----------------------------------------------------------------------------------------- operator
class Operator:
    def __init__(self, cp: ControlPlane, namespace: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.metrics_port = free_port()
        script = Path(sys.executable).with_name("kondukt")
        program = [str(script)] if script.exists() else [sys.executable, "-m", "kondukt.cli"]
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [*program, "operator", "--standalone", "-n", namespace, "--kubeconfig", str(cp.kubeconfig),
             "--metrics-port", str(self.metrics_port), "--metrics-address", "127.0.0.1", "--log-level", "WARNING",
             "--workers", "32"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
            env={**os.environ, **(env or {})},
        )

    def rss_mib(self) -> float:
        total = 0
        for pid in [self.proc.pid, *self._children()]:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return round(total / 1024, 1)

    def _children(self) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        return []

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    values[name] = float(value)
        return values

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def histogram_quantile(metrics: dict[str, float], name: str, q: float) -> float | None:
    """A quantile from a Prometheus histogram's cumulative buckets (linear inside the bucket)."""
    buckets = sorted(((float(k.split('le="')[1].split('"')[0]), v) for k, v in metrics.items()
                      if k.startswith(name + "_bucket{") and 'le="+Inf"' not in k))
    total = metrics.get(name + "_count", 0.0)
    if not total:
        return None
    target, previous_bound, previous_count = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= target:
            share = (target - previous_count) / max(count - previous_count, 1e-9)
            return previous_bound + (bound - previous_bound) * share
        previous_bound, previous_count = bound, count
    return buckets[-1][0] if buckets else None


# ------------------------------------------------------------------------------------------ helpers
def kubectl_apply(cp: ControlPlane, namespace: str, *documents: dict[str, Any]) -> None:
    listing = {"apiVersion": "v1", "kind": "List", "items": list(documents)}
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(listing), timeout=600)


def echo_taskdef(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "TaskDef", "metadata": {"name": "echo"},
            "spec": {"name": "echo", "retryCount": 0, **spec,
                     "template": {"image": WORKER_IMAGE, "annotations": {"kwok.kondukt.io/echo-input": "true"}}}}


def inline_workflow(name: str, tasks: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name},
            "spec": {"definition": {"name": name, "tasks": tasks}, **spec}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def namespace_for(cp: ControlPlane, name: str) -> str:
    cp.kubectl("create", "namespace", name)
    wait(lambda: cp.api("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200, 30,
         "the default ServiceAccount")
    return name


# -------------------------------------------------------------------------------------- measurements
def measure_step_latency(cp: ControlPlane, namespace: str, steps: int) -> dict[str, object]:
    pod_done: dict[str, float] = {}
    job_added: dict[str, float] = {}
    job_complete: dict[str, float] = {}
    lock = threading.Lock()

    def on_pod(event: dict[str, Any], arrival: float) -> None:
        pod = event.get("object") or {}
        ref = (pod.get("metadata", {}).get("annotations") or {}).get("kondukt.io/task-ref")
        statuses = pod.get("status", {}).get("containerStatuses") or []
        if ref and any("terminated" in (s.get("state") or {}) for s in statuses):
            with lock:
                pod_done.setdefault(ref, arrival)

    def on_job(event: dict[str, Any], arrival: float) -> None:
        job = event.get("object") or {}
        ref = (job.get("metadata", {}).get("annotations") or {}).get("kondukt.io/task-ref")
        if not ref:
            return
        with lock:
            if event.get("type") == "ADDED":
                job_added.setdefault(ref, arrival)
            if any(c.get("type") == "Complete" and c.get("status") == "True"
                   for c in job.get("status", {}).get("conditions") or []):
                job_complete.setdefault(ref, arrival)

    tasks = [{"name": "echo", "taskReferenceName": "s0", "inputParameters": {"v": 0}}]
    tasks += [{"name": "echo", "taskReferenceName": f"s{i}", "inputParameters": {"v": f"${{s{i - 1}.output.v}}"}}
              for i in range(1, steps)]
    with watching(cp, f"/api/v1/namespaces/{namespace}/pods", on_pod), \
            watching(cp, f"/apis/batch/v1/namespaces/{namespace}/jobs", on_job):
        kubectl_apply(cp, namespace, inline_workflow("chain", tasks))
        wait(lambda: len(pod_done) >= steps, 300, f"{steps} steps")
        wait(lambda: len(job_complete) >= steps, 60, "the last Job to complete")
    from_pod = [(job_added[f"s{i + 1}"] - pod_done[f"s{i}"]) * 1000 for i in range(steps - 1)]
    from_job = [(job_added[f"s{i + 1}"] - job_complete[f"s{i}"]) * 1000 for i in range(steps - 1)]
    return {
        "step_latency_steps": steps - 1,
        "step_latency_p50_ms": round(percentile(from_pod, 0.50), 1),
        "step_latency_p95_ms": round(percentile(from_pod, 0.95), 1),
        "step_latency_max_ms": round(max(from_pod), 1),
        "step_latency_from_job_complete_p50_ms": round(percentile(from_job, 0.50), 1),
        "step_latency_from_job_complete_p95_ms": round(percentile(from_job, 0.95), 1),
        "chain_wall_seconds": round(max(pod_done.values()) - min(job_added.values()), 2),
    }


def measure_throughput(cp: ControlPlane, namespace: str, count: int) -> dict[str, object]:
    completed: dict[str, float] = {}

    def on_workflow(event: dict[str, Any], arrival: float) -> None:
        workflow = event.get("object") or {}
        if (workflow.get("status") or {}).get("phase") == "COMPLETED":
            completed.setdefault(workflow["metadata"]["name"], arrival)

    documents = [inline_workflow(f"one-{i}", [{"name": "echo", "taskReferenceName": "only",
                                                "inputParameters": {"i": i}}]) for i in range(count)]
    path = f"/apis/kondukt.io/v1alpha1/namespaces/{namespace}/workflows"

    def create(document: dict[str, Any]) -> None:
        status, body = cp.api("POST", path, document, timeout=60)
        if status != 201:
            raise RuntimeError(f"creating {document['metadata']['name']}: HTTP {status}: {body}")

    with watching(cp, path, on_workflow), ThreadPoolExecutor(max_workers=16) as pool:
        began = time.monotonic()
        list(pool.map(create, documents))  # as many clients would, in parallel
        created = time.monotonic()
        wait(lambda: len(completed) >= count, 60 + count, f"{count} one-task workflows")
    elapsed = max(completed.values()) - began
    return {
        "throughput_workflows": count,
        "throughput_workflows_per_minute": round(count / elapsed * 60, 1),
        "throughput_create_seconds": round(created - began, 2),
        "throughput_wall_seconds": round(elapsed, 2),
    }


def measure_fork(cp: ControlPlane, namespace: str, branches: int) -> dict[str, object]:
    done: list[float] = []

    def on_workflow(event: dict[str, Any], arrival: float) -> None:
        workflow = event.get("object") or {}
        if workflow.get("metadata", {}).get("name") == "wide" and \
                (workflow.get("status") or {}).get("phase") in ("COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED"):
            done.append(arrival)

    tasks: list[dict[str, Any]] = [
        {"name": "plan", "taskReferenceName": "plan", "type": "INLINE",
         "inputParameters": {"evaluatorType": "javascript", "expression": PLAN, "branches": "${workflow.input.count}"}},
        {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN_DYNAMIC",
         "inputParameters": {"dynamicTasks": "${plan.output.result.tasks}",
                             "dynamicTasksInput": "${plan.output.result.inputs}"},
         "dynamicForkTasksParam": "dynamicTasks", "dynamicForkTasksInputParamName": "dynamicTasksInput"},
        {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
    ]
    with watching(cp, f"/apis/kondukt.io/v1alpha1/namespaces/{namespace}/workflows", on_workflow):
        began = time.monotonic()
        kubectl_apply(cp, namespace, inline_workflow("wide", tasks, input={"count": branches}))
        wait(lambda: bool(done), 120 + branches * 0.5, f"the {branches}-branch fork")
    status, body = cp.api("GET", f"/apis/kondukt.io/v1alpha1/namespaces/{namespace}/workflows/wide", timeout=60)
    assert status == 200, body
    phase = body["status"]["phase"]
    return {
        "fork_branches": branches,
        "fork_phase": phase,
        "fork_seconds": round(done[0] - began, 2),
        "fork_workflow_object_bytes": len(json.dumps(body, separators=(",", ":"))),
        "fork_status_tasks_compressed": "tasksCompressed" in body["status"],
    }


def measure_job_floor(cp: ControlPlane, namespace: str, count: int) -> dict[str, object]:
    """The control plane alone: ``count`` bare Jobs like the fork's, created by 16 parallel clients, until
    every pod has terminated — what a fork of ``count`` branches costs without any operator."""
    done: set[str] = set()
    lock = threading.Lock()

    def on_pod(event: dict[str, Any], arrival: float) -> None:
        pod = event.get("object") or {}
        statuses = pod.get("status", {}).get("containerStatuses") or []
        if any("terminated" in (s.get("state") or {}) for s in statuses):
            with lock:
                done.add(pod.get("metadata", {}).get("name", ""))

    def job(index: int) -> dict[str, Any]:
        environment = [{"name": "KONDUKT_INPUT", "value": json.dumps({"index": index})}]
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"floor-{index}"},
                "spec": {"backoffLimit": 0, "template": {
                    "metadata": {"annotations": {"kwok.kondukt.io/echo-input": "true"}},
                    "spec": {"restartPolicy": "Never",
                             "containers": [{"name": "worker", "image": WORKER_IMAGE, "env": environment}]}}}}

    path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    with watching(cp, f"/api/v1/namespaces/{namespace}/pods", on_pod), ThreadPoolExecutor(max_workers=16) as pool:
        began = time.monotonic()
        list(pool.map(lambda i: cp.api("POST", path, job(i), timeout=60), range(count)))
        wait(lambda: len(done) >= count, 120 + count * 0.5, f"{count} bare Jobs")
    return {"fork_control_plane_floor_seconds": round(time.monotonic() - began, 2)}


def measure_idle_memory(cp: ControlPlane, namespace: str, operator: Operator, count: int) -> dict[str, object]:
    """RSS with ``count`` active workflows (each waits on a HUMAN task: in memory, no pods)."""
    documents = [inline_workflow(f"waiting-{i}", [{"name": "approve", "taskReferenceName": "approve",
                                                   "type": "HUMAN"}]) for i in range(count)]
    kubectl_apply(cp, namespace, *documents)

    def all_running() -> bool:
        _, listing = cp.api("GET", f"/apis/kondukt.io/v1alpha1/namespaces/{namespace}/workflows", timeout=60)
        return sum(1 for w in listing.get("items", []) if (w.get("status") or {}).get("phase") == "RUNNING") >= count

    wait(all_running, 120 + count * 0.2, f"{count} running workflows")
    return {"memory_active_workflows": count, "operator_rss_mib_with_active_workflows": operator.rss_mib()}


def run(quick: bool = False) -> dict[str, object]:
    steps, one_task, branches, waiting = (20, 30, 200, 100) if quick else (50, 300, 2000, 1000)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="kondukt-bench-") as scratch:
        cp = start_control_plane(Path(scratch))
        try:
            namespace = namespace_for(cp, "bench")
            operator = Operator(cp, namespace, Path(scratch) / "operator.log")
            try:
                kubectl_apply(cp, namespace, echo_taskdef())
                results.update(measure_step_latency(cp, namespace, steps))
                results.update(measure_throughput(cp, namespace, one_task))
                results.update(measure_fork(cp, namespace, branches))
                floor = measure_job_floor(cp, namespace_for(cp, "bench-floor"), branches)
                results.update(floor)
                fork_seconds, floor_seconds = results["fork_seconds"], floor["fork_control_plane_floor_seconds"]
                assert isinstance(fork_seconds, float) and isinstance(floor_seconds, float)
                results["fork_seconds_over_floor"] = round(fork_seconds / floor_seconds, 2)
                results["operator_rss_mib_after_fork"] = operator.rss_mib()
                metrics = operator.metrics()
                for q in (0.5, 0.95):
                    value = histogram_quantile(metrics, "kondukt_step_latency_seconds", q)
                    if value is not None:
                        results[f"operator_internal_step_latency_p{int(q * 100)}_ms"] = round(value * 1000, 1)
                results["operator_reconciles"] = int(sum(v for k, v in metrics.items()
                                                         if k.startswith("kondukt_reconcile_duration_seconds_count")))
                memory_namespace = namespace_for(cp, "bench-memory")
                operator.stop()
                operator = Operator(cp, memory_namespace, Path(scratch) / "operator-memory.log")
                results.update(measure_idle_memory(cp, memory_namespace, operator, waiting))
            finally:
                operator.stop()
        finally:
            cp.stop()
    results["control_plane_client_qps"] = 300
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
