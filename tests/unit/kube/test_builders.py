"""The pure builders: every Job, child Workflow and Event the operator creates."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from kondukt.engine.decision import StartSubWorkflow, StartTask, StartWorkflow
from kondukt.engine.models import ContainerTemplate, TaskDef, TimeoutPolicy
from kondukt.kube import builders
from kondukt.kube import resources as r

OWNER = builders.OwnerRef(name="pipeline-run", namespace="team-a", uid="0b6c2b1e-uid")


def start(**overrides: Any) -> StartTask:
    values: dict[str, Any] = dict(
        taskId="task-7", referenceTaskName="convert", taskDefName="image_convert_resize",
        taskType="image_convert_resize", inputData={"fileLocation": "s3://b/k.jpg"}, retryCount=1, iteration=2,
        timeoutSeconds=30,
    )
    values.update(overrides)
    return StartTask(**values)


def task_def(**template: Any) -> TaskDef:
    return TaskDef(name="image_convert_resize", template=ContainerTemplate(image="kondukt/workers:0.1.0", **template))


def job(**kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        owner=OWNER, start=start(), task_def=task_def(), input_env='{"fileLocation":"s3://b/k.jpg"}',
        dispatched_at_ms=1_700_000_000_123, options=builders.JobOptions(),
    )
    args.update(kwargs)
    return builders.build_job_for_attempt(**args)


def env_of(manifest: dict[str, Any]) -> dict[str, Any]:
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_job_runs_once_and_lets_kondukt_retry() -> None:
    spec = job()["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 30
    assert spec["ttlSecondsAfterFinished"] == 600


def test_alert_only_timeouts_set_no_deadline() -> None:
    definition = task_def()
    definition.timeoutPolicy = TimeoutPolicy.ALERT_ONLY
    assert "activeDeadlineSeconds" not in job(task_def=definition)["spec"]
    assert "activeDeadlineSeconds" not in job(start=start(timeoutSeconds=None))["spec"]


def test_rate_limited_jobs_outlive_their_window() -> None:
    definition = task_def()
    definition.rateLimitPerFrequency, definition.rateLimitFrequencyInSeconds = 5, 3600
    assert job(task_def=definition)["spec"]["ttlSecondsAfterFinished"] == 3600


def test_job_is_owned_by_its_workflow_and_findable_by_labels() -> None:
    manifest = job()
    meta = manifest["metadata"]
    assert meta["ownerReferences"] == [{
        "apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "name": "pipeline-run", "uid": "0b6c2b1e-uid",
        "controller": True, "blockOwnerDeletion": True,
    }]
    assert meta["labels"][r.LABEL_WORKFLOW_UID] == "0b6c2b1e-uid"
    assert meta["labels"][r.LABEL_TASK_REF] == "convert"
    assert meta["labels"][r.LABEL_TASK_DEF] == "image_convert_resize"
    assert meta["annotations"][r.ANNOTATION_TASK_ID] == "task-7"
    assert meta["annotations"][r.ANNOTATION_DISPATCHED_AT] == "1700000000123"
    pod_meta = manifest["spec"]["template"]["metadata"]
    assert pod_meta["labels"][r.LABEL_WORKFLOW_UID] == "0b6c2b1e-uid"
    assert pod_meta["annotations"][r.ANNOTATION_WORKFLOW] == "pipeline-run"
    assert meta["name"] == builders.attempt_job_name(OWNER, start())


def test_restricted_security_context_by_default() -> None:
    pod = job()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["automountServiceAccountToken"] is False


def test_template_security_context_and_pod_knobs_are_honoured() -> None:
    definition = task_def(securityContext={"runAsUser": 0}, serviceAccountName="uploader",
                          nodeSelector={"pool": "gpu"}, resources={"limits": {"cpu": "1"}},
                          labels={"team": "media", r.LABEL_WORKFLOW_UID: "forged"},
                          annotations={"kwok.kondukt.io/fail": "true"})
    manifest = job(task_def=definition)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["containers"][0]["securityContext"] == {"runAsUser": 0}
    assert pod["serviceAccountName"] == "uploader" and pod["automountServiceAccountToken"] is True
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["containers"][0]["resources"] == {"limits": {"cpu": "1"}}
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "media" and labels[r.LABEL_WORKFLOW_UID] == "0b6c2b1e-uid"
    assert manifest["spec"]["template"]["metadata"]["annotations"]["kwok.kondukt.io/fail"] == "true"


def test_worker_protocol_environment() -> None:
    env = env_of(job())
    assert json.loads(env["KONDUKT_INPUT"]) == {"fileLocation": "s3://b/k.jpg"}
    assert env["KONDUKT_WORKFLOW_ID"] == "0b6c2b1e-uid"
    assert env["KONDUKT_TASK_ID"] == "task-7"
    assert env["KONDUKT_TASK_REF"] == "convert"
    assert env["KONDUKT_TASK_NAME"] == "image_convert_resize"
    assert env["KONDUKT_RETRY_COUNT"] == "1"
    assert env["KONDUKT_ITERATION"] == "2"
    assert env["KONDUKT_OUTPUT_FILE"] == "/dev/termination-log"


def test_template_env_cannot_override_the_protocol_and_secrets_stay_references() -> None:
    secret = {"secretKeyRef": {"name": "s3", "key": "secret"}}
    definition = task_def(env=[{"name": "KONDUKT_INPUT", "value": "forged"}, {"name": "AWS_SECRET", "valueFrom": secret},
                               {"name": "KONDUKT_S3_ENDPOINT", "value": "http://template"}])
    options = builders.JobOptions(worker_env=(("KONDUKT_S3_ENDPOINT", "http://operator"), ("REGION", "eu")))
    env = env_of(job(task_def=definition, options=options))
    assert env["KONDUKT_INPUT"] != "forged"
    assert env["AWS_SECRET"] == secret
    assert env["KONDUKT_S3_ENDPOINT"] == "http://template", "the TaskDef wins over operator-wide env"
    assert env["REGION"] == "eu"


def test_missing_image_is_a_clear_error_unless_a_default_exists() -> None:
    with pytest.raises(builders.AttemptSpecError, match=r"image_convert_resize.*template\.image"):
        job(task_def=TaskDef(name="image_convert_resize"))
    manifest = job(task_def=None, options=builders.JobOptions(default_image="kondukt/workers:1"))
    assert manifest["spec"]["template"]["spec"]["containers"][0]["image"] == "kondukt/workers:1"


def test_child_workflow_is_owned_and_points_back_to_its_parent() -> None:
    action = StartSubWorkflow(taskId="t-3", referenceTaskName="sub", name="resize", version=2, input={"a": 1},
                              correlationId="c-1")
    child = builders.build_child_workflow(OWNER, action)
    assert child["spec"] == {"workflowDefRef": {"name": "resize", "version": 2}, "input": {"a": 1},
                             "parentWorkflowId": "0b6c2b1e-uid", "parentWorkflowTaskId": "t-3", "correlationId": "c-1"}
    assert child["metadata"]["ownerReferences"][0]["uid"] == "0b6c2b1e-uid"
    assert child["metadata"]["labels"][r.LABEL_PARENT_UID] == "0b6c2b1e-uid"
    assert child["metadata"]["annotations"][r.ANNOTATION_PARENT_TASK_ID] == "t-3"
    assert child["metadata"]["name"] == builders.build_child_workflow(OWNER, action)["metadata"]["name"]


def test_inline_sub_workflow_definition_goes_into_spec_definition() -> None:
    action = StartSubWorkflow(taskId="t-3", referenceTaskName="sub", name="inline", definition={"tasks": []})
    spec = builders.build_child_workflow(OWNER, action)["spec"]
    assert spec["definition"] == {"tasks": [], "name": "inline"} and "workflowDefRef" not in spec


def test_started_workflows_are_independent_and_named_by_request() -> None:
    action = StartWorkflow(requestId="wf/failure/0", name="on_failure", input={"reason": "x"}, purpose="failureWorkflow")
    started = builders.build_started_workflow(OWNER, action)
    assert "ownerReferences" not in started["metadata"]
    assert started["metadata"]["labels"][r.LABEL_STARTED_BY_UID] == "0b6c2b1e-uid"
    assert started["spec"] == {"workflowDefRef": {"name": "on_failure"}, "input": {"reason": "x"}}
    other = builders.build_started_workflow(OWNER, action.model_copy(update={"requestId": "wf/failure/1"}))
    assert other["metadata"]["name"] != started["metadata"]["name"]


def test_events_regard_the_workflow_and_are_bounded() -> None:
    event = builders.build_event(OWNER, event_type="Warning", reason="TaskFailed", message="x" * 5000,
                                 now=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), name_suffix="abc",
                                 reporting_instance="op-0")
    assert event["involvedObject"]["uid"] == "0b6c2b1e-uid"
    assert event["metadata"] == {"name": "pipeline-run.abc", "namespace": "team-a"}
    assert len(event["message"]) <= builders.MAX_EVENT_MESSAGE
    assert event["lastTimestamp"] == "2026-01-02T03:04:05Z"


def test_an_operator_wide_service_account_brings_no_token() -> None:
    """Only a TaskDef that names an account gets its token; the operator's default account does not."""
    pod = job(options=builders.JobOptions(default_service_account="workers"))["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "workers" and pod["automountServiceAccountToken"] is False


def test_every_worker_gets_the_egress_policy_and_a_template_cannot_lift_it() -> None:
    from kondukt_workers.egress import EgressPolicy, policy_environ

    policy = EgressPolicy.cluster(service_cidrs=["10.96.0.0/12"], allow=["wiki.corp"])
    options = builders.JobOptions(egress_env=tuple(policy_environ(policy)))
    definition = task_def(env=[{"name": "KONDUKT_EGRESS", "value": "local"},
                               {"name": "KONDUKT_EGRESS_ALLOW", "value": "0.0.0.0/0"}])
    env = env_of(job(task_def=definition, options=options))
    assert EgressPolicy.from_environ(env) == policy
    assert env_of(job())["KONDUKT_EGRESS"] == "cluster"
