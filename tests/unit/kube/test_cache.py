"""The informer-like caches: records made from real object shapes, and the reconcile's view of them."""

from __future__ import annotations

from typing import Any

from kondukt.kube import cache
from kondukt.kube import resources as r


def job_body(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "wf-a-123", "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {r.LABEL_WORKFLOW_UID: "uid-1", r.LABEL_TASK_DEF: "echo"},
            "annotations": {r.ANNOTATION_TASK_ID: "t1", r.ANNOTATION_TASK_DEF: "echo", r.ANNOTATION_WORKFLOW: "wf",
                            r.ANNOTATION_DISPATCHED_AT: "1767225600123"},
            "ownerReferences": [{"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "name": "wf", "uid": "uid-1"}],
        },
        "status": status,
    }


def pod_body(state: dict[str, Any], phase: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "wf-a-123-xyz", "namespace": "ns",
            "labels": {r.LABEL_WORKFLOW_UID: "uid-1", "batch.kubernetes.io/job-name": "wf-a-123"},
            "annotations": {r.ANNOTATION_TASK_ID: "t1", r.ANNOTATION_WORKFLOW: "wf"},
        },
        "status": {"phase": phase, "containerStatuses": [{"name": "worker", "state": state}]},
    }


def test_job_records() -> None:
    running = cache.job_record(job_body(active=1))
    assert running is not None and not running.finished and running.dispatched_at_ms == 1767225600123
    assert running.workflow_name == "wf" and running.task_def == "echo"
    failed = cache.job_record(job_body(conditions=[
        {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"},
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "Job was active longer"}]))
    assert failed is not None and failed.failed and failed.failure_reason == "DeadlineExceeded"
    done = cache.job_record(job_body(conditions=[{"type": "Complete", "status": "True"}]))
    assert done is not None and done.succeeded and done.finished
    assert set(cache.index_job(job_body())) == {("wf", "ns", "uid-1"), ("td", "ns", "echo")}


def test_foreign_jobs_are_ignored() -> None:
    assert cache.index_job({"metadata": {"name": "x", "namespace": "ns"}}) == {}


def test_pod_records() -> None:
    terminated = cache.pod_record(pod_body({"terminated": {"exitCode": 2, "reason": "Error", "message": "boom"}},
                                           "Failed"))
    assert terminated is not None and terminated.terminated and terminated.exit_code == 2
    assert terminated.message == "boom" and terminated.job_name == "wf-a-123"
    running = cache.pod_record(pod_body({"running": {"startedAt": "x"}}, "Running"))
    assert running is not None and running.started and not running.terminated
    waiting = cache.pod_record(pod_body({"waiting": {"reason": "ImagePullBackOff"}}, "Pending"))
    assert waiting is not None and not waiting.started and waiting.waiting_reason == "ImagePullBackOff"


def test_definitions_default_their_name_and_report_problems() -> None:
    good = cache.taskdef_record({"metadata": {"name": "echo", "namespace": "ns", "resourceVersion": "5"},
                                 "spec": {"retryCount": 1}})
    assert good.name == "echo" and good.task_def is not None and good.problem is None
    bad = cache.taskdef_record({"metadata": {"name": "bad", "namespace": "ns"}, "spec": {"retryCount": -1}})
    assert bad.task_def is None and bad.problem is not None and "retryCount" in bad.problem
    wfd = cache.workflowdef_record({"metadata": {"name": "chain-v2", "namespace": "ns"},
                                    "spec": {"name": "chain", "version": 2, "tasks": []}})
    assert (wfd.name, wfd.version) == ("chain", 2)


def test_pick_workflow_def_takes_the_version_asked_or_the_highest() -> None:
    records = [cache.workflowdef_record({"metadata": {"name": f"chain-v{v}", "namespace": "ns"},
                                         "spec": {"name": "chain", "version": v}}) for v in (1, 3, 2)]
    assert cache.pick_workflow_def(records, None).version == 3  # type: ignore[union-attr]
    assert cache.pick_workflow_def(records, 2).version == 2  # type: ignore[union-attr]
    assert cache.pick_workflow_def(records, 7) is None


def test_view_reads_index_like_mappings() -> None:
    record = cache.job_record(job_body())
    view = cache.ClusterView({cache.JOBS_INDEX: {("wf", "ns", "uid-1"): [record]}})
    assert view.jobs_of("ns", "uid-1") == [record]
    assert view.jobs_of("ns", "other") == [] and view.pods_of("ns", "uid-1") == []


def test_child_records_carry_the_parent_task() -> None:
    body = {"metadata": {"name": "c", "namespace": "ns", "uid": "cu", "resourceVersion": "9",
                         "labels": {r.LABEL_PARENT_UID: "pu"},
                         "annotations": {r.ANNOTATION_PARENT_TASK_ID: "t1", r.ANNOTATION_WORKFLOW: "parent"}},
            "status": {"phase": "COMPLETED", "output": {"a": 1}}}
    record = cache.child_record(body)
    assert record is not None and record.parent_task_id == "t1" and record.output == {"a": 1}
    assert cache.index_child(body) == {("wf", "ns", "pu"): record}
