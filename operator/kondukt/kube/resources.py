"""The names Kondukt's Kubernetes side agrees on: API group, kinds, labels, annotations.

Every label and annotation key the operator writes or reads is defined here once, so the operator, the
CLI (``kondukt get|describe|...``), the CRD generator and the tests cannot drift apart. This module holds
constants only: it must never import the Kubernetes clients or Kopf.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "kondukt.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

TASKDEF_KIND: Final = "TaskDef"
TASKDEF_PLURAL: Final = "taskdefs"
WORKFLOWDEF_KIND: Final = "WorkflowDef"
WORKFLOWDEF_PLURAL: Final = "workflowdefs"
WORKFLOW_KIND: Final = "Workflow"
WORKFLOW_PLURAL: Final = "workflows"
CRONWORKFLOW_KIND: Final = "CronWorkflow"
CRONWORKFLOW_PLURAL: Final = "cronworkflows"

#: The category ``kubectl get kondukt`` lists.
CATEGORY: Final = "kondukt"

# ---------------------------------------------------------------------------------------- labels
#: On every object the operator creates.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "kondukt"
#: The owning Workflow's name (sanitized to a label value; the full name is in ANNOTATION_WORKFLOW).
LABEL_WORKFLOW: Final = "kondukt.io/workflow"
#: The owning Workflow's uid: the exact selector of a workflow's Jobs, pods and children.
LABEL_WORKFLOW_UID: Final = "kondukt.io/workflow-uid"
LABEL_TASK_REF: Final = "kondukt.io/task-ref"
LABEL_TASK_DEF: Final = "kondukt.io/task-def"
LABEL_TASK_ID: Final = "kondukt.io/task-id"
#: On child (SUB_WORKFLOW) Workflows: the parent's uid.
LABEL_PARENT_UID: Final = "kondukt.io/parent-workflow-uid"
#: On Workflows started by START_WORKFLOW or as a failureWorkflow: the starting workflow's uid.
LABEL_STARTED_BY_UID: Final = "kondukt.io/started-by-uid"
#: On the runs (Workflows) of a CronWorkflow: its uid (the exact selector of its runs) and name, and
#: whether the run was started on schedule or by ``kondukt cron trigger`` (``schedule`` | ``manual``).
LABEL_CRON_UID: Final = "kondukt.io/cron-workflow-uid"
LABEL_CRON: Final = "kondukt.io/cron-workflow"
LABEL_CRON_TRIGGER: Final = "kondukt.io/cron-trigger"

# ----------------------------------------------------------------------------------- annotations
ANNOTATION_WORKFLOW: Final = "kondukt.io/workflow-name"
ANNOTATION_TASK_ID: Final = "kondukt.io/task-id"
ANNOTATION_TASK_REF: Final = "kondukt.io/task-ref"
ANNOTATION_TASK_DEF: Final = "kondukt.io/task-def"
ANNOTATION_RETRY_COUNT: Final = "kondukt.io/retry-count"
ANNOTATION_ITERATION: Final = "kondukt.io/iteration"
#: When the operator dispatched the attempt, in ms since the epoch (Kubernetes timestamps have 1 s
#: resolution; rate-limit windows need better).
ANNOTATION_DISPATCHED_AT: Final = "kondukt.io/dispatched-at-ms"
#: On child / started Workflows: the parent's task that started it.
ANNOTATION_PARENT_TASK_ID: Final = "kondukt.io/parent-task-id"
#: On child (SUB_WORKFLOW) and started (START_WORKFLOW, failureWorkflow) Workflows: how deep it nests (its
#: parent's or starter's depth + 1; a Workflow without it is 0), checked against the operator's
#: --max-sub-workflow-depth before each such Workflow is created.
ANNOTATION_SUB_WORKFLOW_DEPTH: Final = "kondukt.io/sub-workflow-depth"
#: On the runs of a CronWorkflow: the scheduled time (RFC 3339, UTC) it was started for.
ANNOTATION_SCHEDULED_TIME: Final = "kondukt.io/scheduled-time"

#: Operations requested by the CLI: ``ops.kondukt.io/<op>`` = JSON ``{"nonce": ..., ...}``.
OPERATION_ANNOTATION_PREFIX: Final = "ops.kondukt.io/"
#: Kopf's own bookkeeping (progress, diff base) lives under this prefix, never in ``status``.
KOPF_ANNOTATION_PREFIX: Final = "kopf.kondukt.io"

#: The name of the one container of a task attempt's pod.
WORKER_CONTAINER: Final = "worker"
