"""Shared helpers of the operator's e2e tests (this module holds no tests itself).

Fixtures (import ``operator_fixture`` / ``cluster_fixture`` into a test module to use ``operator`` and
``cluster``): ``operator`` runs ``kondukt operator --standalone --namespace <the test's namespace>`` as a
subprocess against the session's control plane, with its log in the test's tmp_path; it can be killed
(SIGKILL) and restarted. kwok's fake pods stand in for workers: TaskDef templates carry the
``kwok.kondukt.io/*`` annotations that choose each fake outcome (echo the input as output, fail, run
for a while, write a given termination message).

Every wait is bounded (``wait_for``); nothing here asserts on speed.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from kondukt.kube.status import tasks_from_status
from tests.e2e.controlplane import ControlPlane, wait_for

REPO = Path(__file__).resolve().parents[2]
WORKER_IMAGE = "kondukt.test/worker:1"
ECHO = {"kwok.kondukt.io/echo-input": "true"}
TERMINAL_PHASES = frozenset({"COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED"})

__all__ = ["ECHO", "Cluster", "OperatorProcess", "WatchRecorder", "cluster_fixture", "operator_fixture", "taskdef",
           "wait_for"]


class OperatorProcess:
    """``kondukt operator`` in a subprocess (its own process group, so SIGKILL takes all of it)."""

    def __init__(self, control_plane: ControlPlane, namespace: str, log_dir: Path, *extra: str,
                 lease: str | None = None, name: str = "operator", env: Mapping[str, str] | None = None) -> None:
        """``lease``: elect a leader through this Lease (in the test's namespace) instead of ``--standalone``;
        ``env``: added to the operator's environment (e.g. external payload storage)."""
        self.env = dict(env or {})
        self.control_plane = control_plane
        self.namespace = namespace
        self.log_dir = log_dir
        self.extra = extra
        self.name = name
        self.mode = ["--standalone"] if lease is None else ["--lease", lease, "--lease-namespace", namespace]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pod_id(self) -> str:
        """$POD_ID of this replica: its identity in a Lease is this plus ``_<random>``, new for each start."""
        return f"{self.name}-{self.namespace}"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self) -> OperatorProcess:
        self.starts += 1
        script = Path(sys.executable).with_name("kondukt")
        program = [str(script)] if script.exists() else [sys.executable, "-m", "kondukt.cli"]
        command = [
            *program, "operator", *self.mode, "--namespace", self.namespace,
            "--kubeconfig", str(self.control_plane.kubeconfig), "--metrics-port", "0",
            "--definition-grace-seconds", "3", *self.extra,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "POD_ID": self.pod_id}
        env.pop("KONDUKT_PAYLOAD_BUCKET", None)
        env.update(self.env)
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                         start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush — the crash the operator must survive."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"{self.name}-*.log")))


class Cluster:
    """The test's namespace on the control plane, with Kondukt-shaped helpers."""

    def __init__(self, control_plane: ControlPlane, namespace: str, operator: OperatorProcess | None = None) -> None:
        self.cp = control_plane
        self.namespace = namespace
        self.operator = operator

    # ------------------------------------------------------------------------------------- writing
    def apply(self, *documents: Mapping[str, Any]) -> None:
        """kubectl apply, as JSON (a YAML 1.1 reader takes keys such as ``n`` or ``y`` for booleans)."""
        listing = {"apiVersion": "v1", "kind": "List", "items": [dict(d) for d in documents]}
        self.cp.kubectl("-n", self.namespace, "apply", "-f", "-", input=json.dumps(listing))

    def create_expecting_rejection(self, document: Mapping[str, Any]) -> str:
        proc = self.cp.kubectl("-n", self.namespace, "create", "-f", "-", input=json.dumps(dict(document)),
                               check=False)
        assert proc.returncode != 0, f"the API server accepted {document['metadata']['name']}"
        return proc.stderr

    def patch_workflow(self, name: str, patch: Mapping[str, Any]) -> None:
        self.cp.kubectl("-n", self.namespace, "patch", "workflow.kondukt.io", name, "--type=merge",
                        "-p", json.dumps(patch))

    def request_operation(self, name: str, op: str, **fields: Any) -> str:
        nonce = f"{op}-{time.time_ns()}"
        value = json.dumps({"nonce": nonce, **fields})
        self.cp.kubectl("-n", self.namespace, "annotate", "--overwrite", "workflow.kondukt.io", name,
                        f"ops.kondukt.io/{op}={value}")
        return nonce

    # ------------------------------------------------------------------------------------- reading
    def get(self, plural: str, name: str, group: str = "kondukt.io/v1alpha1") -> dict[str, Any] | None:
        prefix = "/api/v1" if group == "v1" else f"/apis/{group}"
        status, body = self.cp.api("GET", f"{prefix}/namespaces/{self.namespace}/{plural}/{name}")
        return body if status == 200 else None

    def list(self, plural: str, group: str = "kondukt.io/v1alpha1", selector: str | None = None) -> list[dict[str, Any]]:
        prefix = "/api/v1" if group == "v1" else f"/apis/{group}"
        query = f"?labelSelector={selector}" if selector else ""
        status, body = self.cp.api("GET", f"{prefix}/namespaces/{self.namespace}/{plural}{query}", timeout=60)
        assert status == 200, body
        return list(body.get("items") or [])

    def workflow(self, name: str) -> dict[str, Any]:
        found = self.get("workflows", name)
        assert found is not None, f"workflow {name} not found"
        return found

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.workflow(name).get("status") or {})

    def tasks(self, name: str) -> list[dict[str, Any]]:
        return tasks_from_status(self.status(name))

    def jobs(self) -> list[dict[str, Any]]:
        return self.list("jobs", "batch/v1")

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.list("events", "v1") if e.get("involvedObject", {}).get("name") == name]

    # ------------------------------------------------------------------------------------- waiting
    def wait_phase(self, name: str, phases: set[str] | frozenset[str] = TERMINAL_PHASES,
                   timeout: float = 90) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            status = self.status(name) if self.get("workflows", name) else {}
            return status if status.get("phase") in phases else None

        try:
            return wait_for(probe, f"workflow {name} to reach {sorted(phases)}", timeout=timeout, interval=0.25)
        except AssertionError as err:
            raise AssertionError(f"{err}\nstatus: {json.dumps(self.status(name))[:3000]}\n"
                                 f"operator log tail:\n{self.operator_log_tail()}") from None

    def wait_until(self, probe: Callable[[], Any], what: str, timeout: float = 60) -> Any:
        try:
            return wait_for(probe, what, timeout=timeout, interval=0.25)
        except AssertionError as err:
            raise AssertionError(f"{err}\noperator log tail:\n{self.operator_log_tail()}") from None

    def operator_log_tail(self, lines: int = 40) -> str:
        if self.operator is None:
            return ""
        return "\n".join(self.operator.logs().splitlines()[-lines:])


class WatchRecorder:
    """Every watch event of one resource in the test's namespace, from a resourceVersion taken at ``start()``.

    A test that must see a short-lived state (a Workflow COMPLETED, then deleted by a one-second TTL) cannot
    poll for it: under load the poll misses the window. The watch starts from the resourceVersion of a list
    made in ``start()`` itself, so the API server replays every change after it, however late the background
    thread connects or reconnects (it resumes from the last event it recorded). Bounded: each connection asks
    for ``timeoutSeconds``, each read times out, and the thread ends at ``stop()`` or after ``max_seconds``.
    """

    def __init__(self, cluster: Cluster, plural: str, group: str = "kondukt.io/v1alpha1",
                 max_seconds: float = 600) -> None:
        prefix = "/api/v1" if group == "v1" else f"/apis/{group}"
        self.cluster = cluster
        self.path = f"{prefix}/namespaces/{cluster.namespace}/{plural}"
        self.max_seconds = max_seconds
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> WatchRecorder:
        status, body = self.cluster.cp.api("GET", self.path, timeout=60)
        assert status == 200, body
        for item in body.get("items") or []:
            self.events.append(("ADDED", item))
        version = str(body["metadata"]["resourceVersion"])
        self._thread = threading.Thread(target=self._run, args=(version,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self, version: str) -> None:
        cp = self.cluster.cp
        ctx = ssl.create_default_context(cafile=str(cp.ca_file))
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            req = urllib.request.Request(
                f"{cp.server}{self.path}?watch=1&allowWatchBookmarks=false&timeoutSeconds=60"
                f"&resourceVersion={version}")
            req.add_header("Authorization", f"Bearer {cp.token}")
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
                    while not self._stop.is_set() and time.monotonic() < deadline:
                        line = resp.readline()
                        if not line:
                            break  # the server ended the watch (timeoutSeconds): resume from `version`
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            self.errors.append(json.dumps(event)[:500])
                            return
                        obj = event["object"]
                        version = str(obj["metadata"]["resourceVersion"])
                        with self._lock:
                            self.events.append((str(event["type"]), obj))
            except OSError:  # an idle read timed out, or the connection broke: resume from `version`
                time.sleep(0.1)
            except Exception as err:  # a waiting test reports it (a thread's exception is lost)
                self.errors.append(repr(err))
                return

    def recorded(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self.events)

    def of(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """The events of one object, in order."""
        return [(kind, obj) for kind, obj in self.recorded() if obj["metadata"]["name"] == name]

    def names(self, kind: str) -> list[str]:
        """The names of the objects with an event of this type (ADDED, MODIFIED, DELETED), in order of the first."""
        return list(dict.fromkeys(obj["metadata"]["name"] for k, obj in self.recorded() if k == kind))

    def wait(self, probe: Callable[[], Any], what: str, timeout: float = 90) -> Any:
        """Wait on the recorded events (not on the live state, which may already have moved on)."""
        def checked() -> Any:
            assert not self.errors, f"the watch of {self.path} failed: {self.errors}"
            return probe()
        return self.cluster.wait_until(checked, what, timeout=timeout)


def taskdef(name: str, *, annotations: Mapping[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A TaskDef whose attempts are kwok fake pods (echoing their input unless told otherwise)."""
    body: dict[str, Any] = {"name": name, "retryCount": 0, "retryDelaySeconds": 0, **spec}
    body["template"] = {"image": WORKER_IMAGE, "annotations": dict(ECHO if annotations is None else annotations)}
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "TaskDef",
            "metadata": {"name": name.replace("_", "-").lower()}, "spec": body}


def workflow(name: str, *, definition: Mapping[str, Any] | None = None, ref: str | None = None,
             version: int | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = dict(spec)
    if definition is not None:
        body["definition"] = dict(definition)
    else:
        body["workflowDefRef"] = {"name": ref} if version is None else {"name": ref, "version": version}
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name}, "spec": body}


@pytest.fixture(name="operator")
def operator_fixture(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(control_plane, namespace, tmp_path).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(name="cluster")
def cluster_fixture(control_plane: ControlPlane, namespace: str, operator: OperatorProcess) -> Cluster:
    return Cluster(control_plane, namespace, operator)
