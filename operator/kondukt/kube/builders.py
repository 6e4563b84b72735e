"""Pure ``build_*`` functions for every object the operator creates: Jobs, Workflows, Events.

A task attempt's Job carries everything needed to find it again and to run it under the worker protocol
(docs/architecture.md, docs/worker-protocol.md): a deterministic name, an owner reference to its Workflow, labels and annotations with the
attempt's identity, ``backoffLimit: 0`` (Kondukt does the retrying, with Conductor's policies),
``restartPolicy: Never``, ``activeDeadlineSeconds`` from the attempt's timeout, a TTL so finished Jobs go
away (their results are in the Workflow's status by then), the restricted Pod Security profile unless the
TaskDef's template says otherwise, and ``terminationMessagePolicy: FallbackToLogsOnError`` so a crashing
worker's last log lines become the failure reason.

These functions take everything as arguments (including "now") and return plain dicts: no API calls,
no clock, no randomness — the reconcile does the I/O. Secrets stay references: an ``env`` entry with
``valueFrom.secretKeyRef`` is copied into the Job as is and never resolved.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from kondukt.engine.decision import StartSubWorkflow, StartTask, StartWorkflow
from kondukt.engine.models import ContainerTemplate, TaskDef, TimeoutPolicy
from kondukt.kube import names
from kondukt.kube import resources as r

#: Environment variables of the worker protocol; a TaskDef's template cannot override them.
PROTOCOL_ENV: Final = frozenset({
    "KONDUKT_INPUT", "KONDUKT_WORKFLOW_ID", "KONDUKT_TASK_ID", "KONDUKT_TASK_REF", "KONDUKT_TASK_NAME",
    "KONDUKT_RETRY_COUNT", "KONDUKT_ITERATION", "KONDUKT_OUTPUT_FILE",
})
TERMINATION_MESSAGE_PATH: Final = "/dev/termination-log"

#: The restricted Pod Security profile (https://kubernetes.io/docs/concepts/security/pod-security-standards/).
RESTRICTED_POD_SECURITY_CONTEXT: Final[Mapping[str, Any]] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER_SECURITY_CONTEXT: Final[Mapping[str, Any]] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


class AttemptSpecError(ValueError):
    """A task attempt cannot be turned into a Job (e.g. no image): the attempt fails with this reason."""


@dataclass(frozen=True)
class OwnerRef:
    """The Kondukt resource an object belongs to (a Workflow, or the CronWorkflow of a run)."""

    name: str
    namespace: str
    uid: str
    kind: str = r.WORKFLOW_KIND

    def owner_reference(self, controller: bool = True) -> dict[str, Any]:
        return {
            "apiVersion": r.API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": controller,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class JobOptions:
    """Operator-wide knobs for task attempts (``kondukt operator`` flags)."""

    ttl_seconds_after_finished: int = 600
    default_image: str | None = None
    default_service_account: str | None = None
    #: Environment every worker gets (external payload storage, S3 endpoint, ...): (name, value) pairs.
    worker_env: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    #: The egress policy's environment (``kondukt_workers.egress.policy_environ``): set on every worker
    #: like the protocol's variables, which a TaskDef's template cannot override. Its default makes the
    #: workers apply the cluster rules (no ``file://``, no link-local, loopback or private addresses).
    egress_env: tuple[tuple[str, str], ...] = (("KONDUKT_EGRESS", "cluster"),)


def attempt_labels(owner: OwnerRef, task_id: str, task_ref: str, task_def: str) -> dict[str, str]:
    return {
        r.LABEL_MANAGED_BY: r.MANAGED_BY,
        r.LABEL_WORKFLOW: names.label_value(owner.name),
        r.LABEL_WORKFLOW_UID: owner.uid,
        r.LABEL_TASK_REF: names.label_value(task_ref),
        r.LABEL_TASK_DEF: names.label_value(task_def),
        r.LABEL_TASK_ID: names.label_value(task_id),
    }


def attempt_job_name(owner: OwnerRef, start: StartTask) -> str:
    return names.job_name(owner.name, owner.uid, start.referenceTaskName, start.taskId)


def _merged_env(
    protocol: Sequence[Mapping[str, Any]],
    template: Sequence[Mapping[str, Any]],
    operator: Sequence[tuple[str, str]],
) -> list[dict[str, Any]]:
    """Operator-wide env, then the template's (which wins), then the protocol's (which nobody overrides)."""
    merged: dict[str, dict[str, Any]] = {}
    for name, value in operator:
        merged[name] = {"name": name, "value": value}
    for entry in template:
        name = str(entry.get("name", ""))
        if name and name not in PROTOCOL_ENV:
            merged[name] = dict(entry)
    for entry in protocol:
        merged[str(entry["name"])] = dict(entry)
    return list(merged.values())


def _active_deadline(start: StartTask, task_def: TaskDef | None) -> int | None:
    if task_def is not None and task_def.timeoutPolicy == TimeoutPolicy.ALERT_ONLY:
        return None  # ALERT_ONLY: a timeout is reported, the attempt goes on
    if start.timeoutSeconds and start.timeoutSeconds > 0:
        return int(start.timeoutSeconds)
    return None


def build_job_for_attempt(
    owner: OwnerRef,
    start: StartTask,
    task_def: TaskDef | None,
    input_env: str,
    dispatched_at_ms: int,
    options: JobOptions,
) -> dict[str, Any]:
    """The Job that runs one SIMPLE task attempt.

    ``input_env`` is the value of ``KONDUKT_INPUT`` (the input JSON, or a pointer to external payload
    storage, chosen by the caller). Raises :class:`AttemptSpecError` when the TaskDef cannot run.
    """
    template = task_def.template if task_def is not None and task_def.template is not None else ContainerTemplate()
    image = template.image or options.default_image
    if not image:
        raise AttemptSpecError(
            f"TaskDef {start.taskDefName!r} has no template.image (and the operator has no "
            "--default-worker-image): Kondukt does not know which container runs the task"
        )
    name = attempt_job_name(owner, start)
    labels = attempt_labels(owner, start.taskId, start.referenceTaskName, start.taskDefName)
    annotations = {
        r.ANNOTATION_WORKFLOW: owner.name,
        r.ANNOTATION_TASK_ID: start.taskId,
        r.ANNOTATION_TASK_REF: start.referenceTaskName,
        r.ANNOTATION_TASK_DEF: start.taskDefName,
        r.ANNOTATION_RETRY_COUNT: str(start.retryCount),
        r.ANNOTATION_ITERATION: str(start.iteration),
        r.ANNOTATION_DISPATCHED_AT: str(dispatched_at_ms),
    }
    protocol = [
        {"name": "KONDUKT_INPUT", "value": input_env},
        {"name": "KONDUKT_WORKFLOW_ID", "value": owner.uid},
        {"name": "KONDUKT_TASK_ID", "value": start.taskId},
        {"name": "KONDUKT_TASK_REF", "value": start.referenceTaskName},
        {"name": "KONDUKT_TASK_NAME", "value": start.taskDefName},
        {"name": "KONDUKT_RETRY_COUNT", "value": str(start.retryCount)},
        {"name": "KONDUKT_ITERATION", "value": str(start.iteration)},
        {"name": "KONDUKT_OUTPUT_FILE", "value": TERMINATION_MESSAGE_PATH},
        *({"name": name, "value": value} for name, value in options.egress_env),
    ]
    container: dict[str, Any] = {
        "name": r.WORKER_CONTAINER,
        "image": image,
        "env": _merged_env(protocol, template.env or [], options.worker_env),
        "securityContext": dict(template.securityContext or RESTRICTED_CONTAINER_SECURITY_CONTEXT),
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    for key, value in (
        ("command", template.command), ("args", template.args), ("workingDir", template.workingDir),
        ("envFrom", template.envFrom), ("resources", template.resources),
        ("imagePullPolicy", template.imagePullPolicy), ("volumeMounts", template.volumeMounts),
    ):
        if value:
            container[key] = value
    service_account = template.serviceAccountName or options.default_service_account
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "securityContext": dict(template.podSecurityContext or RESTRICTED_POD_SECURITY_CONTEXT),
        "enableServiceLinks": False,
        # A worker talks to the cluster only when its TaskDef names a ServiceAccount for that.
        "automountServiceAccountToken": bool(template.serviceAccountName),
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    for key, value in (
        ("nodeSelector", template.nodeSelector), ("tolerations", template.tolerations),
        ("affinity", template.affinity), ("volumes", template.volumes),
        ("imagePullSecrets", template.imagePullSecrets), ("priorityClassName", template.priorityClassName),
    ):
        if value:
            pod_spec[key] = value
    ttl = options.ttl_seconds_after_finished
    if task_def is not None and task_def.rateLimitFrequencyInSeconds:
        # Rate limits count the Jobs that exist: keep finished ones for at least one window.
        ttl = max(ttl, task_def.rateLimitFrequencyInSeconds)
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": ttl,
        "template": {
            "metadata": {
                "labels": {**(template.labels or {}), **labels},
                "annotations": {**(template.annotations or {}), **annotations},
            },
            "spec": pod_spec,
        },
    }
    deadline = _active_deadline(start, task_def)
    if deadline is not None:
        job_spec["activeDeadlineSeconds"] = deadline
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner.owner_reference()],
        },
        "spec": job_spec,
    }


def _workflow_request(
    name: str | None, version: int | None, definition: Mapping[str, Any] | None
) -> dict[str, Any]:
    if definition:
        inline = dict(definition)
        if not inline.get("name") and name:
            inline["name"] = name
        return {"definition": inline}
    ref: dict[str, Any] = {"name": name or ""}
    if version is not None:
        ref["version"] = version
    return {"workflowDefRef": ref}


def sub_workflow_depth(workflow: Mapping[str, Any]) -> int:
    """How deep a Workflow object nests as a sub-workflow: 0 for one a user created."""
    annotations = (workflow.get("metadata") or {}).get("annotations") or {}
    try:
        return max(0, int(annotations.get(r.ANNOTATION_SUB_WORKFLOW_DEPTH, 0)))
    except (TypeError, ValueError):
        return 0


def build_child_workflow(parent: OwnerRef, action: StartSubWorkflow, depth: int = 1) -> dict[str, Any]:
    """The child Workflow of a SUB_WORKFLOW attempt: owned by the parent, deleted with it.

    ``depth``: how deep the child nests (its parent's depth + 1), kept in an annotation.
    """
    spec: dict[str, Any] = {
        **_workflow_request(action.name, action.version, action.definition),
        "input": dict(action.input),
        "parentWorkflowId": parent.uid,
        "parentWorkflowTaskId": action.taskId,
    }
    if action.correlationId:
        spec["correlationId"] = action.correlationId
    if action.taskToDomain:
        spec["taskToDomain"] = dict(action.taskToDomain)
    return {
        "apiVersion": r.API_VERSION,
        "kind": r.WORKFLOW_KIND,
        "metadata": {
            "name": names.child_workflow_name(parent.name, parent.uid, action.referenceTaskName, action.taskId),
            "namespace": parent.namespace,
            "labels": {
                r.LABEL_MANAGED_BY: r.MANAGED_BY,
                r.LABEL_PARENT_UID: parent.uid,
                r.LABEL_TASK_REF: names.label_value(action.referenceTaskName),
            },
            "annotations": {
                r.ANNOTATION_WORKFLOW: parent.name,
                r.ANNOTATION_PARENT_TASK_ID: action.taskId,
                r.ANNOTATION_TASK_REF: action.referenceTaskName,
                r.ANNOTATION_SUB_WORKFLOW_DEPTH: str(depth),
            },
            "ownerReferences": [parent.owner_reference()],
        },
        "spec": spec,
    }


def build_started_workflow(starter: OwnerRef, action: StartWorkflow, depth: int = 1) -> dict[str, Any]:
    """A Workflow started by START_WORKFLOW or as a failureWorkflow: independent (not owned).

    ``depth``: its starter's depth + 1 (annotated: START_WORKFLOW chains count against the depth limit).
    """
    spec: dict[str, Any] = {
        **_workflow_request(action.name, action.version, action.definition),
        "input": dict(action.input),
    }
    if action.correlationId:
        spec["correlationId"] = action.correlationId
    annotations = {r.ANNOTATION_WORKFLOW: starter.name, "kondukt.io/started-for": action.purpose,
                   r.ANNOTATION_SUB_WORKFLOW_DEPTH: str(depth)}
    if action.taskId:
        annotations[r.ANNOTATION_PARENT_TASK_ID] = action.taskId
    return {
        "apiVersion": r.API_VERSION,
        "kind": r.WORKFLOW_KIND,
        "metadata": {
            "name": names.started_workflow_name(action.name, starter.uid, action.requestId),
            "namespace": starter.namespace,
            "labels": {r.LABEL_MANAGED_BY: r.MANAGED_BY, r.LABEL_STARTED_BY_UID: starter.uid},
            "annotations": annotations,
        },
        "spec": spec,
    }


MAX_EVENT_MESSAGE: Final = 1024


def build_event(
    regarding: OwnerRef,
    *,
    event_type: str,
    reason: str,
    message: str,
    now: dt.datetime,
    name_suffix: str,
    reporting_instance: str,
) -> dict[str, Any]:
    """A core/v1 Event about a Workflow or CronWorkflow (what ``kubectl describe`` shows)."""
    stamp = now.astimezone(dt.UTC)
    text = message if len(message) <= MAX_EVENT_MESSAGE else message[: MAX_EVENT_MESSAGE - 1] + "…"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{regarding.name[:200]}.{name_suffix}", "namespace": regarding.namespace},
        "involvedObject": {
            "apiVersion": r.API_VERSION,
            "kind": regarding.kind,
            "name": regarding.name,
            "namespace": regarding.namespace,
            "uid": regarding.uid,
        },
        "type": event_type,
        "reason": reason,
        "message": text,
        "count": 1,
        "firstTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lastTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventTime": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "action": reason,
        "source": {"component": "kondukt-operator"},
        "reportingComponent": "kondukt.io/operator",
        "reportingInstance": reporting_instance[:128],
    }
