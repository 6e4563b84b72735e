"""The Argo CD health checks Kondukt ships (docs/argocd/*.lua), run by a real Lua interpreter.

Argo CD runs a health check as a Lua chunk with the resource in the global ``obj`` (JSON objects as
tables, arrays 1-based) and reads ``hs.status`` (Healthy, Progressing, Degraded, Suspended, Missing,
Unknown) and ``hs.message`` from what it returns. This test does the same with Debian's lua5.4
(.ci/install-lua) on statuses of every state, shaped as the operator writes them (the conditions come
from kondukt.kube.status and kondukt.kube.definitions themselves), and checks that docs/gitops.md carries
each script verbatim.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kondukt.engine.models import Workflow, WorkflowStatus
from kondukt.kube import conditions as kube_conditions
from kondukt.kube import definitions
from kondukt.kube import status as codec

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "docs" / "argocd"
NOW = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=dt.UTC)

DRIVER = """
local chunk = assert(loadfile(arg[1]))
local hs = chunk()
io.write(tostring(hs.status), "\\n", tostring(hs.message))
"""


def lua_literal(value: Any) -> str:
    """A JSON value as a Lua expression (what Argo CD hands a health check: tables, 1-based arrays)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string literal is a valid Lua string literal for this text
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    return "{" + ", ".join(f"[{json.dumps(k)}] = {lua_literal(v)}" for k, v in value.items() if v is not None) + "}"


@pytest.fixture(scope="module")
def lua() -> str:
    found = shutil.which("lua5.4")
    if found is None:
        pytest.fail("lua5.4 is not installed (bash .ci/install-lua)", pytrace=False)
    return found


def health(lua: str, script: str, obj: dict[str, Any], tmp_path: Path) -> tuple[str, str]:
    driver = tmp_path / "driver.lua"
    driver.write_text(f"obj = {lua_literal(obj)}\n{DRIVER}")
    done = subprocess.run([lua, str(driver), str(SCRIPTS / script)], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stderr
    state, _, message = done.stdout.partition("\n")
    return state, message


def workflow_obj(state: WorkflowStatus | None, generation: int = 1, observed: int = 1,
                 reason: str = "") -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow",
                           "metadata": {"name": "wf", "generation": generation}, "spec": {}}
    if state is None:
        obj["status"] = codec.build_waiting_status("WorkflowDefNotFound", "WorkflowDef 'x' not found (waiting)",
                                                   generation=observed, previous_conditions=(), now=NOW)
    else:
        run = Workflow(workflowId="uid", workflowName="x", status=state, reasonForIncompletion=reason or None)
        obj["status"] = codec.build_status(run, None, generation=observed, observed_suspend=False,
                                           previous_conditions=(), now=NOW)
    return obj


@pytest.mark.parametrize(("state", "generation", "expected", "message"), [
    pytest.param(WorkflowStatus.COMPLETED, 1, "Healthy", "COMPLETED: completed", id="completed"),
    pytest.param(WorkflowStatus.RUNNING, 1, "Progressing", "RUNNING: running", id="running"),
    pytest.param(WorkflowStatus.PAUSED, 1, "Suspended", "PAUSED: paused", id="paused"),
    pytest.param(WorkflowStatus.FAILED, 1, "Degraded", "FAILED: task 'a' failed: disk full", id="failed"),
    pytest.param(WorkflowStatus.TIMED_OUT, 1, "Degraded", "TIMED_OUT: task 'a' failed: disk full", id="timed-out"),
    pytest.param(WorkflowStatus.TERMINATED, 1, "Degraded", "TERMINATED: task 'a' failed: disk full",
                 id="terminated"),
    pytest.param(WorkflowStatus.RUNNING, 2, "Progressing", "Waiting for the operator to act on the latest spec",
                 id="spec-not-observed-yet"),
    pytest.param(None, 1, "Progressing", "WorkflowDef 'x' not found (waiting)", id="waiting-for-its-definition"),
])
def test_workflow_health(lua: str, tmp_path: Path, state: WorkflowStatus | None, generation: int, expected: str,
                         message: str) -> None:
    bad = state in (WorkflowStatus.FAILED, WorkflowStatus.TIMED_OUT, WorkflowStatus.TERMINATED)
    obj = workflow_obj(state, generation=generation, reason="task 'a' failed: disk full" if bad else "")
    assert health(lua, "workflow.lua", obj, tmp_path) == (expected, message)


def test_a_workflow_without_status_is_progressing(lua: str, tmp_path: Path) -> None:
    obj = {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "wf", "generation": 1}}
    assert health(lua, "workflow.lua", obj, tmp_path) == ("Progressing",
                                                          "Waiting for the operator to start the workflow")


def definition_obj(found: definitions.Health | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef",
                           "metadata": {"name": "d", "generation": generation}, "spec": {"tasks": []}}
    if found is not None:
        obj["status"] = definitions.definition_status(found, 1, None, NOW)
    return obj


@pytest.mark.parametrize(("found", "generation", "expected", "message"), [
    pytest.param(definitions.Health(True, "Ready", "ok"), 1, "Healthy", "ok", id="ready"),
    pytest.param(definitions.Health(False, "TaskDefNotFound", "task 'b': TaskDef 'b' not found in namespace ns"), 1,
                 "Degraded", "TaskDefNotFound: task 'b': TaskDef 'b' not found in namespace ns",
                 id="missing-reference"),
    pytest.param(definitions.Health(False, "InvalidDefinition", "task 'f': bad", stalled=True), 1, "Degraded",
                 "InvalidDefinition: task 'f': bad", id="invalid"),
    pytest.param(definitions.Health(True, "Ready", "ok"), 2, "Progressing",
                 "Waiting for the operator to check the definition", id="spec-not-checked-yet"),
    pytest.param(None, 1, "Progressing", "Waiting for the operator to check the definition", id="no-status"),
])
def test_definition_health(lua: str, tmp_path: Path, found: definitions.Health | None, generation: int,
                           expected: str, message: str) -> None:
    assert health(lua, "definition.lua", definition_obj(found, generation), tmp_path) == (expected, message)


def cron_obj(conditions: list[tuple[str, str, str, str]] | None, *, suspend: bool = False,
             generation: int = 1) -> dict[str, Any]:
    """A CronWorkflow with the conditions its controller writes (kondukt.kube.conditions.merge)."""
    obj: dict[str, Any] = {"apiVersion": "kondukt.io/v1alpha1", "kind": "CronWorkflow",
                           "metadata": {"name": "nightly", "generation": generation},
                           "spec": {"schedule": "0 2 * * *", "suspend": suspend}}
    if conditions is not None:
        obj["status"] = {"observedGeneration": 1, "conditions": kube_conditions.merge(conditions, [], 1, NOW)}
    return obj


SCHEDULED = [("Ready", "True", "Scheduled", "next run at 2026-05-02 02:00 UTC")]
REFUSED = [("Ready", "False", "RunRefused", "Workflow nightly-1 refused: quota"),
           ("Stalled", "True", "RunRefused", "Workflow nightly-1 refused: quota")]


@pytest.mark.parametrize(("obj", "expected", "message"), [
    pytest.param(cron_obj(SCHEDULED), "Healthy", "next run at 2026-05-02 02:00 UTC", id="scheduled"),
    pytest.param(cron_obj([("Ready", "True", "Suspended", "spec.suspend is true")], suspend=True), "Suspended",
                 "spec.suspend is true: no run starts on schedule", id="suspended"),
    pytest.param(cron_obj(REFUSED), "Degraded", "RunRefused: Workflow nightly-1 refused: quota", id="stalled"),
    pytest.param(cron_obj(REFUSED, suspend=True), "Degraded", "RunRefused: Workflow nightly-1 refused: quota",
                 id="stalled-wins-over-suspended"),
    pytest.param(cron_obj([("Ready", "False", "InvalidSpec", "schedule: bad")]), "Degraded",
                 "InvalidSpec: schedule: bad", id="not-ready"),
    pytest.param(cron_obj(SCHEDULED, generation=2), "Progressing", "Waiting for the operator to schedule it",
                 id="spec-not-observed-yet"),
    pytest.param(cron_obj(None), "Progressing", "Waiting for the operator to schedule it", id="no-status"),
])
def test_cronworkflow_health(lua: str, tmp_path: Path, obj: dict[str, Any], expected: str, message: str) -> None:
    assert health(lua, "cronworkflow.lua", obj, tmp_path) == (expected, message)


def test_the_docs_carry_every_script_verbatim() -> None:
    text = (REPO / "docs" / "gitops.md").read_text()
    for script in sorted(SCRIPTS.glob("*.lua")):
        body = "\n".join("    " + line if line else "" for line in script.read_text().splitlines())
        assert body in text, f"docs/gitops.md does not carry docs/argocd/{script.name} as it is"
