"""The operator's wiring: event routing to the work queue, the command's flags, the replica's identity."""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any

import pytest

from kondukt.cli import operator as cli_operator
from kondukt.errors import KonduktUserError
from kondukt.kube import resources as r
from kondukt.kube.cache import JobRecord, PodRecord
from kondukt.kube.informer import IndexStore
from kondukt.kube.leader import LeaseTiming
from kondukt.kube.operator import Controller, EventOnlyDiffBase, OperatorOptions, replica_identity


def test_the_diff_base_is_never_built() -> None:
    assert EventOnlyDiffBase(prefix=r.KOPF_ANNOTATION_PREFIX).build(body={"status": {"big": 1}}) == {}


class FakeQueue:
    def __init__(self) -> None:
        self.soon: list[tuple[str, str]] = []

    def add_soon(self, key: tuple[str, str], delay: float) -> None:
        self.soon.append(key)


class FakeObserver:
    def __init__(self) -> None:
        self.seen_at: list[tuple[str, str, bool, int]] = []

    def seen(self, uid: str, task_id: str, *, ended: bool, at_ms: int) -> None:
        self.seen_at.append((uid, task_id, ended, at_ms))


class FakeReconciler:
    def __init__(self) -> None:
        self.observer = FakeObserver()
        self.clock = lambda: 42
        self.enqueued: list[tuple[str, str]] = []
        self.woken: list[tuple[str, str]] = []
        self.observed: list[Any] = []
        self.forgotten: list[tuple[str, str]] = []
        self.queue = FakeQueue()

    def enqueue(self, key: tuple[str, str]) -> None:
        self.enqueued.append(key)

    def wake_waiters(self, namespace: str, task_def: str) -> None:
        self.woken.append((namespace, task_def))

    def observe(self, body: Any) -> bool:
        news = body not in self.observed
        self.observed.append(body)
        return news

    def forget(self, key: tuple[str, str], uid: str | None = None, *, deleted: bool = False) -> None:
        self.forgotten.append(key)


def controller() -> tuple[Controller, FakeReconciler]:
    instance = Controller.__new__(Controller)
    instance.kopf_indexed = asyncio.Event()
    fake = FakeReconciler()
    instance.reconciler = fake  # type: ignore[assignment]
    instance.pod_store = IndexStore()
    return instance, fake


def job(**changes: Any) -> dict[tuple[str, ...], JobRecord]:
    record = JobRecord(name="j", namespace="ns", workflow_name="wf", workflow_uid="u", task_id="t",
                       task_def="echo", dispatched_at_ms=1, **changes)
    return {("wf", "ns", "u"): record, ("td", "ns", "echo"): record}


def pod(**changes: Any) -> dict[tuple[str, ...], PodRecord]:
    values: dict[str, Any] = {"phase": "Pending", **changes}
    record = PodRecord(name="p", namespace="ns", job_name="j", workflow_name="wf", workflow_uid="u", task_id="t",
                       task_def="echo", **values)
    return {("wf", "ns", "u"): record, ("job", "ns", "j"): record}


def test_a_finished_attempt_wakes_its_workflow_and_limit_waiters_at_once() -> None:
    ctl, fake = controller()
    ctl.on_job_change("MODIFIED", job(succeeded=True), job())
    assert fake.enqueued == [("ns", "wf")] and fake.woken == [("ns", "echo")]
    ctl.on_pod_change("MODIFIED", pod(phase="Failed", started=True, terminated=True), pod(phase="Running"))
    assert fake.enqueued == [("ns", "wf")] * 2


def test_a_job_completing_after_its_pod_said_so_wakes_nothing() -> None:
    """The pod's termination woke the workflow; the Job's Complete a second later is no news. A Job that
    failed, or succeeded while the cache holds no terminated pod of it, still wakes the workflow."""
    ctl, fake = controller()
    terminated = pod(phase="Succeeded", started=True, terminated=True)
    ctl.pod_store.replace("pod-uid", terminated)
    ctl.on_pod_change("MODIFIED", terminated, pod(phase="Running", started=True))
    assert fake.enqueued == [("ns", "wf")] and fake.woken == [("ns", "echo")]
    ctl.on_job_change("MODIFIED", job(succeeded=True), job())
    assert fake.enqueued == [("ns", "wf")] and fake.woken == [("ns", "echo")], "no second wake-up"
    ctl.on_job_change("MODIFIED", job(failed=True, failure_reason="DeadlineExceeded"), job())
    assert fake.enqueued == [("ns", "wf")] * 2, "a failed Job is news"
    ctl.pod_store.discard("pod-uid")
    ctl.on_job_change("MODIFIED", job(succeeded=True), job())
    assert fake.enqueued == [("ns", "wf")] * 3, "no terminated pod in the cache: the Job's word counts"


def test_a_started_pod_wakes_its_workflow_soon_and_other_news_not_at_all() -> None:
    ctl, fake = controller()
    ctl.on_pod_change("MODIFIED", pod(phase="Running", started=True), pod())
    ctl.on_job_change("ADDED", job(), {})
    ctl.on_pod_change("MODIFIED", pod(), pod())  # nothing the index keeps changed
    assert fake.queue.soon == [("ns", "wf")] and fake.enqueued == [] and fake.woken == []
    ctl.on_job_change("DELETED", {}, job())
    assert fake.enqueued == [("ns", "wf")] and fake.woken == [("ns", "echo")]


def test_a_child_workflow_event_wakes_its_parent() -> None:
    ctl, fake = controller()
    child = {"metadata": {"namespace": "ns", "name": "child", "uid": "c",
                          "ownerReferences": [{"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow",
                                               "name": "parent", "uid": "p"}]}}
    ctl.on_workflow("MODIFIED", child)
    assert fake.enqueued == [("ns", "child"), ("ns", "parent")] and fake.observed == [child]
    ctl.on_workflow("MODIFIED", child)  # an echo of the child's own status write: only the parent wakes
    assert fake.enqueued == [("ns", "child"), ("ns", "parent"), ("ns", "parent")]
    assert ctl.kopf_indexed.is_set(), "Kopf calls event handlers only once its indexes are complete"
    ctl.on_workflow("DELETED", child)
    assert fake.forgotten == [("ns", "child")]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_operator.configure("operator", parser.add_subparsers().add_parser("operator"))
    return parser.parse_args(["operator", *argv])


def test_operator_flags() -> None:
    args = parse("-n", "a", "--namespace", "b", "--lease", "kondukt", "--lease-namespace", "ops",
                 "--lease-duration", "20", "--worker-env", "X=1=2", "--log-level", "debug",
                 "--default-worker-image", "img:1")
    assert args.namespaces == ["a", "b"] and args.lease == "kondukt" and not args.standalone
    assert (args.lease_namespace, args.lease_duration, args.lease_renew_deadline) == ("ops", 20, None)
    assert args.worker_env == [("X", "1=2")] and args.log_level == "DEBUG"
    assert args.default_worker_image == "img:1" and args.metrics_port == 8080
    with pytest.raises(SystemExit):
        parse("--standalone", "--lease", "x")
    with pytest.raises(SystemExit):
        parse("--worker-env", "no-equals-sign")
    assert OperatorOptions().job_ttl_seconds == 600
    assert OperatorOptions().lease_name is None and OperatorOptions().lease_timing == LeaseTiming()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--lease", "k", "--lease-namespace", "ops", "--lease-renew-deadline", "15"],
                     "--lease-renew-deadline (15s) must be shorter than --lease-duration (15s)", id="deadline-too-long"),
        pytest.param(["--lease", "k", "--lease-namespace", "ops", "--lease-retry-period", "9"],
                     "must be longer than 1.2 x --lease-retry-period (9s)", id="retry-too-slow"),
        pytest.param(["--lease", "k", "--lease-namespace", "ops", "--lease-duration", "0"],
                     "--lease-duration must be at least 1 second, got 0", id="no-duration"),
        pytest.param(["--lease", "k"], "--lease needs the Lease's namespace", id="no-namespace"),
    ],
)
def test_unsafe_lease_flags_are_refused_before_anything_runs(argv: list[str], message: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    args = parse(*argv)
    with pytest.raises(KonduktUserError, match=re.escape(message)):
        args.func(args)


def test_the_lease_namespace_defaults_to_the_pods(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "ops")
    args = parse("--lease", "k", "--lease-renew-deadline", "20")  # refused for its timing, not its namespace
    with pytest.raises(KonduktUserError) as refused:
        args.func(args)
    assert "namespace" not in str(refused.value)


def test_every_replica_process_is_a_new_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_ID", "kondukt-7d9f-abcde")
    first, second = replica_identity(), replica_identity()
    assert first.startswith("kondukt-7d9f-abcde_") and second.startswith("kondukt-7d9f-abcde_")
    assert first != second  # a restarted container never takes its dead predecessor's Lease for its own


def test_egress_flags_build_the_policy_with_the_api_servers_addresses() -> None:
    from kondukt.errors import KonduktUserError
    from kondukt.kube.operator import api_server_addresses, egress_policy

    args = parse("--egress-allow", "wiki.corp,10.20.0.0/16", "--egress-allow", "*.svc.cluster.local",
                 "--service-cidr", "10.96.0.0/12", "--pod-cidr", "10.244.0.0/16", "--egress-deny", "192.0.2.0/24")
    options = OperatorOptions(egress_allow=cli_operator._listed(args.egress_allow),
                              egress_deny=cli_operator._listed(args.egress_deny),
                              service_cidrs=cli_operator._listed(args.service_cidr),
                              pod_cidrs=cli_operator._listed(args.pod_cidr))
    addresses = api_server_addresses("https://127.0.0.1:6443", {"KUBERNETES_SERVICE_HOST": "10.96.0.1"})
    assert addresses == ["127.0.0.1", "10.96.0.1"]
    policy = egress_policy(options, ["203.0.113.10"])
    assert policy.allow.entries() == ("*.svc.cluster.local", "wiki.corp", "10.20.0.0/16")
    refusals = {address: policy.refusal("h", address) for address in
                ("10.96.0.1", "10.244.0.9", "192.0.2.1", "203.0.113.10", "10.1.0.1", "10.20.0.1")}
    assert {a: r.rule if r else None for a, r in refusals.items()} == {
        "10.96.0.1": "service-range", "10.244.0.9": "pod-range", "192.0.2.1": "denied",
        "203.0.113.10": "api-server", "10.1.0.1": None, "10.20.0.1": None,
    }
    bad = parse("--pod-cidr", "10.244.0.0/40")
    with pytest.raises(KonduktUserError, match=r"10\.244\.0\.0/40"):
        cli_operator.run(bad)


def test_the_controller_applies_its_policy_to_http_tasks_task_pods_and_payload_reads() -> None:
    from kondukt.kube.kubeapi import KubeClient
    from kondukt_workers.egress import EgressPolicy

    class Configuration:
        host = "https://127.0.0.1:6443"

    async def build() -> Controller:
        return Controller(OperatorOptions(egress_allow=("wiki.corp",), service_cidrs=("10.96.0.0/12",)),
                          KubeClient(Configuration()))  # type: ignore[arg-type]

    ctl = asyncio.run(build())
    expected = EgressPolicy.cluster(service_cidrs=["10.96.0.0/12"], api_server=["127.0.0.1"], allow=["wiki.corp"])
    settings = ctl.reconciler.settings
    assert ctl.egress == expected and settings.egress == expected
    assert settings.payload_settings.egress == expected
    assert EgressPolicy.from_environ(dict(settings.job_options.egress_env)) == expected


def test_a_started_pod_wakes_no_sooner_than_its_progress_may_be_written() -> None:
    """With status writes of progress alone gathered for a second, waking a workflow 0.2 s after its pod started
    buys a reconcile that writes nothing: the start waits as long, so a quick attempt costs one reconcile."""
    from kondukt.kube.operator import STARTED_DEBOUNCE_SECONDS, started_debounce

    assert started_debounce(OperatorOptions()) == 1.0
    assert started_debounce(OperatorOptions(status_coalesce_seconds=0)) == STARTED_DEBOUNCE_SECONDS


def test_a_pod_that_starts_or_ends_is_stamped_as_its_event_arrives() -> None:
    """Before any reconcile it wakes: an attempt a concurrency limit lets start in a reconcile woken by this very
    event must never start before the recorded end of the one it waited for."""
    ctl, fake = controller()
    ctl.on_pod_change("MODIFIED", pod(phase="Running", started=True), pod())
    ctl.on_pod_change("MODIFIED", pod(phase="Running", started=True), pod(phase="Running", started=True))
    ctl.on_pod_change("MODIFIED", pod(phase="Succeeded", started=True, terminated=True), pod(phase="Running", started=True))
    assert fake.observer.seen_at == [("u", "t", False, 42), ("u", "t", True, 42)]
