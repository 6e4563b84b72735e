"""CronWorkflows on the kwok tier: runs started on schedule and by ``kondukt cron trigger``, concurrencyPolicy
Forbid and Replace, suspend, history limits, bad specs, and an operator restart that must not start a run twice.

No test waits for minutes: the scheduled path uses one real minute boundary, chosen by the test a few seconds
ahead (the CronWorkflows are created with a schedule that names no near time and patched to name the boundary
once everything else is in place), and every CronWorkflow of the test waits for that same boundary. Every wait
is bounded.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import zoneinfo
from pathlib import Path
from typing import Any

import pytest

from kondukt import cli as kondukt_cli
from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_support import (  # noqa: F401 (fixtures)
    REPO,
    WORKER_IMAGE,
    Cluster,
    OperatorProcess,
    cluster_fixture,
    operator_fixture,
    taskdef,
)

pytestmark = pytest.mark.e2e

NEVER_SOON = "0 0 1 1 *"  # New Year's midnight: names no time during a test
LONG = {"kwok.kondukt.io/duration": "300s"}


def definition(task: str) -> dict[str, Any]:
    return {"name": f"{task}_flow", "tasks": [{"name": task, "taskReferenceName": "only"}]}


def cron_workflow(name: str, task: str, **spec: Any) -> dict[str, Any]:
    body = {"schedule": NEVER_SOON, "workflowSpec": {"definition": definition(task), "input": {"cron": name}}, **spec}
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": name}, "spec": body}


def kondukt(cluster: Cluster, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = kondukt_cli.main([*args, "--kubeconfig", str(cluster.cp.kubeconfig), "-n", cluster.namespace])
    out = capsys.readouterr()
    return code, out.out, out.err


def runs_of(cluster: Cluster, cron: str, trigger: str | None = None) -> list[dict[str, Any]]:
    uid = cluster.get("cronworkflows", cron)["metadata"]["uid"]  # type: ignore[index]
    selector = f"kondukt.io/cron-workflow-uid={uid}" + (f",kondukt.io/cron-trigger={trigger}" if trigger else "")
    return cluster.list("workflows", selector=selector)


def cron_status(cluster: Cluster, name: str) -> dict[str, Any]:
    found = cluster.get("cronworkflows", name)
    assert found is not None, f"cronworkflow {name} not found"
    return dict(found.get("status") or {})


def conditions(cluster: Cluster, name: str) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in cron_status(cluster, name).get("conditions") or []}


def trigger(cluster: Cluster, capsys: pytest.CaptureFixture[str], name: str) -> str:
    code, out, err = kondukt(cluster, capsys, "cron", "trigger", name)
    assert code == 0, err
    return out.split()[0].split("/", 1)[1]


def test_trigger_history_and_bad_specs(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.apply(taskdef("quick"))
    cluster.apply(cron_workflow("hist", "quick", successfulJobsHistoryLimit=1),
                  cron_workflow("badcron", "quick", schedule="61 * * * *"),
                  cron_workflow("badzone", "quick", timezone="Mars/Olympus"))
    rejected = cluster.create_expecting_rejection(
        {**cron_workflow("noschedule", "quick"), "spec": {"workflowSpec": {"definition": definition("quick")}}})
    assert "set spec.schedule or spec.schedules" in rejected

    first = trigger(cluster, capsys, "hist")
    time.sleep(1.1)  # manual runs are named by the second they were triggered in
    second = trigger(cluster, capsys, "hist")
    assert first != second and first.startswith("hist-manual-")
    cluster.wait_phase(first, timeout=60)
    cluster.wait_phase(second, timeout=60)
    # successfulJobsHistoryLimit 1: the older COMPLETED run is deleted, the newer kept
    cluster.wait_until(lambda: [w["metadata"]["name"] for w in runs_of(cluster, "hist")] == [second],
                       "the history to keep only the newest run")
    cluster.wait_until(lambda: cron_status(cluster, "hist").get("lastSuccessfulTime"), "lastSuccessfulTime")

    for name, field in (("badcron", "spec.schedule: '61 * * * *'"), ("badzone", "spec.timezone: 'Mars/Olympus'")):
        state = cluster.wait_until(lambda n=name: conditions(cluster, n).get("Stalled"), f"{name} Stalled")
        assert state["status"] == "True" and field in state["message"]
        ready = conditions(cluster, name)["Ready"]
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec") and field in ready["message"]
        assert ready["observedGeneration"] == cluster.get("cronworkflows", name)["metadata"]["generation"]  # type: ignore[index]
        assert any(e["reason"] == "InvalidSpec" and field in e["message"] for e in cluster.events(name))

    code, out, err = kondukt(cluster, capsys, "cron", "list")
    assert code == 0, err
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert NEVER_SOON in rows["hist"] and "True" in rows["hist"]
    assert "False (InvalidSpec)" in rows["badcron"]


def minute_ahead(seconds: float) -> dt.datetime:
    """The first whole minute at least ``seconds`` from now (UTC)."""
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return soon.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)


def daily_at(when: dt.datetime, zone: str | None = None) -> str:
    local = when.astimezone(zoneinfo.ZoneInfo(zone)) if zone else when
    return f"{local.minute} {local.hour} * * *"


def test_runs_on_schedule_with_policies_suspend_and_a_restart(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    cluster.apply(taskdef("quick"), taskdef("long", annotations=LONG))
    cluster.apply(
        cron_workflow("every", "quick", timezone="Asia/Kolkata"),
        cron_workflow("forbid", "long", concurrencyPolicy="Forbid"),
        cron_workflow("replace", "long", concurrencyPolicy="Replace"),
        cron_workflow("paused", "quick", suspend=True),
    )
    forbid_manual = trigger(cluster, capsys, "forbid")
    replace_manual = trigger(cluster, capsys, "replace")
    cluster.wait_until(lambda: cluster.status(replace_manual).get("phase") == "RUNNING", "the manual run to start")

    # Now name a minute boundary a few seconds ahead. Should patching take longer, the boundary is simply
    # due when the operator reads the new schedule: it starts the run then, the same run (same name).
    target = minute_ahead(8)
    minute = int(target.timestamp()) // 60
    for name in ("every", "forbid", "replace", "paused"):
        zone = "Asia/Kolkata" if name == "every" else None
        cluster.cp.kubectl("-n", cluster.namespace, "patch", "cronworkflow.kondukt.io", name, "--type=merge",
                           "-p", json.dumps({"spec": {"schedule": daily_at(target, zone)}}))

    every_run = f"every-{minute}"
    cluster.wait_until(lambda: cluster.get("workflows", every_run), f"{every_run} on schedule", timeout=100)
    assert cluster.wait_phase(every_run, timeout=60)["phase"] == "COMPLETED"
    status = cron_status(cluster, "every")
    assert status["lastScheduleTime"] == target.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert status["nextScheduleTime"] == (target + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert conditions(cluster, "every")["Ready"]["status"] == "True"

    # Replace: the manual run is terminated, the scheduled one started.
    cluster.wait_until(lambda: cluster.get("workflows", f"replace-{minute}"), "the replacing run")
    ended = cluster.wait_phase(replace_manual, timeout=60)
    assert ended["phase"] == "TERMINATED" and "concurrencyPolicy Replace" in ended["reasonForIncompletion"]

    # Forbid: the due run waits while the manual run is active, and starts once it ended.
    cluster.wait_until(lambda: any(e["reason"] == "RunPending" for e in cluster.events("forbid")), "RunPending")
    assert cluster.get("workflows", f"forbid-{minute}") is None
    assert cluster.status(forbid_manual).get("phase") in (None, "RUNNING")
    cluster.patch_workflow(forbid_manual, {"spec": {"terminate": {"reason": "make room"}}})
    cluster.wait_until(lambda: cluster.get("workflows", f"forbid-{minute}"), "the pending run after the active ended")

    # Suspended: nothing started, no next time, Ready says why.
    assert runs_of(cluster, "paused") == []
    assert "nextScheduleTime" not in cron_status(cluster, "paused")
    assert conditions(cluster, "paused")["Ready"]["reason"] == "Suspended"

    # A restart whose predecessor's status write was lost: the due run is found started, not started twice.
    assert cluster.operator is not None
    cluster.operator.stop()
    cluster.cp.kubectl("-n", cluster.namespace, "patch", "cronworkflow.kondukt.io", "every", "--subresource=status",
                       "--type=merge", "-p", json.dumps({"status": {"lastScheduleTime": None}}))
    cluster.operator.start()
    cluster.wait_until(lambda: cron_status(cluster, "every").get("lastScheduleTime")
                       == target.strftime("%Y-%m-%dT%H:%M:%SZ"), "the restarted operator to find the run")
    assert [w["metadata"]["name"] for w in runs_of(cluster, "every", "schedule")] == [every_run]
    assert "already exists" in cluster.operator.logs()


def test_the_gitops_example_applies_with_kustomize_and_its_run_completes(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """examples/gitops as Argo CD or Flux would apply it (kustomize), its CronWorkflow in force, a run of it
    COMPLETED on kwok's fake pods (the TaskDefs name no image: the operator's --default-worker-image)."""
    operator = OperatorProcess(control_plane, namespace, tmp_path, "--default-worker-image", WORKER_IMAGE).start()
    try:
        cluster = Cluster(control_plane, namespace, operator)
        control_plane.kubectl("-n", namespace, "apply", "-k", str(REPO / "examples" / "gitops"))
        names = control_plane.kubectl("-n", namespace, "get", "taskdefs,workflowdefs,cronworkflows",
                                      "-o", "name").stdout.split()
        assert sorted(names) == sorted([
            "taskdef.kondukt.io/image-convert-resize", "taskdef.kondukt.io/upload-tos3",
            "workflowdef.kondukt.io/image-convert-resize", "cronworkflow.kondukt.io/nightly-thumbnails"])
        ready = cluster.wait_until(lambda: conditions(cluster, "nightly-thumbnails").get("Ready"), "Ready")
        assert (ready["status"], ready["reason"]) == ("True", "Scheduled")
        next_time = dt.datetime.fromisoformat(cron_status(cluster, "nightly-thumbnails")["nextScheduleTime"])
        berlin = next_time.astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
        assert (berlin.hour, berlin.minute) in ((2, 30), (3, 0))  # 03:00 on the night 02:30 does not exist
        table = control_plane.kubectl("-n", namespace, "get", "cwf").stdout
        assert "30 2 * * *" in table and "NEXT" in table

        run = trigger(cluster, capsys, "nightly-thumbnails")
        status = cluster.wait_phase(run, timeout=90)
        assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
        labels = cluster.workflow(run)["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "image-pipeline"
        assert [t["referenceTaskName"] for t in cluster.tasks(run)] == ["image_convert_resize_ref", "upload_toS3_ref"]
        # a second apply (the next sync) changes nothing and starts nothing
        out = control_plane.kubectl("-n", namespace, "apply", "-k", str(REPO / "examples" / "gitops")).stdout
        assert all(line.endswith("unchanged") for line in out.splitlines()), out
        assert [w["metadata"]["name"] for w in runs_of(cluster, "nightly-thumbnails")] == [run]
    finally:
        operator.stop()
