"""CustomResourceDefinitions for TaskDef, WorkflowDef, Workflow and CronWorkflow, generated from models.

The engine's pydantic models are the one source of truth for the resources' shapes: this module turns
their JSON schemas into *structural* OpenAPI v3 schemas the API server accepts, adds what only
Kubernetes knows (status subresource, printer columns, short names, categories, CEL rules) and writes
one file per kind into ``crds/`` (``make crds``; a unit test fails when the files are stale).

Translation rules (JSON Schema -> structural schema):

- ``$ref`` is inlined. ``WorkflowTask`` is recursive (fork branches, switch cases, loop bodies) and a
  structural schema cannot recurse: the top-level task list and the lists nested in it get the full schema,
  deeper task lists get a shallow one (``name``, ``taskReferenceName``, ``type`` + ``x-kubernetes-preserve-unknown-fields``).
  The operator validates nested tasks fully (``kondukt.engine.validation``) and fails the Workflow with a
  readable reason. Expanding deeper would multiply the CRD's size by four per level and break
  client-side ``kubectl apply`` (its annotation holds 256 KiB).
- ``X | None`` becomes ``X`` with ``nullable: true``; free-form JSON (``dict[str, Any]``, ``Any``) and
  models that keep unknown fields (Conductor's ``extra="allow"``) get
  ``x-kubernetes-preserve-unknown-fields: true`` so Conductor documents round-trip unchanged.
- Defaults are not copied into the schema (the API server would then write every default into every
  object, cluttering GitOps diffs); they are named in the description instead, for ``kubectl explain``.

It must never talk to a cluster: generating is pure, writing files happens only in ``main``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from kondukt.engine.models import TaskDef, Workflow, WorkflowDef, WorkflowSpec
from kondukt.kube import resources as r
from kondukt.kube.schedule import CronWorkflowSpec

JsonSchema = dict[str, Any]

#: Descriptions for Conductor fields whose models carry none (``kubectl explain`` shows them).
CONDUCTOR_FIELD_DOCS: Mapping[str, Mapping[str, str]] = {
    "TaskDef": {
        "description": "What the task does, for humans.",
        "inputKeys": "Documentation: the input keys the task expects.",
        "outputKeys": "Documentation: the output keys the task produces.",
        "ownerEmail": "Who owns this task definition.",
    },
    "WorkflowTask": {
        "description": "What this step does, for humans.",
        "inputParameters": "The task's input: values may hold expressions such as ${workflow.input.x} or "
        "${ref.output.a}.",
        "dynamicTaskNameParam": "DYNAMIC: the input parameter holding the name of the task to run.",
        "caseValueParam": "DECISION: the input parameter whose value selects the case.",
        "caseExpression": "DECISION: a JavaScript expression whose value selects the case.",
        "scriptExpression": "DO_WHILE / SWITCH (javascript): the script evaluated.",
        "decisionCases": "SWITCH / DECISION: the task list to run for each case value.",
        "dynamicForkJoinTasksParam": "FORK_JOIN_DYNAMIC (legacy): the parameter holding the tasks and inputs.",
        "dynamicForkTasksParam": "FORK_JOIN_DYNAMIC: the input parameter holding the list of tasks to fork.",
        "dynamicForkTasksInputParamName": "FORK_JOIN_DYNAMIC: the input parameter holding each forked "
        "task's input, keyed by reference name.",
        "defaultCase": "SWITCH / DECISION: the task list to run when no case matches.",
        "forkTasks": "FORK_JOIN: the parallel branches, each a task list.",
        "startDelay": "Seconds to wait before the task is scheduled.",
        "subWorkflowParam": "SUB_WORKFLOW: which workflow to run (name and version, or an inline definition).",
        "joinOn": "JOIN: the reference names of the branch ends to wait for.",
        "sink": "EVENT: where to publish.",
        "optional": "A failure of an optional task does not fail the workflow (COMPLETED_WITH_ERRORS).",
        "taskDefinition": "An inline TaskDef, used instead of the TaskDef resource of the same name.",
        "rateLimited": "Conductor bookkeeping; rate limits come from the TaskDef.",
        "defaultExclusiveJoinTask": "EXCLUSIVE_JOIN: the reference names joined when no other branch ran.",
        "asyncComplete": "The task is completed from outside (kondukt complete), not by its worker.",
        "loopCondition": "DO_WHILE: JavaScript evaluated after each iteration; the loop continues while "
        "it is true.",
        "loopOver": "DO_WHILE: the loop body, a task list.",
        "evaluatorType": "SWITCH / INLINE: value-param, javascript or graaljs.",
        "expression": "SWITCH: the parameter name or script selecting the case; INLINE: the script.",
        "permissive": "A permissive task's failure lets its siblings finish; the workflow fails at the end.",
    },
    "WorkflowDef": {
        "name": "The Conductor workflow name Workflows refer to; defaults to metadata.name.",
        "description": "What the workflow does, for humans.",
        "version": "The version; a Workflow naming no version runs the highest.",
        "tasks": "The task graph: the tasks run in order; forks, switches and loops nest task lists.",
        "inputParameters": "Documentation: the input keys the workflow expects.",
        "outputParameters": "The workflow's output, with expressions such as ${ref.output.x}; when empty "
        "the output is the last task's output.",
        "failureWorkflow": "A workflow started (with the failed workflow's input, id and reason) when this "
        "one fails.",
        "schemaVersion": "Conductor's schema version (2).",
        "restartable": "Whether kondukt restart may restart a completed execution.",
        "workflowStatusListenerEnabled": "Conductor bookkeeping; ignored.",
        "ownerEmail": "Who owns this workflow definition.",
        "timeoutPolicy": "What a workflow timeout does: TIME_OUT_WF (the workflow ends TIMED_OUT) or "
        "ALERT_ONLY (an Event, the workflow goes on).",
        "timeoutSeconds": "The workflow times out after this many seconds; 0 = never.",
        "variables": "Initial workflow variables (SET_VARIABLE changes them).",
        "inputTemplate": "Default input values merged under the workflow input.",
    },
    "SubWorkflowParams": {
        "name": "The WorkflowDef's Conductor name.",
        "version": "The WorkflowDef version; the highest when omitted.",
        "taskToDomain": "Conductor task domains; ignored by Kondukt.",
    },
    "ContainerTemplate": {
        "workingDir": "The container's working directory.",
        "imagePullPolicy": "Always, IfNotPresent or Never.",
        "nodeSelector": "The attempt's pod nodeSelector.",
        "tolerations": "The attempt's pod tolerations.",
        "affinity": "The attempt's pod affinity.",
        "volumes": "Volumes of the attempt's pod.",
        "volumeMounts": "Volume mounts of the worker container.",
        "podSecurityContext": "The pod securityContext; defaults to runAsNonRoot with the RuntimeDefault "
        "seccomp profile.",
        "imagePullSecrets": "Secrets for pulling the image.",
        "priorityClassName": "The attempt's pod priority class.",
    },
    "WorkflowSpec": {
        "correlationId": "Conductor's correlation id: groups related executions.",
        "priority": "Conductor's priority (0-99); informational.",
        "taskToDomain": "Conductor task domains; ignored by Kondukt.",
        "parentWorkflowTaskId": "Set by Kondukt on child workflows: the parent's SUB_WORKFLOW task id.",
    },
}

#: Nested task lists below this many WorkflowTask levels get the shallow task schema (2 = the top-level
#: tasks and the tasks of their branches/cases/loop bodies are checked at admission; 3 would make the
#: Workflow CRD ~620 KB).
FULL_TASK_DEPTH = 2

SHALLOW_TASK_SCHEMA: JsonSchema = {
    "type": "object",
    "description": "A WorkflowTask (the same fields as a top-level task; validated by the operator).",
    "required": ["name", "taskReferenceName"],
    "properties": {
        "name": {"type": "string", "description": "TaskDef name (SIMPLE) or a label (system tasks)."},
        "taskReferenceName": {"type": "string", "description": "Unique within the workflow."},
        "type": {"type": "string", "description": "The task type; SIMPLE when omitted."},
    },
    "x-kubernetes-preserve-unknown-fields": True,
}

PRESERVE: JsonSchema = {"x-kubernetes-preserve-unknown-fields": True}
FREE_OBJECT: JsonSchema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


# ------------------------------------------------------------------------------------ JSON -> structural
class _Converter:
    """Translates one pydantic JSON schema (with its ``$defs``) into a structural schema."""

    def __init__(self, root: JsonSchema) -> None:
        self.defs: Mapping[str, JsonSchema] = root.get("$defs", {})

    def convert(self, schema: JsonSchema, stack: tuple[str, ...] = (), owner: str | None = None) -> JsonSchema:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name == "WorkflowTask" and stack.count("WorkflowTask") >= FULL_TASK_DEPTH:
                out = dict(SHALLOW_TASK_SCHEMA)
            else:
                out = self.convert(self.defs[name], (*stack, name), owner=name)
            return self._with_description(out, schema)
        if "anyOf" in schema:
            options = [o for o in schema["anyOf"] if o.get("type") != "null"]
            nullable = len(options) < len(schema["anyOf"])
            out = dict(self.convert(options[0], stack, owner)) if len(options) == 1 else dict(PRESERVE)
            if nullable:
                out["nullable"] = True
            return self._with_description(out, schema)
        if "enum" in schema:
            out = {"type": schema.get("type", "string"), "enum": list(schema["enum"])}
            return self._with_description(out, schema)
        kind = schema.get("type")
        if kind == "object":
            return self._with_description(self._object(schema, stack, owner), schema)
        if kind == "array":
            out = {"type": "array", "items": self.convert(schema.get("items", {}), stack, owner)}
            return self._with_description(out, schema)
        if kind in ("string", "integer", "number", "boolean"):
            out = {"type": kind}
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
                        "maxLength", "pattern", "format"):
                if key in schema:
                    out[key] = schema[key]
            return self._with_description(out, schema)
        return self._with_description(dict(PRESERVE), schema)  # Any: any JSON value

    def _object(self, schema: JsonSchema, stack: tuple[str, ...], owner: str | None) -> JsonSchema:
        properties: Mapping[str, JsonSchema] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out: JsonSchema = {"type": "object"}
        if properties:
            docs = CONDUCTOR_FIELD_DOCS.get(owner or "", {})
            converted: JsonSchema = {}
            for field, sub in properties.items():
                prop = self.convert(sub, stack, None)
                if "description" not in prop and field in docs:
                    prop = {**prop, "description": docs[field]}
                converted[field] = _describe_default(prop, sub)
            out["properties"] = converted
            if schema.get("required"):
                out["required"] = list(schema["required"])
            if extra is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
        elif isinstance(extra, dict):
            value = self.convert(extra, stack, None)
            if value == PRESERVE:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out["additionalProperties"] = value
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out

    @staticmethod
    def _with_description(out: JsonSchema, source: JsonSchema) -> JsonSchema:
        text = source.get("description")
        if text and "description" not in out:
            out = {"description": " ".join(text.split()), **out}
        elif text:
            out = {**out, "description": " ".join(text.split())}
        return out


def _describe_default(prop: JsonSchema, source: JsonSchema) -> JsonSchema:
    default = source.get("default")
    if default is None or (isinstance(default, dict | list) and not default):
        return prop
    shown = json.dumps(default) if not isinstance(default, str) else default
    text = prop.get("description", "").rstrip()
    note = f"Defaults to {shown}."
    return {**prop, "description": f"{text} {note}".strip() if text else note}


def schema_of(model: type[BaseModel]) -> JsonSchema:
    """The structural schema of a pydantic model (its fields, descriptions, nested models inlined)."""
    root = model.model_json_schema()
    converter = _Converter(root)
    if "$ref" in root:
        return converter.convert(root)
    return converter.convert(root, (model.__name__,), owner=model.__name__)


# ------------------------------------------------------------------------------------------ the kinds
def _optional_name(spec: JsonSchema, what: str) -> JsonSchema:
    """``spec.name`` defaults to ``metadata.name`` (the operator and the manifest loader apply it)."""
    out: JsonSchema = json.loads(json.dumps(spec))
    out["required"] = [f for f in out.get("required", []) if f != "name"]
    if not out["required"]:
        del out["required"]
    out["properties"]["name"]["description"] = (
        f"The Conductor name {what}; defaults to metadata.name."
    )
    return out


def taskdef_spec_schema() -> JsonSchema:
    spec = _optional_name(schema_of(TaskDef), "WorkflowTasks refer to")
    spec["description"] = (
        "A Conductor task definition (retry, timeout and rate-limit policy for tasks of this name) "
        "plus template: how each attempt runs as a Kubernetes Job."
    )
    spec["x-kubernetes-validations"] = [
        {
            "rule": "!has(self.rateLimitPerFrequency) || self.rateLimitPerFrequency == 0 || "
            "(has(self.rateLimitFrequencyInSeconds) && self.rateLimitFrequencyInSeconds > 0)",
            "message": "rateLimitPerFrequency needs rateLimitFrequencyInSeconds > 0 (the window it counts in)",
            "fieldPath": ".rateLimitFrequencyInSeconds",
        },
        {
            "rule": "!has(self.maxRetryDelaySeconds) || !has(self.retryDelaySeconds) || "
            "self.maxRetryDelaySeconds >= self.retryDelaySeconds",
            "message": "maxRetryDelaySeconds must not be smaller than retryDelaySeconds",
            "fieldPath": ".maxRetryDelaySeconds",
        },
    ]
    return spec


def _task_rules() -> list[JsonSchema]:
    return [
        {
            "rule": "!has(self.type) || self.type != 'SUB_WORKFLOW' || has(self.subWorkflowParam)",
            "message": "a SUB_WORKFLOW task needs subWorkflowParam (name and version, or workflowDefinition)",
        },
        {
            "rule": "!has(self.type) || self.type != 'DO_WHILE' || (has(self.loopOver) && size(self.loopOver) > 0)",
            "message": "a DO_WHILE task needs a non-empty loopOver",
        },
        {
            "rule": "!has(self.type) || self.type != 'FORK_JOIN' || (has(self.forkTasks) && size(self.forkTasks) > 0)",
            "message": "a FORK_JOIN task needs forkTasks (a list of branches)",
        },
    ]


def _add_task_rules(def_schema: JsonSchema) -> JsonSchema:
    out: JsonSchema = json.loads(json.dumps(def_schema))
    items = out["properties"]["tasks"]["items"]
    items["x-kubernetes-validations"] = _task_rules()
    return out


def workflowdef_spec_schema() -> JsonSchema:
    spec = _add_task_rules(_optional_name(schema_of(WorkflowDef), "Workflows and SUB_WORKFLOW tasks refer to"))
    spec["description"] = "A Conductor workflow definition (Conductor's JSON field names)."
    return spec


# Kubernetes' own condition schema (metav1.Condition), as CRDs spell it.
CONDITION_SCHEMA: JsonSchema = {
    "type": "object",
    "description": "One aspect of the workflow's state (metav1.Condition).",
    "required": ["type", "status", "lastTransitionTime", "reason", "message"],
    "properties": {
        "type": {"type": "string", "description": "Ready, Reconciling, Stalled (GitOps tools read these), "
                 "Succeeded, Failed or Suspended."},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
        "lastTransitionTime": {"type": "string", "format": "date-time",
                               "description": "When status last changed."},
        "reason": {"type": "string", "description": "CamelCase reason for the last transition."},
        "message": {"type": "string", "description": "Human-readable details."},
    },
}

def definition_status_schema(kind: str) -> JsonSchema:
    """A TaskDef's or WorkflowDef's status: its health, checked by the operator (kondukt.kube.definitions)."""
    return {
        "type": "object",
        "description": f"The {kind}'s health, written by the operator: whether everything it references exists "
        "and it passes the checks a run would do at its start.",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64",
                                   "description": "The metadata.generation the status reflects."},
            "conditions": {
                "type": "array",
                "description": "Ready (the definition can be used), and Stalled when only a change of it helps.",
                "items": {**CONDITION_SCHEMA, "description": "One aspect of the definition's health "
                          "(metav1.Condition)."},
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        },
    }


#: Printer columns of a resource with a Ready condition (kubectl get).
READY_COLUMNS: tuple[JsonSchema, ...] = (
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
     "description": "Whether the definition can be used (True), or why not (False)."},
    {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
     "priority": 1},
    {"name": "Message", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
     "priority": 1},
)


PHASES = ("RUNNING", "PAUSED", "COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED")


def workflow_spec_schema() -> JsonSchema:
    spec = schema_of(WorkflowSpec)
    inline = _add_task_rules(_optional_name(spec["properties"]["definition"], "of the inline workflow"))
    spec["properties"]["definition"] = inline
    spec["description"] = (
        "A request to run a workflow: which definition (workflowDefRef or an inline definition), with "
        "which input; suspend and terminate are the user's controls."
    )
    spec["x-kubernetes-validations"] = [
        {
            "rule": "has(self.workflowDefRef) != has(self.definition)",
            "message": "set exactly one of spec.workflowDefRef (run a WorkflowDef) and spec.definition "
            "(an inline WorkflowDef)",
        },
        {
            "rule": "has(self.workflowDefRef) == has(oldSelf.workflowDefRef) && "
            "(!has(self.workflowDefRef) || self.workflowDefRef == oldSelf.workflowDefRef)",
            "message": "spec.workflowDefRef is immutable: create a new Workflow to run another definition",
        },
        {
            "rule": "has(self.definition) == has(oldSelf.definition) && "
            "(!has(self.definition) || self.definition == oldSelf.definition)",
            "message": "spec.definition is immutable: create a new Workflow to run another definition",
        },
        {
            "rule": "has(self.input) == has(oldSelf.input) && (!has(self.input) || self.input == oldSelf.input)",
            "message": "spec.input is immutable (kondukt restart --input starts over with a new input)",
        },
        {
            "rule": "!has(oldSelf.terminate) || has(self.terminate)",
            "message": "spec.terminate cannot be removed once set: a terminated workflow stays terminated "
            "(kondukt restart or retry runs it again)",
        },
    ]
    return spec


def workflow_status_schema() -> JsonSchema:
    engine = schema_of(Workflow)
    properties: JsonSchema = dict(engine["properties"])
    properties["tasks"] = {
        "type": "array",
        "description": "Every task attempt with Conductor's execution fields (a retry is a new entry); "
        "jobName names an attempt's Job. Omitted when tasksCompressed holds them.",
        "items": {**_task_entry_schema(), "x-kubernetes-preserve-unknown-fields": True},
    }
    properties.update({
        "phase": {"type": "string", "enum": list(PHASES),
                  "description": "The workflow's status, for display: " + ", ".join(PHASES) + "."},
        "progress": {"type": "string", "description": "Finished tasks / known tasks, e.g. 3/5."},
        "message": {"type": "string", "description": "What is happening, or why it failed."},
        "observedGeneration": {"type": "integer", "format": "int64",
                               "description": "The metadata.generation the status reflects."},
        "observedSuspend": {"type": "boolean",
                            "description": "The spec.suspend value last acted upon (pause and resume are edges)."},
        "conditions": {
            "type": "array",
            "description": "Ready (True once COMPLETED, Unknown while running), Reconciling (while running or "
            "waiting for its definitions), Stalled (once FAILED, TIMED_OUT or TERMINATED), Succeeded, Failed and "
            "Suspended, as Kubernetes conditions.",
            "items": CONDITION_SCHEMA,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        "taskCounts": {"type": "object", "additionalProperties": {"type": "integer"},
                       "description": "How many task attempts are in each status."},
        "tasksCompressed": {"type": "string",
                            "description": "For large workflows: the tasks list as base64 of xz (or gzip) of "
                            "JSON, instead of tasks (kondukt get/describe decode it)."},
        "outputCompressed": {"type": "string",
                             "description": "For a large output: the output as base64 of xz of JSON, instead of "
                             "output."},
        "definition": {**FREE_OBJECT,
                       "description": "The WorkflowDef the execution runs, snapshotted at start (Conductor's "
                       "behaviour: later edits of the WorkflowDef do not change a running workflow)."},
    })
    return {
        "type": "object",
        "description": "The execution, written by the operator only: Conductor's execution fields plus "
        "phase, progress, conditions.",
        "properties": properties,
        "x-kubernetes-preserve-unknown-fields": True,
    }


def _task_entry_schema() -> JsonSchema:
    from kondukt.engine.models import Task

    task = schema_of(Task)
    task["properties"]["workflowTask"] = {
        **FREE_OBJECT, "description": "The WorkflowTask, kept for tasks not in the definition (dynamic forks).",
    }
    task["properties"]["jobName"] = {"type": "string", "description": "The attempt's Job (SIMPLE tasks)."}
    task["properties"]["subWorkflowName"] = {"type": "string",
                                             "description": "SUB_WORKFLOW: the child Workflow's name."}
    return task


# ---------------------------------------------------------------------------------------- the CRDs
def _crd(kind: str, plural: str, short: str, spec: JsonSchema, *, status: JsonSchema | None,
         columns: Sequence[JsonSchema], description: str) -> dict[str, Any]:
    properties: JsonSchema = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": spec,
    }
    if status is not None:
        properties["status"] = status
    version: dict[str, Any] = {
        "name": r.VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "description": description,
                                       "required": ["spec"], "properties": properties}},
        "additionalPrinterColumns": list(columns),
    }
    if status is not None:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{r.GROUP}",
            "labels": {"app.kubernetes.io/name": "kondukt", "app.kubernetes.io/part-of": "kondukt"},
        },
        "spec": {
            "group": r.GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                      "shortNames": [short], "categories": [r.CATEGORY]},
            "versions": [version],
        },
    }


AGE_COLUMN: JsonSchema = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def build_taskdef_crd() -> dict[str, Any]:
    return _crd(
        r.TASKDEF_KIND, r.TASKDEF_PLURAL, "td", taskdef_spec_schema(), status=definition_status_schema("TaskDef"),
        description="TaskDef: a Conductor task definition plus how each attempt runs (a Kubernetes Job).",
        columns=[
            {"name": "Task", "type": "string", "jsonPath": ".spec.name",
             "description": "The Conductor task name."},
            {"name": "Retries", "type": "integer", "jsonPath": ".spec.retryCount"},
            {"name": "Timeout", "type": "integer", "jsonPath": ".spec.timeoutSeconds"},
            *READY_COLUMNS,
            {"name": "Image", "type": "string", "jsonPath": ".spec.template.image", "priority": 1},
            AGE_COLUMN,
        ],
    )


def build_workflowdef_crd() -> dict[str, Any]:
    return _crd(
        r.WORKFLOWDEF_KIND, r.WORKFLOWDEF_PLURAL, "wfd", workflowdef_spec_schema(),
        status=definition_status_schema("WorkflowDef"),
        description="WorkflowDef: a Conductor workflow definition.",
        columns=[
            {"name": "Workflow", "type": "string", "jsonPath": ".spec.name",
             "description": "The Conductor workflow name."},
            {"name": "Version", "type": "integer", "jsonPath": ".spec.version"},
            *READY_COLUMNS,
            AGE_COLUMN,
        ],
    )


def build_workflow_crd() -> dict[str, Any]:
    return _crd(
        r.WORKFLOW_KIND, r.WORKFLOW_PLURAL, "wf", workflow_spec_schema(), status=workflow_status_schema(),
        description="Workflow: one execution of a workflow definition; the operator runs each task attempt "
        "as a Job and records progress in status.",
        columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Progress", "type": "string", "jsonPath": ".status.progress",
             "description": "Finished tasks / known tasks."},
            {"name": "Definition", "type": "string", "jsonPath": ".status.workflowName", "priority": 1},
            AGE_COLUMN,
            {"name": "Message", "type": "string", "jsonPath": ".status.message"},
        ],
    )


#: What a Workflow's spec takes that a CronWorkflow's workflowSpec does not: the user's controls of one
#: running execution, and what Kondukt sets on child workflows.
_RUN_ONLY_FIELDS = ("suspend", "terminate", "parentWorkflowId", "parentWorkflowTaskId")


def cron_workflow_spec_schema() -> JsonSchema:
    spec = schema_of(CronWorkflowSpec)
    run = workflow_spec_schema()
    for name in _RUN_ONLY_FIELDS:
        run["properties"].pop(name, None)
    run["description"] = ("The spec of each run (a Workflow's spec): workflowDefRef or an inline definition, "
                          "input, correlationId, priority.")
    run["x-kubernetes-validations"] = [rule for rule in run["x-kubernetes-validations"] if "oldSelf" not in rule["rule"]]
    spec["properties"]["workflowSpec"] = run
    spec["properties"]["schedules"]["items"]["minLength"] = 1
    spec["properties"]["schedule"]["minLength"] = 1
    spec["description"] = ("When to run a workflow (cron schedules in a time zone) and which; each run is a "
                           "Workflow named <cronworkflow>-<unix minutes of the scheduled time>.")
    spec["x-kubernetes-validations"] = [
        {
            "rule": "has(self.schedule) || (has(self.schedules) && size(self.schedules) > 0)",
            "message": "set spec.schedule or spec.schedules (cron expressions)",
        },
    ]
    return spec


def cron_workflow_status_schema() -> JsonSchema:
    time = {"type": "string", "format": "date-time"}
    return {
        "type": "object",
        "description": "Written by the operator: the schedule's times, the active runs, conditions.",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64",
                                   "description": "The metadata.generation the status reflects."},
            "schedule": {"type": "string", "description": "The schedules in use (macros expanded), for display."},
            "lastScheduleTime": {**time, "description": "The scheduled time of the last run started on schedule."},
            "nextScheduleTime": {**time, "description": "The next scheduled time (absent when suspended)."},
            "lastSuccessfulTime": {**time, "description": "When the last COMPLETED run ended."},
            "lastSkippedTime": {**time, "description": "The last scheduled time not started (Forbid while a run "
                                "was active, or past startingDeadlineSeconds)."},
            "active": {"type": "array", "description": "The runs (Workflows) not finished yet.",
                       "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "activeCount": {"type": "integer", "description": "How many runs are active."},
            "conditions": {
                "type": "array",
                "description": "Ready (the schedule is in force; False when the spec cannot be used) and "
                "Stalled (True when the spec cannot be used: see its message).",
                "items": {**CONDITION_SCHEMA, "description": "One aspect of the CronWorkflow's state "
                          "(metav1.Condition)."},
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        },
    }


def build_cronworkflow_crd() -> dict[str, Any]:
    return _crd(
        r.CRONWORKFLOW_KIND, r.CRONWORKFLOW_PLURAL, "cwf", cron_workflow_spec_schema(),
        status=cron_workflow_status_schema(),
        description="CronWorkflow: runs a workflow on a cron schedule; each run is a Workflow it owns.",
        columns=[
            {"name": "Schedule", "type": "string", "jsonPath": ".status.schedule"},
            {"name": "Timezone", "type": "string", "jsonPath": ".spec.timezone", "priority": 1},
            {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"},
            {"name": "Active", "type": "integer", "jsonPath": ".status.activeCount"},
            {"name": "Last Schedule", "type": "date", "jsonPath": ".status.lastScheduleTime"},
            {"name": "Next", "type": "string", "jsonPath": ".status.nextScheduleTime"},
            {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
            AGE_COLUMN,
        ],
    )


def build_crds() -> dict[str, dict[str, Any]]:
    """Every CRD by file name (``crds/<file>``)."""
    return {
        f"{r.GROUP}_{r.TASKDEF_PLURAL}.yaml": build_taskdef_crd(),
        f"{r.GROUP}_{r.WORKFLOWDEF_PLURAL}.yaml": build_workflowdef_crd(),
        f"{r.GROUP}_{r.WORKFLOW_PLURAL}.yaml": build_workflow_crd(),
        f"{r.GROUP}_{r.CRONWORKFLOW_PLURAL}.yaml": build_cronworkflow_crd(),
    }


HEADER = "# Generated by `make crds` (python -m kondukt.kube.crdgen crds) from the engine's models. Do not edit.\n"


def render(crd: Mapping[str, Any]) -> str:
    return HEADER + yaml.safe_dump(dict(crd), sort_keys=False, width=120, allow_unicode=True)


def rendered_crds() -> dict[str, str]:
    return {name: render(crd) for name, crd in build_crds().items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kondukt.kube.crdgen", description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path, help="where to write the CRD files (crds/)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the files differ instead of writing")
    args = parser.parse_args(argv)
    directory: Path = args.directory
    stale = []
    for name, text in rendered_crds().items():
        path = directory / name
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print(f"stale CRDs in {directory}: {', '.join(stale)} (run `make crds`)", file=sys.stderr)
        return 1
    for name in stale:
        print(f"wrote {directory / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
