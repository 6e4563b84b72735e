"""No way from a workflow into the cluster: the operator's egress policy, Secrets and ServiceAccount tokens.

- An HTTP task to a recording server on 127.0.0.1: with the operator's defaults it FAILS (terminal) with a
  reason naming the address and the rule, and the server never sees the request; with
  ``--egress-allow 127.0.0.1`` the same workflow completes and the server sees it. (Loopback stands in for
  the metadata endpoint and in-cluster addresses, which no test may send a packet to; the rules for
  those are proven by tests/workers/test_egress.py on resolved addresses.)
- A marker value in a Secret, taken by a TaskDef through ``envFrom`` and ``valueFrom``, appears in no
  Workflow status, no Event, not in the operator's (debug) log and not in ``kondukt describe``.
- A task pod gets a ServiceAccount token only when its TaskDef names an account: the real API server's
  ServiceAccount admission adds the token volume to exactly those pods.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_support import (  # noqa: F401 (fixtures)
    REPO,
    Cluster,
    OperatorProcess,
    cluster_fixture,
    operator_fixture,
    taskdef,
    workflow,
)
from tests.loopback_http import recording_server

pytestmark = pytest.mark.e2e


def http_workflow(name: str, uri: str) -> dict[str, Any]:
    request = {"uri": uri, "method": "GET", "connectionTimeOut": 2000, "readTimeOut": 5000}
    task = {"name": "call", "taskReferenceName": "call", "type": "HTTP", "inputParameters": {"http_request": request}}
    return workflow(name, definition={"name": name, "tasks": [task]})


def test_http_to_loopback_is_refused_by_default_and_allowed_through_the_allowlist(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, cluster: Cluster, operator: OperatorProcess
) -> None:
    with recording_server() as server:
        cluster.apply(http_workflow("refused", f"{server.url}/ok"))
        status = cluster.wait_phase("refused")
        assert status["phase"] == "FAILED", status
        (task,) = cluster.tasks("refused")
        assert task["status"] == "FAILED_WITH_TERMINAL_ERROR" and task["retryCount"] == 0, task
        reason = task["reasonForIncompletion"]
        assert "127.0.0.1" in reason and "'loopback'" in reason and "--egress-allow" in reason, reason
        assert server.paths == [], "the refused request reached the server"
        assert "egress policy cluster: refuses" in operator.logs()

        operator.stop()
        allowing = OperatorProcess(control_plane, namespace, tmp_path / "allowing", "--egress-allow", "127.0.0.1",
                                   name="allowing")
        (tmp_path / "allowing").mkdir()
        allowing.start()
        cluster.operator = allowing
        try:
            cluster.apply(http_workflow("allowed", f"{server.url}/ok"))
            status = cluster.wait_phase("allowed")
            assert status["phase"] == "COMPLETED", status
            (task,) = cluster.tasks("allowed")
            assert task["outputData"]["response"]["body"] == {"ok": True}
            assert server.paths == ["/ok"]
        finally:
            allowing.stop()


def _pods(cluster: Cluster) -> list[dict[str, Any]]:
    return cluster.list("pods", "v1")


def test_secret_values_never_show_in_status_events_logs_or_describe(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    marker = f"kondukt-secret-marker-{secrets.token_hex(8)}"
    visible = f"kondukt-plain-input-{secrets.token_hex(8)}"  # the control: a plain input value shows up
    operator = OperatorProcess(control_plane, namespace, tmp_path, "--log-level", "DEBUG").start()
    cluster = Cluster(control_plane, namespace, operator)
    try:
        cluster.apply(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-credentials"},
             "stringData": {"API_TOKEN": marker, "PASSWORD": marker}},
        )
        with_secrets = taskdef("uses_secrets")
        with_secrets["spec"]["template"]["envFrom"] = [{"secretRef": {"name": "api-credentials"}}]
        with_secrets["spec"]["template"]["env"] = [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api-credentials", "key": "API_TOKEN"}}},
        ]
        failing = taskdef("fails_with_secrets", annotations={"kwok.kondukt.io/fail": "true"})
        failing["spec"]["template"]["envFrom"] = [{"secretRef": {"name": "api-credentials"}}]
        cluster.apply(with_secrets, failing)
        cluster.apply(
            workflow("ok", definition={"name": "ok", "tasks": [
                {"name": "uses_secrets", "taskReferenceName": "first", "inputParameters": {"n": 1, "note": "${workflow.input.note}"}},
                {"name": "uses_secrets", "taskReferenceName": "second", "inputParameters": {"n": "${first.output.n}"}},
            ]}, input={"note": visible}),
            workflow("bad", definition={"name": "bad", "tasks": [
                {"name": "fails_with_secrets", "taskReferenceName": "boom", "inputParameters": {}},
            ]}),
        )
        assert cluster.wait_phase("ok")["phase"] == "COMPLETED"
        assert cluster.wait_phase("bad")["phase"] == "FAILED"
        # The pods did get the Secret: by reference, resolved by the kubelet, never by the operator.
        pods = _pods(cluster)
        assert len(pods) == 3
        for pod in pods:
            container = pod["spec"]["containers"][0]
            assert {"secretRef": {"name": "api-credentials"}} in container["envFrom"]
        describe = [
            subprocess.run(
                [sys.executable, "-m", "kondukt.cli", "describe", name, "--kubeconfig",
                 str(control_plane.kubeconfig), "-n", namespace],
                capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ}, check=False,
            )
            for name in ("ok", "bad")
        ]
        assert all(proc.returncode == 0 for proc in describe), [proc.stderr for proc in describe]
        assert "first" in describe[0].stdout and "boom" in describe[1].stdout
        places = {
            "the workflows (spec and status)": json.dumps([cluster.workflow("ok"), cluster.workflow("bad")]),
            "the events": json.dumps(cluster.list("events", "v1")),
            "the jobs": json.dumps(cluster.jobs()),
            "the pods' specs": json.dumps([pod["spec"] for pod in pods]),
            "the operator's log": operator.logs(),
            "kondukt describe": describe[0].stdout + describe[0].stderr + describe[1].stdout + describe[1].stderr,
        }
        assert "DEBUG" in places["the operator's log"]
        shown = [place for place, text in places.items() if visible in text]
        assert {"the workflows (spec and status)", "the pods' specs", "kondukt describe"} <= set(shown), shown
        leaked = [place for place, text in places.items() if marker in text]
        assert leaked == [], f"the Secret's value shows in {leaked}"
    finally:
        operator.stop()


def test_a_task_pod_gets_a_token_only_when_its_taskdef_names_an_account(cluster: Cluster) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "uploader"}})
    named = taskdef("with_account")
    named["spec"]["template"]["serviceAccountName"] = "uploader"
    cluster.apply(taskdef("without_account"), named)
    cluster.apply(workflow("accounts", definition={"name": "accounts", "tasks": [
        {"name": "without_account", "taskReferenceName": "plain", "inputParameters": {}},
        {"name": "with_account", "taskReferenceName": "privileged", "inputParameters": {}},
    ]}))
    assert cluster.wait_phase("accounts")["phase"] == "COMPLETED"
    by_def = {pod["metadata"]["labels"]["kondukt.io/task-def"]: pod["spec"] for pod in _pods(cluster)}
    assert set(by_def) == {"without_account", "with_account"}, sorted(by_def)

    def token_volumes(spec: dict[str, Any]) -> list[str]:
        return [v["name"] for v in spec.get("volumes") or [] if "serviceAccountToken" in json.dumps(v)]

    assert by_def["without_account"]["automountServiceAccountToken"] is False
    assert token_volumes(by_def["without_account"]) == []
    assert by_def["with_account"]["serviceAccountName"] == "uploader"
    assert token_volumes(by_def["with_account"]) != [], "the named account's token is mounted"
