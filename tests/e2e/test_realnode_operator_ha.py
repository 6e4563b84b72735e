"""The operator losing its pod or its process on the real node, mid-workflow: the workflow completes and no
attempt runs twice (exactly one Job per attempt).

- One replica: its pod is deleted (the Deployment starts another), then that pod's process is SIGKILLed
  through containerd (the kubelet restarts the container). Each new process takes the Lease over (a
  crashed holder's Lease only once it has expired: a short lease through the chart's ``leaderElection``
  values) and carries on from the Workflow's status and the cluster's Jobs.
- Two replicas: the active one's pod is deleted; the standby takes the Lease (the deleted leader releases
  it on its way out) and finishes the workflow. The real node is cordoned meanwhile, so the Deployment's
  replacement pod cannot race the standby for the released Lease. The takeover time is logged, never asserted.

A failure prints what it takes to diagnose it in CI (:class:`OperatorDiagnostics`): every operator pod's log,
followed from its start to its end (a deleted pod's log is gone from the API once it is), the previous
container's log of a restarted one, the pods' states, the Lease and the namespace's Events
(``KONDUKT_E2E_OPERATOR_LOGS=1``: on success too).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kondukt.kube import resources as r
from kondukt.kube.status import output_from_status, tasks_from_status
from tests.e2e.controlplane import ControlPlane, wait_for
from tests.e2e.realnode import CONTAINERD_SOCKET, NODE_NAME, RealNode
from tests.e2e.test_chart import CHART, adopt_crds, label_restricted
from tests.e2e.test_realnode_chart import TERMINAL, image_values, wait_workflow

pytestmark = [pytest.mark.e2e, pytest.mark.realnode]

logger = logging.getLogger(__name__)

STEPS = 4
#: Short enough for a quick takeover after a crash, long enough for a loaded 2-core machine.
SHORT_LEASE = ["--set", "leaderElection.leaseDurationSeconds=6", "--set", "leaderElection.renewDeadlineSeconds=4",
               "--set", "leaderElection.retryPeriodSeconds=1"]


def chain(name: str) -> list[dict[str, Any]]:
    """A workflow of STEPS sequential tasks, each a real container that works for a few seconds."""
    script = ("import json, os, time\ntime.sleep(4)\nopen('/dev/termination-log', 'w').write(json.dumps("
              "{'outputData': {'ref': os.environ['KONDUKT_TASK_REF']}}))")
    return [
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "TaskDef", "metadata": {"name": "step"},
         "spec": {"name": "step", "retryCount": 2, "retryLogic": "FIXED", "retryDelaySeconds": 0,
                  "timeoutSeconds": 120, "responseTimeoutSeconds": 120,
                  "template": {"command": ["python3", "-c", script]}}},
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": name},
         "spec": {"name": name, "version": 1, "schemaVersion": 2, "tasks": [
             {"name": "step", "taskReferenceName": f"step{n}", "type": "SIMPLE"} for n in range(STEPS)],
             "outputParameters": {"last": f"${{step{STEPS - 1}.output.ref}}"}}},
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": f"{name}-1"},
         "spec": {"workflowDefRef": {"name": name, "version": 1}}},
    ]


#: The chart's default metrics port, and the metrics a failure report shows (what each replica did).
METRICS_PORT = 9090
METRICS_SHOWN = ("kondukt_leader", "kondukt_job_creates_total", "kondukt_reconcile_duration_seconds_count",
                 "kondukt_reconcile_errors_total", "kondukt_api_errors_total")


class OperatorDiagnostics:
    """The operator pods' logs, followed while a test runs, and the state around them, printed on failure.

    ``kubectl logs -f`` runs for every operator pod seen (:meth:`follow_new`): it ends by itself with the pod's
    container, so even a deleted leader's last lines — its shutdown, its Lease release — are kept in a file
    under the control plane's log directory. Every follower is stopped at the end (bounded).
    """

    TAIL_LINES = 400

    def __init__(self, cp: ControlPlane, namespace: str, release: str) -> None:
        self.cp, self.namespace, self.release = cp, namespace, release
        self.directory = cp.logs / f"operator-{namespace}"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.followers: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def pods(self) -> list[dict[str, Any]]:
        """Every pod of the release, terminating ones too."""
        return self.cp.kubectl_json("get", "pods", "-n", self.namespace, "-l",  # type: ignore[no-any-return]
                                    f"app.kubernetes.io/instance={self.release}")["items"]

    def follow_new(self) -> None:
        """Follow the log of every operator pod whose container has started and that is not followed yet."""
        for pod in self.pods():
            name = pod["metadata"]["name"]
            states = [c.get("state") or {} for c in (pod.get("status") or {}).get("containerStatuses") or []]
            if name in self.followers or not any("running" in s or "terminated" in s for s in states):
                continue
            path = self.directory / f"{name}.log"
            with path.open("wb") as out:
                proc = subprocess.Popen([str(self.cp.bin("kubectl")), "-n", self.namespace, "logs", "-f",
                                         "--timestamps", f"pod/{name}"], stdout=out, stderr=subprocess.STDOUT,
                                        env=self.cp.env())
            self.followers[name] = (proc, path)

    def stop(self) -> None:
        for proc, _ in self.followers.values():
            if proc.poll() is None:
                proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    def report(self) -> str:
        """Everything printed for a failed test: each section bounded (the last TAIL_LINES lines of a log)."""
        sections: list[str] = []

        def tail(text: str) -> str:
            return "\n".join(text.splitlines()[-self.TAIL_LINES:])

        def kubectl(*args: str) -> str:
            try:
                done = self.cp.kubectl(*args, check=False, timeout=30)
            except subprocess.TimeoutExpired:
                return f"(kubectl {' '.join(args)} timed out)"
            return done.stdout if done.returncode == 0 else f"(kubectl {' '.join(args)}: {done.stderr.strip()})"

        status, lease = self.cp.api("GET", f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/"
                                    f"{self.release}")
        shown = json.dumps(lease, indent=1) if isinstance(lease, dict) else str(lease)
        sections.append(f"== Lease {self.namespace}/{self.release} (HTTP {status}) at {time.time():.1f}\n{shown}")
        pods = self.pods()
        for pod in pods:
            meta, pod_status = pod["metadata"], pod.get("status") or {}
            sections.append(f"== pod {meta['name']} deletionTimestamp={meta.get('deletionTimestamp')} "
                            f"phase={pod_status.get('phase')}\n"
                            + json.dumps(pod_status.get("containerStatuses"), indent=1))
            restarts = sum(int(c.get("restartCount") or 0) for c in pod_status.get("containerStatuses") or [])
            if restarts:
                sections.append(f"== pod {meta['name']}: previous container's log\n"
                                + tail(kubectl("-n", self.namespace, "logs", "--previous", "--timestamps",
                                               f"pod/{meta['name']}")))
            if pod_status.get("phase") == "Running" and not meta.get("deletionTimestamp"):
                metrics = kubectl("get", "--raw", f"/api/v1/namespaces/{self.namespace}/pods/{meta['name']}:"
                                  f"{METRICS_PORT}/proxy/metrics")
                sections.append(f"== pod {meta['name']}: its work and leadership (/metrics)\n" + "\n".join(
                    line for line in metrics.splitlines() if line.startswith(METRICS_SHOWN) or line.startswith("(")))
            if meta["name"] not in self.followers:
                sections.append(f"== pod {meta['name']}: log (not followed)\n"
                                + tail(kubectl("-n", self.namespace, "logs", "--timestamps", f"pod/{meta['name']}")))
        for name, (_, path) in self.followers.items():
            text = path.read_text(errors="replace") if path.exists() else "(no log file)"
            sections.append(f"== pod {name}: log followed since its container started ({path})\n{tail(text)}")
        sections.append("== Events\n" + tail(kubectl("-n", self.namespace, "get", "events",
                                                     "--sort-by=.lastTimestamp")))
        return "\n".join(sections)


@contextlib.contextmanager
def operator_release(cp: ControlPlane, node: RealNode, namespace: str, *values: str
                     ) -> Iterator[tuple[str, OperatorDiagnostics]]:
    """The chart installed in `namespace`, all its replicas Ready on the real node; uninstalled afterwards.
    Yields the release and its diagnostics; a failure inside prints the diagnostics' report."""
    release = f"kondukt-{secrets.token_hex(3)}"
    adopt_crds(cp, release, namespace)
    cp.helm("install", release, str(CHART), "--namespace", namespace, *image_values(node), *values, timeout=240)
    diagnostics = OperatorDiagnostics(cp, namespace, release)
    try:
        rollout = cp.kubectl("-n", namespace, "rollout", "status", f"deployment/{release}", "--timeout=180s",
                             check=False, timeout=200)
        assert rollout.returncode == 0, rollout.stderr
        diagnostics.follow_new()
        yield release, diagnostics
        if os.environ.get("KONDUKT_E2E_OPERATOR_LOGS"):  # wanted even on success (to study a takeover)
            print(f"\n======== operator diagnostics ({namespace}) ========\n{diagnostics.report()}")
    except BaseException:
        try:
            print(f"\n======== operator diagnostics ({namespace}) ========\n{diagnostics.report()}")
        except Exception as err:  # the report must never hide the failure itself
            print(f"operator diagnostics failed: {err!r}")
        raise
    finally:
        diagnostics.stop()
        cp.helm("uninstall", release, "--namespace", namespace, "--ignore-not-found", check=False)


def operator_pods(cp: ControlPlane, namespace: str, release: str) -> list[dict[str, Any]]:
    pods = cp.kubectl_json("get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all(s.get("ready") for s in statuses)


def lease_holder(cp: ControlPlane, namespace: str, release: str) -> str:
    """The pod named by the Lease's holder (`<pod>_<random suffix>`), or "" while nobody holds it."""
    status, lease = cp.api("GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{release}")
    holder = str((lease.get("spec") or {}).get("holderIdentity") or "") if status == 200 else ""
    return holder.rsplit("_", 1)[0]


def jobs(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    return cp.kubectl_json("get", "jobs", "-n", namespace)["items"]  # type: ignore[no-any-return]


def workflow_phase(cp: ControlPlane, namespace: str, name: str) -> str:
    status, body = cp.api("GET", f"/apis/kondukt.io/v1alpha1/namespaces/{namespace}/workflows/{name}")
    return str((body.get("status") or {}).get("phase") or "") if status == 200 else ""


def wait_jobs(cp: ControlPlane, namespace: str, count: int, workflow: str) -> None:
    wait_for(lambda: len(jobs(cp, namespace)) >= count, f"{count} attempt Job(s)", timeout=120, interval=0.5)
    assert workflow_phase(cp, namespace, workflow) not in TERMINAL, "the workflow finished before the fault"


def assert_each_attempt_ran_once(cp: ControlPlane, namespace: str, status: dict[str, Any]) -> None:
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    assert output_from_status(status) == {"last": f"step{STEPS - 1}"}
    tasks = tasks_from_status(status)
    assert [(t["referenceTaskName"], t["status"], t["retryCount"]) for t in tasks] == [
        (f"step{n}", "COMPLETED", 0) for n in range(STEPS)], "an attempt was retried"
    by_task = sorted(j["metadata"]["labels"][r.LABEL_TASK_ID] for j in jobs(cp, namespace))
    assert by_task == sorted(t["taskId"] for t in tasks), "not exactly one Job per attempt"


def test_the_operator_pod_deleted_then_its_process_killed_mid_workflow(
        control_plane: ControlPlane, real_node: RealNode, real_namespace: str) -> None:
    cp, namespace = control_plane, real_namespace
    label_restricted(cp, namespace)
    with operator_release(cp, real_node, namespace, *SHORT_LEASE) as (release, diagnostics):
        [first] = operator_pods(cp, namespace, release)
        cp.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(chain("chain")))
        wait_jobs(cp, namespace, 1, "chain-1")
        cp.kubectl("-n", namespace, "delete", "pod", first["metadata"]["name"], "--wait=false")

        def replacement() -> dict[str, Any] | None:
            pods = [p for p in operator_pods(cp, namespace, release) if p["metadata"]["uid"] != first["metadata"]["uid"]]
            return pods[0] if pods and ready(pods[0]) else None

        second = wait_for(replacement, "the Deployment's replacement operator pod", timeout=120, interval=0.5)
        assert second is not None and second["spec"]["nodeName"] == NODE_NAME
        diagnostics.follow_new()
        wait_jobs(cp, namespace, 2, "chain-1")
        # SIGKILL the operator's process itself (no shutdown, no Lease release): containerd kills the task.
        container = second["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
        killed = real_node._ctr("task", "kill", "--signal", "SIGKILL", container)
        assert killed.returncode == 0, killed.stderr
        logger.info("killed operator container %s at %.0f (socket %s)", container, time.time(), CONTAINERD_SOCKET)
        status = wait_workflow(cp, namespace, "chain-1", release, timeout=240)
        [after] = operator_pods(cp, namespace, release)
        assert after["metadata"]["uid"] == second["metadata"]["uid"]
        restarted = after["status"]["containerStatuses"][0]
        assert restarted["restartCount"] >= 1, restarted
        assert restarted["lastState"]["terminated"]["exitCode"] == 137, restarted["lastState"]
        assert_each_attempt_ran_once(cp, namespace, status)
        logger.info("jobs: %s", json.dumps([j["metadata"]["name"] for j in jobs(cp, namespace)]))


def test_two_replicas_the_standby_takes_over_when_the_leader_pod_is_deleted(
        control_plane: ControlPlane, real_node: RealNode, real_namespace: str) -> None:
    cp, namespace = control_plane, real_namespace
    label_restricted(cp, namespace)
    with operator_release(cp, real_node, namespace, "--set", "replicas=2", *SHORT_LEASE) as (release, diagnostics):
        pods = operator_pods(cp, namespace, release)
        assert len(pods) == 2 and all(p["spec"]["nodeName"] == NODE_NAME for p in pods)
        names = {p["metadata"]["name"] for p in pods}

        def holder() -> str | None:
            name = lease_holder(cp, namespace, release)
            return name if name in names else None

        leader = wait_for(holder, "a replica to lead", timeout=60, interval=0.5)
        assert leader is not None
        [standby] = names - {leader}
        cp.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(chain("chain")))
        wait_jobs(cp, namespace, 1, "chain-1")
        # The Deployment replaces the deleted pod at once (the kubelet may start it before it stops the old
        # one), and the new replica campaigns as soon as its caches are warm — about when the deleted leader
        # releases the Lease — so it can take the Lease before the standby's next try: a correct takeover, but
        # not the one this test is about (the fresh-clone CI run failed twice that way; reproduced with a
        # standby that retries slowly). The node is cordoned while the leader goes: the replacement stays
        # Pending and the standby is the one candidate.
        cp.kubectl("cordon", NODE_NAME)
        try:
            deleted_at = time.monotonic()
            print(f"deleting the leader's pod {leader} at {time.time():.1f} (standby {standby})")
            cp.kubectl("-n", namespace, "delete", "pod", leader, "--wait=false")
            wait_for(lambda: lease_holder(cp, namespace, release) == standby, "the standby to take the Lease",
                     timeout=60, interval=0.2)
            takeover = time.monotonic() - deleted_at
        finally:
            cp.kubectl("uncordon", NODE_NAME)
        logger.info("takeover by %s %.1f s after the leader's pod was deleted", standby, takeover)
        print(f"takeover {takeover:.1f}s")
        diagnostics.follow_new()  # the Deployment's replacement pod, should the rest fail
        status = wait_workflow(cp, namespace, "chain-1", release, timeout=240)
        assert_each_attempt_ran_once(cp, namespace, status)
