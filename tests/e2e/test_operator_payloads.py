"""A dynamic fork too big for its Workflow's status, with external payload storage: it COMPLETES (issue 12).

The operator is given payload storage on a real S3 endpoint (moto on 127.0.0.1). A plan step makes the
inputs of 200 branches, 1.5 KB each: its output (~300 KB) is over the 256 KiB a value may keep in the status,
and so is the join's output (every branch's echoed input). Both go to the bucket and the status holds
Conductor's pointers instead; the branches still get their inputs, the workflow its output, and the task list
is stored compressed. At 10,000 branches this is the benchmark's fork (``python -m bench peers --workloads
fork``); here the same path at a size the kwok tier affords.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_support import Cluster, OperatorProcess, taskdef, workflow

pytestmark = pytest.mark.e2e

BRANCHES = 200
BUCKET = "payloads"
PLAN = (
    "(function () { var tasks = [], inputs = {}, pad = new Array(1501).join('p');"
    " for (var i = 0; i < $.branches; i++) {"
    "   tasks.push({name: 'echo', taskReferenceName: 'branch_' + i});"
    "   inputs['branch_' + i] = {index: i, pad: pad}; }"
    " return {tasks: tasks, inputs: inputs}; })()"
)


@pytest.fixture
def s3() -> Iterator[tuple[dict[str, str], Any]]:
    """moto's S3 on 127.0.0.1 with a bucket, and the operator's environment to use it (dummy credentials; boto3
    kept from the user's AWS files and the instance metadata service)."""
    import boto3
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing").client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
    client.create_bucket(Bucket=BUCKET)
    env = {"KONDUKT_PAYLOAD_BUCKET": BUCKET, "KONDUKT_S3_ENDPOINT": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        yield env, client
    finally:
        server.stop()


def test_a_dynamic_fork_over_the_status_limit_completes_through_payload_storage(
        control_plane: ControlPlane, namespace: str, tmp_path: Path, s3: tuple[dict[str, str], Any]) -> None:
    env, client = s3
    operator = OperatorProcess(control_plane, namespace, tmp_path, env=env).start()
    try:
        cluster = Cluster(control_plane, namespace, operator)
        cluster.apply(taskdef("echo"))
        cluster.apply(workflow("wide", input={"count": BRANCHES}, definition={
            "name": "wide",
            "tasks": [
                {"name": "plan", "taskReferenceName": "plan", "type": "INLINE",
                 "inputParameters": {"evaluatorType": "javascript", "expression": PLAN,
                                     "branches": "${workflow.input.count}"}},
                {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN_DYNAMIC",
                 "inputParameters": {"dynamicTasks": "${plan.output.result.tasks}",
                                     "dynamicTasksInput": "${plan.output.result.inputs}"},
                 "dynamicForkTasksParam": "dynamicTasks", "dynamicForkTasksInputParamName": "dynamicTasksInput"},
                {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
            ],
            "outputParameters": {"seventh": "${plan.output.result.inputs.branch_7.index}",
                                 "last": "${join.output.branch_199.index}"},
        }))
        status = cluster.wait_phase("wide", timeout=300)
        assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
        assert status["output"] == {"seventh": 7, "last": BRANCHES - 1}
        assert "tasksCompressed" in status and "tasks" not in status
        tasks = {t["referenceTaskName"]: t for t in cluster.tasks("wide")}
        assert len([ref for ref in tasks if ref.startswith("branch_")]) == BRANCHES
        assert all(t["status"] == "COMPLETED" for t in tasks.values())
        assert tasks["branch_3"]["outputData"]["index"] == 3  # each branch's input reached its pod
        # The FORK keeps only the forked references (Conductor's forkedTasks): small, in the status.
        assert tasks["fork"]["inputData"]["forkedTasks"][:2] == ["branch_0", "branch_1"]
        pointers = {(ref, field): tasks[ref][field] for ref in ("plan", "fork", "join")
                    for field in ("externalOutputPayloadStoragePath", "externalInputPayloadStoragePath")
                    if field in tasks[ref]}
        assert set(pointers) == {("plan", "externalOutputPayloadStoragePath"),
                                 ("join", "externalOutputPayloadStoragePath")}, pointers
        for uri in pointers.values():
            bucket, key = uri.removeprefix("s3://").split("/", 1)
            stored = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            assert len(json.dumps(stored)) > 256 * 1024 and bucket == BUCKET
        obj = cluster.workflow("wide")
        assert len(json.dumps(obj, separators=(",", ":"))) < 256 * 1024, "the values stayed out of the object"
        assert operator.alive() and "Traceback" not in operator.logs()
    finally:
        operator.stop()
