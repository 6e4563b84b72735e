"""The reconcile's settings, what it remembers about a Workflow between runs and what one run returns:
shared by the reconcile's modules (``reconcile``, ``start``, ``observe``, ``actions``, ``offload``)
without their importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kondukt.engine.models import PayloadLimits, TTLStrategy
from kondukt.engine.payloads import DEFAULT_INLINE_VALUE_BYTES, MAX_STORED_VALUE_BYTES
from kondukt.kube import attempts
from kondukt.kube.builders import JobOptions
from kondukt.kube.status import DEFAULT_COMPRESS_OVER_BYTES, StoredStatus, TaskEncoder
from kondukt.limits import DEFAULT_MAX_SUB_WORKFLOW_DEPTH
from kondukt.scriptpool import ScriptLimits
from kondukt_workers.egress import EgressPolicy

WorkflowKey = tuple[str, str]


class TransientError(Exception):
    """Something outside the operator is not ready (storage down, API throttling): retry with backoff."""


@dataclass(frozen=True)
class ReconcileSettings:
    job_options: JobOptions = field(default_factory=JobOptions)
    compress_over_bytes: int = DEFAULT_COMPRESS_OVER_BYTES
    #: How long a new Workflow waits for its WorkflowDef / TaskDefs to appear (GitOps tools apply them
    #: together with it, and watches deliver them in any order) before it fails.
    definition_grace_seconds: float = 15.0
    job_missing_grace_ms: int = attempts.JOB_MISSING_GRACE_MS
    max_rounds: int = 16
    #: Worker settings (external payload storage) for large inputs and offloaded results.
    payload_settings: Any = None
    #: Limits and size of the process pool that evaluates jq programs.
    script_limits: ScriptLimits = field(default_factory=ScriptLimits)
    #: A task input or output, or the variables, larger than this (compact JSON) does not stay in the Workflow's
    #: status: it goes to external payload storage when that is configured, else its task FAILS.
    inline_value_bytes: int = DEFAULT_INLINE_VALUE_BYTES
    #: How deep SUB_WORKFLOW children may nest (``--max-sub-workflow-depth``): a task that would start a
    #: child deeper fails terminally, so a workflow that starts itself ends instead of filling the cluster.
    max_sub_workflow_depth: int = DEFAULT_MAX_SUB_WORKFLOW_DEPTH
    #: Where HTTP tasks may connect (the operator's --egress-* flags); task pods get the same policy.
    egress: EgressPolicy = field(default_factory=EgressPolicy.cluster)
    #: The TTL of finished Workflows whose spec has no ``ttlStrategy`` (``--ttl-after-*``); None: keep them.
    default_ttl: TTLStrategy | None = None
    #: A status write that only records progress (tasks started or finished, nothing started, canceled or ended,
    #: no operation applied) waits until this long after the workflow's previous write, gathering what comes
    #: meanwhile into one write (``--status-coalesce-seconds``); 0: every change is written at once.
    status_coalesce_ms: int = 0

    def payload_limits(self) -> PayloadLimits:
        """What the engine may keep: with payload storage, up to Conductor's maximum payload (larger values are
        stored outside the status); without, no more than a value the status holds inline."""
        if getattr(self.payload_settings, "payload_bucket", None):
            return PayloadLimits(maxValueBytes=max(MAX_STORED_VALUE_BYTES, self.inline_value_bytes),
                                 hint="the largest payload Kondukt stores")
        return PayloadLimits(maxValueBytes=self.inline_value_bytes,
                             hint="larger values need external payload storage (KONDUKT_PAYLOAD_BUCKET on the operator)")


@dataclass
class Memo:
    """What the reconciler remembers about one Workflow between reconciles (a cache, never the truth)."""

    resource_version: str
    stored: StoredStatus
    encoder: TaskEncoder = field(default_factory=TaskEncoder)
    definition_dump: dict[str, Any] | None = None
    warned: set[str] = field(default_factory=set)
    #: Values stored in external payload storage rather than in the status (see kube.status.POINTERS).
    external: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The value objects already measured for offloading (immutable: the same object, the same size).
    measured: dict[tuple[str, str], Any] = field(default_factory=dict)
    #: The Task objects whose values were measured (a Task is immutable: the same object, the same values).
    measured_tasks: dict[str, Any] = field(default_factory=dict)
    #: The validated spec of one generation (generation, spec): a spec changes only with its generation, and
    #: validating a 1,000-branch spec again in every reconcile cost more than the rest of the reconcile.
    spec: tuple[int, Any] | None = None


@dataclass
class Outcome:
    """What a reconcile did, for the caller's bookkeeping."""

    wake_at_ms: int | None = None
    waiting_on: tuple[str, ...] = ()
