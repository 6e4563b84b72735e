"""The Helm chart (charts/kondukt), the images' Dockerfiles and kind-config.yaml, checked without a cluster.

The chart is rendered with the real `helm template` (the binary `make control-plane` builds and caches) in
the shapes it supports, and the rendered objects are checked for what the chart promises: least-privilege
RBAC (no Secrets, no wildcards, nothing cluster-scoped when namespaced), pods that satisfy the `restricted`
Pod Security Standard, CRDs identical to crds/ and kept on uninstall, a strict values schema, and a README
configuration table in sync with that schema. A missing helm binary FAILS these tests (run
`make control-plane`); they are never skipped.

The Dockerfiles are built for real by `make images` and the real-node tier (tests/e2e/realnode.py); here their structure is checked.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kondukt"
CRDS = REPO / "crds"
README = REPO / "README.md"
KUBE_VERSION = "1.36.0"
KONDUKT_CRDS = {"taskdefs.kondukt.io", "workflowdefs.kondukt.io", "workflows.kondukt.io", "cronworkflows.kondukt.io"}

Manifest = dict[str, Any]


# ---------------------------------------------------------------------------------------------- helm
@cache
def helm_binary() -> Path:
    """The helm `make control-plane` caches ($KONDUKT_BIN_DIR overrides the directory, as for the e2e tests)."""
    directory = os.environ.get("KONDUKT_BIN_DIR") or subprocess.run(
        ["bash", str(REPO / "hack" / "control-plane" / "build.sh"), "--bin-dir"],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout.strip()
    helm = Path(directory) / "helm"
    if not os.access(helm, os.X_OK):
        pytest.fail(f"no helm binary at {helm}: run `make control-plane` to build it", pytrace=False)
    return helm


def run_helm(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(tmp / var.lower())
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm")


def sets(values: Mapping[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def render(helm_home: Path, values: Mapping[str, str] | None = None, namespace: str = "kondukt-system") -> list[Manifest]:
    proc = run_helm("template", "kondukt", str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION,
                    *sets(values or {}), tmp=helm_home)
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def of_kind(objects: Sequence[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def the(objects: Sequence[Manifest], kind: str) -> Manifest:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container_args(objects: Sequence[Manifest]) -> list[str]:
    containers = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return list(containers[0]["args"])


# ---------------------------------------------------------------------------------------------- restricted PSS
RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                           "projected", "secret"}


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """What in a pod spec breaks the `restricted` Pod Security Standard (Kubernetes' own list of checks)."""
    problems: list[str] = []
    psc = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"{flag} is set")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} has a forbidden type {sorted(kinds)}")
    if psc.get("runAsUser") == 0:
        problems.append("the pod runs as uid 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    containers = [*(pod.get("initContainers") or []), *pod["containers"]]
    for c in containers:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if not (sc.get("runAsNonRoot") is True or (psc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is None)):
            problems.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            problems.append(f"{name}: runs as uid 0")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {caps.get('add')}")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is {seccomp!r}, not RuntimeDefault or Localhost")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            problems.append(f"{name}: uses a hostPort")
    return problems


def test_the_restricted_check_catches_what_it_must() -> None:
    bad = {
        "hostNetwork": True,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [{"name": "c", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
    }
    found = "\n".join(restricted_violations(bad))
    for expected in ("hostNetwork", "hostPath", "allowPrivilegeEscalation", "runAsNonRoot", "drop ALL",
                     "SYS_ADMIN", "seccompProfile"):
        assert expected in found


# ---------------------------------------------------------------------------------------------- rendering
CLUSTER_WIDE = {"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                "RoleBinding", "Service", "Deployment"}  # the Role: leader election, in the release's namespace
SHAPES: dict[str, tuple[dict[str, str], set[str]]] = {
    "defaults": ({}, CLUSTER_WIDE),
    "namespaced": ({"watchNamespaces": "{team-a,team-b}"},
                   {"CustomResourceDefinition", "ServiceAccount", "Role", "RoleBinding", "Service", "Deployment"}),
    "replicas-3": ({"replicas": "3"}, CLUSTER_WIDE | {"PodDisruptionBudget"}),
    "network-policy": ({"networkPolicy.enabled": "true"}, CLUSTER_WIDE | {"NetworkPolicy"}),
    "service-monitor": ({"metrics.serviceMonitor.enabled": "true"}, CLUSTER_WIDE | {"ServiceMonitor"}),
    "all-together": ({"watchNamespaces": "{team-a}", "replicas": "3", "networkPolicy.enabled": "true",
                      "metrics.serviceMonitor.enabled": "true"},
                     {"CustomResourceDefinition", "ServiceAccount", "Role", "RoleBinding", "Service", "Deployment",
                      "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"}),
}


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_each_shape_renders_the_expected_objects(helm_home: Path, shape: str) -> None:
    values, kinds = SHAPES[shape]
    objects = render(helm_home, values)
    assert {o["kind"] for o in objects} == kinds
    assert {o["metadata"]["name"] for o in of_kind(objects, "CustomResourceDefinition")} == KONDUKT_CRDS
    for o in objects:
        assert o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm", o["metadata"]["name"]


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_the_operator_pod_satisfies_the_restricted_profile(helm_home: Path, shape: str) -> None:
    pod = the(render(helm_home, SHAPES[shape][0]), "Deployment")["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def all_rules(objects: Sequence[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for o in objects:
        if o["kind"] in ("Role", "ClusterRole"):
            for rule in o["rules"]:
                yield f"{o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}", rule


@pytest.mark.parametrize("shape", ["defaults", "namespaced"])
def test_rbac_grants_no_secrets_no_wildcards_no_escalation(helm_home: Path, shape: str) -> None:
    objects = render(helm_home, SHAPES[shape][0])
    rules = list(all_rules(objects))
    assert rules
    for where, rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, []), f"{where}: wildcard in {field}: {rule}"
        assert not {"secrets", "configmaps", "serviceaccounts", "serviceaccounts/token", "roles", "rolebindings",
                    "clusterroles", "clusterrolebindings", "nodes", "namespaces"} & set(rule["resources"]), (
            f"{where}: grants {rule['resources']}")
        assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"]), f"{where}: {rule}"
        assert "nonResourceURLs" not in rule
        if "delete" in rule["verbs"]:
            assert rule["resources"] in (["jobs"], ["workflows"]), (
                f"{where}: only task attempts' Jobs and finished Workflows (TTL, CronWorkflow history) are "
                f"ever deleted: {rule}")
        if set(rule["verbs"]) & {"create", "update", "patch"} and "pods" in rule["resources"]:
            pytest.fail(f"{where}: pods are only read: {rule}")


def granted(objects: Sequence[Manifest], kind: str) -> dict[tuple[str, str], set[str]]:
    result: dict[tuple[str, str], set[str]] = {}
    for o in of_kind(objects, kind):
        for rule in o["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    result.setdefault((group, resource), set()).update(rule["verbs"])
    return result


def test_the_cluster_role_grants_what_the_operator_needs(helm_home: Path) -> None:
    rules = granted(render(helm_home), "ClusterRole")
    assert rules == {
        ("kondukt.io", "taskdefs"): {"get", "list", "watch"},
        ("kondukt.io", "workflowdefs"): {"get", "list", "watch"},
        ("kondukt.io", "workflows"): {"get", "list", "watch", "create", "patch", "delete"},
        ("kondukt.io", "workflows/status"): {"get", "patch", "update"},
        ("kondukt.io", "taskdefs/status"): {"patch"},
        ("kondukt.io", "workflowdefs/status"): {"patch"},
        ("kondukt.io", "workflows/finalizers"): {"update"},
        ("kondukt.io", "cronworkflows"): {"get", "list", "watch"},
        ("kondukt.io", "cronworkflows/status"): {"patch"},
        ("kondukt.io", "cronworkflows/finalizers"): {"update"},
        ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
        ("", "pods"): {"get", "list", "watch"},
        ("", "events"): {"create"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    }


def test_namespaced_rbac_is_a_role_per_watched_namespace_and_nothing_cluster_wide(helm_home: Path) -> None:
    objects = render(helm_home, {"watchNamespaces": "{team-a,team-b}"})
    assert not of_kind(objects, "ClusterRole") and not of_kind(objects, "ClusterRoleBinding")
    watched = [o for o in objects if o["kind"] in ("Role", "RoleBinding")
               and not o["metadata"]["name"].endswith("-leader-election")]
    for kind in ("Role", "RoleBinding"):
        assert sorted(o["metadata"]["namespace"] for o in watched if o["kind"] == kind) == ["team-a", "team-b"], kind
    for binding in of_kind(objects, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kondukt", "namespace": "kondukt-system"}]
    rules = granted([o for o in watched if o["kind"] == "Role"], "Role")
    assert ("coordination.k8s.io", "leases") not in rules  # the Lease lives in the release's namespace only
    assert ("apiextensions.k8s.io", "customresourcedefinitions") not in rules
    args = container_args(objects)
    assert [a for a in args if a.startswith("--namespace=")] == ["--namespace=team-a", "--namespace=team-b"]


def leader_election_role(objects: Sequence[Manifest]) -> Manifest:
    found = [o for o in of_kind(objects, "Role") if o["metadata"]["name"].endswith("-leader-election")]
    assert len(found) == 1, f"expected one leader-election Role, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("shape", ["defaults", "namespaced"])
def test_the_replicas_elect_a_leader_through_the_charts_lease(helm_home: Path, shape: str) -> None:
    objects = render(helm_home, {**SHAPES[shape][0], "replicas": "3"})
    assert the(objects, "Deployment")["spec"]["replicas"] == 3
    args = container_args(objects)
    assert {"--lease=kondukt", "--lease-namespace=kondukt-system", "--lease-duration=15",
            "--lease-renew-deadline=10", "--lease-retry-period=2"} <= set(args)
    assert not [a for a in args if a.startswith(("--peering", "--priority", "--standalone"))]
    env = {e["name"]: e for e in the(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # the identity in the Lease
    assert the(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    # Least privilege: its one Lease (create cannot be limited to a name), by name after that, in the release's
    # namespace only; never list, watch, patch or delete; and the Events about it.
    role = leader_election_role(objects)
    assert role["metadata"]["namespace"] == "kondukt-system"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["kondukt"],
         "verbs": ["get", "update"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    binding = [o for o in of_kind(objects, "RoleBinding") if o["metadata"]["name"] == role["metadata"]["name"]]
    assert [b["metadata"]["namespace"] for b in binding] == ["kondukt-system"]
    assert binding[0]["roleRef"]["name"] == role["metadata"]["name"]
    assert binding[0]["subjects"] == [{"kind": "ServiceAccount", "name": "kondukt", "namespace": "kondukt-system"}]
    for o in objects:  # and nothing else anywhere grants Leases
        if o["kind"] in ("Role", "ClusterRole") and o is not role:
            assert not [r for r in o["rules"] if "coordination.k8s.io" in r["apiGroups"]], o["metadata"]["name"]


@pytest.mark.parametrize("shape", ["defaults", "namespaced"])
def test_shards_get_their_flag_and_the_leases_they_need_no_more(helm_home: Path, shape: str) -> None:
    objects = render(helm_home, {**SHAPES[shape][0], "replicas": "3", "shards": "6"})
    assert "--shards=6" in container_args(objects)
    role = leader_election_role(objects)
    assert {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
            "verbs": ["get", "list", "update", "delete"]} in role["rules"]  # shard and member Leases
    assert not [r for r in role["rules"] if "watch" in r["verbs"] or "patch" in r["verbs"]]
    claims = {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    workload_roles = [o for o in objects if o["kind"] in ("Role", "ClusterRole") and o is not role]
    assert workload_roles and all(claims in o["rules"] for o in workload_roles)  # the limit claims
    assert "--shards=1" in container_args(render(helm_home, SHAPES[shape][0]))


def test_the_lease_name_and_timing_are_values(helm_home: Path) -> None:
    objects = render(helm_home, {"leaderElection.leaseName": "shared", "leaderElection.leaseDurationSeconds": "30",
                                 "leaderElection.renewDeadlineSeconds": "20", "leaderElection.retryPeriodSeconds": "3"},
                     namespace="ops")
    assert {"--lease=shared", "--lease-namespace=ops", "--lease-duration=30", "--lease-renew-deadline=20",
            "--lease-retry-period=3"} <= set(container_args(objects))
    assert leader_election_role(objects)["rules"][1]["resourceNames"] == ["shared"]


def test_nothing_of_kopfs_peering_is_left(helm_home: Path) -> None:
    assert not (CHART / "crds").exists(), "the chart's crds/ folder held Kopf's peering CRDs; nothing uses them"
    for shape in ("defaults", "namespaced"):
        rendered = json.dumps(render(helm_home, SHAPES[shape][0]))
        assert "kopf.dev" not in rendered and "peering" not in rendered.lower()


UNSAFE_COMBINATIONS = {
    "deadline-not-shorter-than-duration": (
        {"leaderElection.renewDeadlineSeconds": "15"},
        "leaderElection.renewDeadlineSeconds (15) must be shorter than leaderElection.leaseDurationSeconds (15)"),
    "no-time-to-retry": (
        {"leaderElection.retryPeriodSeconds": "9"},
        "leaderElection.renewDeadlineSeconds (10) must be longer than 1.2 x leaderElection.retryPeriodSeconds (9)"),
    "pdb-blocks-every-drain": (
        {"replicas": "2", "podDisruptionBudget.minAvailable": "2"},
        "podDisruptionBudget.minAvailable (2) must be less than replicas (2)"),
    "archive-without-secret": (
        {"archive.enabled": "true"},
        "archive.enabled needs archive.secretName"),
}


@pytest.mark.parametrize("case", UNSAFE_COMBINATIONS, ids=list(UNSAFE_COMBINATIONS))
def test_unsafe_combinations_are_refused_with_the_fix(helm_home: Path, case: str) -> None:
    values, message = UNSAFE_COMBINATIONS[case]
    proc = run_helm("template", "kondukt", str(CHART), "--kube-version", KUBE_VERSION, *sets(values), tmp=helm_home)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_one_replica_needs_no_disruption_budget(helm_home: Path) -> None:
    assert not of_kind(render(helm_home, {"podDisruptionBudget.minAvailable": "3"}), "PodDisruptionBudget")


def test_the_workers_image_value_reaches_the_operator(helm_home: Path) -> None:
    assert "--default-worker-image=kondukt/workers:0.1.0" in container_args(render(helm_home))
    custom = render(helm_home, {"workers.image.repository": "registry.example/kw", "workers.image.tag": "1.2"})
    assert "--default-worker-image=registry.example/kw:1.2" in container_args(custom)
    digest = "sha256:" + "a" * 64
    pinned = render(helm_home, {"workers.image.digest": digest, "image.digest": digest})
    assert f"--default-worker-image=kondukt/workers@{digest}" in container_args(pinned)
    assert the(pinned, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] == f"kondukt/operator@{digest}"


def test_the_workers_settings_reach_the_operator(helm_home: Path) -> None:
    assert "--job-ttl-seconds=600" in container_args(render(helm_home))
    assert not [a for a in container_args(render(helm_home)) if a.startswith(("--worker-env", "--worker-service"))]
    args = container_args(render(helm_home, {
        "workers.env.KONDUKT_S3_ENDPOINT": "http://minio.storage:9000", "workers.env.KONDUKT_OUTPUT_PREFIX": "s3://out/",
        "workers.serviceAccountName": "image-workers", "workers.jobTTLSeconds": "60",
    }))
    assert {"--worker-env=KONDUKT_S3_ENDPOINT=http://minio.storage:9000", "--worker-env=KONDUKT_OUTPUT_PREFIX=s3://out/",
            "--worker-service-account=image-workers", "--job-ttl-seconds=60"} <= set(args)


def test_the_egress_settings_reach_the_operator(helm_home: Path) -> None:
    assert not [a for a in container_args(render(helm_home)) if a.startswith(("--egress", "--service-cidr", "--pod-cidr"))]
    args = container_args(render(helm_home, {
        "egress.allow": "{wiki.corp,*.svc.cluster.local,10.20.0.0/16}", "egress.deny": "{192.0.2.0/24}",
        "egress.serviceCIDRs": "{10.96.0.0/12}", "egress.podCIDRs": "{10.244.0.0/16,fd00:10:244::/56}",
    }))
    assert [a for a in args if a.startswith(("--egress", "--service-cidr", "--pod-cidr"))] == [
        "--egress-allow=wiki.corp", "--egress-allow=*.svc.cluster.local", "--egress-allow=10.20.0.0/16",
        "--egress-deny=192.0.2.0/24", "--service-cidr=10.96.0.0/12", "--pod-cidr=10.244.0.0/16",
        "--pod-cidr=fd00:10:244::/56",
    ]


def test_the_probes_ask_kopfs_liveness_endpoint(helm_home: Path) -> None:
    objects = render(helm_home, {"health.port": "8181"})
    container = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--liveness=http://0.0.0.0:8181/healthz" in container["args"]
    assert {"name": "health", "containerPort": 8181, "protocol": "TCP"} in container["ports"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_log_level_metrics_port_and_extra_args(helm_home: Path) -> None:
    objects = render(helm_home, {"logLevel": "debug", "metrics.port": "9300", "extraArgs": "{--foo=bar}"})
    args = container_args(objects)
    assert args[0] == "operator"
    assert {"--log-level=debug", "--metrics-port=9300", "--foo=bar"} <= set(args)
    ports = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert {"name": "metrics", "containerPort": 9300, "protocol": "TCP"} in ports
    assert the(objects, "Service")["spec"]["ports"][0]["targetPort"] == "metrics"


# ---------------------------------------------------------------------------------------------- the web UI
def ui_objects(objects: Sequence[Manifest]) -> list[Manifest]:
    return [o for o in objects if o["metadata"]["labels"].get("app.kubernetes.io/component") == "ui"]


@pytest.mark.parametrize(
    ("values", "namespaces", "scope_arg"),
    [
        pytest.param({}, [None], "--all-namespaces", id="cluster-wide"),
        pytest.param({"watchNamespaces": "{team-a,team-b}"}, ["team-a", "team-b"], "--namespace=team-a",
                     id="namespaced"),
    ],
)
def test_the_ui_reads_only_with_a_service_account_of_its_own(
    helm_home: Path, values: dict[str, str], namespaces: list[str | None], scope_arg: str
) -> None:
    objects = render(helm_home, {"ui.enabled": "true", "ui.allowedHosts": "{ui.example.com}", **values})
    ui = ui_objects(objects)
    kinds = sorted(o["kind"] for o in ui)
    roles = "Role" if namespaces != [None] else "ClusterRole"
    assert kinds == sorted(["ServiceAccount", "Deployment", "Service", *[roles, roles + "Binding"] * len(namespaces)])
    assert [o["metadata"].get("namespace") for o in ui if o["kind"] == roles] == namespaces
    assert granted([o for o in ui if o["kind"] == roles], roles) == {
        ("kondukt.io", "taskdefs"): {"get", "list", "watch"},
        ("kondukt.io", "workflowdefs"): {"get", "list", "watch"},
        ("kondukt.io", "workflows"): {"get", "list", "watch"},
        ("", "pods"): {"get", "list"},
        ("", "pods/log"): {"get"},
    }
    for binding in (o for o in ui if o["kind"] == roles + "Binding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kondukt-ui", "namespace": "kondukt-system"}]
    deployment = next(o for o in ui if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kondukt-ui"
    assert restricted_violations(pod) == []
    assert pod["containers"][0]["args"] == [
        "ui", "--read-only", "--address=0.0.0.0", "--port=8642", scope_arg, "--allowed-host=kondukt-ui",
        "--allowed-host=kondukt-ui.kondukt-system", "--allowed-host=kondukt-ui.kondukt-system.svc",
        "--allowed-host=ui.example.com"]
    # Its own selector: the operator's Services and Deployment never select the UI's pod, nor the other way.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = next(o for o in ui if o["kind"] == "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    for other in (o for o in objects if o["kind"] in ("Service", "Deployment") and o not in ui):
        selector = other["spec"]["selector"].get("matchLabels", other["spec"]["selector"])
        assert not set(selector.items()) <= set(labels.items()), other["metadata"]["name"]


def test_the_ui_is_off_by_default(helm_home: Path) -> None:
    assert ui_objects(render(helm_home)) == []


def test_the_network_policy_opens_metrics_dns_and_the_api_server_only(helm_home: Path) -> None:
    policy = the(render(helm_home, {"networkPolicy.enabled": "true"}), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]
    ports = sorted((p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"])
    assert ports == [(53, "TCP"), (53, "UDP"), (443, "TCP"), (6443, "TCP")]


# ---------------------------------------------------------------------------------------------- CRDs
def crd_files(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.glob("*.yaml"))}


def test_the_charts_crds_are_the_generated_ones() -> None:
    generated = crd_files(CRDS)
    assert generated, "crds/ is empty: run `make crds`"
    assert crd_files(CHART / "files" / "crds") == generated, (
        "charts/kondukt/files/crds/ differs from crds/: run `make crds` (it refreshes the chart's copy)")


def test_rendered_crds_keep_the_generated_specs_and_survive_uninstall(helm_home: Path) -> None:
    rendered = {o["metadata"]["name"]: o for o in of_kind(render(helm_home), "CustomResourceDefinition")}
    for text in crd_files(CRDS).values():
        crd = yaml.safe_load(text)
        name = crd["metadata"]["name"]
        assert rendered[name]["spec"] == crd["spec"], f"{name}: the chart changed the CRD's spec"
        assert rendered[name]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    unkept = of_kind(render(helm_home, {"crds.keep": "false"}), "CustomResourceDefinition")
    assert unkept and all("helm.sh/resource-policy" not in (o["metadata"].get("annotations") or {}) for o in unkept)
    assert not of_kind(render(helm_home, {"crds.install": "false"}), "CustomResourceDefinition")


# ---------------------------------------------------------------------------------------------- values schema
def load_schema() -> dict[str, Any]:
    return dict(json.loads((CHART / "values.schema.json").read_text()))


def load_values() -> dict[str, Any]:
    return dict(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_every_value_is_in_the_strict_schema_and_every_schema_key_has_a_default() -> None:
    # (helm lint checks the defaults against the schema: test_helm_lint_passes_strict)
    schema = load_schema()
    assert schema["additionalProperties"] is False
    assert set(flatten_schema(schema)) == set(flatten_values(load_values(), schema))


BAD_VALUES = {
    "negative-replicas": ({"replicas": "-1"}, "replicas"),
    "unknown-key": ({"replica": "2"}, "replica"),
    "unknown-log-level": ({"logLevel": "verbose"}, "logLevel"),
    "bad-namespace-name": ({"watchNamespaces": "{Team_A}"}, "watchNamespaces"),
    "bad-digest": ({"image.digest": "latest"}, "digest"),
    "port-out-of-range": ({"metrics.port": "70000"}, "port"),
    "bad-worker-env-name": ({"workers.env.BAD-NAME": "x"}, "BAD-NAME"),
}


@pytest.mark.parametrize("case", BAD_VALUES, ids=list(BAD_VALUES))
def test_the_schema_rejects_bad_values(helm_home: Path, case: str) -> None:
    values, field = BAD_VALUES[case]
    proc = run_helm("lint", str(CHART), "--kube-version", KUBE_VERSION, *sets(values), tmp=helm_home)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stdout + proc.stderr
    assert field in proc.stdout + proc.stderr


def test_helm_lint_passes_strict(helm_home: Path) -> None:
    proc = run_helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, tmp=helm_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------- README table
def flatten_schema(schema: Mapping[str, Any], prefix: str = "") -> dict[str, Mapping[str, Any]]:
    """Schema properties as dotted keys; an object with declared properties is described by its leaves."""
    rows: dict[str, Mapping[str, Any]] = {}
    for name, prop in schema.get("properties", {}).items():
        key = f"{prefix}{name}"
        if "properties" in prop:
            rows.update(flatten_schema(prop, key + "."))
        else:
            rows[key] = prop
    return rows


def flatten_values(values: Mapping[str, Any], schema: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in values.items():
        prop = schema.get("properties", {}).get(name, {})
        if "properties" in prop and isinstance(value, dict):
            flat.update(flatten_values(value, prop, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def configuration_table() -> str:
    """The README's configuration table as it must read (regenerate it from this function)."""
    schema = load_schema()
    defaults = flatten_values(load_values(), schema)
    lines = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for key, prop in flatten_schema(schema).items():
        kind = prop.get("type", "")
        if isinstance(kind, list):  # e.g. ["integer", "null"]
            kind = " \\| ".join(kind)
        if "enum" in prop:
            kind = " \\| ".join(f"`{v}`" for v in prop["enum"])
        default = json.dumps(defaults[key], separators=(",", ":"))
        description = prop["description"].replace("|", "\\|")
        lines.append(f"| `{key}` | {kind} | `{default}` | {description} |")
    return "\n".join(lines)


def readme_chart_section() -> str:
    text = README.read_text()
    match = re.search(r"<!-- chart:begin -->(.*)<!-- chart:end -->", text, re.S)
    assert match, "README.md lost its <!-- chart:begin --> / <!-- chart:end --> markers"
    return match.group(1)


def test_the_readme_configuration_table_matches_the_schema() -> None:
    section = readme_chart_section()
    table = [line for line in section.splitlines() if line.startswith("|")]
    start = next((i for i, line in enumerate(table) if line.startswith("| Key | Type | Default |")), None)
    assert start is not None, "the README's chart section has no configuration table"
    actual = "\n".join(table[start:start + len(configuration_table().splitlines())])
    assert actual == configuration_table(), (
        "the README's configuration table is out of date; it must read:\n" + configuration_table())


# ---------------------------------------------------------------------------------------------- images, kind
def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, f"{path.name}: a continuation line runs off the end"
    result = []
    for line in lines:
        instruction, _, arguments = line.partition(" ")
        result.append((instruction.upper(), arguments.strip()))
    return result


DOCKERFILES = {"operator": ("kondukt", "operator"), "workers": ("kondukt-worker", None)}
KNOWN_INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
                      "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


@pytest.mark.parametrize("image", DOCKERFILES)
def test_the_dockerfile_is_multi_stage_pinned_offline_and_non_root(image: str) -> None:
    path = REPO / "docker" / f"{image}.Dockerfile"
    instructions = dockerfile_instructions(path)
    assert {i for i, _ in instructions} <= KNOWN_INSTRUCTIONS
    # The base image is a build argument whose default, what users get, is pinned to a patch-version tag.
    assert instructions[0][0] == "ARG", f"{path.name}: the base image comes first, as a build argument"
    name, _, default = instructions[0][1].partition("=")
    assert name == "BASE_IMAGE"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", default), (
        f"{path.name}: default base {default!r} is not pinned to a patch-version tag (or a digest)")
    froms = [args for i, args in instructions if i == "FROM"]
    assert len(froms) >= 2, "multi-stage: a builder stage and a runtime stage"
    assert all(base.split()[0] == "${BASE_IMAGE}" for base in froms), f"{path.name}: every stage on BASE_IMAGE"
    last_stage = max(i for i, (instr, _) in enumerate(instructions) if instr == "FROM")
    runtime = instructions[last_stage:]
    users = [args for i, args in runtime if i == "USER"]
    assert users == ["65532:65532"], f"{path.name}: the runtime stage must end as the non-root user 65532"
    assert not any(i == "ADD" for i, _ in instructions), f"{path.name}: use COPY, never ADD"
    assert any(i == "COPY" and "--from=" in args for i, args in runtime), f"{path.name}: runtime copies the build"
    # Built with no network: every pip install reads the wheelhouse only, under the pinned constraints.
    builder_runs = " ".join(args for i, args in instructions[:last_stage] if i == "RUN")
    installs = re.findall(r"pip --python \S+ install ([^&]+)", builder_runs)
    assert installs, f"{path.name}: no pip install in the builder stage"
    for install in installs:
        assert re.search(r"--no-index\s+--find-links /wheels", install), f"{path.name}: `{install.strip()}` may reach an index"
    assert any("-c /src/constraints.txt" in install for install in installs)
    runtime_runs = " ".join(args for i, args in runtime if i == "RUN")
    assert "pip install" not in runtime_runs, f"{path.name}: the runtime stage installs nothing with pip"
    entrypoint, cmd = DOCKERFILES[image]
    assert ("ENTRYPOINT", json.dumps([entrypoint])) in runtime
    if cmd:
        assert ("CMD", json.dumps([cmd])) in runtime


def runtime_imports(package: Path) -> set[str]:
    """Top-level modules a package imports at run time (imports under `if TYPE_CHECKING:` left out)."""
    found: set[str] = set()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        type_only = {id(node) for guard in ast.walk(tree)
                     if isinstance(guard, ast.If) and "TYPE_CHECKING" in ast.unparse(guard.test)
                     for stmt in guard.body for node in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def requirement_closure(names: set[str]) -> set[str]:
    """These distributions and everything they require (as installed here), names normalised."""
    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    todo, seen = [norm(n) for n in names], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in metadata.requires(name) or []:
            if "extra ==" not in requirement:
                todo.append(norm(re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0]))
    return seen


def workers_distribution_requirements(extras: set[str]) -> set[str]:
    """The names kondukt-workers (workers/pyproject.toml) requires with ``extras``."""
    project = tomllib.loads((REPO / "workers" / "pyproject.toml").read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return {re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0] for requirement in requirements}


def test_the_workers_image_installs_every_distribution_the_workers_import() -> None:
    runs = " ".join(" ".join(args.split()) for i, args in dockerfile_instructions(REPO / "docker" / "workers.Dockerfile")
                    if i == "RUN")
    match = re.search(r"install --no-index --find-links /wheels -c /src/constraints\.txt 'kondukt-workers\[([\w,]+)\]'",
                      runs)
    assert match, ("workers.Dockerfile: no `pip install --no-index --find-links /wheels -c /src/constraints.txt "
                   "'kondukt-workers[EXTRA]'` step")
    extras = set(match.group(1).split(","))
    installed = requirement_closure(workers_distribution_requirements(extras))
    by_module = metadata.packages_distributions()
    third_party = runtime_imports(REPO / "workers" / "kondukt_workers") - set(sys.stdlib_module_names) - {
        "kondukt_workers", "__future__"}
    missing = {module: by_module.get(module) for module in third_party
               if not {re.sub(r"[-_.]+", "-", d).lower() for d in by_module.get(module, [])} & installed}
    assert not missing, f"the workers import {missing} but workers.Dockerfile does not install them"
    operator_only = {"kondukt", "kopf", "kubernetes", "kubernetes-asyncio", "aiohttp", "moto"} & installed
    assert not operator_only, f"the workers image would carry the operator's dependencies {operator_only}"


def test_the_entrypoints_named_by_the_images_exist() -> None:
    def scripts(pyproject: Path) -> set[str]:
        return set(tomllib.loads(pyproject.read_text())["project"]["scripts"])

    assert "kondukt" in scripts(REPO / "pyproject.toml")
    assert "kondukt-worker" in scripts(REPO / "workers" / "pyproject.toml")


def test_the_kind_config_is_a_kind_cluster() -> None:
    config = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [node["role"] for node in config["nodes"]]
    assert roles.count("control-plane") == 1 and "worker" in roles


def test_retention_and_the_archive_reach_the_operator_and_the_dsn_comes_only_from_the_secret(helm_home: Path) -> None:
    assert not [a for a in container_args(render(helm_home)) if a.startswith(("--ttl-", "--archive"))]
    objects = render(helm_home, {"ttlStrategy.secondsAfterSuccess": "600", "ttlStrategy.secondsAfterFailure": "0",
                                 "archive.enabled": "true", "archive.secretName": "pg", "archive.retentionDays": "30"})
    args = container_args(objects)
    assert {"--ttl-after-success=600", "--ttl-after-failure=0", "--archive", "--archive-retention-days=30"} <= set(args)
    assert not [a for a in args if a.startswith("--ttl-after-completion")]
    [deployment] = of_kind(objects, "Deployment")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KONDUKT_ARCHIVE_DSN"] == {"name": "KONDUKT_ARCHIVE_DSN",
                                          "valueFrom": {"secretKeyRef": {"name": "pg", "key": "dsn"}}}
