# Taken out of the e2e suite on 2026-11-26: the standby replica does not always see the active one (Kopf
# stealth peering), so "the standby pauses" timed out in 3 of ~9 runs. Kept here to fix and bring back (see the
# closing note of issue 5); run it with: .venv/bin/pytest -m e2e -p no:cacheprovider hack/flaky/ha_takeover_check.py
"""High availability: two replicas peer through Kopf's KopfPeering object; the higher priority one works,
the other stands by and takes over when the first one stops — and no attempt runs twice.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from kondukt.kube import resources as r
from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_operator_support import ECHO, REPO, Cluster, OperatorProcess, taskdef, workflow

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PEERING_CRDS = REPO / "charts" / "kondukt" / "crds" / "kopf-peering.yaml"


def install_peering(control_plane: ControlPlane, namespace: str, name: str) -> None:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=kondukt-e2e-peering",
                          "-f", str(PEERING_CRDS))
    for document in yaml.safe_load_all(PEERING_CRDS.read_text()):
        if document:
            control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                                  f"crd/{document['metadata']['name']}")
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": name}}
    control_plane.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(peering))


def test_the_standby_replica_takes_over(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    install_peering(control_plane, namespace, "kondukt")
    active = OperatorProcess(control_plane, namespace, tmp_path, peering="kondukt", priority=200, name="active")
    standby = OperatorProcess(control_plane, namespace, tmp_path, peering="kondukt", priority=100, name="standby")
    active.start()
    standby.start()
    cluster = Cluster(control_plane, namespace, active)
    try:
        steps = 8
        cluster.apply(taskdef("step", annotations={**ECHO, "kwok.kondukt.io/duration": "1s"}))
        tasks = [{"name": "step", "taskReferenceName": f"s{i}", "inputParameters": {"i": i}} for i in range(steps)]
        cluster.apply(workflow("ha", definition={"name": "ha", "tasks": tasks}))
        cluster.wait_until(lambda: len(cluster.jobs()) >= 3, "the active replica to run 3 steps", timeout=120)
        cluster.wait_until(lambda: "Pausing operations in favour of" in standby.logs(), "the standby to pause")
        active.stop()  # a clean stop (a rollout): it leaves the peering, the standby resumes at once
        cluster.operator = standby
        status = cluster.wait_phase("ha", timeout=180)
        assert status["phase"] == "COMPLETED", status.get("reasonForIncompletion")
        attempts = cluster.tasks("ha")
        assert len(attempts) == steps and all(t["retryCount"] == 0 for t in attempts)
        per_task = Counter(j["metadata"]["annotations"][r.ANNOTATION_TASK_ID] for j in cluster.jobs())
        assert len(per_task) == steps and set(per_task.values()) == {1}, "no attempt ran twice"
        peers = control_plane.kubectl_json("-n", namespace, "get", "kopfpeering", "kondukt").get("status", {})
        assert f"standby-{namespace}" in peers
        assert "Resuming operations" in standby.logs()
    finally:
        active.stop()
        standby.stop()
