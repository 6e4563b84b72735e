"""The race with Argo Workflows (issue 12): one harness, one watcher, the floor, Kondukt and Argo side by side.

    python -m bench peers [--quick] [--json FILE] [--systems floor,kondukt,...]

Each system runs alone on a fresh local control plane (``tests.e2e.controlplane``: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok fake nodes on 127.0.0.1), with the same raised client limits
for the kube components (``bench_operator.RAISED_LIMITS``) and kwok pods that finish 10 ms after Running:

- ``floor``: this process creates the next bare pod the instant its watcher sees the previous one Succeeded
  (a fan-out's branches at once by 16 parallel clients, the step after the join when all are Succeeded);
  ``floor_jobs``: the same with one bare Job per step. What the control plane costs with no orchestrator.
- ``kondukt``: ``kondukt operator`` as a process, as the e2e tests and users run it.
- ``argo_stock``: Argo Workflows' workflow-controller v4.0.5 (built and cached by ``hack/argo/build.sh``) with
  its defaults; ``argo_tuned``: ``DEFAULT_REQUEUE_TIME=100ms INFORMER_WRITE_BACK=true --qps 200 --burst 400``.
  Both namespaced, leader election, metrics and telemetry off. Its /healthz listens on ``:6060`` (all
  interfaces, not configurable): the harness holds 127.0.0.1:6060 while Argo runs, so that bind fails and
  nothing listens beyond loopback (the controller only logs the error).

Workloads, in this order: a chain of steps (repeated), a fan-out with a join (two sizes), one-task workflows
created at once by 16 clients (two sizes), a dynamic fork (Kondukt's FORK_JOIN_DYNAMIC; Argo's
``withSequence``, which it also uses for fan-outs above 200 branches: its DAG with 1,000 explicit
dependencies fails with "expression exceeds maximum allowed nodes"). Every system first runs one warm-up
workflow. The fork step after the join is named ``after`` everywhere.

Figures, all from one watcher (``Recorder``: one pod watch, plus one watch of the system's Workflow objects
for "done"; the same code for every system) and ``peers_figures``: pod-to-pod step latency (previous pod
seen Succeeded -> next pod seen), fan-out spread and join latency, workflows per minute and create -> done,
the controller's CPU seconds (utime + stime of its process group, from /proc) and peak RSS (VmHWM), the
control plane's CPU (etcd, kube-apiserver, kube-controller-manager, kube-scheduler), the API requests
every client made (the API server's ``apiserver_request_total``, diffed around each workload, watches not
counted) per workflow by kind, and the Workflow object's size. Timings are never asserted: this is a
benchmark; results go to ``bench/results/peers-<UTC>.{json,md}`` with the machine, load, versions and command.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import errno
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.controlplane import (  # noqa: E402
    BUILD_SCRIPT,
    FAKE_NODE_IP,
    KWOK_CONFIG_FILE,
    STAGES_FILE,
    ControlPlane,
    bin_dir,
    check_binaries,
    kondukt_crds,
)

from bench import peers_figures as figures  # noqa: E402
from bench.bench_operator import (  # noqa: E402
    PLAN,
    RAISED_LIMITS,
    WORKER_IMAGE,
    Operator,
    Watcher,
    echo_taskdef,
    histogram_quantile,
    kubectl_apply,
    namespace_for,
)

ARGO_BUILD = REPO / "hack" / "argo" / "build.sh"
NAMESPACE = "peers"
BARE_LABEL = "bench.kondukt.io/bare"
WORKFLOW_LABEL = "bench.kondukt.io/workflow"
STEP_LABEL = "bench.kondukt.io/step"
ARGO_EXECUTOR = "kondukt.bench/argoexec:1"  # never pulled: kwok runs no containers
ARGO_HEALTHZ_PORT = 6060
CLIENTS = 16
SETTLE_SECONDS = 2.0  # after a workload is done, trailing writes (labels, final status) still count for it
ALL_SYSTEMS = ("floor", "floor_jobs", "kondukt", "argo_stock", "argo_tuned")
WORKLOADS = ("chain", "fanout_small", "fanout_large", "throughput_small", "throughput_large", "fork")


# ------------------------------------------------------------------------------------------ sizes
def sizes_for(quick: bool) -> dict[str, int]:
    if quick:
        return {"chain_steps": 5, "chain_repeats": 2, "fanout_small": 20, "fanout_large": 50,
                "throughput_small": 30, "throughput_large": 60, "fork": 100}
    return {"chain_steps": 10, "chain_repeats": 3, "fanout_small": 100, "fanout_large": 1000,
            "throughput_small": 300, "throughput_large": 1000, "fork": 10000}


# ---------------------------------------------------------------------------------- control plane
def stages_yaml() -> str:
    """The e2e kwok stages, with two changes: Argo's pods (owned by a Workflow) complete like Jobs' pods,
    and so do the floor's bare pods (labelled ``bench.kondukt.io/bare``, no owner)."""
    documents = [d for d in yaml.safe_load_all(STAGES_FILE.read_text()) if d]
    out = []
    for document in documents:
        out.append(document)
        if document["metadata"]["name"] != "pod-complete":
            continue
        expressions = document["spec"]["selector"]["matchExpressions"]
        owner = next(e for e in expressions if e["key"] == ".metadata.ownerReferences.[].kind")
        owner["values"] = ["Job", "Workflow"]
        bare = copy.deepcopy(document)
        bare["metadata"]["name"] = "pod-complete-bare"
        bare["spec"]["selector"]["matchExpressions"] = [
            e if e["key"] != owner["key"] else
            {"key": f'.metadata.labels["{BARE_LABEL}"]', "operator": "In", "values": ["true"]}
            for e in expressions]
        out.append(bare)
    return yaml.safe_dump_all(out, sort_keys=False)


class PeersControlPlane(ControlPlane):
    """The e2e control plane with raised client limits for the kube components and the stages above."""

    def _spawn(self, name: str, args: Any) -> None:
        super()._spawn(name, [*args, *RAISED_LIMITS.get(name, [])])

    def _start_kwok(self) -> None:
        stages = self.workdir / "kwok-stages.yaml"
        stages.write_text(stages_yaml())
        self._spawn("kwok", [
            f"--kubeconfig={self.workdir / 'kwok.kubeconfig'}", f"--config={KWOK_CONFIG_FILE}", f"--config={stages}",
            "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            # The e2e control plane's loopback node address: a pod log request must not leave the machine.
            "--node-lease-duration-seconds=40", "--cidr=10.244.0.0/16", f"--node-ip={FAKE_NODE_IP}",
        ])


def argo_dir() -> Path:
    """Argo's cached build (built now if missing: ~10 min on a cold Go cache)."""
    subprocess.run(["bash", str(ARGO_BUILD)], check=True, timeout=3600)
    out = subprocess.run(["bash", str(ARGO_BUILD), "--bin-dir"], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def start_control_plane(workdir: Path, with_argo: bool) -> ControlPlane:
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, timeout=3600)  # a no-op once cached
    binaries = bin_dir()
    check_binaries(binaries)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "owner.pid").write_text(str(os.getpid()))
    crds = [*kondukt_crds(), *(sorted((argo_dir() / "crds").glob("*.yaml")) if with_argo else [])]
    cp = PeersControlPlane(workdir=workdir, binaries=binaries, nodes=3, crds=crds)
    return cp.start(timeout=240)


# ------------------------------------------------------------------------------------------ /proc
def _group_processes(pgids: set[int]) -> Iterator[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) in pgids:
                yield int(entry.name), fields


def cpu_seconds(pgids: set[int]) -> float:
    """utime + stime of every process in these process groups (their own and their reaped children's)."""
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(sum(int(f) for f in fields[11:15]) for _, fields in _group_processes(pgids)) / ticks


def rss_mib(pgids: set[int]) -> float:
    """Resident memory now (VmRSS) of every process in these process groups."""
    total = 0
    for pid, _ in _group_processes(pgids):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


def peak_rss_mib(pgids: set[int]) -> float:
    total = 0
    for pid, _ in _group_processes(pgids):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


@contextlib.contextmanager
def profiled(system: System, out: Path) -> Iterator[None]:
    """py-spy (on PATH or in the venv) samples the controller's processes while the block runs; the collapsed stacks go to
    ``out`` and a summary (the most sampled functions, self and inclusive) to ``out`` + ``.top.txt``."""
    # On PATH, or beside this Python (the venv's bin, where `make setup` installs it, need not be on PATH).
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None or system.pgid is None:
        print("   (no py-spy on PATH or beside this Python: not profiling)", flush=True)
        yield
        return
    proc = subprocess.Popen([spy, "record", "--pid", str(system.pgid), "--subprocesses", "--rate", "50",
                             "--format", "raw", "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if out.exists():
            out.with_name(out.name + ".top.txt").write_text(summarize_profile(out.read_text()))


def summarize_profile(collapsed: str, top: int = 30) -> str:
    """The most sampled functions of py-spy's collapsed stacks ("frame;frame;... count" lines)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    lines = [f"{total} samples", "", "self:"]
    lines += [f"{100 * n / max(total, 1):5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive (kondukt frames):"]
    lines += [f"{100 * n / max(total, 1):5.1f}%  {frame}" for frame, n in inclusive.most_common()
              if "kondukt" in frame][:top]
    return "\n".join(lines) + "\n"


class RssSampler(threading.Thread):
    """The controller's resident memory (VmRSS of its process group), sampled every half second while a
    workload runs: the peak, and how many of the workload's pods were active (seen, not yet ended) then."""

    def __init__(self, pgid: int | None, recorder: Recorder, workflow: str) -> None:
        super().__init__(daemon=True)
        self.pgid, self.recorder, self.workflow = pgid, recorder, workflow
        self.peak_mib: float | None = None
        self.active_at_peak: int | None = None
        self.most_active = 0  # the most branches active in a sample, and the RSS then
        self.mib_at_most_active: float | None = None
        self.stopped = threading.Event()

    def __enter__(self) -> RssSampler:
        if self.pgid is not None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self.is_alive():
            self.join(timeout=10)

    def run(self) -> None:
        assert self.pgid is not None
        while not self.stopped.wait(0.5):
            rss = rss_mib({self.pgid})
            with self.recorder.lock:
                active = sum(1 for r in self.recorder.pods.values() if r.workflow == self.workflow
                             and r.succeeded is None and r.failed is None)
            if self.peak_mib is None or rss > self.peak_mib:
                self.peak_mib, self.active_at_peak = rss, active
            if active and active >= self.most_active:
                self.most_active, self.mib_at_most_active = active, rss


# ---------------------------------------------------------------------------------------- watcher
class Recorder:
    """The one watcher: every pod of the namespace (which workflow and step, seen, Succeeded) and, for the
    systems that have them, their Workflow objects (done)."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.lock = threading.Lock()
        self.pods: dict[str, figures.PodRecord] = {}
        self.done: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.on_succeeded: Callable[[figures.PodRecord], None] | None = None

    def pod_event(self, event: dict[str, Any], arrival: float) -> None:
        pod = event.get("object") or {}
        metadata = pod.get("metadata") or {}
        identity = self.system.identify(pod)
        if identity is None or not metadata.get("uid"):
            return
        phase = (pod.get("status") or {}).get("phase")
        fire = None
        with self.lock:
            record = self.pods.get(metadata["uid"])
            if record is None:
                record = self.pods[metadata["uid"]] = figures.PodRecord(identity[0], identity[1], seen=arrival)
            if phase == "Succeeded" and record.succeeded is None:
                record.succeeded = arrival
                fire = record
            elif phase == "Failed" and record.failed is None:
                record.failed = arrival
                self.failed.setdefault(record.workflow, f"pod {metadata.get('name')} Failed")
        if fire is not None and self.on_succeeded is not None:
            self.on_succeeded(fire)

    def workflow_event(self, event: dict[str, Any], arrival: float) -> None:
        workflow = event.get("object") or {}
        name = (workflow.get("metadata") or {}).get("name")
        outcome = self.system.outcome(workflow)
        if not name or outcome is None:
            return
        with self.lock:
            if outcome == "ok":
                self.done.setdefault(name, arrival)
            else:
                self.failed.setdefault(name, outcome)

    def mark_done(self, name: str, arrival: float) -> None:
        with self.lock:
            self.done.setdefault(name, arrival)

    def pods_of(self, workflow: str) -> list[figures.PodRecord]:
        with self.lock:
            return sorted((r for r in self.pods.values() if r.workflow == workflow), key=lambda r: r.seen)

    def wait_done(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                failed = [(n, self.failed[n]) for n in names if n in self.failed]
                missing = [n for n in names if n not in self.done]
            if failed:
                raise RuntimeError(f"{len(failed)} workflows failed, e.g. {failed[0][0]}: {failed[0][1]}")
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s: {len(missing)} of {len(names)} workflows not "
                                   f"done (e.g. {missing[0]})")
            time.sleep(0.05)


@contextlib.contextmanager
def watch(cp: ControlPlane, path: str, on_event: Callable[[dict[str, Any], float], None]) -> Iterator[None]:
    watcher = Watcher(cp, path, on_event)
    watcher.start()
    if not watcher.ready.wait(60):
        raise RuntimeError(f"the watch of {path} did not start")
    try:
        yield
    finally:
        watcher.stop()


# ---------------------------------------------------------------------------------------- systems
class System:
    """What differs between systems: how to start them, their workflow documents, how pods map to steps."""

    key = ""
    workflows_path: str | None = None
    repeats_cap: int | None = None

    def __init__(self) -> None:
        self.cp: ControlPlane | None = None
        self.namespace = NAMESPACE
        self.pgid: int | None = None
        self.skip: dict[str, str] = {}  # workload -> why this system does not run it

    def start(self, cp: ControlPlane, workdir: Path) -> None:
        self.cp = cp

    def stop(self) -> None:
        pass

    def version(self) -> str:
        return ""

    def identify(self, pod: dict[str, Any]) -> tuple[str, str] | None:
        raise NotImplementedError

    def outcome(self, workflow: dict[str, Any]) -> str | None:
        return None

    def attach(self, recorder: Recorder) -> None:
        pass

    def submit(self, name: str, shape: str, size: int) -> None:
        raise NotImplementedError

    def object_bytes(self, name: str) -> int | None:
        if self.workflows_path is None or self.cp is None:
            return None
        status, body = self.cp.api("GET", f"{self.workflows_path}/{name}", timeout=120)
        return len(json.dumps(body, separators=(",", ":"))) if status == 200 else None

    def post(self, path: str, document: dict[str, Any]) -> None:
        assert self.cp is not None
        status, body = self.cp.api("POST", path, document, timeout=120)
        if status != 201:
            raise RuntimeError(f"creating {document['metadata']['name']}: HTTP {status}: {str(body)[:300]}")


class Floor(System):
    """The control plane alone: this process plays the orchestrator, reacting to its own watcher."""

    key = "floor"
    jobs = False

    def __init__(self) -> None:
        super().__init__()
        self.pool = ThreadPoolExecutor(max_workers=CLIENTS)
        self.plans: dict[str, tuple[str, int]] = {}
        self.progress: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.recorder: Recorder | None = None
        self.errors: list[str] = []

    def identify(self, pod: dict[str, Any]) -> tuple[str, str] | None:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if WORKFLOW_LABEL not in labels:
            return None
        return labels[WORKFLOW_LABEL], labels.get(STEP_LABEL, "")

    def attach(self, recorder: Recorder) -> None:
        self.recorder = recorder
        recorder.on_succeeded = self.succeeded

    def version(self) -> str:
        return f"bare {'Jobs' if self.jobs else 'pods'} created by this harness"

    def stop(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def document(self, workflow: str, step: str) -> tuple[str, dict[str, Any]]:
        name = f"{workflow}-{step}".lower()
        labels = {WORKFLOW_LABEL: workflow, STEP_LABEL: step}
        pod_spec = {"restartPolicy": "Never", "containers": [{"name": "worker", "image": WORKER_IMAGE}]}
        if self.jobs:
            return f"/apis/batch/v1/namespaces/{self.namespace}/jobs", {
                "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels},
                "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels}, "spec": pod_spec}}}
        return f"/api/v1/namespaces/{self.namespace}/pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {**labels, BARE_LABEL: "true"}}, "spec": pod_spec}

    def create(self, workflow: str, step: str) -> None:
        try:
            self.post(*self.document(workflow, step))
        except Exception as error:  # reported by the workload that waits for it
            self.errors.append(str(error))
            assert self.recorder is not None
            with self.recorder.lock:
                self.recorder.failed.setdefault(workflow, str(error))

    def submit(self, name: str, shape: str, size: int) -> None:
        with self.lock:
            self.plans[name] = (shape, size)
        if shape == "chain":
            self.create(name, "s0")
        elif shape in ("fanout", "fork"):
            list(self.pool.map(lambda i: self.create(name, f"b{i}"), range(size)))
        else:
            self.create(name, "only")

    def succeeded(self, record: figures.PodRecord) -> None:
        """Called on the watcher's thread: the next step's create goes to the pool at once."""
        with self.lock:
            shape, size = self.plans.get(record.workflow, ("", 0))
            if shape == "chain":
                index = int(record.step[1:]) + 1
                if index < size:
                    self.pool.submit(self.create, record.workflow, f"s{index}")
                    return
            elif shape in ("fanout", "fork") and record.step != figures.JOIN_STEP:
                self.progress[record.workflow] += 1
                if self.progress[record.workflow] == size:
                    self.pool.submit(self.create, record.workflow, figures.JOIN_STEP)
                return
            elif not shape:
                return
        assert self.recorder is not None and record.succeeded is not None
        self.recorder.mark_done(record.workflow, record.succeeded)


class FloorJobs(Floor):
    key = "floor_jobs"
    jobs = True


class PayloadStore:
    """External payload storage for the operator: a real S3 endpoint (moto's ``ThreadedMotoServer``, as the
    tests and ``kondukt run`` use) on 127.0.0.1 in this process, with one bucket. The dynamic fork needs it:
    its plan step's output (every branch's input) is over the 256 KiB a value may take in a Workflow's status.
    Dummy credentials; boto3 is kept from reading the user's AWS files and from the instance metadata service."""

    BUCKET = "kondukt-payloads"

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on the harness's output
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.env = {"KONDUKT_PAYLOAD_BUCKET": self.BUCKET, "KONDUKT_S3_ENDPOINT": self.endpoint,
                    "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                    "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                    "AWS_EC2_METADATA_DISABLED": "true"}
        self.client().create_bucket(Bucket=self.BUCKET)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench").client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))

    def stored(self) -> tuple[int, int]:
        """(objects, bytes) in the bucket."""
        objects = size = 0
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.BUCKET):
            for item in page.get("Contents", []):
                objects += 1
                size += int(item["Size"])
        return objects, size

    def stop(self) -> None:
        self.server.stop()


class Kondukt(System):
    key = "kondukt"

    def __init__(self) -> None:
        super().__init__()
        self.operator: Operator | None = None
        self.payloads: PayloadStore | None = None

    def start(self, cp: ControlPlane, workdir: Path) -> None:
        super().start(cp, workdir)
        self.workflows_path = f"/apis/kondukt.io/v1alpha1/namespaces/{self.namespace}/workflows"
        kubectl_apply(cp, self.namespace, echo_taskdef())
        self.payloads = PayloadStore()
        self.operator = Operator(cp, self.namespace, workdir / "operator.log", env=self.payloads.env)
        self.pgid = self.operator.proc.pid

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        if self.payloads is not None:
            self.payloads.stop()

    #: The operator's own counters kept in the results (what it did: Job creates by result, failed reconciles,
    #: transient API errors, status writes deferred), totals over the whole run of this system.
    COUNTERS = ("kondukt_job_creates_total", "kondukt_reconcile_errors_total", "kondukt_api_errors_total",
                "kondukt_status_writes_deferred_total", "kondukt_reconcile_duration_seconds_count")

    def counters(self) -> dict[str, float]:
        if self.operator is None:
            return {}
        try:
            found = self.operator.metrics()
        except OSError:  # the operator is gone (it crashed: the run's error says so)
            return {}
        return {k: v for k, v in found.items() if k.startswith(self.COUNTERS)}

    def version(self) -> str:
        out = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, check=False)
        return f"kondukt {out.stdout.strip() or '?'}"

    def identify(self, pod: dict[str, Any]) -> tuple[str, str] | None:
        metadata = pod.get("metadata") or {}
        annotations, labels = metadata.get("annotations") or {}, metadata.get("labels") or {}
        workflow = annotations.get("kondukt.io/workflow-name") or labels.get("kondukt.io/workflow")
        if not workflow:
            return None
        return workflow, annotations.get("kondukt.io/task-ref") or labels.get("kondukt.io/task-ref") or \
            metadata.get("name", "")

    def outcome(self, workflow: dict[str, Any]) -> str | None:
        phase = (workflow.get("status") or {}).get("phase")
        if phase == "COMPLETED":
            return "ok"
        if phase in ("FAILED", "TIMED_OUT", "TERMINATED"):
            return f"phase {phase}: {(workflow.get('status') or {}).get('reasonForIncompletion', '')}"
        return None

    def submit(self, name: str, shape: str, size: int) -> None:
        def echo(ref: str) -> dict[str, Any]:
            return {"name": "echo", "taskReferenceName": ref}

        tasks: list[dict[str, Any]]
        spec: dict[str, Any] = {}
        if shape == "chain":
            tasks = [echo(f"s{i}") for i in range(size)]
        elif shape == "fanout":
            tasks = [{"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN",
                      "forkTasks": [[echo(f"b{i}")] for i in range(size)]},
                     {"name": "join", "taskReferenceName": "join", "type": "JOIN",
                      "joinOn": [f"b{i}" for i in range(size)]},
                     echo(figures.JOIN_STEP)]
        elif shape == "fork":
            tasks = [
                {"name": "plan", "taskReferenceName": "plan", "type": "INLINE",
                 "inputParameters": {"evaluatorType": "javascript", "expression": PLAN,
                                     "branches": "${workflow.input.count}"}},
                {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN_DYNAMIC",
                 "inputParameters": {"dynamicTasks": "${plan.output.result.tasks}",
                                     "dynamicTasksInput": "${plan.output.result.inputs}"},
                 "dynamicForkTasksParam": "dynamicTasks", "dynamicForkTasksInputParamName": "dynamicTasksInput"},
                {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
                echo(figures.JOIN_STEP)]
            spec = {"input": {"count": size}}
        else:
            tasks = [echo("only")]
        assert self.workflows_path is not None
        self.post(self.workflows_path, {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow",
                                        "metadata": {"name": name},
                                        "spec": {"definition": {"name": name, "tasks": tasks}, **spec}})


class Argo(System):
    key = "argo_stock"
    tuned = False
    EXPLICIT_DEPENDENCIES_MAX = 200  # above this, withSequence (1,000 explicit dependencies fail)

    def __init__(self) -> None:
        super().__init__()
        self.proc: subprocess.Popen[bytes] | None = None
        self.guard: socket.socket | None = None
        self.log: Any = None

    def start(self, cp: ControlPlane, workdir: Path) -> None:
        super().start(cp, workdir)
        self.workflows_path = f"/apis/argoproj.io/v1alpha1/namespaces/{self.namespace}/workflows"
        binary = argo_dir() / "workflow-controller"
        kubectl_apply(cp, self.namespace, {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "workflow-controller-configmap"},
            "data": {"metricsConfig": "enabled: false\n", "telemetryConfig": "enabled: false\n"}})
        self.guard = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.guard.bind(("127.0.0.1", ARGO_HEALTHZ_PORT))
            self.guard.listen(1)
        except OSError as error:  # someone holds it already: Argo's ":6060" cannot bind either
            if error.errno != errno.EADDRINUSE:
                raise
            self.guard.close()
            self.guard = None
        env = {**os.environ, "LEADER_ELECTION_DISABLE": "true"}
        args = [str(binary), "--kubeconfig", str(cp.kubeconfig), "--namespace", self.namespace, "--namespaced",
                "--managed-namespace", self.namespace, "--executor-image", ARGO_EXECUTOR, "--loglevel", "warn"]
        if self.tuned:
            env.update(DEFAULT_REQUEUE_TIME="100ms", INFORMER_WRITE_BACK="true")
            args += ["--qps", "200", "--burst", "400"]
        self.log = (workdir / f"{self.key}.log").open("wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=workdir)
        self.pgid = self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        if self.log is not None:
            self.log.close()
        if self.guard is not None:
            self.guard.close()

    def version(self) -> str:
        return "argo-workflows " + subprocess.run(["bash", str(ARGO_BUILD), "--key"], capture_output=True,
                                                  text=True, check=False).stdout.strip()

    def identify(self, pod: dict[str, Any]) -> tuple[str, str] | None:
        metadata = pod.get("metadata") or {}
        workflow = (metadata.get("labels") or {}).get("workflows.argoproj.io/workflow")
        if not workflow:
            return None
        node = (metadata.get("annotations") or {}).get("workflows.argoproj.io/node-name") or metadata.get("name", "")
        return workflow, node.removeprefix(workflow + ".") if node != workflow else "main"

    def outcome(self, workflow: dict[str, Any]) -> str | None:
        status = workflow.get("status") or {}
        phase = status.get("phase")
        if phase == "Succeeded":
            return "ok"
        if phase in ("Failed", "Error"):
            return f"phase {phase}: {status.get('message', '')}"
        return None

    def submit(self, name: str, shape: str, size: int) -> None:
        echo = {"name": "echo", "container": {"image": WORKER_IMAGE, "command": ["true"]}}
        tasks: list[dict[str, Any]]
        if shape == "chain":
            tasks = [{"name": "s0", "template": "echo"}]
            tasks += [{"name": f"s{i}", "template": "echo", "dependencies": [f"s{i - 1}"]} for i in range(1, size)]
        elif shape in ("fanout", "fork") and size <= self.EXPLICIT_DEPENDENCIES_MAX:
            tasks = [{"name": f"b{i}", "template": "echo"} for i in range(size)]
            tasks.append({"name": figures.JOIN_STEP, "template": "echo",
                          "dependencies": [f"b{i}" for i in range(size)]})
        elif shape in ("fanout", "fork"):
            tasks = [{"name": "b", "template": "echo", "withSequence": {"count": str(size)}},
                     {"name": figures.JOIN_STEP, "template": "echo", "dependencies": ["b"]}]
        else:
            tasks = []
        templates: list[dict[str, Any]] = [echo]
        if tasks:
            templates.append({"name": "main", "dag": {"tasks": tasks}})
        assert self.workflows_path is not None
        self.post(self.workflows_path, {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name},
            "spec": {"entrypoint": "main" if tasks else "echo", "templates": templates}})


class ArgoTuned(Argo):
    key = "argo_tuned"
    tuned = True


SYSTEM_CLASSES: dict[str, type[System]] = {
    "floor": Floor, "floor_jobs": FloorJobs, "kondukt": Kondukt, "argo_stock": Argo, "argo_tuned": ArgoTuned}


# --------------------------------------------------------------------------------------- workloads
class Run:
    """One system on its own control plane: the workloads in order, each measured the same way."""

    def __init__(self, system: System, cp: ControlPlane, recorder: Recorder, sizes: dict[str, int],
                 quick: bool, profile: Path | None = None, only: frozenset[str] | None = None) -> None:
        self.system, self.cp, self.recorder, self.sizes, self.quick = system, cp, recorder, sizes, quick
        self.profile, self.only = profile, only
        self.results: dict[str, object] = {f"size_{k}": v for k, v in sizes.items()}

    def control_plane_pgids(self) -> set[int]:
        return {pid for name, pid in self.cp.pids.items() if name != "kwok"}

    def snapshot(self) -> tuple[Counter[figures.RequestKey], float, float]:
        status, text = self.cp.api("GET", "/metrics", timeout=120)
        if status != 200 or not isinstance(text, str):
            raise RuntimeError(f"the API server's /metrics: HTTP {status}")
        controller = cpu_seconds({self.system.pgid}) if self.system.pgid else 0.0
        return figures.parse_request_totals(text), controller, cpu_seconds(self.control_plane_pgids())

    def timeout(self, pods: int, steps: int = 1) -> float:
        requeue = 0 if isinstance(self.system, ArgoTuned) or not isinstance(self.system, Argo) else 12
        return 120 + pods * 0.6 + steps * (1 + requeue)

    @contextlib.contextmanager
    def measured(self, prefix: str, workflows: int) -> Iterator[None]:
        before = self.snapshot()
        yield
        time.sleep(SETTLE_SECONDS)
        after = self.snapshot()
        found = figures.request_figures(before[0], after[0], workflows)
        found["controller_cpu_s"] = round(after[1] - before[1], 2) if self.system.pgid else None
        found["cpu_s_per_workflow"] = round((after[1] - before[1]) / workflows, 4) if self.system.pgid else None
        found["control_plane_cpu_s"] = round(after[2] - before[2], 2)
        self.results.update({f"{prefix}{k}": v for k, v in found.items()})

    def warm_up(self) -> None:
        self.system.submit("warmup", "one", 1)
        self.recorder.wait_done(["warmup"], 300)

    def chain(self) -> None:
        steps, repeats = self.sizes["chain_steps"], self.sizes["chain_repeats"]
        if self.system.repeats_cap is not None:
            repeats = min(repeats, self.system.repeats_cap)
        names = [f"chain-{r}" for r in range(repeats)]
        with self.measured("chain_", repeats):
            for name in names:
                self.system.submit(name, "chain", steps)
                self.recorder.wait_done([name], self.timeout(steps, steps))
        self.results.update(figures.chain_figures({n: self.recorder.pods_of(n) for n in names}, steps))

    def fanout(self, label: str, shape: str = "fanout") -> None:
        size = self.sizes[label]
        name = f"{shape}-{size}"
        prefix = f"{label}_" if shape == "fanout" else "fork_"
        profiling = self.profile is not None and label in ("fanout_large", "fork") and isinstance(self.system, Kondukt)
        with self.measured(prefix, 1), contextlib.ExitStack() as stack:
            if profiling and self.profile is not None:
                stack.enter_context(profiled(self.system, self.profile if label == "fanout_large" else
                                             self.profile.with_name(self.profile.name.replace("fanout", label))))
            created = time.monotonic()
            self.system.submit(name, shape, size)
            self.recorder.wait_done([name], self.timeout(size + 1, 2))
        self.results.update({f"{prefix}{k}": v for k, v in
                             figures.fanout_figures(self.recorder.pods_of(name), created,
                                                    self.recorder.done[name]).items()})
        size_bytes = self.system.object_bytes(name)
        self.results[f"{prefix}object_kib"] = round(size_bytes / 1024, 1) if size_bytes else None

    def fork(self) -> None:
        """The dynamic fork: the fan-out's figures, plus what its size costs — the controller's RSS sampled
        while it runs (with how many branches were active then), API requests per branch, and for Kondukt the
        values its payload storage holds."""
        size = self.sizes["fork"]
        sampler = RssSampler(self.system.pgid, self.recorder, f"fork-{size}")
        try:
            with sampler:
                self.fanout("fork", shape="fork")
        finally:  # also when it failed or was stopped: how far it got
            pods = self.recorder.pods_of(f"fork-{size}")
            self.results["fork_branches_seen"] = sum(1 for r in pods if r.step != figures.JOIN_STEP)
            self.results["fork_branches_succeeded"] = sum(1 for r in pods if r.step != figures.JOIN_STEP
                                                          and r.succeeded is not None)
            self.results["fork_rss_mib"] = sampler.peak_mib
            self.results["fork_rss_active_branches"] = sampler.active_at_peak
            self.results["fork_rss_at_most_active_mib"] = sampler.mib_at_most_active
            self.results["fork_most_active_sampled"] = sampler.most_active
            if "fork_object_kib" not in self.results:
                with contextlib.suppress(Exception):
                    size_bytes = self.system.object_bytes(f"fork-{size}")
                    self.results["fork_object_kib"] = round(size_bytes / 1024, 1) if size_bytes else None
        self.results["fork_max_active_branches"] = figures.max_active(self.recorder.pods_of(f"fork-{size}"))
        total = self.results.get("fork_api_total")
        self.results["fork_api_total_per_branch"] = round(total / size, 2) if isinstance(total, int) else None
        operator = getattr(self.system, "operator", None)
        if isinstance(operator, Operator):  # its own account of the reconciles (since its start: the warm-up too)
            with contextlib.suppress(Exception):
                metrics = operator.metrics()
                name = "kondukt_reconcile_duration_seconds"
                self.results["fork_reconciles"] = int(sum(v for k, v in metrics.items()
                                                          if k.startswith(f"{name}_count")))
                self.results["fork_reconcile_s_total"] = round(sum(v for k, v in metrics.items()
                                                                   if k.startswith(f"{name}_sum")), 1)
                ok = {k.replace('{result="ok"}', "").replace(',result="ok"', "").replace('result="ok",', ""): v
                      for k, v in metrics.items() if k.startswith(name) and 'result="ok"' in k}
                p95 = histogram_quantile(ok, name, 0.95)
                self.results["fork_reconcile_p95_s"] = round(p95, 2) if p95 is not None else None
                self.results["fork_status_bytes_last"] = metrics.get("kondukt_status_bytes")
                self.results["fork_operator_requests"] = {
                    k.split('method="')[1].split('"')[0]: int(v) for k, v in metrics.items()
                    if k.startswith("kondukt_api_request_duration_seconds_count{")}
        payloads = getattr(self.system, "payloads", None)
        if isinstance(payloads, PayloadStore):
            objects, stored = payloads.stored()
            self.results["fork_payload_objects"] = objects
            self.results["fork_payload_kib"] = round(stored / 1024, 1)

    def throughput(self, label: str) -> None:
        size = self.sizes[label]
        names = [f"one-{size}-{i}" for i in range(size)]
        created: dict[str, float] = {}

        def submit(name: str) -> None:
            created[name] = time.monotonic()
            self.system.submit(name, "one", 1)

        prefix = "" if label == "throughput_small" else "throughput_large_"
        with self.measured(prefix, size), ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            list(pool.map(submit, names))
            self.recorder.wait_done(names, self.timeout(size))
        found = figures.throughput_figures(created, {n: self.recorder.done[n] for n in names})
        self.results.update({f"{prefix}{k}": v for k, v in found.items()})

    def workloads(self) -> list[tuple[str, Callable[[], None]]]:
        return [("chain", self.chain),
                ("fanout_small", lambda: self.fanout("fanout_small")),
                ("fanout_large", lambda: self.fanout("fanout_large")),
                ("throughput_small", lambda: self.throughput("throughput_small")),
                ("throughput_large", lambda: self.throughput("throughput_large")),
                ("fork", self.fork)]

    def run(self) -> dict[str, object]:
        self.warm_up()
        errors: dict[str, str] = {}
        for name, workload in self.workloads():
            if self.only is not None and name not in self.only:
                continue
            if name in self.system.skip:
                self.results[f"{name}_skipped"] = self.system.skip[name]
                continue
            print(f"   {self.system.key}: {name} ...", flush=True)
            started = time.monotonic()
            try:
                workload()
            except Exception as error:  # one workload failing is a figure too; the others still run
                errors[name] = f"{type(error).__name__}: {error}"
                print(f"   {self.system.key}: {name} FAILED: {errors[name]}", flush=True)
            self.results[f"{name}_wall_s"] = round(time.monotonic() - started, 1)
        if errors:
            self.results["error"] = errors
        self.results["rss_mib"] = peak_rss_mib({self.system.pgid}) if self.system.pgid else None
        if isinstance(self.system, Kondukt):
            self.results["operator_counters"] = self.system.counters()
        # The keys other tools read (issue 12): join latency of the larger fan-out; per-workflow CPU and
        # workflows per minute of the smaller one-task batch.
        self.results["join_ms"] = self.results.get("fanout_large_join_ms")
        self.results.setdefault("cpu_s_per_workflow", None)
        return self.results


def run_system(key: str, quick: bool, scratch: Path, sizes: dict[str, int] | None = None,
               profile: Path | None = None, only: frozenset[str] | None = None) -> dict[str, object]:
    """One system on a fresh control plane in ``scratch``/key: every workload, its figures (and "error")."""
    system = SYSTEM_CLASSES[key]()
    sizes = sizes or sizes_for(quick)
    if key == "argo_stock":
        # Stock Argo requeues every 10 s and its client is limited to 20 requests/s: one chain (not three),
        # and no 10,000-branch fork (over 17 minutes of pod creates and label patches at 20/s alone).
        system.repeats_cap = 1
        if sizes["fork"] > 1000:
            system.skip["fork"] = "not run: at 20 requests/s its client needs over 17 minutes for it"
    if key == "floor_jobs" and sizes["fork"] > 1000:
        system.skip["fork"] = "not run (time): the bare-pod floor stands for it"
    workdir = scratch / key
    version = system.version()  # before the run: the code that runs is the code checked out now
    load_before = os.getloadavg()
    started = time.monotonic()
    cp = start_control_plane(workdir, with_argo=key.startswith("argo"))
    results: dict[str, object] = {}
    try:
        namespace_for(cp, system.namespace)
        system.start(cp, workdir)
        recorder = Recorder(system)
        system.attach(recorder)
        with contextlib.ExitStack() as stack:
            stack.enter_context(watch(cp, f"/api/v1/namespaces/{system.namespace}/pods", recorder.pod_event))
            if system.workflows_path is not None:
                stack.enter_context(watch(cp, system.workflows_path, recorder.workflow_event))
            results = Run(system, cp, recorder, sizes, quick, profile, only).run()
    except Exception as error:
        traceback.print_exc()
        results["error"] = f"{type(error).__name__}: {error}"
    finally:
        system.stop()
        cp.stop()
    results["version"] = version
    results["load_before"] = [round(v, 2) for v in load_before]
    results["load_after"] = [round(v, 2) for v in os.getloadavg()]
    results["system_wall_s"] = round(time.monotonic() - started, 1)
    return results


# ------------------------------------------------------------------------------------------ main
def machine() -> dict[str, object]:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    return {"hostname": platform.node(), "cpus": os.cpu_count(), "cpu_model": cpu, "python": sys.version.split()[0],
            "platform": platform.platform(), "load_at_start": [round(v, 2) for v in os.getloadavg()]}


def versions() -> dict[str, str]:
    def key(script: Path) -> str:
        return subprocess.run(["bash", str(script), "--key"], capture_output=True, text=True,
                              check=False).stdout.strip()
    return {"control_plane": key(BUILD_SCRIPT), "argo": key(ARGO_BUILD)}


def run(quick: bool = False, systems: tuple[str, ...] = ALL_SYSTEMS, command: str | None = None,
        profile: bool = False, only: frozenset[str] | None = None,
        sizes: dict[str, int] | None = None) -> dict[str, object]:
    """Every system in turn, {system: figures}; also written to bench/results/peers-<UTC>.{json,md}. The entry
    point of ``python -m bench`` (all benchmarks) as well as of ``python -m bench peers``."""
    results: dict[str, object] = {}
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = REPO / "bench" / "results" / f"peers-{stamp}-kondukt-fanout.pyspy" if profile else None
    with tempfile.TemporaryDirectory(prefix="kondukt-peers-") as scratch:
        for key in systems:
            print(f"== peers: {key}", flush=True)
            results[key] = run_system(key, quick, Path(scratch), sizes=sizes, profile=out, only=only)
            print(json.dumps(results[key], default=str), flush=True)
    command = command or f"python -m bench peers{' --quick' if quick else ''}"
    markdown = write_results(results, command, quick, REPO / "bench" / "results", sizes or sizes_for(quick))
    print(markdown.read_text())
    print(f"results written to {markdown} (and {markdown.with_suffix('.json').name})", flush=True)
    return results


def write_results(results: dict[str, object], command: str, quick: bool, out_dir: Path,
                  sizes: dict[str, int]) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    meta = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "command": command, "quick": quick,
            "machine": machine(), "versions": versions(), "sizes": sizes}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"peers-{stamp}.json").write_text(json.dumps({**results, "meta": meta}, indent=2, default=str) + "\n")
    systems = {k: v for k, v in results.items() if isinstance(v, dict)}
    lines = [f"# Peers benchmark {meta['when']}{' (--quick)' if quick else ''}", "",
             f"Command: `{command}`", "",
             "Machine: " + ", ".join(f"{k}={v}" for k, v in meta["machine"].items()),  # type: ignore[attr-defined]
             "", "Versions: " + ", ".join(f"{k}={v}" for k, v in meta["versions"].items()) + ", "
             + ", ".join(f"{k}: {v.get('version')}" for k, v in systems.items() if v.get("version")), "",
             "Load average (1/5/15 min) before → after each system: "
             + "; ".join(f"{k} {v.get('load_before')} → {v.get('load_after')}" for k, v in systems.items()), "",
             figures.markdown_table(systems), ""]
    for key, found in systems.items():
        lines += [f"## {key}", "", "| figure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in found.items()]
        lines.append("")
    markdown = out_dir / f"peers-{stamp}.md"
    markdown.write_text("\n".join(lines))
    return markdown


def combine(files: list[Path], out_dir: Path) -> Path:
    """One table from several result files (``peers-*.json`` or ``--json`` output; a later file's system
    replaces an earlier one's), each source's command and load listed: for runs made one system at a time."""
    systems: dict[str, dict[str, object]] = {}
    sources = []
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise SystemExit(f"--table {path}: not a readable JSON result file ({error})") from None
        found = {k: v for k, v in data.items() if k in SYSTEM_CLASSES and isinstance(v, dict)}
        if not found:
            raise SystemExit(f"--table {path}: no system's figures in it (expected keys like {', '.join(ALL_SYSTEMS)})")
        systems.update(found)
        meta = data.get("meta") or {}
        sources.append(f"- `{path.name}`: {', '.join(found)}; command `{meta.get('command', '?')}`"
                       + (f"; {meta['note']}" if meta.get("note") else "")
                       + "; load " + ", ".join(f"{k} {v.get('load_before')} → {v.get('load_after')}"
                                               for k, v in found.items()))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    markdown = out_dir / f"peers-{stamp}-combined.md"
    markdown.write_text("\n".join([f"# Peers benchmark, combined {stamp}", "", *sources, "",
                                    figures.markdown_table(systems)]))
    return markdown


class Stopped(Exception):
    """SIGTERM (e.g. ``timeout`` ending a run at the end of a quiet window): the workload running ends as failed
    with this, the control plane is stopped and the figures gathered so far are written."""


def _stop_on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Stopped(f"stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    parser = argparse.ArgumentParser(prog="python -m bench peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (under 10 minutes)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write {system: figures} to FILE")
    parser.add_argument("--profile", action="store_true",
                        help="sample Kondukt's operator with py-spy (if on PATH) during the larger fan-out and the fork")
    parser.add_argument("--size", action="append", default=[], metavar="NAME=N",
                        help="override one size, e.g. fork=2000 (names: chain_steps, chain_repeats, fanout_small, "
                             "fanout_large, throughput_small, throughput_large, fork)")
    parser.add_argument("--workloads", help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)")
    parser.add_argument("--table", nargs="+", type=Path, metavar="FILE",
                        help="run nothing: one table from these result files, to bench/results/peers-*-combined.md")
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS),
                        help=f"comma-separated, in order (default: {','.join(ALL_SYSTEMS)})")
    args = parser.parse_args(argv)
    if args.table:
        markdown = combine(args.table, REPO / "bench" / "results")
        print(markdown.read_text())
        return 0
    systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
    unknown = [s for s in systems if s not in SYSTEM_CLASSES]
    if unknown or not systems:
        parser.error(f"unknown system(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(ALL_SYSTEMS)}")
    only = None
    if args.workloads:
        only = frozenset(w.strip() for w in args.workloads.split(",") if w.strip())
        if only - set(WORKLOADS) or not only:
            parser.error(f"unknown workload(s) {', '.join(sorted(only - set(WORKLOADS))) or '(none given)'}; "
                         f"known: {', '.join(WORKLOADS)}")
    sizes = sizes_for(args.quick)
    for item in args.size:
        name, _, value = item.partition("=")
        if name not in sizes or not value.isdigit() or int(value) < 1:
            parser.error(f"--size {item}: expected NAME=N with N >= 1 and NAME one of {', '.join(sizes)}")
        sizes[name] = int(value)
    command = " ".join(["python", "-m", "bench", "peers", *(argv if argv is not None else sys.argv[1:])])
    results = run(quick=args.quick, systems=systems, command=command, profile=args.profile, only=only,
                  sizes=sizes)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"and to {args.json}")
    return 1 if any(isinstance(v, dict) and "error" in v for v in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
