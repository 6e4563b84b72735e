"""Soak: a steady stream of one-task workflows through sharded operator replicas, for many minutes.

``python -m bench soak`` (``--minutes``, ``--rate``, ``--replicas``, ``--shards`` for other shapes): 1,000 one-task
Workflows a minute for 15 minutes, offered at a fixed pace by an open-loop generator (``bench/loadgen.py``: a
ticker, a bounded queue, 64 workers on kept-alive connections; what was offered, dropped because the queue was
full, accepted and refused is reported per minute — a slow API server shows as drops, never as a quietly
lower rate), on the e2e control plane
with kwok's fake nodes (the Job controller and scheduler with a busy cluster's client limits, as in
``bench_operator``; kube-apiserver's ``--event-ttl`` at 5 minutes, so Events plateau within the run). Two
``kondukt operator --lease soak --shards 4`` processes share the work. When the operator has them (``--ttl-after-*``
and ``--archive``: issue 10's retention and archive), every finished Workflow is archived in a throwaway
PostgreSQL server (``tests/postgres.py``) and deleted 60 s after it ends; without them the run says so.

Measured from outside, as a user would: a watch on Workflows timestamps each one's COMPLETED on arrival
(monotonic clock) against the moment its create was sent — the end-to-end latency; completions are counted per
minute of the run. Every 15 s: each replica's CPU (``/proc/<pid>/stat``, the process and its children, as a
share of one core) and resident memory, etcd's keys (all, and Workflows, Jobs, pods, Events, Leases: counted by
etcd, ``etcd_objects``), the control plane's processes' CPU, and the archive's rows. After the load: a drain
(bounded), lost workflows (created, never seen ending by the watch, not in the archive, and not in the cluster any
more), archive rows against workflows created (every uid exactly once: the uid is the table's key, so the check
is "rows == created" and "every created uid present"; and no name twice). An overloaded API server closes slow
watchers, so the watch can miss completions: the archive's rows (finish time, Kubernetes' 1 s timestamps) give
completions per minute and the latency too.

Then the largest rate one replica sustains: a single replica (a fresh namespace, same control plane) is given
60 s steps of increasing rates (half the soak's rate to twice it: 500 to 2,000 a minute for 1,000; it stops at the first step not sustained, or when the next
step and its 60 s to finish would end past the run's time budget, ``WINDOW_SECONDS`` from the start, so that a
15-minute soak and its ramp fit a 25-minute quiet window; the report says which); a step is
sustained when every offer was accepted, its workflows all complete within 60 s after the step and their p95
latency stays under 30 s. The machine's load average is recorded before and after and in every sample (the
machine is shared: the figures are for that load).

The scratch directory (etcd's data, in /dev/shm) goes on every way out, SIGTERM and SIGHUP included, and a run
first removes what an earlier SIGKILLed one left (``bench/scratch.py``); the operators die with this process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.controlplane import (  # noqa: E402
    ControlPlane,
    _set_pdeathsig,
    bin_dir,
    check_binaries,
    free_port,
    kondukt_crds,
)

from bench.bench_operator import (  # noqa: E402
    RAISED_LIMITS,
    echo_taskdef,
    inline_workflow,
    kubectl_apply,
    namespace_for,
    percentile,
    watching,
)
from bench.bench_peers import summarize_profile  # noqa: E402
from bench.bench_profile import CONTROL_PLANE, apiserver_requests, cpu_seconds  # noqa: E402
from bench.loadgen import Connection, run_open_loop  # noqa: E402
from bench.scratch import scratch_directory  # noqa: E402

SAMPLE_SECONDS = 15.0
TTL_SECONDS = 60
EVENT_TTL = "5m"
#: The single replica's steps, as shares of the soak's rate.
RAMP_FACTORS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
RAMP_STEP_SECONDS = 60.0
#: The single-replica steps start no later than this after the ramp began (a step: 60 s + up to 60 s to finish).
RAMP_BUDGET_SECONDS = 360.0
#: The whole run (control plane, soak, drain, ramp) ends within this, or the load's time + 10 minutes when that is
#: shorter; a quiet window is 25 minutes.
WINDOW_SECONDS = 23 * 60.0
#: The load generator: workers sending creates, and how many seconds of offers its queue holds.
LOAD_WORKERS = 64
QUEUE_SECONDS = 5.0
#: After the soak's load: how long at most for the backlog to complete.
DRAIN_SECONDS = 300.0
#: py-spy (if found) samples one replica for this long, from PROFILE_AFTER_SECONDS (a third of a shorter load) into
#: the load.
PROFILE_SECONDS = 60
PROFILE_AFTER_SECONDS = 300.0


class SoakControlPlane(ControlPlane):
    """The benchmark's control plane, with Events kept 5 minutes (the API server's default is an hour)."""

    def _spawn(self, name: str, args: Any) -> None:
        extra = list(RAISED_LIMITS.get(name, []))
        if name == "kube-apiserver":
            extra.append(f"--event-ttl={EVENT_TTL}")
        super()._spawn(name, [*args, *extra])


def operator_help() -> str:
    script = Path(sys.executable).with_name("kondukt")
    program = [str(script)] if script.exists() else [sys.executable, "-m", "kondukt.cli"]
    return subprocess.run([*program, "operator", "--help"], capture_output=True, text=True, check=False,
                          cwd=REPO).stdout


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------------------------- replicas
class Replica:
    """One ``kondukt operator`` process of the soak (its own process group)."""

    def __init__(self, cp: ControlPlane, namespace: str, log: Path, name: str, extra: list[str],
                 env: dict[str, str]) -> None:
        self.name = name
        self.metrics_port = free_port()
        script = Path(sys.executable).with_name("kondukt")
        program = [str(script)] if script.exists() else [sys.executable, "-m", "kondukt.cli"]
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [*program, "operator", "-n", namespace, "--kubeconfig", str(cp.kubeconfig),
             "--metrics-port", str(self.metrics_port), "--metrics-address", "127.0.0.1", "--log-level", "WARNING",
             "--workers", "32", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
            env={**os.environ, **env, "POD_ID": name},
            preexec_fn=_set_pdeathsig,  # a SIGKILLed benchmark leaves no operator behind
        )
        self._cpu: tuple[float, float] | None = None

    def _pids(self) -> list[int]:
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(p) for p in (task / "children").read_text().split()]
        return found

    def rss_mib(self) -> float:
        total = 0
        for pid in self._pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return round(total / 1024, 1)

    def cpu_seconds(self) -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self._pids():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return total

    def cpu_share(self) -> float | None:
        """CPU used since the last call, as a share of one core (1.0 = one core busy)."""
        now, used = time.monotonic(), self.cpu_seconds()
        previous, self._cpu = self._cpu, (now, used)
        if previous is None or now <= previous[0]:
            return None
        return round((used - previous[1]) / (now - previous[0]), 3)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        self.log.close()


# ----------------------------------------------------------------------------------------------- figures
#: Key prefixes counted in etcd, by the name the report gives them ("all": every key the API server stores).
ETCD_PREFIXES = {"all": "/registry/", "workflows": "/registry/kondukt.io/workflows/", "jobs": "/registry/jobs/",
                 "pods": "/registry/pods/", "events": "/registry/events/", "leases": "/registry/leases/"}


def etcd_objects(cp: ControlPlane) -> dict[str, int]:
    """etcd's keys under each of ETCD_PREFIXES, counted by etcd itself (a count-only range read on its loopback
    JSON gateway). The API server's ``apiserver_resource_objects`` gauge is refreshed about once a minute and
    reads -1 or leaves resources out when its own count times out on a busy server: useless for a plateau."""
    import base64

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    counts = {}
    for name, prefix in ETCD_PREFIXES.items():
        key = prefix.encode()
        range_end = key[:-1] + bytes([key[-1] + 1])  # every key with this prefix
        answer = cp.etcd("kv/range", {"key": b64(key), "range_end": b64(range_end), "count_only": True})
        counts[name] = int(answer.get("count", 0))
    return counts


def list_phases(cp: ControlPlane, path: str) -> tuple[dict[str, str], str | None]:
    """Every object's name -> status.phase under ``path``, read in pages of 500 (one list of ~10,000 Workflows
    timed out on a saturated API server); (what was read, the error that stopped it or None)."""
    phases: dict[str, str] = {}
    token = ""
    for _ in range(10_000):
        query = f"?limit=500&continue={token}" if token else "?limit=500"
        try:
            status, listed = cp.api("GET", path + query, timeout=120)
        except OSError as error:
            return phases, f"{type(error).__name__}: {error}"
        if status != 200 or not isinstance(listed, dict):
            return phases, f"HTTP {status}: {str(listed)[:200]}"
        for item in listed.get("items") or []:
            phases[str(item["metadata"]["name"])] = str((item.get("status") or {}).get("phase") or "")
        token = str((listed.get("metadata") or {}).get("continue") or "")
        if not token:
            return phases, None
    return phases, "more than 10,000 pages"


class Stream:
    """Creates one-task Workflows at an even pace and records when each was sent and seen COMPLETED."""

    def __init__(self, cp: ControlPlane, namespace: str, prefix: str) -> None:
        self.cp, self.namespace, self.prefix = cp, namespace, prefix
        self.path = f"/apis/kondukt.io/v1alpha1/namespaces/{namespace}/workflows"
        self.sent: dict[str, float] = {}
        self.uids: dict[str, str] = {}
        self.completed: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.create_errors: list[str] = []
        self.lock = threading.Lock()

    def on_workflow(self, event: dict[str, Any], arrival: float) -> None:
        workflow = event.get("object") or {}
        meta = workflow.get("metadata") or {}
        name = str(meta.get("name"))
        if not name.startswith(self.prefix):
            return
        phase = (workflow.get("status") or {}).get("phase")
        with self.lock:
            if phase == "COMPLETED":
                self.completed.setdefault(name, arrival)
            elif phase in ("FAILED", "TIMED_OUT", "TERMINATED"):
                self.failed.setdefault(name, phase)

    def create(self, connection: Connection, index: int) -> tuple[int, Any]:
        name = f"{self.prefix}{index:06d}"
        document = inline_workflow(name, [{"name": "echo", "taskReferenceName": "only", "inputParameters": {"i": index}}])
        with self.lock:
            self.sent[name] = time.monotonic()
        status, body = connection.request("POST", self.path, document)
        with self.lock:
            if status == 201:
                self.uids[name] = str(body["metadata"]["uid"])
            else:
                self.create_errors.append(f"{name}: HTTP {status}")
        return status, body

    def run(self, rate_per_minute: float, seconds: float) -> dict[str, object]:
        """Offer ``rate_per_minute`` creates a minute for ``seconds`` (open loop, ``bench/loadgen.py``); returns
        what was offered, dropped, accepted and refused."""
        report = run_open_loop(self.cp, self.create, rate_per_minute=rate_per_minute, seconds=seconds,
                               workers=LOAD_WORKERS, queue_seconds=QUEUE_SECONDS)
        return report.figures()

    def latencies(self) -> list[float]:
        with self.lock:
            return [self.completed[n] - self.sent[n] for n in self.completed if n in self.sent]


# ------------------------------------------------------------------------------------------------- runs
def soak(cp: ControlPlane, scratch: Path, *, minutes: float, rate: float, replicas: int, shards: int,
         ttl: bool, archive_dsn: str | None, deadline: float | None = None) -> dict[str, object]:
    namespace = namespace_for(cp, "soak")
    kubectl_apply(cp, namespace, echo_taskdef())
    extra = ["--lease", "soak", "--lease-namespace", namespace, "--shards", str(shards)]
    if ttl:
        extra += ["--ttl-after-completion", str(TTL_SECONDS)]
    env: dict[str, str] = {}
    if archive_dsn is not None:
        extra.append("--archive")
        env["KONDUKT_ARCHIVE_DSN"] = archive_dsn
    operators = [Replica(cp, namespace, scratch / f"soak-{i}.log", f"soak-{i}", extra, env) for i in range(replicas)]
    stream = Stream(cp, namespace, "soak-")
    samples: list[dict[str, object]] = []
    stop = threading.Event()
    began = time.monotonic()
    components = {name: cp.pids[name] for name in CONTROL_PLANE if name in cp.pids}
    component_cpu = {name: cpu_seconds(pid) for name, pid in components.items()}
    component_at = time.monotonic()
    profile: dict[str, object] = {}

    def control_plane_cpu() -> dict[str, float]:
        """Each control-plane process's CPU since the last call, as a share of one core."""
        nonlocal component_at
        now = time.monotonic()
        shares = {}
        for name, pid in components.items():
            used = cpu_seconds(pid)
            shares[name] = round((used - component_cpu[name]) / max(now - component_at, 1e-6), 3)
            component_cpu[name] = used
        component_at = now
        return shares

    def profile_one_replica() -> None:
        """py-spy on the first replica for PROFILE_SECONDS, PROFILE_AFTER_SECONDS into the load."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not os.access(spy, os.X_OK):
            profile["operator_profile"] = "not taken: no py-spy on PATH or next to this Python"
            return
        if stop.wait(min(PROFILE_AFTER_SECONDS, minutes * 60 / 3)):
            return
        out = scratch / "soak-0.pyspy"
        done = subprocess.run([spy, "record", "--pid", str(operators[0].proc.pid), "--subprocesses", "--rate", "50",
                               "--duration", str(PROFILE_SECONDS), "--format", "raw", "--output", str(out),
                               "--nonblocking"], capture_output=True, text=True, check=False,
                              timeout=PROFILE_SECONDS + 60)
        if done.returncode != 0 or not out.exists():
            profile["operator_profile"] = f"py-spy failed ({done.returncode}): {done.stderr.strip()[-300:]}"
            return
        collapsed = out.read_text()
        kept = REPO / "bench" / "results" / f"soak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-operator.pyspy"
        kept.write_text(collapsed)  # the raw stacks stay out of git (.gitignore); their summary goes in
        top = summarize_profile(collapsed, top=30)
        kept.with_name(kept.name + ".top.txt").write_text(top)
        profile["operator_profile"] = str(kept.relative_to(REPO)) + ".top.txt"
        profile["operator_profile_top"] = top.splitlines()[:40]

    def archive_rows() -> int | None:
        if archive_dsn is None:
            return None
        import psycopg

        with contextlib.suppress(Exception), psycopg.connect(archive_dsn, connect_timeout=10) as connection:
            row = connection.execute("SELECT count(*) FROM kondukt_archived_workflows").fetchone()
            return int(row[0]) if row else 0
        return None

    def sample() -> None:
        for operator in operators:
            operator.cpu_share()
        while not stop.wait(SAMPLE_SECONDS):
            try:
                objects = etcd_objects(cp)
            except Exception as err:  # a loaded etcd: this sample has no object count, the next may
                objects = {"all": -1}
                print(f"   soak: etcd's keys were not counted: {err}", flush=True)
            with stream.lock:
                sent, accepted, done = len(stream.sent), len(stream.uids), len(stream.completed)
            samples.append({
                "t_s": round(time.monotonic() - began, 1),
                "sent": sent, "accepted": accepted, "completed": done,
                "cpu_cores": [o.cpu_share() for o in operators],
                "rss_mib": [o.rss_mib() for o in operators],
                "etcd_objects": objects["all"],
                "etcd_by_resource": {k: v for k, v in objects.items() if k != "all"},
                "archive_rows": archive_rows(),
                "control_plane_cpu_cores": control_plane_cpu(),
                "load": load_average(),
            })
            print(f"   soak t={samples[-1]['t_s']}s sent={sent} accepted={accepted} completed={done} "
                  f"cpu={samples[-1]['cpu_cores']} "
                  f"rss={samples[-1]['rss_mib']} etcd={samples[-1]['etcd_objects']} "
                  f"archive={samples[-1]['archive_rows']} cp={samples[-1]['control_plane_cpu_cores']} "
                  f"load={samples[-1]['load']}", flush=True)

    sampler = threading.Thread(target=sample, daemon=True)
    profiler = threading.Thread(target=profile_one_replica, daemon=True)
    try:
        time.sleep(10)  # the replicas elect their shards
        with watching(cp, stream.path, stream.on_workflow):
            sampler.start()
            requests_before = apiserver_requests(cp)
            load_began, load_began_wall = time.monotonic(), time.time()
            profiler.start()
            offered = stream.run(rate, minutes * 60)
            load_ended = time.monotonic()
            requests_after = apiserver_requests(cp)
            drain_deadline = time.monotonic() + DRAIN_SECONDS
            if deadline is not None:  # leave the TTL's wait and the ramp's first step some of the budget
                drain_deadline = min(drain_deadline, max(time.monotonic() + 60, deadline - 330))
            while time.monotonic() < drain_deadline:
                with stream.lock:
                    pending = set(stream.uids) - set(stream.completed) - set(stream.failed)
                    accepted = len(stream.uids)
                # The watch can miss events (an overloaded API server closes slow watchers): the archive counts.
                if not pending or (archive_dsn is not None and (archive_rows() or 0) >= accepted):
                    break
                time.sleep(2)
            drained = time.monotonic()
            if ttl:  # let the TTL and the archive catch up, for the plateau and the rows
                time.sleep(TTL_SECONDS + SAMPLE_SECONDS)
            stop.set()
            sampler.join(timeout=60)
            profiler.join(timeout=PROFILE_SECONDS + 90)
        still_there, listing_error = list_phases(cp, stream.path)
        rows_final = archive_rows()
        archived: dict[str, tuple[str, str, float | None, float]] = {}  # uid -> name, phase, created, finished
        if archive_dsn is not None:
            import psycopg

            with psycopg.connect(archive_dsn) as connection:
                archived = {str(r[0]): (str(r[1]), str(r[2]), r[3], float(r[4])) for r in connection.execute(
                    "SELECT uid, name, phase, extract(epoch FROM created_at), extract(epoch FROM finished_at)"
                    " FROM kondukt_archived_workflows WHERE namespace = %s", (namespace,)).fetchall()}
        archived_uids = set(archived)
    finally:
        stop.set()
        for operator in operators:
            operator.stop()

    per_minute: list[int] = []
    for minute in range(int((drained - load_began) // 60) + 1):
        start, end = load_began + minute * 60, load_began + (minute + 1) * 60
        per_minute.append(sum(1 for at in stream.completed.values() if start <= at < end))
    latencies = stream.latencies()
    created = set(stream.uids)
    unfinished = sorted(n for n in created if n not in stream.completed and n not in stream.failed
                        and n in still_there and still_there[n] not in ("COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED"))
    # Lost: created, never seen ending, not archived, and not there any more (nor still running).
    lost = sorted(n for n in created if n not in stream.completed and n not in stream.failed
                  and stream.uids[n] not in archived_uids and n not in still_there) if listing_error is None else []
    # From the archive (every finished workflow, whatever the watch missed; Kubernetes' timestamps: 1 s steps).
    archived_per_minute = [0] * (int((drained - load_began) // 60) + 1)
    for _, _, _, finished in archived.values():
        minute = int((finished - load_began_wall) // 60)
        if 0 <= minute < len(archived_per_minute):
            archived_per_minute[minute] += 1
    archive_latencies = [finished - float(created_at) for _, _, created_at, finished in archived.values()
                         if created_at is not None]
    created_uids = {stream.uids[n] for n in created}
    archived_names = [name for name, _, _, _ in archived.values()]
    third = max(1, len(samples) // 3)
    steady = [s["etcd_objects"] for s in samples if isinstance(s["t_s"], float) and s["etcd_objects"] >= 0  # type: ignore[operator]
              and load_began - began + 300 <= s["t_s"] <= load_ended - began]
    figures: dict[str, object] = {
        "replicas": replicas, "shards": shards, "rate_per_minute": rate, "minutes": minutes,
        "ttl_seconds_after_completion": TTL_SECONDS if ttl else "off (the operator has no --ttl-after-*)",
        "archive": "on (PostgreSQL)" if archive_dsn else "off (the operator has no --archive, or no PostgreSQL)",
        "load_generator": offered,
        "api_requests_during_load": dict(sorted(
            ((k, v - requests_before.get(k, 0)) for k, v in requests_after.items() if v - requests_before.get(k, 0) > 0),
            key=lambda kv: -kv[1])),
        "api_requests_during_load_total": sum(requests_after.values()) - sum(requests_before.values()),
        "workflows_created": len(created), "create_errors": len(stream.create_errors),
        "create_errors_first": stream.create_errors[:5],
        "completed": len(stream.completed), "failed": len(stream.failed),
        "lost": len(lost) if listing_error is None else f"not known: the final listing failed ({listing_error})",
        "lost_names": lost[:20],
        "unfinished_after_drain": len(unfinished),
        "load_seconds": round(load_ended - load_began, 1), "drain_seconds_after_load": round(drained - load_ended, 1),
        "completed_per_minute": per_minute,
        "archived_per_minute_by_finish_time": archived_per_minute,
        "archive_latency_p50_s": round(percentile(archive_latencies, 0.5), 1) if archive_latencies else None,
        "archive_latency_p95_s": round(percentile(archive_latencies, 0.95), 1) if archive_latencies else None,
        "archive_latency_max_s": round(max(archive_latencies), 1) if archive_latencies else None,
        "archived_phases": dict(Counter(phase for _, phase, _, _ in archived.values())),
        "latency_p50_s": round(percentile(latencies, 0.5), 2) if latencies else None,
        "latency_p95_s": round(percentile(latencies, 0.95), 2) if latencies else None,
        "latency_max_s": round(max(latencies), 2) if latencies else None,
        "etcd_objects_first_third_max": max((s["etcd_objects"] for s in samples[:third]), default=None),  # type: ignore[type-var]
        "etcd_objects_last_third_max": max((s["etcd_objects"] for s in samples[-third:]), default=None),  # type: ignore[type-var]
        "etcd_objects_steady_min_max": [min(steady), max(steady)] if steady else None,  # type: ignore[type-var]
        "archive_rows": rows_final,
        "archive_rows_match_created": (rows_final == len(created) and created_uids <= archived_uids)
        if archive_dsn else None,
        "archive_names_twice": len(archived_names) - len(set(archived_names)),
        "archived_not_created_by_this_run": len(archived_uids - created_uids),
        "finished_seen_not_archived": sum(1 for n in stream.completed if n in stream.uids
                                          and stream.uids[n] not in archived_uids) if archive_dsn else None,
        "samples": samples,
        **profile,
    }
    return figures


def ramp(cp: ControlPlane, scratch: Path, rates: tuple[int, ...], step_seconds: float,
         budget_seconds: float = RAMP_BUDGET_SECONDS) -> dict[str, object]:
    """The largest rate one replica sustains (see the module docstring)."""
    namespace = namespace_for(cp, "soak-single")
    kubectl_apply(cp, namespace, echo_taskdef())
    operator = Replica(cp, namespace, scratch / "single.log", "single", ["--standalone"], {})
    steps: list[dict[str, object]] = []
    sustained: int | None = None
    stopped_by = "a step not sustained"
    began = time.monotonic()
    try:
        time.sleep(5)
        for rate in rates:
            if time.monotonic() - began + step_seconds + 60 > budget_seconds:
                stopped_by = f"the time budget ({budget_seconds:.0f} s) before the {rate}/min step"
                break
            stream = Stream(cp, namespace, f"r{rate}-")
            with watching(cp, stream.path, stream.on_workflow):
                operator.cpu_share()
                offered = stream.run(rate, step_seconds)
                cpu = operator.cpu_share()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and len(stream.completed) < len(stream.sent):
                    time.sleep(0.5)
            latencies = stream.latencies()
            p95 = percentile(latencies, 0.95) if latencies else None
            ok = (offered["accepted"] == offered["offered"] and len(stream.completed) == len(stream.sent)
                  and p95 is not None and p95 < 30)
            steps.append({"rate_per_minute": rate, "offered": offered["offered"], "accepted": offered["accepted"],
                          "dropped": offered["dropped_queue_full"], "completed": len(stream.completed),
                          "latency_p50_s": round(percentile(latencies, 0.5), 2) if latencies else None,
                          "latency_p95_s": round(p95, 2) if p95 is not None else None,
                          "cpu_cores": cpu, "rss_mib": operator.rss_mib(), "sustained": ok, "load": load_average()})
            if not ok:
                break
            sustained = rate
        else:
            stopped_by = "the last step"
    finally:
        operator.stop()
    return {"single_replica_largest_sustained_rate_per_minute": sustained,
            "single_replica_ramp_stopped_by": stopped_by, "single_replica_steps": steps}


def run(quick: bool = False, minutes: float | None = None, rate: float | None = None, replicas: int | None = None,
        shards: int | None = None) -> dict[str, object]:
    minutes = minutes if minutes is not None else (2.0 if quick else 15.0)
    rate = rate if rate is not None else (300.0 if quick else 1000.0)
    replicas = replicas if replicas is not None else 2
    shards = shards if shards is not None else 4
    help_text = operator_help()
    ttl = "--ttl-after-completion" in help_text
    results: dict[str, object] = {"load_before": load_average()}
    deadline = time.monotonic() + min(WINDOW_SECONDS, minutes * 60 + 600)
    # etcd's data in memory when the machine has /dev/shm (as the e2e control planes): the soak is about the
    # operator, not about a disk shared with other work.
    with scratch_directory("kondukt-soak-") as scratch:
        postgres: Any = None
        archive_dsn: str | None = None
        if "--archive" in help_text:
            with contextlib.suppress(ImportError):
                from tests.postgres import PostgresServer

                postgres = PostgresServer().start()
                archive_dsn = postgres.create_database("soak")
        cp: ControlPlane | None = None
        try:
            binaries = bin_dir()
            check_binaries(binaries)
            cp = SoakControlPlane(workdir=scratch, binaries=binaries, nodes=3, crds=kondukt_crds())
            cp.start(timeout=180)
            results.update(soak(cp, scratch, minutes=minutes, rate=rate, replicas=replicas, shards=shards, ttl=ttl,
                                archive_dsn=archive_dsn, deadline=None if quick else deadline))
            rates = (150, 300) if quick else tuple(int(rate * f) for f in RAMP_FACTORS)
            budget = 120.0 if quick else max(0.0, min(RAMP_BUDGET_SECONDS, deadline - time.monotonic() - 20))
            results.update(ramp(cp, scratch, rates, 30.0 if quick else RAMP_STEP_SECONDS, budget))
        finally:
            if cp is not None:
                cp.stop()
            if postgres is not None:
                postgres.destroy()
    results["load_after"] = load_average()
    results["machine_note"] = "2 cores shared with other engineers' work: see load_before/load_after and each sample"
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2, default=str))
