"""Task attempts failing for real on the real node, through the chart's operator: what a real kubelet and a
real container runtime report must reach the task's status.

- A worker that crashes without writing a result: Kubernetes fills its termination message with the log's
  tail (``FallbackToLogsOnError``), and those last lines are the task's reason.
- An attempt killed by the kernel under its memory limit: the kubelet says ``OOMKilled``, the reason says so,
  and the TaskDef's retry policy runs a second attempt, which completes.
- ``timeoutSeconds`` stops a container that is really running: the task is TIMED_OUT and its pod is gone.
- A result larger than a termination message goes through external payload storage (moto's S3 on the
  bridge's gateway address): the worker stores it, the operator fetches it back into the status.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from kondukt.kube.status import output_from_status, tasks_from_status
from tests.e2e.controlplane import ControlPlane, wait_for
from tests.e2e.realnode import NODE_NAME, RealNode
from tests.e2e.test_chart import label_restricted
from tests.e2e.test_realnode_chart import BUCKET, chart_operator, s3_on_the_bridge, wait_workflow

pytestmark = [pytest.mark.e2e, pytest.mark.realnode]

__all__ = ["s3_on_the_bridge"]  # the fixture, imported for these tests


def taskdef(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    template = {"command": command, **spec.pop("template", {})}
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "TaskDef", "metadata": {"name": name},
            "spec": {"name": name, "retryCount": 0, "timeoutSeconds": 120, "responseTimeoutSeconds": 120,
                     **spec, "template": template}}


def one_task_workflow(name: str, task: str, **workflow: Any) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": name},
         "spec": {"name": name, "version": 1, "schemaVersion": 2, **workflow, "tasks": [
             {"name": task, "taskReferenceName": f"{task}_ref", "type": "SIMPLE",
              "inputParameters": {"size": "${workflow.input.size}"}}],
             "outputParameters": {"result": f"${{{task}_ref.output}}"}}},
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": f"{name}-1"},
         "spec": {"workflowDefRef": {"name": name, "version": 1}, "input": {"size": 0}}},
    ]


def run(cp: ControlPlane, node: RealNode, namespace: str, documents: list[dict[str, Any]], *values: str,
        timeout: float = 180) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Install the chart, apply `documents`, wait for their Workflow to finish: its status and attempts."""
    label_restricted(cp, namespace)
    [workflow] = [d["metadata"]["name"] for d in documents if d["kind"] == "Workflow"]
    with chart_operator(cp, node, namespace, *values) as release:
        cp.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(documents))
        status = wait_workflow(cp, namespace, workflow, release, timeout=timeout)
    return status, tasks_from_status(status)


def python(script: str) -> list[str]:
    return ["python3", "-c", script]


def test_a_crashing_worker_has_its_last_log_lines_in_the_reason(
        control_plane: ControlPlane, real_node: RealNode, real_namespace: str) -> None:
    script = ("import sys\nfor n in range(50): print(f'warming up {n}')\n"
              "print('fatal: the widget store is on fire', flush=True)\nsys.exit(3)")
    documents = [taskdef("crasher", python(script)), *one_task_workflow("crash", "crasher")]
    status, tasks = run(control_plane, real_node, real_namespace, documents)
    assert status["phase"] == "FAILED", status
    [task] = tasks
    assert task["status"] == "FAILED"
    reason = task["reasonForIncompletion"]
    # The kubelet's log tail, the last line last; the exit code and the kubelet's reason before it.
    assert reason.startswith("the worker exited with code 3 (Error): "), reason
    assert reason.rstrip().endswith("warming up 49\nfatal: the widget store is on fire"), reason
    assert "the widget store is on fire" in status["reasonForIncompletion"]


def test_an_attempt_oomkilled_under_its_memory_limit_is_retried(
        control_plane: ControlPlane, real_node: RealNode, real_namespace: str) -> None:
    # The first attempt allocates (and touches) far past its limit; the retry writes a result.
    script = """
import json, os
if os.environ['KONDUKT_RETRY_COUNT'] == '0':
    hog = []
    for _ in range(32):
        hog.append(b'x' * (16 << 20))
open('/dev/termination-log', 'w').write(json.dumps({'outputData': {'retry': os.environ['KONDUKT_RETRY_COUNT']}}))
"""
    limits = {"resources": {"requests": {"memory": "48Mi"}, "limits": {"memory": "48Mi"}}}
    documents = [taskdef("hog", python(script), retryCount=1, retryLogic="FIXED", retryDelaySeconds=0,
                         template=limits), *one_task_workflow("oom", "hog")]
    status, tasks = run(control_plane, real_node, real_namespace, documents)
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    assert [(t["status"], t["retryCount"]) for t in tasks] == [("FAILED", 0), ("COMPLETED", 1)], tasks
    assert "(OOMKilled)" in tasks[0]["reasonForIncompletion"], tasks[0]["reasonForIncompletion"]
    assert tasks[0]["reasonForIncompletion"].startswith("the worker exited with code 137 (OOMKilled)")
    assert tasks[1]["outputData"] == {"retry": "1"}
    assert output_from_status(status)["result"] == {"retry": "1"}


def test_timeout_seconds_stops_a_running_container(
        control_plane: ControlPlane, real_node: RealNode, real_namespace: str) -> None:
    cp, namespace = control_plane, real_namespace
    script = "import time\nprint('working', flush=True)\ntime.sleep(900)"
    documents = [taskdef("sleeper", python(script), timeoutSeconds=10, responseTimeoutSeconds=10,
                         timeoutPolicy="TIME_OUT_WF"), *one_task_workflow("slow", "sleeper")]
    label_restricted(cp, namespace)
    with chart_operator(cp, real_node, namespace) as release:
        cp.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(documents))

        def running_pod() -> dict[str, Any] | None:
            for pod in cp.kubectl_json("get", "pods", "-n", namespace, "-l", "job-name")["items"]:
                statuses = (pod.get("status") or {}).get("containerStatuses") or []
                if statuses and "running" in statuses[0]["state"]:
                    return pod  # type: ignore[no-any-return]
            return None

        pod = wait_for(running_pod, "the sleeper's container to run", timeout=90, interval=0.5)
        assert pod is not None
        assert pod["spec"]["nodeName"] == NODE_NAME
        status = wait_workflow(cp, namespace, "slow-1", release, timeout=120)
        job_name = pod["metadata"]["labels"]["job-name"]
        wait_for(lambda: not cp.kubectl_json("get", "pods", "-n", namespace, "-l", f"job-name={job_name}")["items"],
                 "the timed-out attempt's pod to be gone", timeout=90, interval=0.5)
    assert status["phase"] == "TIMED_OUT", status
    [task] = tasks_from_status(status)
    assert task["status"] == "TIMED_OUT", task


def test_a_large_result_goes_through_external_payload_storage(
        control_plane: ControlPlane, real_node: RealNode, real_namespace: str,
        s3_on_the_bridge: tuple[str, Any]) -> None:
    cp, namespace = control_plane, real_namespace
    endpoint, s3 = s3_on_the_bridge
    cp.kubectl("-n", namespace, "create", "secret", "generic", "s3-credentials",
               "--from-literal=AWS_ACCESS_KEY_ID=testing", "--from-literal=AWS_SECRET_ACCESS_KEY=testing",
               "--from-literal=AWS_DEFAULT_REGION=us-east-1")
    storage = {"KONDUKT_S3_ENDPOINT": endpoint, "KONDUKT_PAYLOAD_BUCKET": BUCKET}
    values = [arg for key, value in storage.items() for arg in ("--set", f"workers.env.{key}={value}")]
    for index, (key, value) in enumerate(storage.items()):
        values += ["--set", f"extraEnv[{index}].name={key}", "--set", f"extraEnv[{index}].value={value}"]
    values += ["--set", "envFrom[0].secretRef.name=s3-credentials"]
    # A worker of the SDK, registered and run in the container (the worker protocol writes the result).
    script = """
import sys
from kondukt_workers import worker_task
from kondukt_workers.cli import main

@worker_task(task_definition_name='big')
def big(task_input):
    return {'lines': [f'line {n:05d} ' + 'k' * 40 for n in range(task_input['size'])]}

sys.exit(main(['big']))
"""
    documents = [taskdef("big", python(script), template={"envFrom": [{"secretRef": {"name": "s3-credentials"}}]}),
                 *one_task_workflow("large", "big")]
    documents[-1]["spec"]["input"]["size"] = 2000  # about 100 KB of JSON, 25 times a termination message
    status, tasks = run(cp, real_node, namespace, documents, *values)
    assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
    [task] = tasks
    lines = task["outputData"]["lines"]
    assert len(lines) == 2000 and lines[-1] == "line 01999 " + "k" * 40
    assert output_from_status(status)["result"]["lines"] == lines  # an output this large is kept compressed
    stored = s3.list_objects_v2(Bucket=BUCKET, Prefix="payloads/").get("Contents", [])
    assert len(stored) == 1 and stored[0]["Size"] > 100_000, stored
    body = json.loads(s3.get_object(Bucket=BUCKET, Key=stored[0]["Key"])["Body"].read())
    assert body["lines"] == lines or body.get("outputData", {}).get("lines") == lines
