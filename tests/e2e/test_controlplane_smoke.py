"""Smoke tests of the local control plane (issue 4): the behaviours the operator's e2e tests rely on."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.controlplane import ControlPlane, wait_for
from tests.e2e.realnode import BRIDGE

pytestmark = pytest.mark.e2e

TIMEOUT = 60  # every wait is bounded


def dump(*docs: dict[str, Any]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def job(name: str, annotations: dict[str, str] | None = None, env: dict[str, str] | None = None,
        owner: dict[str, Any] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "registry.invalid/kondukt/fake-worker:0"}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    meta: dict[str, Any] = {"name": name}
    if owner:
        meta["ownerReferences"] = [owner]
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    }


def job_condition(cp: ControlPlane, ns: str, name: str) -> str | None:
    """'Complete' or 'Failed' once the Job is finished, else None."""
    obj = cp.kubectl_json("-n", ns, "get", "job", name)
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
            return str(cond["type"])
    return None


def job_pod(cp: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    pods = cp.kubectl_json("-n", ns, "get", "pods", "-l", f"job-name={name}")["items"]
    assert len(pods) == 1, pods
    return dict(pods[0])


def run_job(cp: ControlPlane, ns: str, manifest: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = manifest["metadata"]["name"]
    cp.kubectl("-n", ns, "apply", "-f", "-", input=dump(manifest))
    outcome = wait_for(lambda: job_condition(cp, ns, name), f"Job {ns}/{name} to finish", TIMEOUT)
    return str(outcome), job_pod(cp, ns, name)


def test_crd_and_status_subresource(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    plural = f"widgets{secrets.token_hex(3)}"
    group = "e2e.kondukt.io"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 1}}},
                        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                    },
                }},
            }],
        },
    }
    cp.kubectl("apply", "-f", "-", input=dump(crd))
    try:
        cp.kubectl("wait", "--for=condition=Established", f"crd/{plural}.{group}", f"--timeout={TIMEOUT}s")
        resource = f"{plural}.{group}"
        # Schema validation: the API server rejects what the schema forbids ...
        bad = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "bad"}, "spec": {"size": 0}}
        rejected = cp.kubectl("-n", namespace, "apply", "-f", "-", input=dump(bad), check=False)
        assert rejected.returncode != 0 and "spec.size" in rejected.stderr, rejected.stderr
        # ... rejects unknown fields under strict field validation (kubectl's default) ...
        w = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"},
             "spec": {"size": 3, "colour": "red"}, "status": {"phase": "Ignored"}}
        strict = cp.kubectl("-n", namespace, "create", "-f", "-", input=dump(w), check=False)
        assert strict.returncode != 0 and 'unknown field "spec.colour"' in strict.stderr, strict.stderr
        # ... and prunes them otherwise. A status in the create request is ignored (status subresource).
        cp.kubectl("-n", namespace, "create", "--validate=false", "-f", "-", input=dump(w))
        obj = cp.kubectl_json("-n", namespace, "get", resource, "w")
        assert obj["spec"] == {"size": 3}
        assert "status" not in obj or obj["status"].get("phase") != "Ignored"
        generation = obj["metadata"]["generation"]

        cp.kubectl("-n", namespace, "patch", resource, "w", "--subresource=status", "--type=merge",
                   "-p", json.dumps({"status": {"phase": "Done"}}))
        obj = cp.kubectl_json("-n", namespace, "get", resource, "w")
        assert obj["status"] == {"phase": "Done"}
        assert obj["metadata"]["generation"] == generation  # status writes do not bump the generation

        # Writes to the main resource ignore status; spec changes bump the generation.
        cp.kubectl("-n", namespace, "patch", resource, "w", "--type=merge",
                   "-p", json.dumps({"spec": {"size": 5}, "status": {"phase": "Nope"}}))
        obj = cp.kubectl_json("-n", namespace, "get", resource, "w")
        assert obj["spec"]["size"] == 5 and obj["status"] == {"phase": "Done"}
        assert obj["metadata"]["generation"] == generation + 1
    finally:
        cp.kubectl("delete", "crd", f"{plural}.{group}", "--wait=false", check=False)


def test_job_runs_on_a_kwok_node_and_completes(control_plane: ControlPlane, namespace: str) -> None:
    outcome, pod = run_job(control_plane, namespace, job("ok"))
    assert outcome == "Complete"
    assert pod["spec"]["nodeName"].startswith("kwok-node-")
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    job_obj = control_plane.kubectl_json("-n", namespace, "get", "job", "ok")
    assert job_obj["status"]["succeeded"] == 1


def test_failing_job_reports_exit_code_and_message(control_plane: ControlPlane, namespace: str) -> None:
    annotations = {"kwok.kondukt.io/fail": "true", "kwok.kondukt.io/exit-code": "3",
                   "kwok.kondukt.io/termination-message": "boom: disk full"}
    outcome, pod = run_job(control_plane, namespace, job("bad", annotations))
    assert outcome == "Failed"
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    assert terminated["message"] == "boom: disk full"


def test_failing_job_default_exit_code(control_plane: ControlPlane, namespace: str) -> None:
    outcome, pod = run_job(control_plane, namespace, job("bad", {"kwok.kondukt.io/fail": "true"}))
    assert outcome == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1


def test_termination_message_is_cut_like_the_kubelet_does(control_plane: ControlPlane, namespace: str) -> None:
    outcome, pod = run_job(control_plane, namespace,
                           job("long", {"kwok.kondukt.io/termination-message": "x" * 5000}))
    assert outcome == "Complete"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == "x" * 4096


def test_echo_mode_returns_the_input(control_plane: ControlPlane, namespace: str) -> None:
    value = {"a": [1, 2.5, None], "b": 'x "y" <z> é', "nested": {"k": True}, "big": 12345678901234567890}
    annotations = {"kwok.kondukt.io/echo-input": "true"}
    outcome, pod = run_job(control_plane, namespace,
                           job("echo", annotations, env={"KONDUKT_INPUT": json.dumps(value)}))
    assert outcome == "Complete"
    message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert json.loads(message) == {"outputData": value}


def test_duration_annotation_delays_completion(control_plane: ControlPlane, namespace: str) -> None:
    started = time.monotonic()
    outcome, _ = run_job(control_plane, namespace, job("slow", {"kwok.kondukt.io/duration": "3s"}))
    elapsed = time.monotonic() - started
    assert outcome == "Complete"
    assert elapsed >= 3, f"the pod should run 3s, the Job finished after {elapsed:.1f}s"


def test_deleting_the_owner_garbage_collects_its_jobs(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    cp.kubectl("-n", namespace, "create", "configmap", "owner", "--from-literal=k=v")
    uid = cp.kubectl_json("-n", namespace, "get", "configmap", "owner")["metadata"]["uid"]
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid,
             "controller": True, "blockOwnerDeletion": True}
    outcome, _ = run_job(cp, namespace, job("owned", owner=owner))
    assert outcome == "Complete"
    cp.kubectl("-n", namespace, "delete", "configmap", "owner", "--cascade=background")

    def gone() -> bool:
        jobs = cp.kubectl_json("-n", namespace, "get", "jobs")["items"]
        pods = cp.kubectl_json("-n", namespace, "get", "pods")["items"]
        return not jobs and not pods

    wait_for(gone, "the garbage collector to delete the owned Job and its pod", TIMEOUT)


def test_rbac_denies_a_service_account_without_rights(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    cp.kubectl("-n", namespace, "create", "serviceaccount", "nobody")
    token = cp.kubectl("-n", namespace, "create", "token", "nobody", "--duration=10m").stdout.strip()
    as_sa = ("--token", token, "--kubeconfig", "/dev/null", "--server", cp.server,
             "--certificate-authority", str(cp.ca_file))

    whoami = json.loads(cp.kubectl(*as_sa, "auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:nobody"
    denied = cp.kubectl(*as_sa, "-n", namespace, "get", "configmaps", check=False)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr, denied.stderr
    status, _ = cp.api("GET", f"/api/v1/namespaces/{namespace}/configmaps", token=token)
    assert status == 403

    # A Role grants exactly what it says.
    cp.kubectl("-n", namespace, "create", "role", "read-cm", "--verb=get,list", "--resource=configmaps")
    cp.kubectl("-n", namespace, "create", "rolebinding", "read-cm", "--role=read-cm",
               f"--serviceaccount={namespace}:nobody")
    wait_for(lambda: cp.kubectl(*as_sa, "-n", namespace, "get", "configmaps", check=False).returncode == 0,
             "the RoleBinding to take effect", TIMEOUT)
    still_denied = cp.kubectl(*as_sa, "-n", namespace, "get", "secrets", check=False)
    assert still_denied.returncode != 0 and "Forbidden" in still_denied.stderr

    # The token controller fills legacy service-account token Secrets (controller-manager's SA key).
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
              "metadata": {"name": "nobody-token", "annotations": {"kubernetes.io/service-account.name": "nobody"}}}
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=dump(secret))
    wait_for(lambda: cp.kubectl_json("-n", namespace, "get", "secret", "nobody-token").get("data", {}).get("token"),
             "the token controller to fill the Secret", TIMEOUT)


def test_pod_security_admission_enforces_restricted(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    cp.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                           "spec": {"containers": [{"name": "c", "image": "registry.invalid/x:0"}]}}
    rejected = cp.kubectl("-n", namespace, "apply", "-f", "-", input=dump(pod), check=False)
    assert rejected.returncode != 0 and "violates PodSecurity" in rejected.stderr, rejected.stderr
    pod["spec"]["securityContext"] = {"runAsNonRoot": True, "runAsUser": 1000,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    pod["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False,
                                                       "capabilities": {"drop": ["ALL"]}}
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=dump(pod))
    wait_for(lambda: cp.kubectl_json("-n", namespace, "get", "pod", "p")["status"].get("phase") == "Running",
             "the admitted pod to run on a kwok node", TIMEOUT)


def test_helm_install_of_a_small_chart(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    cp = control_plane
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(dump({
        "apiVersion": "v2", "name": "tiny", "version": "0.1.0", "appVersion": "1.0",
        "kubeVersion": ">=1.30.0-0",  # needs a properly stamped API server version
    }))
    (chart / "values.yaml").write_text(dump({"greeting": "hello", "replicas": 2}))
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cfg\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    (chart / "templates" / "deployment.yaml").write_text(dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "{{ .Release.Name }}-web"},
        "spec": {
            "replicas": "REPLICAS",
            "selector": {"matchLabels": {"app": "{{ .Release.Name }}"}},
            "template": {
                "metadata": {"labels": {"app": "{{ .Release.Name }}"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
            },
        },
    }).replace("REPLICAS", "{{ .Values.replicas }}"))
    cp.helm("install", "tiny", str(chart), "-n", namespace, "--set", "greeting=hi",
            "--wait", f"--timeout={TIMEOUT}s")
    cfg = cp.kubectl_json("-n", namespace, "get", "configmap", "tiny-cfg")
    assert cfg["data"]["greeting"] == "hi"
    assert cfg["data"]["kube"].startswith("v1.")
    deploy = cp.kubectl_json("-n", namespace, "get", "deployment", "tiny-web")
    assert deploy["status"].get("readyReplicas") == 2  # kwok made its pods Running and Ready
    releases = json.loads(cp.helm("list", "-n", namespace, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("tiny", "deployed")]
    cp.helm("uninstall", "tiny", "-n", namespace, "--wait", f"--timeout={TIMEOUT}s")
    assert cp.kubectl("-n", namespace, "get", "configmap", "tiny-cfg", check=False).returncode != 0


def test_kubectl_apply_server_side(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane

    def cm(value: str) -> str:
        return dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"key": value}})

    cp.kubectl("-n", namespace, "apply", "--server-side", "--field-manager=kondukt-a", "-f", "-", input=cm("1"))
    cp.kubectl("-n", namespace, "apply", "--server-side", "--field-manager=kondukt-a", "-f", "-", input=cm("2"))
    obj = cp.kubectl_json("-n", namespace, "get", "configmap", "ssa", "--show-managed-fields")
    assert obj["data"] == {"key": "2"}
    assert {m["manager"] for m in obj["metadata"]["managedFields"]} == {"kondukt-a"}
    # Another manager that changes the same field conflicts unless it forces.
    conflict = cp.kubectl("-n", namespace, "apply", "--server-side", "--field-manager=kondukt-b", "-f", "-",
                          input=cm("3"), check=False)
    assert conflict.returncode != 0 and "conflict" in conflict.stderr.lower(), conflict.stderr
    cp.kubectl("-n", namespace, "apply", "--server-side", "--field-manager=kondukt-b", "--force-conflicts",
               "-f", "-", input=cm("3"))
    obj = cp.kubectl_json("-n", namespace, "get", "configmap", "ssa", "--show-managed-fields")
    assert obj["data"] == {"key": "3"}
    assert "kondukt-b" in {m["manager"] for m in obj["metadata"]["managedFields"]}


def test_server_reports_the_pinned_version(control_plane: ControlPlane) -> None:
    status, version = control_plane.api("GET", "/version")
    assert status == 200
    assert version["gitVersion"].startswith("v1.") and version["major"] == "1" and version["minor"].isdigit()
    client = json.loads(control_plane.kubectl("version", "--client", "-o", "json").stdout)
    assert client["clientVersion"]["gitVersion"] == version["gitVersion"]


def test_every_node_address_the_api_server_may_dial_stays_on_this_machine(control_plane: ControlPlane) -> None:
    """The network rule: the API server dials a node's address for a pod's logs, exec or port-forward (`kubectl
    logs`, the web UI's log view). Each address of each node must route to loopback or to the real node's bridge,
    never out of the machine (kwok's fake nodes once had 10.0.0.1, which routed through eth0)."""
    nodes = control_plane.kubectl_json("get", "nodes")["items"]
    assert nodes, "no node"
    checked = []
    for node in nodes:
        for address in node.get("status", {}).get("addresses", []):
            if address["type"] not in ("InternalIP", "ExternalIP"):
                continue
            routes = json.loads(subprocess.run(
                ["ip", "-j", "route", "get", address["address"]], capture_output=True, text=True, check=True,
                timeout=10).stdout)
            device = routes[0].get("dev")
            assert device in ("lo", BRIDGE), (
                f"node {node['metadata']['name']}: {address['type']} {address['address']} routes via {device}, "
                "out of this machine")
            checked.append(address["address"])
    assert checked, "no node has an address"
