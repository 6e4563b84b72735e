"""`kondukt get | describe | watch | graph` and the operations, against the real control plane.

No operator runs here: each test creates a Workflow with kubectl and writes its ``status`` by hand through
the status subresource, the way the operator would, so what the CLI shows is exactly what was written.
The operations are checked by reading back the annotation or spec field they must set.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from kondukt import cli as kondukt_cli
from kondukt.engine.models import Task, TaskStatus, WorkflowDef, WorkflowTask
from tests.e2e.controlplane import ControlPlane, wait_for, write_kubeconfig

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
TIMEOUT = 60  # every wait is bounded

PIPELINE = WorkflowDef(
    name="image_convert_resize",
    version=1,
    tasks=[
        WorkflowTask(name="image_convert_resize", taskReferenceName="image_convert_resize_ref"),
        WorkflowTask(name="upload_toS3", taskReferenceName="upload_toS3_ref"),
    ],
)


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def crds(control_plane: ControlPlane) -> None:
    files = sorted(CRDS.glob("*.yaml"))
    assert files, f"no CRDs in {CRDS}: run `make crds`"
    for file in files:
        control_plane.kubectl("apply", "-f", str(file))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/workflows.kondukt.io", "crd/workflowdefs.kondukt.io", "crd/taskdefs.kondukt.io",
    )


@pytest.fixture
def ns(crds: None, namespace: str) -> str:
    return namespace


class Kondukt:
    """Runs `kondukt ARGS --kubeconfig ... -n NS` in-process; returns (exit code, stdout, stderr)."""

    def __init__(self, cp: ControlPlane, namespace: str, capsys: pytest.CaptureFixture[str]):
        self.cp, self.namespace, self.capsys = cp, namespace, capsys

    def __call__(self, *args: str, kubeconfig: Path | None = None) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = kondukt_cli.main([*args, "--kubeconfig", str(kubeconfig or self.cp.kubeconfig), "-n", self.namespace])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def kondukt(control_plane: ControlPlane, ns: str, capsys: pytest.CaptureFixture[str]) -> Kondukt:
    return Kondukt(control_plane, ns, capsys)


# ---------------------------------------------------------------------------------------------- helpers
def create_workflow(cp: ControlPlane, ns: str, name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    manifest = {
        "apiVersion": "kondukt.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec or {"workflowDefRef": {"name": "image_convert_resize", "version": 1},
                         "input": {"fileLocation": "s3://in/cat.jpg"}, "correlationId": "order-42"},
    }
    cp.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    return get_workflow(cp, ns, name)


def get_workflow(cp: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    return dict(cp.kubectl_json("-n", ns, "get", "workflow.kondukt.io", name))


def set_status(cp: ControlPlane, ns: str, name: str, **status: Any) -> None:
    """Write status fields as the operator would (merge patch on the status subresource)."""
    cp.kubectl("-n", ns, "patch", "workflow.kondukt.io", name, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": status}))


def attempt(ref: str, status: TaskStatus, seq: int, **fields: Any) -> dict[str, Any]:
    name = ref.removesuffix("_ref")
    task = Task(taskId=f"{ref}-{seq}", taskType=name, referenceTaskName=ref, taskDefName=name, status=status,
                seq=seq, **fields)
    return task.model_dump(mode="json", exclude_none=True)


def now_ms() -> int:
    return int(time.time() * 1000)


def running_status(**extra: Any) -> dict[str, Any]:
    start = now_ms() - 60_000
    status: dict[str, Any] = {
        "phase": "RUNNING",
        "progress": "1/2",
        "message": "upload_toS3_ref is running",
        "workflowId": str(uuid.uuid4()),
        "workflowName": "image_convert_resize",
        "workflowVersion": 1,
        "startTime": start,
        "definition": PIPELINE.model_dump(mode="json", exclude_none=True),
        "tasks": [
            attempt("image_convert_resize_ref", TaskStatus.FAILED, 1, startTime=start, endTime=start + 1200,
                    reasonForIncompletion="exit code 1: cannot open s3://in/cat.jpg"),
            attempt("image_convert_resize_ref", TaskStatus.COMPLETED, 2, retryCount=1, startTime=start + 2000,
                    endTime=start + 6000),
            attempt("upload_toS3_ref", TaskStatus.IN_PROGRESS, 3, startTime=start + 7000),
        ],
        "conditions": [{"type": "Ready", "status": "False", "reason": "Running", "message": "1 of 2 tasks done",
                        "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}],
    }
    status.update(extra)
    return status


def annotation(cp: ControlPlane, ns: str, name: str, op: str) -> dict[str, Any]:
    annotations = get_workflow(cp, ns, name)["metadata"].get("annotations") or {}
    raw = annotations.get(f"ops.kondukt.io/{op}")
    assert raw, f"no ops.kondukt.io/{op} annotation on {name}: {annotations}"
    value = json.loads(raw)
    assert str(uuid.UUID(value["nonce"])) == value["nonce"]
    return dict(value)


def table(out: str) -> list[list[str]]:
    return [line.split(maxsplit=4) for line in out.splitlines()]


# ---------------------------------------------------------------------------------------------- get
def test_get_lists_workflows_like_kubectl(control_plane: ControlPlane, ns: str, kondukt: Kondukt) -> None:
    create_workflow(control_plane, ns, "resize-a")
    create_workflow(control_plane, ns, "resize-b")
    set_status(control_plane, ns, "resize-a", **running_status())
    code, out, err = kondukt("get")
    assert (code, err) == (0, "")
    rows = table(out)
    assert rows[0] == ["NAME", "PHASE", "PROGRESS", "AGE", "MESSAGE"]
    assert rows[1][:3] == ["resize-a", "RUNNING", "1/2"] and rows[1][4] == "upload_toS3_ref is running"
    assert rows[2][0] == "resize-b" and len(rows[2]) == 2  # no status yet: name and age only

    code, out, _ = kondukt("get", "resize-a", "-o", "json")
    obj = json.loads(out)
    assert code == 0 and obj["status"]["phase"] == "RUNNING" and "managedFields" not in obj["metadata"]
    code, out, _ = kondukt("get", "-o", "yaml")
    assert [i["metadata"]["name"] for i in yaml.safe_load(out)["items"]] == ["resize-a", "resize-b"]
    code, out, _ = kondukt("get", "-A")
    assert [ns, "resize-a", "RUNNING", "1/2"] in [line.split()[:4] for line in out.splitlines()]
    code, out, _ = kondukt("get", "-o", "wide")
    assert "image_convert_resize v1" in out and "order-42" in out


def test_get_explains_what_is_missing(control_plane: ControlPlane, ns: str, kondukt: Kondukt) -> None:
    assert kondukt("get") == (0, "", f"No workflows found in {ns} namespace.\n")
    code, out, err = kondukt("get", "nope")
    assert (code, out) == (2, "")
    assert err == f'workflow "nope" not found in namespace {ns}\n'
    code, _, err = kondukt("describe", "nope")
    assert code == 2 and err == f'workflow "nope" not found in namespace {ns}\n'
    code, _, err = kondukt("retry", "nope")
    assert code == 2 and err == f'workflow "nope" not found in namespace {ns}\n'


# ---------------------------------------------------------------------------------------------- describe
def test_describe_shows_attempts_conditions_and_events(control_plane: ControlPlane, ns: str, kondukt: Kondukt) -> None:
    obj = create_workflow(control_plane, ns, "resize-d")
    set_status(control_plane, ns, "resize-d", **running_status(output={"partial": True}))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"resize-d.{secrets.token_hex(4)}", "namespace": ns},
        "involvedObject": {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "name": "resize-d",
                           "namespace": ns, "uid": obj["metadata"]["uid"]},
        "reason": "TaskRetried", "message": "image_convert_resize_ref failed, retry 1 scheduled",
        "type": "Warning", "source": {"component": "kondukt-operator"},
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }
    control_plane.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(event))
    code, out, err = kondukt("describe", "resize-d")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert "Name:            resize-d" in lines and f"Namespace:       {ns}" in lines
    assert "Phase:           RUNNING" in lines and "Definition:      image_convert_resize v1" in lines
    assert '  fileLocation:  "s3://in/cat.jpg"' in lines and "  partial:  true" in lines
    first_row = lines.index("Tasks (3 attempts):") + 2
    rows = [line.split(maxsplit=7) for line in lines[first_row : first_row + 3]]
    assert rows[0] == ["image_convert_resize_ref", "image_convert_resize", "FAILED", "0", "0", "1.2s", "-",
                       "exit code 1: cannot open s3://in/cat.jpg"]
    assert rows[1][:6] == ["image_convert_resize_ref", "image_convert_resize", "COMPLETED", "1", "0", "4.0s"]
    assert rows[2][:5] == ["upload_toS3_ref", "upload_toS3", "IN_PROGRESS", "0", "0"]
    assert lines[lines.index("Conditions:") + 2].split()[:3] == ["Ready", "False", "Running"]
    event_row = lines[lines.index("Events:") + 2]
    assert event_row.split()[:2] == ["Warning", "TaskRetried"]
    assert event_row.endswith("kondukt-operator   image_convert_resize_ref failed, retry 1 scheduled")


def test_cluster_flags_may_come_before_the_command(
    control_plane: ControlPlane, ns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """As kubectl users type them: `kondukt -n NS --kubeconfig FILE describe NAME`."""
    create_workflow(control_plane, ns, "resize-b")
    set_status(control_plane, ns, "resize-b", **running_status())
    capsys.readouterr()
    code = kondukt_cli.main(["-n", ns, "--kubeconfig", str(control_plane.kubeconfig), "describe", "resize-b"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert "Name:            resize-b" in out.splitlines() and f"Namespace:       {ns}" in out.splitlines()
    code = kondukt_cli.main(["--kubeconfig", str(control_plane.kubeconfig), "--namespace", ns, "suspend", "resize-b"])
    out, err = capsys.readouterr()
    assert (code, out, err) == (0, f"workflow.kondukt.io/resize-b ({ns}): suspend requested (spec.suspend=true)\n", "")
    assert get_workflow(control_plane, ns, "resize-b")["spec"]["suspend"] is True


# ---------------------------------------------------------------------------------------------- watch
class WatchInBackground:
    def __init__(self, kondukt: Kondukt, *args: str):
        self.result: tuple[int, str, str] | None = None
        self.thread = threading.Thread(target=lambda: setattr(self, "result", kondukt("watch", *args)), daemon=True)
        self.thread.start()

    def wait(self) -> tuple[int, str, str]:
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "kondukt watch did not return"
        assert self.result is not None
        return self.result


def test_watch_follows_a_workflow_until_it_completes(control_plane: ControlPlane, ns: str, kondukt: Kondukt) -> None:
    create_workflow(control_plane, ns, "resize-w")
    status = running_status()
    set_status(control_plane, ns, "resize-w", **status)
    watch = WatchInBackground(kondukt, "resize-w", "--plain", "--timeout", str(TIMEOUT))
    time.sleep(1)  # let it print the first state; the later patches then arrive through the watch
    status["tasks"][2]["status"] = "COMPLETED"
    status["tasks"][2]["endTime"] = now_ms()
    set_status(control_plane, ns, "resize-w", tasks=status["tasks"], progress="2/2")
    done = {"type": "Ready", "status": "True", "reason": "Succeeded", "message": "all tasks done",
            "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    set_status(control_plane, ns, "resize-w", phase="COMPLETED", message="", endTime=now_ms(), conditions=[done])
    code, out, err = watch.wait()
    assert (code, err) == (0, "")
    lines = [line.split(maxsplit=1)[1] for line in out.splitlines()]  # drop the clock
    assert lines[:4] == [
        "image_convert_resize_ref (image_convert_resize) FAILED: exit code 1: cannot open s3://in/cat.jpg",
        "image_convert_resize_ref (image_convert_resize) COMPLETED retry 1",
        "upload_toS3_ref (upload_toS3) IN_PROGRESS",
        f"{ns}/resize-w RUNNING 1/2 upload_toS3_ref is running",
    ]
    assert "upload_toS3_ref (upload_toS3) COMPLETED" in lines
    assert lines[-1] == f"{ns}/resize-w COMPLETED 2/2 all tasks done"


def test_watch_exits_1_when_the_workflow_fails(control_plane: ControlPlane, ns: str, kondukt: Kondukt) -> None:
    create_workflow(control_plane, ns, "resize-f")
    set_status(control_plane, ns, "resize-f", **running_status())
    watch = WatchInBackground(kondukt, "resize-f", "--plain", "--timeout", str(TIMEOUT))
    time.sleep(1)
    set_status(control_plane, ns, "resize-f", phase="FAILED", message="", reasonForIncompletion="upload_toS3 failed")
    code, out, err = watch.wait()
    assert code == 1
    assert err == f"workflow {ns}/resize-f ended FAILED: upload_toS3 failed\n"
    assert out.splitlines()[-1].endswith(f"{ns}/resize-f FAILED 1/2 upload_toS3 failed")


def test_watch_gives_up_at_its_timeout(control_plane: ControlPlane, ns: str, kondukt: Kondukt) -> None:
    create_workflow(control_plane, ns, "resize-t")
    set_status(control_plane, ns, "resize-t", **running_status())
    code, out, err = kondukt("watch", "resize-t", "--tty", "--timeout", "2")
    assert code == 124
    assert err == f"timed out after 2s: workflow {ns}/resize-t is still RUNNING\n"
    assert out.startswith(f"Workflow {ns}/resize-t  image_convert_resize v1\nPhase: RUNNING   Progress: 1/2")


# ---------------------------------------------------------------------------------------------- operations
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["retry", "--reason", "bucket fixed"], {"reason": "bucket fixed"}),
        (["restart", "--input", '{"fileLocation": "s3://in/dog.jpg"}'],
         {"workflowInput": {"fileLocation": "s3://in/dog.jpg"}}),
        (["rerun", "--task", "upload_toS3_ref", "--task-input", '{"fileLocation": "s3://x"}'],
         {"taskReferenceName": "upload_toS3_ref", "taskInput": {"fileLocation": "s3://x"}}),
        (["skip", "--task", "upload_toS3_ref", "--output", '{"skipped": true}'],
         {"taskReferenceName": "upload_toS3_ref", "outputData": {"skipped": True}}),
        (["complete", "--task", "upload_toS3_ref", "--status", "FAILED", "--reason", "rejected"],
         {"taskReferenceName": "upload_toS3_ref", "status": "FAILED", "reason": "rejected"}),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else "",
)
def test_operations_write_their_annotation_with_a_nonce(
    control_plane: ControlPlane, ns: str, kondukt: Kondukt, argv: list[str], expected: dict[str, Any]
) -> None:
    op = argv[0]
    create_workflow(control_plane, ns, "resize-o")
    phase = "RUNNING" if op in ("skip", "complete", "rerun") else "FAILED"
    set_status(control_plane, ns, "resize-o", **running_status(phase=phase))
    code, out, err = kondukt(op, "resize-o", *argv[1:])
    assert (code, err) == (0, "")
    value = annotation(control_plane, ns, "resize-o", op)
    assert value == {"nonce": value["nonce"], **expected}
    assert out == (
        f"workflow.kondukt.io/resize-o ({ns}): {op} requested (annotation ops.kondukt.io/{op}, nonce {value['nonce']}"
    ) + out.split(value["nonce"], 1)[1]
    # A second request is a new request: a new nonce replaces the first.
    assert kondukt(op, "resize-o", *argv[1:])[0] == 0
    assert annotation(control_plane, ns, "resize-o", op)["nonce"] != value["nonce"]


def test_suspend_resume_and_terminate_set_the_spec(control_plane: ControlPlane, ns: str, kondukt: Kondukt) -> None:
    create_workflow(control_plane, ns, "resize-s")
    set_status(control_plane, ns, "resize-s", **running_status())
    assert kondukt("suspend", "resize-s")[:2] == (
        0, f"workflow.kondukt.io/resize-s ({ns}): suspend requested (spec.suspend=true)\n"
    )
    assert get_workflow(control_plane, ns, "resize-s")["spec"]["suspend"] is True
    assert kondukt("resume", "resize-s")[0] == 0
    assert get_workflow(control_plane, ns, "resize-s")["spec"]["suspend"] is False
    code, out, _ = kondukt("terminate", "resize-s", "--reason", "wrong picture")
    assert code == 0 and out.endswith("terminate requested (spec.terminate.reason='wrong picture')\n")
    spec = get_workflow(control_plane, ns, "resize-s")["spec"]
    assert spec["terminate"] == {"reason": "wrong picture"}
    assert spec["input"] == {"fileLocation": "s3://in/cat.jpg"}  # the rest of the user's spec is untouched


def test_an_unknown_task_reference_is_refused(control_plane: ControlPlane, ns: str, kondukt: Kondukt) -> None:
    create_workflow(control_plane, ns, "resize-u")
    set_status(control_plane, ns, "resize-u", **running_status())
    code, out, err = kondukt("skip", "resize-u", "--task", "upload_ref")
    assert (code, out) == (2, "")
    assert err == (
        f"workflow {ns}/resize-u has no task with reference name 'upload_ref' "
        "(known: image_convert_resize_ref, upload_toS3_ref)\n"
    )
    assert "annotations" not in get_workflow(control_plane, ns, "resize-u")["metadata"] or not any(
        k.startswith("ops.kondukt.io/") for k in get_workflow(control_plane, ns, "resize-u")["metadata"]["annotations"]
    )


# ---------------------------------------------------------------------------------------------- RBAC
def test_forbidden_requests_say_what_was_refused(
    control_plane: ControlPlane, ns: str, kondukt: Kondukt, tmp_path: Path
) -> None:
    """A user who may only `get` single workflows: list, events and patches are refused, clearly."""
    create_workflow(control_plane, ns, "resize-r")
    set_status(control_plane, ns, "resize-r", **running_status())
    docs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "viewer"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "get-workflows"},
         "rules": [{"apiGroups": ["kondukt.io"], "resources": ["workflows"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "viewer"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "get-workflows"},
         "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": ns}]},
    ]
    control_plane.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump_all(docs))
    token = control_plane.kubectl("-n", ns, "create", "token", "viewer", "--duration=10m").stdout.strip()
    limited = tmp_path / "viewer.kubeconfig"
    write_kubeconfig(limited, control_plane.server, control_plane.ca_file, token, user="viewer")
    user = f"system:serviceaccount:{ns}:viewer"
    wait_for(lambda: kondukt("get", "resize-r", kubeconfig=limited)[0] == 0, "the viewer's Role to apply", TIMEOUT)

    code, out, err = kondukt("get", kubeconfig=limited)
    assert (code, out) == (2, "")
    assert err.startswith(f'forbidden: workflows.kondukt.io is forbidden: User "{user}" cannot list resource')
    code, out, err = kondukt("describe", "resize-r", kubeconfig=limited)
    assert (code, err) == (0, "")
    assert out.endswith(f'Events:\n  <cannot list events: forbidden: events is forbidden: User "{user}" '
                        f'cannot list resource "events" in API group "" in the namespace "{ns}">\n')
    code, out, err = kondukt("suspend", "resize-r", kubeconfig=limited)
    assert (code, out) == (2, "")
    assert err.startswith(f'forbidden: workflows.kondukt.io "resize-r" is forbidden: User "{user}" cannot patch')
    assert get_workflow(control_plane, ns, "resize-r")["spec"].get("suspend") in (None, False)


# ---------------------------------------------------------------------------------------------- graph
def test_graph_of_a_running_workflow_shows_task_states(control_plane: ControlPlane, ns: str, kondukt: Kondukt) -> None:
    create_workflow(control_plane, ns, "resize-g")
    set_status(control_plane, ns, "resize-g", **running_status())
    code, out, err = kondukt("graph", "resize-g")
    assert (code, err) == (0, "")
    assert out.startswith("flowchart TD\n")
    assert '    t_image_convert_resize_ref["image_convert_resize_ref<br/>image_convert_resize<br/>COMPLETED · retry 1"]\n' in out
    assert "    class t_upload_toS3_ref in_progress\n" in out
    code, out, _ = kondukt("graph", "resize-g", "--format", "dot")
    assert code == 0 and 't_upload_toS3_ref [label="upload_toS3_ref\\nupload_toS3\\nIN_PROGRESS"' in out


def test_graph_before_the_operator_started_uses_the_workflowdef(
    control_plane: ControlPlane, ns: str, kondukt: Kondukt
) -> None:
    definition = {
        "apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "image-convert-resize"},
        "spec": PIPELINE.model_dump(mode="json", exclude_none=True),
    }
    control_plane.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(definition))
    create_workflow(control_plane, ns, "resize-n")
    code, out, err = kondukt("graph", "resize-n")
    assert (code, err) == (0, "")
    assert "    t_image_convert_resize_ref --> t_upload_toS3_ref\n" in out and "class " not in out
    create_workflow(control_plane, ns, "resize-m", spec={"workflowDefRef": {"name": "missing_def"}})
    code, _, err = kondukt("graph", "resize-m")
    assert code == 2
    assert err == f"workflow {ns}/resize-m refers to WorkflowDef missing_def, which does not exist in namespace {ns}\n"
