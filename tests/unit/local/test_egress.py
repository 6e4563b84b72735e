"""``kondukt run``'s egress: a laptop user's localhost is allowed by default, the cloud's metadata
address never; ``--egress cluster`` applies the operator's rules, ``--egress-allow`` lifts them.

End to end with a real ``kondukt run`` subprocess and a recording server on 127.0.0.1: refused, the
server never sees the request; allowed, it does. The local rules themselves are checked with a fake
resolver (``call_http``), so no packet goes to a link-local address.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from kondukt.cli.run import egress_policy
from kondukt.driver.http import checked_session, perform_http_task
from kondukt.engine.decision import TaskUpdate
from kondukt.engine.models import TaskStatus
from kondukt_workers.egress import EgressPolicy
from tests.loopback_http import recording_server
from tests.unit.cli.runs import kondukt_run, write


def http_manifests(uri: str) -> str:
    return f"""\
apiVersion: kondukt.io/v1alpha1
kind: WorkflowDef
metadata: {{name: call}}
spec:
  name: call
  version: 1
  tasks:
    - name: call
      taskReferenceName: call
      type: HTTP
      inputParameters:
        http_request: {{uri: {json.dumps(uri)}, method: GET}}
---
apiVersion: kondukt.io/v1alpha1
kind: Workflow
metadata: {{name: call-run}}
spec:
  workflowDefRef: {{name: call}}
"""


def test_kondukt_run_calls_localhost_by_default(tmp_path: Path) -> None:
    with recording_server() as server:
        manifest = write(tmp_path, "flow.yaml", http_manifests(f"{server.url}/ok"))
        done = kondukt_run(str(manifest), "-o", "json", cwd=tmp_path, data_dir=tmp_path / "data")
        assert done.returncode == 0, done.stderr
        assert server.paths == ["/ok"]


def test_kondukt_run_with_the_cluster_policy_refuses_loopback_until_allowed(tmp_path: Path) -> None:
    with recording_server() as server:
        manifest = write(tmp_path, "flow.yaml", http_manifests(f"{server.url}/ok"))
        refused = kondukt_run(str(manifest), "-o", "json", "--egress", "cluster", cwd=tmp_path,
                              data_dir=tmp_path / "data")
        assert refused.returncode == 1, refused.stderr
        assert server.paths == []
        (task,) = json.loads(refused.stdout)["tasks"]
        assert task["status"] == "FAILED_WITH_TERMINAL_ERROR", task
        assert "127.0.0.1" in task["reasonForIncompletion"] and "'loopback'" in task["reasonForIncompletion"]

        allowed = kondukt_run(str(manifest), "-o", "json", "--egress", "cluster", "--egress-allow", "127.0.0.1",
                              cwd=tmp_path, data_dir=tmp_path / "data")
        assert allowed.returncode == 0, allowed.stderr
        assert server.paths == ["/ok"]


def test_a_bad_allowlist_entry_is_a_usage_error(tmp_path: Path) -> None:
    manifest = write(tmp_path, "flow.yaml", http_manifests("http://127.0.0.1:9/ok"))
    done = kondukt_run(str(manifest), "--egress-allow", "10.0.0.0/99", cwd=tmp_path, data_dir=tmp_path / "data")
    assert done.returncode == 2 and "10.0.0.0/99" in done.stderr and "Traceback" not in done.stderr


def test_the_local_policy_refuses_the_metadata_address_whatever_the_name() -> None:
    """The fake resolver answers 169.254.169.254: the call fails before any socket exists."""
    policy = egress_policy("local", [], [])

    async def call() -> TaskUpdate:
        async with checked_session(policy, resolver=lambda host, port: ["169.254.169.254"]) as session:
            return await perform_http_task("t1", {"uri": "http://metadata.google.internal/computeMetadata/v1/"},
                                           5, session, policy)

    outcome = asyncio.run(call())
    assert outcome.status == TaskStatus.FAILED_WITH_TERMINAL_ERROR
    reason = outcome.reasonForIncompletion
    assert reason is not None and "169.254.169.254" in reason and "'link-local'" in reason


def test_task_processes_get_the_runs_policy(tmp_path: Path) -> None:
    from kondukt.local.runner import LocalRunner

    policy = EgressPolicy.local(allow=["169.254.0.0/16"])
    runner = LocalRunner.__new__(LocalRunner)
    runner.base_environment = {"KONDUKT_EGRESS": "cluster"}
    runner.egress = policy
    env = runner.task_environment({"KONDUKT_EGRESS": "cluster"})
    assert EgressPolicy.from_environ(env) == policy
