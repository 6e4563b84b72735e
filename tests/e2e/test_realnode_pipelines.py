"""The seed's other image pipelines on the real node with the real workers image (test_realnode_chart runs
examples/image-convert-resize.yaml): several formats in sequence (image-multiple-format.yaml), a dynamic
fork over formats and sizes (image-dynamic-fork.yaml) and a sub-workflow (image-subworkflow.yaml), under one
chart-installed operator. They read a real JPEG from moto's S3 on the bridge's gateway address and upload
their results there; the test opens every result in the bucket and checks its format and size.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kondukt.kube.status import output_from_status
from tests.e2e.controlplane import ControlPlane
from tests.e2e.realnode import RealNode
from tests.e2e.test_chart import REPO, label_restricted
from tests.e2e.test_realnode_chart import BUCKET, chart_operator, s3_on_the_bridge, wait_workflow

pytestmark = [pytest.mark.e2e, pytest.mark.realnode]

__all__ = ["s3_on_the_bridge"]  # the fixture, imported for this test

EXAMPLES = ("image-multiple-format.yaml", "image-dynamic-fork.yaml", "image-subworkflow.yaml")
FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
#: examples/images/sample.jpg (1600x1067) fitted into the examples' boxes, the aspect ratio kept.
FITTED = {(300, 200), (120, 80)}


def locations(value: Any) -> Iterator[str]:
    """Every string in a workflow's output that names a file in the bucket."""
    if isinstance(value, dict):
        for item in value.values():
            yield from locations(item)
    elif isinstance(value, list):
        for item in value:
            yield from locations(item)
    elif isinstance(value, str) and value.startswith(("http://", "s3://")):
        yield value


def test_the_seed_pipelines_run_with_the_real_workers_image(
        control_plane: ControlPlane, real_node: RealNode, real_namespace: str,
        s3_on_the_bridge: tuple[str, Any]) -> None:
    from PIL import Image

    cp, namespace = control_plane, real_namespace
    endpoint, s3 = s3_on_the_bridge
    s3.put_object(Bucket=BUCKET, Key="in/sample.jpg", Body=(REPO / "examples" / "images" / "sample.jpg").read_bytes())
    label_restricted(cp, namespace)
    cp.kubectl("-n", namespace, "create", "secret", "generic", "s3-credentials",
               "--from-literal=AWS_ACCESS_KEY_ID=testing", "--from-literal=AWS_SECRET_ACCESS_KEY=testing",
               "--from-literal=AWS_DEFAULT_REGION=us-east-1")
    settings = {"KONDUKT_S3_ENDPOINT": endpoint, "KONDUKT_OUTPUT_PREFIX": f"s3://{BUCKET}/converted/",
                "KONDUKT_S3_BUCKET": BUCKET, "KONDUKT_S3_PREFIX": "uploads/"}
    values = [arg for key, value in settings.items() for arg in ("--set", f"workers.env.{key}={value}")]
    documents: list[dict[str, Any]] = []
    workflows = []
    for example in EXAMPLES:
        for document in yaml.safe_load_all((REPO / "examples" / example).read_text()):
            if not document:
                continue
            if document["kind"] == "TaskDef":
                document["spec"]["template"]["envFrom"] = [{"secretRef": {"name": "s3-credentials"}}]
            if document["kind"] == "Workflow":
                document["spec"]["input"]["fileLocation"] = f"s3://{BUCKET}/in/sample.jpg"
                workflows.append(document["metadata"]["name"])
            documents.append(document)
    assert len(workflows) == len(EXAMPLES)
    with chart_operator(cp, real_node, namespace, *values) as release:
        cp.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(documents))
        statuses = {name: wait_workflow(cp, namespace, name, release, timeout=420) for name in workflows}
    opened: dict[str, list[tuple[str, tuple[int, int]]]] = {}
    for name, status in statuses.items():
        assert status["phase"] == "COMPLETED", (name, status.get("reasonForIncompletion"))
        for location in locations(output_from_status(status)):
            # Uploads (upload_toS3) are the endpoint's URLs; the dynamic fork's conversions stay s3:// URIs.
            key = location.removeprefix(f"{endpoint}/{BUCKET}/").removeprefix(f"s3://{BUCKET}/")
            assert key.startswith(("uploads/", "converted/")), (name, location)
            extension = location.rsplit(".", 1)[-1]
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            with Image.open(io.BytesIO(body)) as image:
                assert image.format == FORMATS[extension], (location, image.format)
                assert image.size in FITTED, (location, image.size)
                opened.setdefault(name, []).append((str(image.format), image.size))
    assert sorted(f for f, _ in opened["image-multiple-format-sample"]) == ["JPEG", "WEBP"], opened
    assert sorted(f for f, _ in opened["image-subworkflow-sample"]) == ["JPEG", "WEBP"], opened
    assert sorted(opened["image-dynamic-fork-sample"]) == sorted(
        (f, s) for f in ("JPEG", "PNG", "WEBP") for s in FITTED), opened
