"""The Helm chart on the real control plane: installed with the real helm, its RBAC proven sufficient and tight.

- The operator, started here as a process with exactly the arguments of the chart's Deployment and with the
  credentials of the chart's ServiceAccount (a TokenRequest token), completes a workflow in a watched
  namespace: proof that the chart's RBAC is enough. The same credentials are refused Secrets, other
  namespaces and anything cluster-scoped.
- The chart's pods (the Deployment's, scheduled on kwok nodes: admitted, never really run) and the worker
  Jobs' pods are admitted in namespaces labelled `pod-security.kubernetes.io/enforce=restricted`.
- `helm upgrade` and `helm uninstall` keep the CRDs and the users' Workflows, as the README documents.

The CRDs are cluster-wide and outlive releases (that is the point): each install first lets Helm adopt
whatever CRDs an earlier test or `kubectl apply -f crds/` left, the documented migration path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.controlplane import ControlPlane, free_port, wait_for, write_kubeconfig

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kondukt"
# Every CRD `make crds` generates (the chart ships the same set): a CRD added later is adopted too.
KONDUKT_CRDS = tuple(sorted(yaml.safe_load(f.read_text())["metadata"]["name"] for f in (REPO / "crds").glob("*.yaml")))
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
WORKERS_IMAGE = "registry.example/kondukt/workers:e2e"
WORKFLOW_TIMEOUT_SECONDS = 120


# ---------------------------------------------------------------------------------------------- helpers
def label_restricted(cp: ControlPlane, namespace: str) -> None:
    cp.kubectl("label", "namespace", namespace, "--overwrite", *(f"{k}={v}" for k, v in RESTRICTED.items()))


@contextlib.contextmanager
def extra_namespace(cp: ControlPlane, prefix: str, restricted: bool = False) -> Iterator[str]:
    name = f"{prefix}-{secrets.token_hex(3)}"
    cp.kubectl("create", "namespace", name)
    try:
        if restricted:
            label_restricted(cp, name)
        wait_for(lambda: cp.api("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200,
                 f"the default ServiceAccount of namespace {name}", timeout=30)
        yield name
    finally:
        cp.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def adopt_crds(cp: ControlPlane, release: str, namespace: str) -> None:
    """Let `release` own Kondukt's CRDs if they exist (left by another release or by kubectl apply)."""
    for crd in KONDUKT_CRDS:
        if cp.kubectl("get", "crd", crd, check=False).returncode != 0:
            continue
        cp.kubectl("label", "crd", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite")
        cp.kubectl("annotate", "crd", crd, f"meta.helm.sh/release-name={release}",
                   f"meta.helm.sh/release-namespace={namespace}", "--overwrite")


@contextlib.contextmanager
def helm_release(cp: ControlPlane, release: str, namespace: str, *values: str) -> Iterator[None]:
    """`helm install` the chart (adopting existing CRDs first); uninstalled afterwards if still there."""
    adopt_crds(cp, release, namespace)
    repository, tag = WORKERS_IMAGE.rsplit(":", 1)
    cp.helm("install", release, str(CHART), "--namespace", namespace, "--set", f"workers.image.repository={repository}",
            "--set", f"workers.image.tag={tag}", *values, timeout=240)
    try:
        yield
    finally:
        cp.helm("uninstall", release, "--namespace", namespace, "--ignore-not-found", check=False)


def service_account_kubeconfig(cp: ControlPlane, service_account: str, namespace: str, path: Path) -> Path:
    """A kubeconfig holding a TokenRequest token of the chart's ServiceAccount (nothing else)."""
    token = cp.kubectl("create", "token", service_account, "-n", namespace, "--duration=3600s").stdout.strip()
    assert token.count(".") == 2, f"not a JWT: {token[:20]}..."
    write_kubeconfig(path, cp.server, cp.ca_file, token, user=f"system:serviceaccount:{namespace}:{service_account}")
    return path


def can_i(cp: ControlPlane, kubeconfig: Path, *request: str) -> bool:
    proc = cp.kubectl("--kubeconfig", str(kubeconfig), "auth", "can-i", *request, check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(request)}: {proc.stdout} {proc.stderr}"
    return answer == "yes"


def events(cp: ControlPlane, namespace: str, reason: str) -> list[dict[str, Any]]:
    items = cp.kubectl_json("get", "events", "-n", namespace)["items"]
    return [e for e in items if e.get("reason") == reason]


def deployment_pod_admitted(cp: ControlPlane, namespace: str, release: str) -> dict[str, Any]:
    """The Deployment's ReplicaSet created its pod in `namespace` (no FailedCreate); returns the pod."""
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"

    def pod() -> dict[str, Any] | None:
        failed = [e for e in events(cp, namespace, "FailedCreate") if e["involvedObject"]["kind"] == "ReplicaSet"]
        assert not failed, f"the ReplicaSet could not create the operator's pod: {failed[0]['message']}"
        pods = cp.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]
        return pods[0] if pods else None

    found = wait_for(pod, f"the operator's pod in {namespace}", timeout=60, interval=0.5)
    assert found is not None
    return found


@contextlib.contextmanager
def operator_process(args: list[str], kubeconfig: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`kondukt <args>` as the ServiceAccount; stopped (its whole process group) afterwards."""
    kondukt = Path(sys.executable).parent / "kondukt"
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), POD_ID=f"e2e-{secrets.token_hex(3)}",
               PYTHONUNBUFFERED="1")
    with log.open("wb") as out:
        proc = subprocess.Popen([str(kondukt), *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def operator_args_from_deployment(cp: ControlPlane, namespace: str, release: str) -> list[str]:
    """The operator's arguments exactly as the chart's Deployment runs them, except that its two servers
    (metrics, Kopf's /healthz) listen on free ports of 127.0.0.1 here."""
    deployment = cp.kubectl_json("get", "deployment", "-n", namespace,
                                 "-l", f"app.kubernetes.io/instance={release}")["items"][0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["kondukt"]
    local = ("--metrics-port=", "--liveness=")
    args = [a for a in container["args"] if not a.startswith(local)]
    assert len(args) == len(container["args"]) - len(local), f"the chart passes {local}: {container['args']}"
    return [*args, f"--metrics-port={free_port()}", "--metrics-address=127.0.0.1",
            f"--liveness=http://127.0.0.1:{free_port()}/healthz"]


def echo_workflow(namespace: str, name: str) -> str:
    """A TaskDef whose fake pod echoes its input (kwok), a one-task WorkflowDef and a Workflow of it."""
    docs: list[dict[str, Any]] = [
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "TaskDef", "metadata": {"name": "chart-echo"},
         "spec": {"name": "chart-echo", "retryCount": 0, "timeoutSeconds": 60, "responseTimeoutSeconds": 60,
                  # No image: the operator runs the chart's workers.image.
                  "template": {"command": ["kondukt-worker", "echo"],
                               "annotations": {"kwok.kondukt.io/echo-input": "true"}}}},
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "chart-smoke"},
         "spec": {"name": "chart-smoke", "version": 1,
                  "tasks": [{"name": "chart-echo", "taskReferenceName": "say", "type": "SIMPLE",
                             "inputParameters": {"greeting": "${workflow.input.greeting}"}}],
                  "outputParameters": {"said": "${say.output.greeting}"}}},
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name},
         "spec": {"workflowDefRef": {"name": "chart-smoke", "version": 1}, "input": {"greeting": "hello"}}},
    ]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return yaml.safe_dump_all(docs, sort_keys=False)


EXPECTED_REFUSAL = re.compile(r'cannot (list|watch) resource \\?"(namespaces|customresourcedefinitions)\\?"')


def run_echo_workflow(cp: ControlPlane, args: list[str], kubeconfig: Path, namespace: str, log: Path) -> str:
    """Run the operator as the ServiceAccount until an echo workflow in `namespace` completes; checks that
    its attempt's pod was admitted (restricted namespaces) and ran the chart's workers image, and that the
    operator was refused nothing but Kopf's optional cluster-wide scans. Returns the workflow's name."""
    workflow = f"smoke-{secrets.token_hex(2)}"
    seen_pods: dict[str, dict[str, Any]] = {}
    with operator_process(args, kubeconfig, log) as proc:
        cp.kubectl("apply", "-f", "-", input=echo_workflow(namespace, workflow))

        def finished() -> dict[str, Any] | None:
            assert proc.poll() is None, f"the operator exited with {proc.returncode}:\n{tail(log)}"
            # The status first, the pods after: a workflow that ends between the two reads still has its pods
            # listed (the other order missed them when a quick workflow ended during the pod list).
            status = cp.kubectl_json("get", "workflow", workflow, "-n", namespace).get("status") or {}
            for p in cp.kubectl_json("get", "pods", "-n", namespace)["items"]:
                seen_pods[p["metadata"]["name"]] = p
            return status if status.get("phase") in ("COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED") else None

        try:
            status = wait_for(finished, f"workflow {namespace}/{workflow} to end",
                              timeout=WORKFLOW_TIMEOUT_SECONDS, interval=0.5)
        except AssertionError as e:
            current = cp.kubectl_json("get", "workflow", workflow, "-n", namespace).get("status")
            raise AssertionError(f"{e}\nstatus: {json.dumps(current)[:2000]}\noperator log:\n{tail(log)}") from None
    assert status is not None and status["phase"] == "COMPLETED", f"{status}\noperator log:\n{tail(log)}"
    assert status.get("output") == {"said": "hello"}
    refusals = [line for line in log.read_text(errors="replace").splitlines()
                if "forbidden" in line.lower() and not EXPECTED_REFUSAL.search(line)]
    assert not refusals, "the operator was refused something it needs:\n" + "\n".join(refusals[:10])

    job_pods = [p for p in seen_pods.values()
                if any(o["kind"] == "Job" for o in p["metadata"].get("ownerReferences", []))]
    assert job_pods, f"no Job pod was ever seen in {namespace}"
    assert {p["spec"]["containers"][0]["image"] for p in job_pods} == {WORKERS_IMAGE}
    failed = [e["message"] for e in events(cp, namespace, "FailedCreate")]
    assert not failed, f"pods refused in namespace {namespace}: {failed}"
    return workflow


# ---------------------------------------------------------------------------------------------- tests
def test_the_charts_service_account_runs_a_workflow_and_nothing_more(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    release = f"kn-{secrets.token_hex(2)}"
    label_restricted(cp, namespace)
    with (extra_namespace(cp, "work", restricted=True) as work, extra_namespace(cp, "other") as other,
          helm_release(cp, release, namespace, "--set", f"watchNamespaces={{{work}}}")):
        sa = f"{release}-kondukt"

        # The chart's own pod is admitted under the restricted profile.
        pod = deployment_pod_admitted(cp, namespace, release)
        assert pod["spec"]["serviceAccountName"] == sa

        kubeconfig = service_account_kubeconfig(cp, sa, namespace, tmp_path / "sa.kubeconfig")

        # What the operator must be able to do, in the watched namespace ...
        for request in (["list", "workflows.kondukt.io"], ["watch", "taskdefs.kondukt.io"],
                        ["patch", "workflows.kondukt.io", "--subresource=status"], ["create", "jobs.batch"],
                        ["delete", "jobs.batch"], ["watch", "pods"], ["create", "events"],
                        ["delete", "workflows.kondukt.io"]):  # a finished one whose ttlStrategy ran out
            assert can_i(cp, kubeconfig, *request, "-n", work), f"the operator may not {request} in {work}"
        # ... its Lease, in the release's namespace ...
        for request in (["create", "leases.coordination.k8s.io"], ["get", f"leases.coordination.k8s.io/{sa}"],
                        ["update", f"leases.coordination.k8s.io/{sa}"], ["create", "events"]):
            assert can_i(cp, kubeconfig, *request, "-n", namespace), f"the operator may not {request} in {namespace}"
        # ... and what it must not.
        refused = [
            ["get", "secrets", "-n", work], ["list", "secrets", "-n", namespace], ["get", "configmaps", "-n", work],
            ["create", "pods", "-n", work], ["delete", "workflows.kondukt.io", "-n", other],
            ["deletecollection", "workflows.kondukt.io", "-n", work],
            ["list", "workflows.kondukt.io", "-n", other], ["create", "jobs.batch", "-n", other],
            ["list", "workflows.kondukt.io", "--all-namespaces"], ["list", "customresourcedefinitions"],
            ["list", "namespaces"], ["update", "leases.coordination.k8s.io/another", "-n", namespace],
            ["list", "leases.coordination.k8s.io", "-n", namespace], ["delete", f"leases.coordination.k8s.io/{sa}",
                                                                      "-n", namespace],
            ["create", "leases.coordination.k8s.io", "-n", work], ["get", "leases.coordination.k8s.io", "-n", "kube-system"],
        ]
        for request in refused:
            assert not can_i(cp, kubeconfig, *request), f"the operator may {request}"
        forbidden = cp.kubectl("--kubeconfig", str(kubeconfig), "get", "secrets", "-n", work, check=False)
        assert forbidden.returncode != 0 and "forbidden" in forbidden.stderr.lower(), forbidden.stderr

        # The operator, with the Deployment's arguments and only these credentials, completes a workflow
        # whose task attempt's pod is admitted in the restricted namespace.
        args = operator_args_from_deployment(cp, namespace, release)
        assert f"--namespace={work}" in args and f"--default-worker-image={WORKERS_IMAGE}" in args
        assert f"--lease={sa}" in args and f"--lease-namespace={namespace}" in args
        run_echo_workflow(cp, args, kubeconfig, work, tmp_path / "operator.log")
        # It acted as the leader of the release's Lease, which it created with these credentials, and
        # released it when it stopped.
        log = (tmp_path / "operator.log").read_text(errors="replace")
        assert re.search(r"leader election: e2e-\w+_\w+ leads now", log), tail(tmp_path / "operator.log")
        assert "released lease" in log
        lease = cp.kubectl_json("get", "lease", sa, "-n", namespace)["spec"]
        assert lease["holderIdentity"] == "" and lease["leaseTransitions"] == 0


def test_upgrade_and_uninstall_keep_the_crds_and_the_workflows(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    release = f"ku-{secrets.token_hex(2)}"
    label_restricted(cp, namespace)
    with helm_release(cp, release, namespace):  # cluster-wide: a ClusterRole
        sa = f"{release}-kondukt"
        deployment_pod_admitted(cp, namespace, release)
        for crd in KONDUKT_CRDS:
            annotations = cp.kubectl_json("get", "crd", crd)["metadata"]["annotations"]
            assert annotations["helm.sh/resource-policy"] == "keep"
            assert annotations["meta.helm.sh/release-name"] == release

        kubeconfig = service_account_kubeconfig(cp, sa, namespace, tmp_path / "sa.kubeconfig")
        assert can_i(cp, kubeconfig, "list", "workflows.kondukt.io", "--all-namespaces")
        assert can_i(cp, kubeconfig, "delete", "workflows.kondukt.io", "--all-namespaces")  # ttlStrategy
        assert can_i(cp, kubeconfig, "watch", "customresourcedefinitions")
        assert can_i(cp, kubeconfig, "update", f"leases.coordination.k8s.io/{sa}", "-n", namespace)
        assert not can_i(cp, kubeconfig, "update", f"leases.coordination.k8s.io/{sa}", "-n", "default")
        for request in (["get", "secrets", "--all-namespaces"], ["list", "configmaps", "--all-namespaces"],
                        ["deletecollection", "workflows.kondukt.io", "--all-namespaces"],
                        ["create", "pods", "-n", namespace],
                        ["list", "namespaces"], ["create", "clusterrolebindings"]):
            assert not can_i(cp, kubeconfig, *request), f"the operator may {request}"

        # Cluster-wide, the operator with these credentials completes a workflow (Kopf may scan CRDs here).
        args = operator_args_from_deployment(cp, namespace, release)
        assert not [a for a in args if a.startswith("--namespace")]
        workflow = run_echo_workflow(cp, args, kubeconfig, namespace, tmp_path / "operator.log")
        assert "cannot list resource" not in (tmp_path / "operator.log").read_text(errors="replace")

        # That Workflow, now only data (no operator runs any more), must survive upgrades and the uninstall.
        before = cp.kubectl_json("get", "workflow", workflow, "-n", namespace)

        def workflow_survived() -> None:
            now = cp.kubectl_json("get", "workflow", workflow, "-n", namespace)
            assert now["metadata"]["uid"] == before["metadata"]["uid"]
            assert now["status"]["phase"] == "COMPLETED" and now["status"]["output"] == {"said": "hello"}

        # An upgrade changes the operator and leaves the CRDs and the Workflow alone.
        cp.helm("upgrade", release, str(CHART), "--namespace", namespace, "--reset-then-reuse-values", "--set", "logLevel=debug")
        args = cp.kubectl_json("get", "deployment", f"{release}-kondukt", "-n", namespace)["spec"]["template"]["spec"][
            "containers"][0]["args"]
        assert "--log-level=debug" in args
        workflow_survived()

        # Dropping the CRDs from the release does not delete them (resource-policy: keep) ...
        cp.helm("upgrade", release, str(CHART), "--namespace", namespace, "--reset-then-reuse-values", "--set", "crds.install=false")
        for crd in KONDUKT_CRDS:
            cp.kubectl_json("get", "crd", crd)
        workflow_survived()
        # ... and taking them back adopts them again.
        cp.helm("upgrade", release, str(CHART), "--namespace", namespace, "--reset-then-reuse-values", "--set", "crds.install=true")
        manifest = cp.helm("get", "manifest", release, "--namespace", namespace).stdout
        assert {d["metadata"]["name"] for d in yaml.safe_load_all(manifest)
                if d and d["kind"] == "CustomResourceDefinition"} == set(KONDUKT_CRDS)

        # Uninstalling removes the operator and its rights, and keeps the CRDs and the Workflow.
        cp.helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s")
        for crd in KONDUKT_CRDS:
            cp.kubectl_json("get", "crd", crd)
        workflow_survived()
        gone = [
            ("deployment", f"{release}-kondukt", namespace), ("serviceaccount", sa, namespace),
            ("clusterrole", f"{release}-kondukt-{namespace}", None),
            ("clusterrolebinding", f"{release}-kondukt-{namespace}", None),
            ("role", f"{release}-kondukt-leader-election", namespace),
            ("rolebinding", f"{release}-kondukt-leader-election", namespace),
        ]
        for kind, name, ns in gone:
            where = ["-n", ns] if ns else []

            def absent(kind: str = kind, name: str = name, where: list[str] = where) -> bool:
                return cp.kubectl("get", kind, name, *where, check=False).returncode != 0

            wait_for(absent, f"{kind} {name} to be deleted by helm uninstall", timeout=60, interval=0.5)
        # The ServiceAccount's token (bound to the deleted ServiceAccount) no longer opens anything.
        refused = cp.kubectl("--kubeconfig", str(kubeconfig), "get", "workflows", "-n", namespace, check=False)
        assert refused.returncode != 0
