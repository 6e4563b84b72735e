"""The real node itself (tests/e2e/realnode.py): a pod of the workers image really runs under the restricted
Pod Security profile and writes its termination message; an image that was not imported is never pulled;
pods reach the API server at the bridge's gateway address (an address of this machine, in the serving
certificate) with their ServiceAccount token."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.controlplane import ControlPlane, wait_for
from tests.e2e.realnode import GATEWAY, NODE_NAME, POD_NETWORK, REFUSING_PROXY, RealNode, wait_pod_phase

pytestmark = [pytest.mark.e2e, pytest.mark.realnode]

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
}


def restrict(cp: ControlPlane, namespace: str) -> None:
    cp.kubectl("label", "namespace", namespace, "--overwrite", "pod-security.kubernetes.io/enforce=restricted",
               "pod-security.kubernetes.io/enforce-version=latest")


def python_pod(name: str, image: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "main", "image": image, "command": ["python3", "-c", script],
                "securityContext": RESTRICTED_CONTAINER,
                "terminationMessagePath": "/dev/termination-log",
            }],
            **spec,
        },
    }


def test_pod_runs_restricted_and_writes_its_termination_message(
        control_plane: ControlPlane, real_node: RealNode, real_namespace: str) -> None:
    restrict(control_plane, real_namespace)
    script = ("import json, os; open('/dev/termination-log', 'w').write(json.dumps("
              "{'uid': os.getuid(), 'readOnlyRoot': not os.access('/', os.W_OK)}))")
    pod = python_pod("hello", str(real_node.images["workers"]), script)
    control_plane.kubectl("-n", real_namespace, "apply", "-f", "-", input=json.dumps(pod))
    done = wait_pod_phase(control_plane, real_namespace, "hello", ("Succeeded", "Failed"))
    state = done["status"]["containerStatuses"][0]["state"]
    assert done["status"]["phase"] == "Succeeded", state
    assert done["spec"]["nodeName"] == NODE_NAME
    assert json.loads(state["terminated"]["message"]) == {"uid": 65532, "readOnlyRoot": True}
    assert done["status"]["podIP"].startswith(POD_NETWORK.split(".0.0/")[0] + ".")
    # The kubelet serves logs to the API server (kubelet-preferred-address-types=InternalIP, its certificate).
    assert control_plane.kubectl("-n", real_namespace, "logs", "hello").returncode == 0


def test_an_image_that_was_not_imported_is_never_pulled(
        control_plane: ControlPlane, real_node: RealNode, real_namespace: str) -> None:
    # A registry named in containerd's registry configuration, then one that is not (only the proxy catches it).
    pod = python_pod("absent", "registry.example/kondukt/absent:1", "pass")
    pod["spec"]["containers"].append({**pod["spec"]["containers"][0], "name": "other",
                                      "image": "registry.invalid/kondukt/absent:1"})
    control_plane.kubectl("-n", real_namespace, "apply", "-f", "-", input=json.dumps(pod))

    def pull_failure() -> str | None:
        status, found = control_plane.api("GET", f"/api/v1/namespaces/{real_namespace}/pods/absent")
        statuses = (found.get("status") or {}).get("containerStatuses") or [] if status == 200 else []
        waiting = [(s["state"].get("waiting") or {}) for s in statuses]
        if len(waiting) == 2 and all(w.get("reason") in ("ErrImagePull", "ImagePullBackOff") for w in waiting):
            return " ".join(str(w.get("message", "")) for w in waiting)
        return None

    message = wait_for(pull_failure, "the pull of an absent image to fail", timeout=60, interval=0.5)
    events = control_plane.kubectl_json("get", "events", "-n", real_namespace)["items"]
    pulls = " ".join(e.get("message", "") for e in events if e.get("reason") == "Failed")
    for image in ("registry.example/kondukt/absent:1", "registry.invalid/kondukt/absent:1"):
        failures = [e.get("message", "") for e in events if e.get("reason") == "Failed" and image in e.get("message", "")]
        assert any(REFUSING_PROXY.removeprefix("http://") in f for f in failures), (image, message, pulls)


def test_in_cluster_clients_reach_the_api_server_at_the_gateway(
        control_plane: ControlPlane, real_node: RealNode, real_namespace: str) -> None:
    restrict(control_plane, real_namespace)
    control_plane.kubectl("-n", real_namespace, "create", "role", "list-pods", "--verb=list", "--resource=pods")
    control_plane.kubectl("-n", real_namespace, "create", "rolebinding", "list-pods", "--role=list-pods",
                          f"--serviceaccount={real_namespace}:default")
    # The standard library only: the in-cluster configuration by hand (the kubernetes client does the same).
    script = """
import json, os, ssl, urllib.request
sa = '/var/run/secrets/kubernetes.io/serviceaccount'
host, port = os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT']
request = urllib.request.Request(f'https://{host}:{port}/api/v1/namespaces/' + open(sa + '/namespace').read() + '/pods',
                                 headers={'Authorization': 'Bearer ' + open(sa + '/token').read()})
context = ssl.create_default_context(cafile=sa + '/ca.crt')
with urllib.request.urlopen(request, context=context, timeout=10) as response:
    names = [p['metadata']['name'] for p in json.load(response)['items']]
open('/dev/termination-log', 'w').write(json.dumps({'host': host, 'port': port, 'pods': names}))
"""
    pod = python_pod("client", str(real_node.images["workers"]), script)
    control_plane.kubectl("-n", real_namespace, "apply", "-f", "-", input=json.dumps(pod))
    done = wait_pod_phase(control_plane, real_namespace, "client", ("Succeeded", "Failed"))
    state = done["status"]["containerStatuses"][0]["state"]
    assert done["status"]["phase"] == "Succeeded", control_plane.kubectl(
        "-n", real_namespace, "logs", "client", check=False).stdout
    assert json.loads(state["terminated"]["message"]) == {"host": GATEWAY, "port": "443", "pods": ["client"]}
