"""The chart and the seed's image pipeline on the real node: nothing simulated.

- The chart, installed with its defaults except the image names, runs the operator as a real pod in a
  namespace labelled `pod-security.kubernetes.io/enforce=restricted`, with its ServiceAccount's token (the
  in-cluster configuration, the API server at the bridge's gateway address); a workflow's task runs as a real
  Job of the workers image there too, and its result comes back through the container's real termination
  message.
- The chart's web UI (``ui.enabled``, installed by the same release): ``kondukt ui --read-only`` runs as a
  real pod of the operator's image under its own read-only ServiceAccount; the test reaches it over HTTP on
  the bridge (the pod's address, with the Service's host name, the only names the UI answers to) and in
  Chromium (whose resolver maps that one name to the pod and nothing else): the image serves the built
  front end byte for byte, the list shows real workflows, an attempt's page shows the log lines its real
  container printed, and an operation goes out only with the bearer token its user gives: none is refused
  by the UI, a token RBAC refuses shows the API server's refusal, a token RBAC allows changes the workflow.
- The seed's single-image pipeline (examples/image-convert-resize.yaml) with the real workers image: it reads
  a real JPEG from an S3-compatible endpoint on this machine (moto, on the bridge's gateway address, which the
  pods reach and nothing else does), converts and resizes it, uploads the result; the test opens the result in
  the bucket and checks its format and size.
"""

from __future__ import annotations

import contextlib
import html
import http.client
import io
import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kondukt.cli.ui.server import static_dir
from tests.e2e.controlplane import ControlPlane, free_port, wait_for
from tests.e2e.realnode import GATEWAY, NODE_NAME, RealNode
from tests.e2e.test_chart import CHART, REPO, adopt_crds, label_restricted

pytestmark = [pytest.mark.e2e, pytest.mark.realnode]

TERMINAL = ("COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED")
BUCKET = "kondukt-e2e"


def image_values(node: RealNode) -> list[str]:
    """The only values these tests set: the image names (the node's imported images)."""
    values = []
    for key, image in (("image", node.images["operator"]), ("workers.image", node.images["workers"])):
        repository, tag = str(image).rsplit(":", 1)
        values += ["--set", f"{key}.repository={repository}", "--set", f"{key}.tag={tag}"]
    return values


@contextlib.contextmanager
def chart_operator(cp: ControlPlane, node: RealNode, namespace: str, *values: str) -> Iterator[str]:
    """`helm install` the chart into `namespace` and wait until the operator's pod is Ready on the real node;
    yields the release name; uninstalls it afterwards."""
    release = f"kondukt-{secrets.token_hex(3)}"
    adopt_crds(cp, release, namespace)
    cp.helm("install", release, str(CHART), "--namespace", namespace, *image_values(node), *values, timeout=240)
    try:
        rollout = cp.kubectl("-n", namespace, "rollout", "status", f"deployment/{release}", "--timeout=180s",
                             check=False, timeout=200)
        pods = cp.kubectl_json("get", "pods", "-n", namespace, "-l",
                               f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator")
        assert rollout.returncode == 0, (rollout.stderr, json.dumps([p.get("status") for p in pods["items"]])[:3000],
                                         cp.kubectl("-n", namespace, "logs", f"deployment/{release}",
                                                    check=False).stdout[-3000:])
        [pod] = pods["items"]
        assert pod["spec"]["nodeName"] == NODE_NAME
        assert pod["spec"]["serviceAccountName"] == release
        yield release
    finally:
        cp.helm("uninstall", release, "--namespace", namespace, "--ignore-not-found", check=False)


def wait_workflow(cp: ControlPlane, namespace: str, name: str, release: str, timeout: float = 240) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        status, body = cp.api("GET", f"/apis/kondukt.io/v1alpha1/namespaces/{namespace}/workflows/{name}")
        found = (body.get("status") or {}) if status == 200 else {}
        return found if found.get("phase") in TERMINAL else None

    try:
        return wait_for(finished, f"workflow {namespace}/{name} to finish", timeout=timeout, interval=1)
    except AssertionError as e:
        log = cp.kubectl("-n", namespace, "logs", f"deployment/{release}", "--tail=60", check=False).stdout
        raise AssertionError(f"{e}\noperator log:\n{log}") from None


def test_the_chart_runs_the_operator_and_its_ui_as_pods_and_a_task_as_a_real_job(
        control_plane: ControlPlane, real_node: RealNode, real_namespace: str) -> None:
    cp, namespace = control_plane, real_namespace
    label_restricted(cp, namespace)
    with chart_operator(cp, real_node, namespace, "--set", "ui.enabled=true") as release:
        # The workers image's fork planner: a real container, its output through its termination message.
        documents = [
            {"apiVersion": "kondukt.io/v1alpha1", "kind": "TaskDef", "metadata": {"name": "plan"},
             "spec": {"name": "image_multiple_convert_resize", "retryCount": 0, "timeoutSeconds": 120,
                      "responseTimeoutSeconds": 120,
                      "template": {"command": ["kondukt-worker", "image_multiple_convert_resize"]}}},
            {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "plan"},
             "spec": {"name": "plan", "version": 1, "schemaVersion": 2, "tasks": [
                 {"name": "image_multiple_convert_resize", "taskReferenceName": "plan_ref", "type": "SIMPLE",
                  "inputParameters": {"fileLocation": "s3://bucket/in.jpg", "outputFormats": ["png"],
                                      "outputSizes": [{"width": 30, "height": 20}]}}],
                      "outputParameters": {"tasks": "${plan_ref.output.dynamicTasks}"}}},
            {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "plan-1"},
             "spec": {"workflowDefRef": {"name": "plan", "version": 1}}},
        ]
        cp.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(documents + ui_documents(namespace)))
        status = wait_workflow(cp, namespace, "plan-1", release)
        assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
        assert status["output"]["tasks"] == [{"name": "image_convert_resize", "type": "SIMPLE",
                                              "taskReferenceName": "image_convert_resize_png_30x20_0"}]
        uid = cp.kubectl_json("get", "workflow", "-n", namespace, "plan-1")["metadata"]["uid"]
        jobs = cp.kubectl_json("get", "jobs", "-n", namespace, "-l", f"kondukt.io/workflow-uid={uid}")["items"]
        assert len(jobs) == 1
        # The operator reads the result from the pod; the Job controller counts the success in its own time.
        wait_for(lambda: cp.kubectl_json("get", "job", "-n", namespace, jobs[0]["metadata"]["name"])["status"]
                 .get("succeeded") == 1, "the Job to count its pod's success", timeout=60, interval=0.5)
        pods = cp.kubectl_json("get", "pods", "-n", namespace, "-l", f"job-name={jobs[0]['metadata']['name']}")
        [pod] = pods["items"]
        assert pod["spec"]["nodeName"] == NODE_NAME
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 0 and "dynamicTasks" in terminated["message"]

        said = wait_workflow(cp, namespace, "say-1", release)
        assert said["phase"] == "COMPLETED", said.get("reasonForIncompletion")
        check_the_ui_pod(cp, real_node, namespace, release)


# ---------------------------------------------------------------------------------------------- the UI pod
#: What the "say" attempt's real container prints (one stream: the order of two is the runtime's to choose).
SAID = ["kondukt-ui-e2e: first line", "kondukt-ui-e2e: second line, ünïcode", "kondukt-ui-e2e: the last line"]
SAY = f"""\
import json
for line in {SAID!r}:
    print(line)
open('/dev/termination-log', 'w').write(json.dumps({{'outputData': {{'said': 3}}}}))
"""


def ui_documents(namespace: str) -> list[dict[str, Any]]:
    """A workflow whose one attempt prints known lines, a workflow waiting on a HUMAN task (to operate on),
    and two users: alice may patch workflows, bob may only read them."""
    read = [{"apiGroups": ["kondukt.io"], "resources": ["workflows"], "verbs": ["get", "list"]}]
    docs: list[dict[str, Any]] = [
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "TaskDef", "metadata": {"name": "say"},
         "spec": {"name": "say", "retryCount": 0, "timeoutSeconds": 120, "responseTimeoutSeconds": 120,
                  "template": {"command": ["python3", "-c", SAY]}}},
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "say-1"},
         "spec": {"definition": {"name": "say", "version": 1, "schemaVersion": 2, "tasks": [
             {"name": "say", "taskReferenceName": "say_ref", "type": "SIMPLE"}]}}},
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "approve-1"},
         "spec": {"definition": {"name": "approve", "version": 1, "schemaVersion": 2, "tasks": [
             {"name": "approve", "taskReferenceName": "approve", "type": "HUMAN"}]}}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "operate"},
         "rules": [{**read[0], "verbs": ["get", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "read"}, "rules": read},
    ]
    for user, role in (("alice", "operate"), ("bob", "read")):
        docs += [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": user}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": user},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
             "subjects": [{"kind": "ServiceAccount", "name": user, "namespace": namespace}]},
        ]
    return docs


class UiPod:
    """HTTP to the chart's UI pod at its address on the bridge, naming the Service's host (the UI answers only
    to its own names; a browser reaching it through the Service sends the same)."""

    def __init__(self, address: str, port: int, host: str) -> None:
        self.address, self.port, self.host = address, port, host

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
                ) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.address, self.port, timeout=60)
        try:
            data = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=data, headers={
                "Host": f"{self.host}:{self.port}", "Accept": "application/json",
                **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def json(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
             ) -> tuple[int, Any]:
        status, data = self.request(method, path, body, headers)
        return status, json.loads(data)


def check_the_ui_pod(cp: ControlPlane, node: RealNode, namespace: str, release: str) -> None:
    name = f"{release}-ui"
    rollout = cp.kubectl("-n", namespace, "rollout", "status", f"deployment/{name}", "--timeout=120s",
                         check=False, timeout=140)
    assert rollout.returncode == 0, (rollout.stderr, cp.kubectl("-n", namespace, "logs", f"deployment/{name}",
                                                                check=False).stdout[-3000:])
    [pod] = cp.kubectl_json("get", "pods", "-n", namespace, "-l",
                            f"app.kubernetes.io/instance={release},app.kubernetes.io/component=ui")["items"]
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod["spec"]["serviceAccountName"] == name
    assert pod["spec"]["containers"][0]["image"] == str(node.images["operator"])
    assert pod["spec"]["containers"][0]["args"][:2] == ["ui", "--read-only"]
    port = int(pod["spec"]["containers"][0]["ports"][0]["containerPort"])
    ui = UiPod(pod["status"]["podIP"], port, name)
    # Its ServiceAccount reads and writes nothing (the API server says so, not the chart's text).
    account = f"system:serviceaccount:{namespace}:{name}"
    for verb, allowed in (("list", "yes"), ("watch", "yes"), ("patch", "no"), ("create", "no"), ("delete", "no")):
        answer = cp.kubectl("auth", "can-i", verb, "workflows.kondukt.io", "-n", namespace, "--as", account,
                            check=False).stdout.strip()
        assert answer == allowed, (verb, answer)

    # The image holds the built front end: the files the pod serves are the ones built from ui/ here.
    status, index = ui.request("GET", "/")
    assert status == 200, index[:500]
    found = re.search(rb'<meta name="kondukt-config" content="([^"]+)">', index)
    assert found, index[:2000]
    config = json.loads(html.unescape(found.group(1).decode()))
    assert config["readOnly"] is True
    for asset in ("app.js", "app.css"):
        status, served = ui.request("GET", f"/static/{asset}")
        assert status == 200 and served == static_dir().joinpath(asset).read_bytes(), (asset, status, len(served))
    # Any other host name is refused (DNS rebinding), the pod's own address included.
    refused = http.client.HTTPConnection(ui.address, port, timeout=30)
    try:
        refused.request("GET", "/api/workflows")
        assert refused.getresponse().status == 421
    finally:
        refused.close()

    # The list, read with the UI's own ServiceAccount: the real workflows and their phases.
    status, page = ui.json("GET", f"/api/workflows?namespace={namespace}")
    assert status == 200, page
    phases = {row["name"]: row["phase"] for row in page["rows"]}
    assert phases == {"plan-1": "COMPLETED", "say-1": "COMPLETED", "approve-1": "RUNNING"}, phases

    # An attempt's logs: what its real container printed, read by the UI pod through the API server and the
    # real kubelet.
    status, view = ui.json("GET", f"/api/namespaces/{namespace}/workflows/say-1")
    assert status == 200, view
    [attempt] = [t for t in view["tasks"] if t["ref"] == "say_ref"]
    status, logs = ui.json("GET", f"/api/namespaces/{namespace}/workflows/say-1/attempts/{attempt['taskId']}/logs")
    assert status == 200, logs
    [log] = logs["pods"]
    assert log["node"] == NODE_NAME and "error" not in log, log
    assert log["log"].splitlines() == SAID, log

    # Operations: only with the user's own bearer token, which the API server authorizes.
    operation = f"/api/namespaces/{namespace}/workflows/approve-1/operations"
    csrf = {"X-Kondukt-Token": config["token"]}
    status, answer = ui.json("POST", operation, {"op": "suspend"}, csrf)
    assert status == 401, answer
    assert answer["error"].startswith("this UI is read-only: an operation needs your own bearer token"), answer
    tokens = {user: cp.kubectl("-n", namespace, "create", "token", user, "--duration=10m").stdout.strip()
              for user in ("alice", "bob")}
    status, answer = ui.json("POST", operation, {"op": "terminate"},
                             {**csrf, "Authorization": f"Bearer {tokens['bob']}"})
    assert status == 403, answer
    assert answer["error"].startswith(
        f'forbidden: workflows.kondukt.io "approve-1" is forbidden: User "system:serviceaccount:{namespace}:bob" '
        'cannot patch resource "workflows" in API group "kondukt.io"'), answer
    status, answer = ui.json("POST", operation, {"op": "suspend"},
                             {**csrf, "Authorization": f"Bearer {tokens['alice']}"})
    assert status == 200, answer
    assert answer["message"] == f"workflow.kondukt.io/approve-1 ({namespace}): suspend requested (spec.suspend=true)"
    spec = cp.kubectl_json("get", "workflow", "-n", namespace, "approve-1")["spec"]
    assert spec.get("suspend") is True and "terminate" not in spec, spec

    browse_the_ui_pod(ui, namespace, attempt["taskId"], tokens["bob"])


def browse_the_ui_pod(ui: UiPod, namespace: str, task_id: str, bob: str) -> None:
    """The same pod in Chromium: its resolver maps the Service's name to the pod and resolves nothing else."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.test_ui_browser import BROWSER_ARGS, CHROMIUM, WAIT_MS, screenshot

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run `bash .ci/install-browser` (Debian's chromium)", pytrace=False)
    args = [f"--host-resolver-rules=MAP {ui.host} {ui.address}, MAP * ~NOTFOUND",
            *(a for a in BROWSER_ARGS if not a.startswith("--host-resolver-rules="))]
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.set_default_timeout(WAIT_MS)
            page.goto(f"http://{ui.host}:{ui.port}/#/wf/{namespace}/say-1")
            page.wait_for_selector('main[data-phase="COMPLETED"] #graph [data-ref="say_ref"][data-status="COMPLETED"]')
            assert page.locator("#mode").inner_text() == "read-only: operations need your token"
            page.locator('#graph [data-ref="say_ref"]').click()
            page.locator('#panel [data-action="details"]').click()
            page.wait_for_selector(f'#panel .pod pre:has-text("{SAID[-1]}")')
            assert page.locator("#panel .pod pre").inner_text().splitlines() == SAID
            assert task_id in page.locator("#panel").inner_text()
            screenshot(page, "in-cluster-attempt-logs")
            # bob's token: the page sends it, the API server refuses, the page says what was refused.
            page.goto(f"http://{ui.host}:{ui.port}/#/wf/{namespace}/approve-1")
            page.wait_for_selector("#graph [data-ref='approve']")
            page.on("dialog", lambda dialog: dialog.accept(bob) if dialog.type == "prompt" else dialog.accept())
            page.click('.ops [data-op="terminate"]')
            page.wait_for_selector("#banner.error")
            assert page.locator("#banner").inner_text().startswith(
                f'terminate refused: forbidden: workflows.kondukt.io "approve-1" is forbidden: '
                f'User "system:serviceaccount:{namespace}:bob" cannot patch'), page.locator("#banner").inner_text()
            screenshot(page, "in-cluster-operation-refused")
        finally:
            browser.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture
def s3_on_the_bridge() -> Iterator[tuple[str, Any]]:
    """moto's S3 on the bridge's gateway address (the pods reach it; nothing outside this machine does)."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address=GATEWAY, port=port, verbose=False)
    server.start()
    endpoint = f"http://{GATEWAY}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield endpoint, client
    finally:
        server.stop()


def test_the_seed_image_pipeline_converts_a_real_image_into_the_bucket(
        control_plane: ControlPlane, real_node: RealNode, real_namespace: str,
        s3_on_the_bridge: tuple[str, Any]) -> None:
    from PIL import Image

    cp, namespace = control_plane, real_namespace
    endpoint, s3 = s3_on_the_bridge
    source = REPO / "examples" / "images" / "sample.jpg"
    s3.put_object(Bucket=BUCKET, Key="in/sample.jpg", Body=source.read_bytes())
    label_restricted(cp, namespace)
    # Credentials through a Secret named by the TaskDefs (as the README says), never through the chart's values.
    cp.kubectl("-n", namespace, "create", "secret", "generic", "s3-credentials",
               "--from-literal=AWS_ACCESS_KEY_ID=testing", "--from-literal=AWS_SECRET_ACCESS_KEY=testing",
               "--from-literal=AWS_DEFAULT_REGION=us-east-1")
    settings = {"KONDUKT_S3_ENDPOINT": endpoint, "KONDUKT_OUTPUT_PREFIX": f"s3://{BUCKET}/converted/",
                "KONDUKT_S3_BUCKET": BUCKET, "KONDUKT_S3_PREFIX": "uploads/"}
    values = [arg for key, value in settings.items() for arg in ("--set", f"workers.env.{key}={value}")]
    documents = [d for d in yaml.safe_load_all((REPO / "examples" / "image-convert-resize.yaml").read_text()) if d]
    for document in documents:
        if document["kind"] == "TaskDef":
            document["spec"]["template"]["envFrom"] = [{"secretRef": {"name": "s3-credentials"}}]
        if document["kind"] == "Workflow":
            document["spec"]["input"]["fileLocation"] = f"s3://{BUCKET}/in/sample.jpg"
    with chart_operator(cp, real_node, namespace, *values) as release:
        cp.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(documents))
        status = wait_workflow(cp, namespace, "image-convert-resize-sample", release)
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    location = status["output"]["fileLocation"]
    assert location.startswith(f"{endpoint}/{BUCKET}/uploads/") and location.endswith(".png"), location
    key = location.removeprefix(f"{endpoint}/{BUCKET}/")
    stored = s3.get_object(Bucket=BUCKET, Key=key)
    assert stored["ContentType"] == "image/png"
    with Image.open(io.BytesIO(stored["Body"].read())) as image:
        assert image.format == "PNG"
        # 1600x1067 fitted into 300x300, the aspect ratio kept.
        assert image.size == (300, 200), image.size
    converted = s3.list_objects_v2(Bucket=BUCKET, Prefix="converted/").get("Contents", [])
    assert len(converted) == 1 and converted[0]["Key"].endswith(".png"), converted
