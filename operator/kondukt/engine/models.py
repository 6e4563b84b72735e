"""Conductor's data model: definitions (TaskDef, WorkflowTask, WorkflowDef) and execution state.

Field names are Conductor's JSON names exactly (camelCase), so Conductor documents load unchanged and
the same models generate the CRD schemas. Unknown fields are kept (Conductor adds bookkeeping such as
``createTime`` or ``ownerApp``); they round-trip but mean nothing to the engine.

Statuses carry their behaviour (terminal / successful / retriable), as Conductor's enums do.

This module must never import anything that touches a cluster, a clock, a file or the network.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, validate_assignment=False)


# --------------------------------------------------------------------------------------------------
# Enums
# --------------------------------------------------------------------------------------------------


class TaskType(enum.StrEnum):
    """The task types a WorkflowTask's ``type`` may name (anything else is a definition error)."""

    SIMPLE = "SIMPLE"
    DYNAMIC = "DYNAMIC"
    FORK_JOIN = "FORK_JOIN"
    FORK_JOIN_DYNAMIC = "FORK_JOIN_DYNAMIC"
    DECISION = "DECISION"
    SWITCH = "SWITCH"
    JOIN = "JOIN"
    DO_WHILE = "DO_WHILE"
    SUB_WORKFLOW = "SUB_WORKFLOW"
    START_WORKFLOW = "START_WORKFLOW"
    WAIT = "WAIT"
    HUMAN = "HUMAN"
    HTTP = "HTTP"
    INLINE = "INLINE"
    LAMBDA = "LAMBDA"
    EXCLUSIVE_JOIN = "EXCLUSIVE_JOIN"
    TERMINATE = "TERMINATE"
    JSON_JQ_TRANSFORM = "JSON_JQ_TRANSFORM"
    SET_VARIABLE = "SET_VARIABLE"
    NOOP = "NOOP"

    # The facts below are the one place that says what a type is; the engine, the graph and the progress
    # view read them (directly or through the frozensets after this class) rather than keep their own lists.

    @property
    def driver_run(self) -> bool:
        """Run by the driver (handed out as an action); every other type runs inside the engine."""
        return self in (TaskType.SIMPLE, TaskType.HTTP, TaskType.SUB_WORKFLOW, TaskType.START_WORKFLOW)

    @property
    def is_fork(self) -> bool:
        return self in (TaskType.FORK_JOIN, TaskType.FORK_JOIN_DYNAMIC)

    @property
    def is_join(self) -> bool:
        return self in (TaskType.JOIN, TaskType.EXCLUSIVE_JOIN)

    @property
    def is_switch(self) -> bool:
        return self in (TaskType.SWITCH, TaskType.DECISION)

    @property
    def is_waiting(self) -> bool:
        """WAIT and HUMAN: IN_PROGRESS until their time comes or a person completes them."""
        return self in (TaskType.WAIT, TaskType.HUMAN)

    @property
    def starts_workflow(self) -> bool:
        return self in (TaskType.SUB_WORKFLOW, TaskType.START_WORKFLOW)

    @property
    def is_container(self) -> bool:
        """JOIN, EXCLUSIVE_JOIN, DO_WHILE: IN_PROGRESS while other tasks run; never a driver attempt."""
        return self.is_join or self is TaskType.DO_WHILE

    @property
    def never_retried(self) -> bool:
        """Conductor never retries its flow-control tasks (TaskType.isBuiltIn), whatever their retryCount says."""
        return self.is_fork or self.is_join or self.is_switch or self is TaskType.DO_WHILE


#: The execution ``taskType`` of FORK_JOIN and FORK_JOIN_DYNAMIC tasks, as Conductor records it.
FORK_TASK_TYPE = "FORK"

# The same facts as sets of names, for the hot paths and for execution ``taskType`` values (a SIMPLE attempt's
# taskType is its TaskDef's name; a fork's is FORK_TASK_TYPE).
SYSTEM_TASK_TYPE_NAMES = frozenset(t.value for t in TaskType) | {FORK_TASK_TYPE}
DRIVER_TASK_TYPES = frozenset(t.value for t in TaskType if t.driver_run)
FORK_TASK_TYPES = frozenset(t.value for t in TaskType if t.is_fork) | {FORK_TASK_TYPE}
JOIN_TASK_TYPES = frozenset(t.value for t in TaskType if t.is_join)
SWITCH_TASK_TYPES = frozenset(t.value for t in TaskType if t.is_switch)
WAITING_TASK_TYPES = frozenset(t.value for t in TaskType if t.is_waiting)
WORKFLOW_STARTING_TASK_TYPES = frozenset(t.value for t in TaskType if t.starts_workflow)
CONTAINER_TASK_TYPES = frozenset(t.value for t in TaskType if t.is_container)
NEVER_RETRIED_TASK_TYPES = frozenset(t.value for t in TaskType if t.never_retried) | {FORK_TASK_TYPE}


class TaskStatus(enum.StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    CANCELED = "CANCELED"
    FAILED = "FAILED"
    FAILED_WITH_TERMINAL_ERROR = "FAILED_WITH_TERMINAL_ERROR"
    COMPLETED = "COMPLETED"
    COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
    SCHEDULED = "SCHEDULED"
    TIMED_OUT = "TIMED_OUT"
    SKIPPED = "SKIPPED"

    @property
    def terminal(self) -> bool:
        return self not in (TaskStatus.IN_PROGRESS, TaskStatus.SCHEDULED)

    @property
    def successful(self) -> bool:
        return self in (
            TaskStatus.COMPLETED,
            TaskStatus.COMPLETED_WITH_ERRORS,
            TaskStatus.SKIPPED,
            TaskStatus.IN_PROGRESS,
            TaskStatus.SCHEDULED,
        )

    @property
    def retriable(self) -> bool:
        return self not in (TaskStatus.CANCELED, TaskStatus.FAILED_WITH_TERMINAL_ERROR, TaskStatus.SKIPPED)


#: The statuses in which an attempt failed (a retry, an optional task or the workflow's failure follows).
FAILED_TASK_STATUSES = frozenset({TaskStatus.FAILED, TaskStatus.FAILED_WITH_TERMINAL_ERROR, TaskStatus.TIMED_OUT})


class WorkflowStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    TERMINATED = "TERMINATED"
    PAUSED = "PAUSED"

    @property
    def terminal(self) -> bool:
        return self not in (WorkflowStatus.RUNNING, WorkflowStatus.PAUSED)

    @property
    def successful(self) -> bool:
        return self in (WorkflowStatus.COMPLETED, WorkflowStatus.PAUSED)


class TimeoutPolicy(enum.StrEnum):
    RETRY = "RETRY"
    TIME_OUT_WF = "TIME_OUT_WF"
    ALERT_ONLY = "ALERT_ONLY"


class WorkflowTimeoutPolicy(enum.StrEnum):
    TIME_OUT_WF = "TIME_OUT_WF"
    ALERT_ONLY = "ALERT_ONLY"


class RetryLogic(enum.StrEnum):
    FIXED = "FIXED"
    LINEAR_BACKOFF = "LINEAR_BACKOFF"
    EXPONENTIAL_BACKOFF = "EXPONENTIAL_BACKOFF"


# --------------------------------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------------------------------


class ContainerTemplate(_Model):
    """How a SIMPLE task attempt runs: a container plus pod-level knobs (Kondukt's addition to TaskDef).

    Locally (``kondukt run``) only ``command``, ``args``, ``env`` and ``workingDir`` matter.
    """

    image: str | None = Field(None, description="Container image of the worker.")
    command: list[str] | None = Field(None, description="Entrypoint; locally, the program to run.")
    args: list[str] | None = Field(None, description="Arguments appended to command.")
    env: list[dict[str, Any]] | None = Field(None, description="Container environment (Kubernetes EnvVar list).")
    envFrom: list[dict[str, Any]] | None = Field(None, description="Kubernetes EnvFromSource list.")
    workingDir: str | None = None
    resources: dict[str, Any] | None = Field(None, description="Kubernetes ResourceRequirements.")
    imagePullPolicy: str | None = None
    serviceAccountName: str | None = Field(None, description="ServiceAccount the attempt's pod runs as.")
    nodeSelector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    affinity: dict[str, Any] | None = None
    volumes: list[dict[str, Any]] | None = None
    volumeMounts: list[dict[str, Any]] | None = None
    securityContext: dict[str, Any] | None = Field(
        None, description="Container securityContext; defaults to the restricted Pod Security profile."
    )
    podSecurityContext: dict[str, Any] | None = None
    annotations: dict[str, str] | None = Field(None, description="Extra annotations on the attempt's pod.")
    labels: dict[str, str] | None = Field(None, description="Extra labels on the attempt's pod.")
    imagePullSecrets: list[dict[str, Any]] | None = None
    priorityClassName: str | None = None


class TaskDef(_Model):
    """A Conductor task definition: retry, timeout and rate-limit policy for tasks of this name."""

    name: str = Field(..., description="The name WorkflowTasks refer to (Conductor's TaskDef name).")
    description: str | None = None
    retryCount: int = Field(3, ge=0, description="Retries after the first attempt fails.")
    timeoutSeconds: int = Field(0, ge=0, description="An attempt IN_PROGRESS longer than this times out; 0 = none.")
    inputKeys: list[str] | None = None
    outputKeys: list[str] | None = None
    timeoutPolicy: TimeoutPolicy = Field(TimeoutPolicy.TIME_OUT_WF, description="RETRY, TIME_OUT_WF or ALERT_ONLY.")
    retryLogic: RetryLogic = Field(RetryLogic.FIXED, description="FIXED, LINEAR_BACKOFF or EXPONENTIAL_BACKOFF.")
    retryDelaySeconds: int = Field(60, ge=0, description="Base delay before a retry.")
    responseTimeoutSeconds: int = Field(
        3600, ge=0, description="Heartbeat deadline for workers that send heartbeats; 0 = none."
    )
    concurrentExecLimit: int | None = Field(
        None, ge=0, description="At most this many attempts of this task run at once (namespace-wide)."
    )
    inputTemplate: dict[str, Any] | None = Field(None, description="Default inputs merged under each task's input.")
    rateLimitPerFrequency: int | None = Field(None, ge=0, description="At most this many starts per window; 0 = none.")
    rateLimitFrequencyInSeconds: int | None = Field(None, ge=0, description="The rate-limit window.")
    pollTimeoutSeconds: int | None = Field(
        None, ge=0, description="An attempt scheduled but not running (pod not started) for this long times out."
    )
    backoffScaleFactor: int = Field(1, ge=1, description="LINEAR_BACKOFF multiplier.")
    maxRetryDelaySeconds: int | None = Field(None, ge=0, description="Caps linear and exponential backoff.")
    totalTimeoutSeconds: int | None = Field(None, ge=0, description="No retry starts after this many seconds in all.")
    ownerEmail: str | None = None
    template: ContainerTemplate | None = Field(None, description="How an attempt runs (Kondukt).")


class SubWorkflowParams(_Model):
    name: str | None = None
    version: int | None = None
    taskToDomain: dict[str, str] | None = None
    workflowDefinition: dict[str, Any] | str | None = Field(
        None, description="An inline WorkflowDef, or an expression that yields one (e.g. an INLINE task's output).")


class WorkflowTask(_Model):
    """One node of a WorkflowDef's task graph."""

    name: str = Field(..., description="TaskDef name (SIMPLE) or a label (system tasks).")
    taskReferenceName: str = Field(..., description="Unique within the workflow; expressions refer to it.")
    description: str | None = None
    inputParameters: dict[str, Any] = Field(default_factory=dict)
    type: str = Field("SIMPLE", description="The task type; SIMPLE when omitted.")
    dynamicTaskNameParam: str | None = None
    caseValueParam: str | None = None
    caseExpression: str | None = None
    scriptExpression: str | None = None
    decisionCases: dict[str, list[WorkflowTask]] = Field(default_factory=dict)
    dynamicForkJoinTasksParam: str | None = None
    dynamicForkTasksParam: str | None = None
    dynamicForkTasksInputParamName: str | None = None
    defaultCase: list[WorkflowTask] = Field(default_factory=list)
    forkTasks: list[list[WorkflowTask]] = Field(default_factory=list)
    startDelay: int = Field(0, ge=0)
    subWorkflowParam: SubWorkflowParams | None = None
    joinOn: list[str] = Field(default_factory=list)
    sink: str | None = None
    optional: bool = False
    taskDefinition: TaskDef | None = None
    rateLimited: bool | None = None
    defaultExclusiveJoinTask: list[str] = Field(default_factory=list)
    asyncComplete: bool = False
    loopCondition: str | None = None
    loopOver: list[WorkflowTask] = Field(default_factory=list)
    retryCount: int | None = Field(None, ge=0, description="Overrides the TaskDef's retryCount.")
    evaluatorType: str | None = None
    expression: str | None = None
    permissive: bool = False

    def children(self) -> list[list[WorkflowTask]]:
        """Every nested task list: fork branches, switch cases (default last), loop body."""
        out: list[list[WorkflowTask]] = list(self.forkTasks)
        out.extend(self.decisionCases.values())
        if self.defaultCase:
            out.append(self.defaultCase)
        if self.loopOver:
            out.append(self.loopOver)
        return out


class WorkflowDef(_Model):
    """A Conductor workflow definition."""

    name: str
    description: str | None = None
    version: int = 1
    tasks: list[WorkflowTask] = Field(default_factory=list)
    inputParameters: list[str] = Field(default_factory=list)
    outputParameters: dict[str, Any] = Field(default_factory=dict)
    failureWorkflow: str | None = None
    schemaVersion: int = 2
    restartable: bool = True
    workflowStatusListenerEnabled: bool = False
    ownerEmail: str | None = None
    timeoutPolicy: WorkflowTimeoutPolicy = WorkflowTimeoutPolicy.ALERT_ONLY
    timeoutSeconds: int = Field(0, ge=0)
    variables: dict[str, Any] = Field(default_factory=dict)
    inputTemplate: dict[str, Any] = Field(default_factory=dict)

    _plan: Any = PrivateAttr(default=None)  # the compiled task graph, cached by engine.graph


class PayloadLimits(BaseModel):
    """How large one value may be in a workflow's state (a driver's setting, not the user's).

    The Kubernetes driver keeps the state in the Workflow resource, which etcd refuses past about 1.5 MiB:
    a task output or input, or the variables, larger than ``maxValueBytes`` (compact JSON) FAILS its task
    (FAILED_WITH_TERMINAL_ERROR: the same value would come again) with a reason naming the size and the
    limit, and ``hint`` (what the driver suggests, e.g. external payload storage). None: no limit.
    """

    model_config = ConfigDict(frozen=True)

    maxValueBytes: int | None = Field(None, ge=1)
    hint: str = ""


class Blueprint(BaseModel):
    """Everything definitional ``decide`` needs: the workflow definition and the task definitions."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    workflow: WorkflowDef
    taskDefs: dict[str, TaskDef] = Field(default_factory=dict)
    payloadLimits: PayloadLimits = Field(default_factory=PayloadLimits)

    def task_def(self, name: str) -> TaskDef | None:
        return self.taskDefs.get(name)


# --------------------------------------------------------------------------------------------------
# Execution state
# --------------------------------------------------------------------------------------------------


class Task(_Model):
    """One task attempt, with Conductor's execution field names.

    A retry is a new Task (new ``taskId``, ``retryCount`` + 1); the old one stays FAILED / TIMED_OUT with
    ``retried`` set.
    """

    taskId: str
    taskType: str
    referenceTaskName: str
    taskDefName: str
    status: TaskStatus = TaskStatus.SCHEDULED
    seq: int = 0
    retryCount: int = 0
    iteration: int = 0
    inputData: dict[str, Any] = Field(default_factory=dict)
    outputData: dict[str, Any] = Field(default_factory=dict)
    reasonForIncompletion: str | None = None
    scheduledTime: int = 0
    startTime: int = 0
    endTime: int = 0
    updateTime: int = 0
    startDelayInSeconds: int = 0
    callbackAfterSeconds: int = 0
    retried: bool = False
    executed: bool = False
    retriedTaskId: str | None = None
    workerId: str | None = None
    subWorkflowId: str | None = None
    dispatched: bool = Field(False, description="Kondukt: handed to the driver (a Job or process exists).")
    heartbeat: bool = Field(False, description="Kondukt: the worker has sent at least one heartbeat.")
    loopTaskRef: str | None = Field(None, description="Kondukt: the DO_WHILE this attempt belongs to.")
    parentTaskRef: str | None = Field(None, description="Kondukt: the dynamic fork or DYNAMIC task that made it.")
    workflowTask: WorkflowTask | None = Field(
        None, description="The WorkflowTask, kept for tasks that are not in the definition (dynamic forks)."
    )


class Workflow(_Model):
    """One workflow execution: what Kondukt keeps in a Workflow's ``status`` (plus its spec's input)."""

    workflowId: str
    workflowName: str = ""
    workflowVersion: int = 1
    correlationId: str | None = None
    status: WorkflowStatus = WorkflowStatus.RUNNING
    input: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] = Field(default_factory=dict)
    variables: dict[str, Any] = Field(default_factory=dict)
    reasonForIncompletion: str | None = None
    failedReferenceTaskNames: list[str] = Field(default_factory=list)
    failedTaskId: str | None = None
    startTime: int = 0
    endTime: int = 0
    updateTime: int = 0
    lastRetriedTime: int = 0
    parentWorkflowId: str | None = None
    parentWorkflowTaskId: str | None = None
    tasks: list[Task] = Field(default_factory=list)
    nextSeq: int = Field(1, description="Kondukt: the seq the next task attempt gets.")
    appliedOperations: list[str] = Field(
        default_factory=list, description="Kondukt: nonces of operations already applied (newest last)."
    )
    failureWorkflowStarted: bool = Field(False, description="Kondukt: the failureWorkflow was requested.")
    timeoutAlerted: bool = Field(False, description="Kondukt: an ALERT_ONLY workflow timeout was reported.")

    _index: Any = PrivateAttr(default=None)  # the engine's derived lookups (engine.index.Index)


# --------------------------------------------------------------------------------------------------
# The Workflow resource's spec (a request to run a workflow)
# --------------------------------------------------------------------------------------------------


class WorkflowDefRef(_Model):
    name: str = Field(..., description="The WorkflowDef's Conductor name (spec.name).")
    version: int | None = Field(None, description="The WorkflowDef version; the highest when omitted.")


class TerminateRequest(_Model):
    reason: str = Field("terminated by user", description="Recorded as reasonForIncompletion.")


class TTLStrategy(_Model):
    """How long a finished Workflow stays in the cluster (Argo's ``ttlStrategy``).

    Data only: the engine never reads it (it has no clock); the Kubernetes driver deletes the Workflow when
    its time has come (``kondukt.kube.retention``). The most specific field set wins: secondsAfterSuccess for
    a COMPLETED workflow, secondsAfterFailure for FAILED / TIMED_OUT / TERMINATED, else
    secondsAfterCompletion; none set: the Workflow stays.
    """

    secondsAfterCompletion: int | None = Field(
        None, ge=0, description="Delete the Workflow this many seconds after it ended, whatever its outcome.")
    secondsAfterSuccess: int | None = Field(
        None, ge=0, description="Delete a COMPLETED Workflow this many seconds after it ended (wins over "
        "secondsAfterCompletion).")
    secondsAfterFailure: int | None = Field(
        None, ge=0, description="Delete a FAILED, TIMED_OUT or TERMINATED Workflow this many seconds after it "
        "ended (wins over secondsAfterCompletion).")


class WorkflowSpec(_Model):
    """What a user asks for: which definition to run, with which input, and pause / terminate requests."""

    workflowDefRef: WorkflowDefRef | None = Field(None, description="Run a WorkflowDef by name and version.")
    definition: WorkflowDef | None = Field(None, description="Or: run this inline WorkflowDef.")
    input: dict[str, Any] = Field(default_factory=dict, description="The workflow input.")
    correlationId: str | None = None
    priority: int | None = Field(None, ge=0, le=99)
    taskToDomain: dict[str, str] | None = None
    suspend: bool = Field(False, description="true = PAUSED (running attempts finish, nothing new starts).")
    terminate: TerminateRequest | None = Field(None, description="Set to end the workflow TERMINATED.")
    ttlStrategy: TTLStrategy | None = Field(
        None, description="When the finished Workflow is deleted from the cluster (after it is archived when "
        "the archive is on); when omitted, the operator's default (chart value ttlStrategy) applies. A "
        "SUB_WORKFLOW child is deleted with its parent.")
    parentWorkflowId: str | None = Field(None, description="Set by Kondukt on child (SUB_WORKFLOW) workflows.")
    parentWorkflowTaskId: str | None = None
