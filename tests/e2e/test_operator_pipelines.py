"""The seed's four image pipelines, and Conductor-imported definitions, run by the operator on a real
control plane. kwok's fake pods stand in for the workers: each TaskDef's template keeps the examples'
policies but gets kwok annotations, so outputs flow through real termination messages (the echo stage
returns a task's KONDUKT_INPUT as its outputData; the dynamic-fork generator returns a fixed plan).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_operator_support import (  # noqa: F401 (fixtures)
    ECHO,
    REPO,
    WORKER_IMAGE,
    Cluster,
    cluster_fixture,
    operator_fixture,
    workflow,
)

pytestmark = pytest.mark.e2e

SOURCE = "s3://kondukt-e2e/in/sample.jpg"
FORMATS = ("jpg", "png", "webp")
SIZES = ((300, 300), (120, 120))


def generator_plan() -> dict[str, Any]:
    """What image_multiple_convert_resize outputs for FORMATS x SIZES: a dynamic-fork plan."""
    tasks, inputs = [], {}
    for fmt in FORMATS:
        for width, height in SIZES:
            ref = f"image_convert_resize_{fmt}_{width}x{height}"
            tasks.append({"name": "image_convert_resize", "taskReferenceName": ref, "type": "SIMPLE"})
            inputs[ref] = {"fileLocation": SOURCE, "outputFormat": fmt, "outputWidth": width, "outputHeight": height}
    return {"outputData": {"dynamicTasks": tasks, "dynamicTasksInput": inputs}}


def example_documents(file: str) -> list[dict[str, Any]]:
    """An example's manifests with kwok-run TaskDef templates and an s3 input."""
    documents = [d for d in yaml.safe_load_all((REPO / "examples" / file).read_text()) if d]
    for document in documents:
        if document["kind"] == "TaskDef":
            annotations = dict(ECHO)
            if document["spec"]["name"] == "image_multiple_convert_resize":
                annotations = {"kwok.kondukt.io/termination-message": json.dumps(generator_plan())}
            document["spec"]["template"] = {"image": WORKER_IMAGE, "annotations": annotations}
        if document["kind"] == "Workflow":
            document["spec"]["input"]["fileLocation"] = SOURCE
    return documents


def assert_routine_events(cluster: Cluster, name: str) -> None:
    """A run without trouble posts its start and its end, not an Event per task (docs/operations.md, Events)."""
    cluster.wait_until(lambda: any(e["reason"] == "WorkflowCompleted" for e in cluster.events(name)),
                       "the WorkflowCompleted Event (posted in the background)")
    assert sorted((e["type"], e["reason"], e.get("count", 1)) for e in cluster.events(name)) == [
        ("Normal", "WorkflowCompleted", 1), ("Normal", "WorkflowRunning", 1)]


def test_single_image_pipeline(cluster: Cluster) -> None:
    cluster.apply(*example_documents("image-convert-resize.yaml"))
    status = cluster.wait_phase("image-convert-resize-sample")
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    assert status["output"] == {"fileLocation": SOURCE}
    assert status["progress"] == "2/2"
    tasks = cluster.tasks("image-convert-resize-sample")
    assert [t["referenceTaskName"] for t in tasks] == ["image_convert_resize_ref", "upload_toS3_ref"]
    assert tasks[0]["outputData"] == {"fileLocation": SOURCE, "outputFormat": "png", "outputWidth": 300,
                                      "outputHeight": 300}
    assert tasks[0]["taskType"] == "image_convert_resize"
    jobs = {j["metadata"]["name"]: j for j in cluster.jobs()}
    assert set(jobs) == {t["jobName"] for t in tasks}
    for job in jobs.values():
        assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 60
        owner = job["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "Workflow" and owner["name"] == "image-convert-resize-sample"
    assert_routine_events(cluster, "image-convert-resize-sample")
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Ready": "True", "Succeeded": "True", "Failed": "False", "Suspended": "False"}


def test_multiple_format_fork_join_pipeline(cluster: Cluster) -> None:
    cluster.apply(*example_documents("image-multiple-format.yaml"))
    status = cluster.wait_phase("image-multiple-format-sample")
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    assert status["output"] == {"fileLocationJpg": SOURCE, "fileLocationWebp": SOURCE}
    formats = {t["inputData"].get("outputFormat") for t in cluster.tasks("image-multiple-format-sample")
               if t["taskDefName"] == "image_convert_resize"}
    assert formats == {"jpg", "webp"}
    assert len(cluster.jobs()) == 4


def test_dynamic_fork_pipeline(cluster: Cluster) -> None:
    cluster.apply(*example_documents("image-dynamic-fork.yaml"))
    status = cluster.wait_phase("image-dynamic-fork-sample")
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    joined = status["output"]["fileLocations"]
    assert len(joined) == len(FORMATS) * len(SIZES)
    assert joined["image_convert_resize_webp_120x120"]["outputFormat"] == "webp"
    assert len(cluster.jobs()) == 1 + len(FORMATS) * len(SIZES)
    assert_routine_events(cluster, "image-dynamic-fork-sample")


def test_sub_workflow_pipeline(cluster: Cluster) -> None:
    cluster.apply(*example_documents("image-subworkflow.yaml"))
    status = cluster.wait_phase("image-subworkflow-sample")
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    assert status["output"] == {"fileLocationJpg": SOURCE, "fileLocationWebp": SOURCE}
    sub = next(t for t in cluster.tasks("image-subworkflow-sample") if t["taskType"] == "SUB_WORKFLOW")
    children = cluster.list("workflows", selector=f"kondukt.io/parent-workflow-uid={status['workflowId']}")
    assert [c["metadata"]["uid"] for c in children] == [sub["subWorkflowId"]]
    child = children[0]
    assert child["status"]["phase"] == "COMPLETED"
    assert child["spec"]["parentWorkflowId"] == status["workflowId"]
    assert child["metadata"]["ownerReferences"][0]["uid"] == status["workflowId"]


CONDUCTOR_WORKFLOW = {
    "name": "image_convert_resize",
    "description": "Image Processing Workflow",
    "version": 1,
    "tasks": [
        {"name": "image_convert_resize", "taskReferenceName": "image_convert_resize_ref",
         "inputParameters": {"fileLocation": "${workflow.input.fileLocation}",
                             "outputFormat": "${workflow.input.recipeParameters.outputFormat}",
                             "outputWidth": "${workflow.input.recipeParameters.outputSize.width}",
                             "outputHeight": "${workflow.input.recipeParameters.outputSize.height}"},
         "type": "SIMPLE", "decisionCases": {}, "defaultCase": [], "forkTasks": [], "startDelay": 0, "joinOn": [],
         "optional": False, "defaultExclusiveJoinTask": [], "asyncComplete": False, "loopOver": []},
        {"name": "upload_toS3", "taskReferenceName": "upload_toS3_ref",
         "inputParameters": {"fileLocation": "${image_convert_resize_ref.output.fileLocation}"},
         "type": "SIMPLE", "decisionCases": {}, "defaultCase": [], "forkTasks": [], "startDelay": 0, "joinOn": [],
         "optional": False, "defaultExclusiveJoinTask": [], "asyncComplete": False, "loopOver": []},
    ],
    "outputParameters": {"fileLocation": "${upload_toS3_ref.output.fileLocation}"},
    "schemaVersion": 2, "restartable": True, "workflowStatusListenerEnabled": True, "ownerEmail": "devrel@example.com",
    "timeoutPolicy": "ALERT_ONLY", "timeoutSeconds": 0, "variables": {}, "inputTemplate": {},
    "createTime": 1643029463045, "updatedBy": "someone",
}
CONDUCTOR_TASKDEFS = [
    {"name": "image_convert_resize", "retryCount": 3, "timeoutSeconds": 30, "pollTimeoutSeconds": 30,
     "inputKeys": ["fileLocation", "outputFormat", "outputWidth", "outputHeight"], "outputKeys": ["outputLocation"],
     "timeoutPolicy": "TIME_OUT_WF", "retryLogic": "FIXED", "retryDelaySeconds": 30, "responseTimeoutSeconds": 30,
     "concurrentExecLimit": 100, "rateLimitFrequencyInSeconds": 30, "rateLimitPerFrequency": 50,
     "ownerEmail": "devrel@example.com"},
    {"name": "upload_toS3", "retryCount": 3, "timeoutSeconds": 30, "timeoutPolicy": "TIME_OUT_WF",
     "retryLogic": "FIXED", "retryDelaySeconds": 30, "responseTimeoutSeconds": 30, "ownerEmail": "devrel@example.com"},
]


def test_conductor_definitions_imported_and_applied_with_kubectl(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "workflow.json").write_text(json.dumps(CONDUCTOR_WORKFLOW))
    (tmp_path / "taskdefs.json").write_text(json.dumps(CONDUCTOR_TASKDEFS))
    imported = subprocess.run(
        [sys.executable, "-m", "kondukt.cli", "import", "conductor", "--image", WORKER_IMAGE,
         str(tmp_path / "taskdefs.json"), str(tmp_path / "workflow.json")],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert imported.returncode == 0, imported.stderr
    documents = [d for d in yaml.safe_load_all(imported.stdout) if d]
    for document in documents:
        if document["kind"] == "TaskDef":  # kwok runs the attempts: add its annotation to the template
            document["spec"]["template"]["annotations"] = dict(ECHO)
    manifests = tmp_path / "imported.yaml"
    manifests.write_text(yaml.safe_dump_all(documents))
    cluster.cp.kubectl("-n", cluster.namespace, "apply", "-f", str(manifests))
    stored = cluster.list("workflowdefs")[0]["spec"]
    assert stored["ownerEmail"] == "devrel@example.com" and stored["updatedBy"] == "someone", \
        "Conductor's extra fields round-trip through the API server"
    cluster.apply(workflow("imported-run", ref="image_convert_resize", version=1,
                           input={"fileLocation": SOURCE,
                                  "recipeParameters": {"outputFormat": "webp",
                                                       "outputSize": {"width": 64, "height": 64}}}))
    status = cluster.wait_phase("imported-run")
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    assert status["output"] == {"fileLocation": SOURCE}
    assert cluster.tasks("imported-run")[0]["inputData"]["outputFormat"] == "webp"
