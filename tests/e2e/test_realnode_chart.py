"""The chart and the seed's image pipeline on the real node: nothing simulated.

- The chart, installed with its defaults except the image names, runs the operator as a real pod in a
  namespace labelled `pod-security.kubernetes.io/enforce=restricted`, with its ServiceAccount's token (the
  in-cluster configuration, the API server at the bridge's gateway address); a workflow's task runs as a real
  Job of the workers image there too, and its result comes back through the container's real termination
  message.
- The seed's single-image pipeline (examples/image-convert-resize.yaml) with the real workers image: it reads
  a real JPEG from an S3-compatible endpoint on this machine (moto, on the bridge's gateway address, which the
  pods reach and nothing else does), converts and resizes it, uploads the result; the test opens the result in
  the bucket and checks its format and size.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

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
        pods = cp.kubectl_json("get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}")
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


def test_the_chart_runs_the_operator_as_a_pod_and_a_task_as_a_real_job(
        control_plane: ControlPlane, real_node: RealNode, real_namespace: str) -> None:
    cp, namespace = control_plane, real_namespace
    label_restricted(cp, namespace)
    with chart_operator(cp, real_node, namespace) as release:
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
        cp.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(documents))
        status = wait_workflow(cp, namespace, "plan-1", release)
        assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
        assert status["output"]["tasks"] == [{"name": "image_convert_resize", "type": "SIMPLE",
                                              "taskReferenceName": "image_convert_resize_png_30x20_0"}]
        jobs = cp.kubectl_json("get", "jobs", "-n", namespace)["items"]
        assert len(jobs) == 1
        # The operator reads the result from the pod; the Job controller counts the success in its own time.
        wait_for(lambda: cp.kubectl_json("get", "job", "-n", namespace, jobs[0]["metadata"]["name"])["status"]
                 .get("succeeded") == 1, "the Job to count its pod's success", timeout=60, interval=0.5)
        pods = cp.kubectl_json("get", "pods", "-n", namespace, "-l", f"job-name={jobs[0]['metadata']['name']}")
        [pod] = pods["items"]
        assert pod["spec"]["nodeName"] == NODE_NAME
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 0 and "dynamicTasks" in terminated["message"]


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
