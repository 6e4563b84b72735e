"""A workflow whose SUB_WORKFLOW starts itself ends FAILED at the depth limit, in both drivers.

Without the limit, ``kondukt run`` of such a workflow ran out of memory in ~40 s and the operator would
create child Workflows without end. Each driver knows how deep a workflow nests (the local runner from its
drivers, the operator from the ``kondukt.io/sub-workflow-depth`` annotation it writes on each child) and fails
the SUB_WORKFLOW task that would go deeper with FAILED_WITH_TERMINAL_ERROR and a reason naming the limit.
Every ancestor's SUB_WORKFLOW task then fails terminally too, so ``retryCount`` cannot multiply the children.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from kondukt import cli
from kondukt.engine import TaskStatus, WorkflowDef, WorkflowStatus
from kondukt.kube import resources as r
from kondukt.kube.builders import sub_workflow_depth
from kondukt.kube.reconcile import ReconcileSettings
from kondukt.limits import DEFAULT_MAX_SUB_WORKFLOW_DEPTH, MAX_SUB_WORKFLOW_DEPTH_ENV
from kondukt.local.runner import LocalRunner, RunResult
from kondukt.manifests import Bundle
from tests.unit.kube.harness import Harness

SELF_STARTING = """\
apiVersion: kondukt.io/v1alpha1
kind: WorkflowDef
metadata: {name: forever}
spec:
  name: forever
  tasks:
    - name: again
      taskReferenceName: again
      type: SUB_WORKFLOW
      subWorkflowParam: {name: forever}
"""


def forever(retry_count: int | None = None) -> WorkflowDef:
    task: dict[str, Any] = {"name": "again", "taskReferenceName": "again", "type": "SUB_WORKFLOW",
                            "subWorkflowParam": {"name": "forever"}}
    if retry_count is not None:
        task["retryCount"] = retry_count
    return WorkflowDef.model_validate({"name": "forever", "version": 1, "tasks": [task]})


def run_locally(tmp_path: Path, definition: WorkflowDef, limit: int) -> RunResult:
    bundle = Bundle(workflow_defs={(definition.name, definition.version): definition})
    runner = LocalRunner(bundle, bundle.blueprint_for(definition), {}, attempt_dir=tmp_path / "runs",
                         max_sub_workflow_depth=limit)
    return asyncio.run(asyncio.wait_for(runner.run(), 60))


# ------------------------------------------------------------------------------------------ local
@pytest.mark.parametrize("limit", [pytest.param(0, id="no-children"), pytest.param(3, id="three")])
def test_local_self_start_ends_at_the_limit(tmp_path: Path, limit: int) -> None:
    result = run_locally(tmp_path, forever(), limit)
    assert result.workflow.status is WorkflowStatus.FAILED
    assert len(result.workflows) == limit + 1  # the main workflow and one child per level
    assert all(run.workflow.status is WorkflowStatus.FAILED for run in result.workflows)
    reason = result.workflow.reasonForIncompletion or ""
    assert f"would nest sub-workflows {limit + 1} deep, more than the limit of {limit}" in reason
    assert "--max-sub-workflow-depth" in reason
    assert [t.status for t in result.workflow.tasks] == [TaskStatus.FAILED_WITH_TERMINAL_ERROR]


def test_local_retries_do_not_multiply_children(tmp_path: Path) -> None:
    result = run_locally(tmp_path, forever(retry_count=3), 4)
    # retried at each level, 4 levels deep, would be 4 + 16 + 64 + 256 children; the limit makes it 4
    assert len(result.workflows) == 5
    assert [t.status for t in result.workflow.tasks] == [TaskStatus.FAILED_WITH_TERMINAL_ERROR]


def test_local_default_limit_is_argos(tmp_path: Path) -> None:
    assert DEFAULT_MAX_SUB_WORKFLOW_DEPTH == 100
    result = run_locally(tmp_path, forever(), DEFAULT_MAX_SUB_WORKFLOW_DEPTH)
    assert len(result.workflows) == 101
    assert "more than the limit of 100" in (result.workflow.reasonForIncompletion or "")


def test_kondukt_run_flag_and_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "forever.yaml"
    path.write_text(SELF_STARTING)
    data = str(tmp_path / "data")
    code = cli.main(["run", "--data-dir", data, "-o", "json", "--max-sub-workflow-depth", "2", str(path)])
    execution = json.loads(capsys.readouterr().out)
    assert code == 1 and execution["status"] == "FAILED"
    assert "sub-workflows 3 deep, more than the limit of 2" in execution["reasonForIncompletion"]

    monkeypatch.setenv(MAX_SUB_WORKFLOW_DEPTH_ENV, "1")
    code = cli.main(["run", "--data-dir", data, "-o", "json", str(path)])
    execution = json.loads(capsys.readouterr().out)
    assert code == 1 and "more than the limit of 1 " in execution["reasonForIncompletion"]

    monkeypatch.setenv(MAX_SUB_WORKFLOW_DEPTH_ENV, "many")
    code = cli.main(["run", "--data-dir", data, str(path)])
    err = capsys.readouterr().err
    assert code == 2 and f"{MAX_SUB_WORKFLOW_DEPTH_ENV}='many': not an integer" in err
    code = cli.main(["run", "--data-dir", data, "--max-sub-workflow-depth", "-1", str(path)])
    assert code == 2 and "must be 0 or more" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- kube
def kube_forever(harness: Harness, retry_count: int | None = None) -> None:
    spec = forever(retry_count).model_dump(exclude_none=True, by_alias=True)
    harness.cluster.apply({"apiVersion": r.API_VERSION, "kind": "WorkflowDef", "metadata": {"name": "forever"},
                           "spec": spec})
    harness.cluster.apply({"apiVersion": r.API_VERSION, "kind": "Workflow", "metadata": {"name": "top"},
                           "spec": {"workflowDefRef": {"name": "forever"}}})


def workflow_names(harness: Harness) -> list[str]:
    return sorted(o["metadata"]["name"] for p, o in harness.cluster.objects.items() if "/workflows/" in p)


async def reconcile_all(harness: Harness, rounds: int = 40) -> None:
    """Reconcile every Workflow until none changes (bounded): the operator's work queue, in order."""
    for _ in range(rounds):
        before = json.dumps(harness.cluster.objects, sort_keys=True, default=str)
        for name in workflow_names(harness):
            if harness.status(name).get("phase") not in ("COMPLETED", "FAILED", "TERMINATED", "TIMED_OUT"):
                await harness.reconcile(name)
        if json.dumps(harness.cluster.objects, sort_keys=True, default=str) == before:
            return
    raise AssertionError("the workflows did not settle")


def kube_harness(limit: int) -> Harness:
    harness = Harness()
    harness.reconciler.settings = ReconcileSettings(max_sub_workflow_depth=limit)
    return harness


@pytest.mark.parametrize("retry_count", [pytest.param(None, id="no-retries"), pytest.param(2, id="retried")])
async def test_operator_refuses_the_child_beyond_the_limit(retry_count: int | None) -> None:
    harness = kube_harness(3)
    harness.reconciler.events.start()
    kube_forever(harness, retry_count)
    await reconcile_all(harness)
    await harness.reconciler.events.stop()
    names = workflow_names(harness)
    assert len(names) == 4, names  # top and three children, however many retries the task allows
    depths = sorted(sub_workflow_depth(harness.cluster.workflow(n)) for n in names)
    assert depths == [0, 1, 2, 3]
    deepest = next(n for n in names if sub_workflow_depth(harness.cluster.workflow(n)) == 3)
    assert harness.tasks(deepest)[0]["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert "sub-workflows 4 deep, more than the limit of 3 (operator flag --max-sub-workflow-depth, chart " \
           "value maxSubWorkflowDepth)" in harness.tasks(deepest)[0]["reasonForIncompletion"]
    status = harness.status("top")
    assert status["phase"] == "FAILED"
    assert "more than the limit of 3" in status["reasonForIncompletion"]
    assert [t["status"] for t in harness.tasks("top")] == ["FAILED_WITH_TERMINAL_ERROR"]
    events = [e for e in harness.cluster.events if e.get("reason") == "SubWorkflowDepthLimit"]
    assert len(events) == 1 and events[0]["involvedObject"]["name"] == deepest


async def test_operator_limit_zero_starts_no_child() -> None:
    harness = kube_harness(0)
    kube_forever(harness)
    await reconcile_all(harness)
    assert workflow_names(harness) == ["top"]
    assert "more than the limit of 0" in harness.status("top")["reasonForIncompletion"]


def test_depth_annotation_is_read_defensively() -> None:
    def annotated(value: Any) -> dict[str, Any]:
        return {"metadata": {"annotations": {r.ANNOTATION_SUB_WORKFLOW_DEPTH: value}}}

    assert sub_workflow_depth({}) == 0
    assert sub_workflow_depth(annotated("7")) == 7
    assert sub_workflow_depth(annotated("seven")) == 0
    assert sub_workflow_depth(annotated("-3")) == 0


def test_operator_flag_reaches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import kondukt.kube.operator as operator_module

    seen: list[Any] = []
    monkeypatch.setattr(operator_module, "run_operator", lambda options: seen.append(options) or 0)
    assert cli.main(["operator", "--standalone", "--max-sub-workflow-depth", "7"]) == 0
    monkeypatch.setenv(MAX_SUB_WORKFLOW_DEPTH_ENV, "9")
    assert cli.main(["operator", "--standalone"]) == 0
    assert cli.main(["operator", "--standalone", "--max-sub-workflow-depth", "-1"]) == 2
    assert [o.max_sub_workflow_depth for o in seen] == [7, 9]


# ------------------------------------------------------------------------------ START_WORKFLOW chains
def chain() -> WorkflowDef:
    return WorkflowDef.model_validate({"name": "forever", "version": 1, "tasks": [
        {"name": "again", "taskReferenceName": "again", "type": "START_WORKFLOW",
         "inputParameters": {"startWorkflow": {"name": "forever"}}}]})


def test_local_start_workflow_chain_ends_at_the_limit(tmp_path: Path) -> None:
    # Found while writing the limit: a START_WORKFLOW that starts its own workflow chained new workflows
    # until the run was killed (each one independent, so the SUB_WORKFLOW limit alone did not stop it).
    result = run_locally(tmp_path, chain(), 3)
    assert len(result.workflows) == 4  # the main workflow and three started ones
    last = result.workflows[-1].workflow
    assert last.status is WorkflowStatus.FAILED
    assert "would chain started workflows 4 deep, more than the limit of 3" in (last.reasonForIncompletion or "")
    assert [t.status for t in last.tasks] == [TaskStatus.FAILED_WITH_TERMINAL_ERROR]
    assert result.workflow.status is WorkflowStatus.COMPLETED  # the main one started its successor and ended


async def test_operator_start_workflow_chain_ends_at_the_limit() -> None:
    harness = kube_harness(2)
    spec = chain().model_dump(exclude_none=True, by_alias=True)
    harness.cluster.apply({"apiVersion": r.API_VERSION, "kind": "WorkflowDef", "metadata": {"name": "forever"},
                           "spec": spec})
    harness.cluster.apply({"apiVersion": r.API_VERSION, "kind": "Workflow", "metadata": {"name": "top"},
                           "spec": {"workflowDefRef": {"name": "forever"}}})
    await reconcile_all(harness)
    names = workflow_names(harness)
    assert sorted(sub_workflow_depth(harness.cluster.workflow(n)) for n in names) == [0, 1, 2]
    deepest = next(n for n in names if sub_workflow_depth(harness.cluster.workflow(n)) == 2)
    assert harness.status(deepest)["phase"] == "FAILED"
    assert "would chain started workflows 3 deep, more than the limit of 2" in \
        harness.tasks(deepest)[0]["reasonForIncompletion"]
    assert harness.status("top")["phase"] == "COMPLETED"
