"""The Workflow resource's ``status``: the engine's execution state, encoded for Kubernetes and back.

``status`` holds Conductor's execution fields (``workflowId``, ``input``, ``output``, ``variables``,
``reasonForIncompletion``, ``tasks`` — every attempt — ...), plus what Kubernetes users expect:
``phase`` (display only), ``progress`` ("3/5"), ``message``, ``conditions`` (metav1.Condition style:
Ready, Reconciling and Stalled as GitOps tools read them — :mod:`kondukt.kube.conditions` — and Succeeded,
Failed, Suspended), ``observedGeneration``, and the ``definition`` snapshot taken at
start (like Conductor, later edits of the WorkflowDef do not change a running execution).

Compactness (a Kubernetes object must stay well under 1 MiB, etcd's limit is 1.5 MiB): task entries
omit fields at their default values; when the task list's JSON grows beyond ``compress_over_bytes`` it is
stored as ``tasksCompressed`` (base64 of xz — LZMA catches the repeats across a big fork's inputs and
outputs far better than gzip, which is read too — written in blocks of 256 tasks so that a write
re-compresses only the blocks whose tasks changed) and ``tasks`` is omitted; an ``output`` that large goes to ``outputCompressed`` the same way. Readers use
:func:`tasks_from_status` and :func:`output_from_status`, which handle both forms. ``taskCounts`` always
says how many attempts are in each status.

Values too large for the object at all (an incompressible 2.5 MB script result) do not stay in it: with
external payload storage the reconciler stores them there and the status carries Conductor's pointers
instead — ``externalOutputPayloadStoragePath`` / ``externalInputPayloadStoragePath`` on a task entry (for its
``outputData`` / ``inputData``) or on the status itself (the workflow's ``output`` / ``input``).
:func:`read_status` hands the pointers back in ``StoredStatus.external`` for the reconciler to fetch.

One way in, one way out: :func:`read_status` and :func:`build_status`. Pure: no I/O; "now" is an argument.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import lzma
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pydantic

from kondukt.engine.models import Task, Workflow, WorkflowDef, WorkflowStatus
from kondukt.kube import conditions

DEFAULT_COMPRESS_OVER_BYTES: Final = 128 * 1024
MAX_MESSAGE: Final = 300

#: Fields every task entry keeps even at their default value (what people look for first).
ALWAYS_SHOWN: Final = ("taskId", "referenceTaskName", "taskType", "taskDefName", "status", "retryCount")

#: status keys the driver owns (everything else is the engine's ``Workflow``).
DRIVER_KEYS: Final = frozenset({
    "phase", "progress", "message", "conditions", "observedGeneration", "observedSuspend", "definition",
    "taskCounts", "tasksCompressed", "tasks", "outputCompressed", "externalOutputPayloadStoragePath",
    "externalInputPayloadStoragePath",
})

#: Conductor's pointer names, by the field whose value is stored externally.
POINTERS: Final = {"outputData": "externalOutputPayloadStoragePath", "inputData": "externalInputPayloadStoragePath",
                   "output": "externalOutputPayloadStoragePath", "input": "externalInputPayloadStoragePath"}
#: The key of the workflow's own fields (output, input) in an ``external`` map (task ids key the rest).
WORKFLOW_KEY: Final = ""

External = Mapping[str, Mapping[str, str]]
"""taskId (or WORKFLOW_KEY) -> field (outputData, inputData / output, input) -> the URI of its stored value."""


class StatusError(ValueError):
    """``status`` cannot be decoded (edited by hand, or written by an incompatible version)."""


# -------------------------------------------------------------------------------------------- packing
_XZ_MAGIC = b"\xfd7zXZ\x00"


def pack(value: Any) -> str:
    """base64 of xz of compact JSON (the form of ``tasksCompressed`` and ``outputCompressed``)."""
    data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.b64encode(lzma.compress(data, preset=0)).decode("ascii")


def unpack(packed: str, field: str) -> Any:
    """The JSON value packed by :func:`pack` (xz) or by gzip; :class:`StatusError` names ``field``."""
    try:
        raw = base64.b64decode(packed, validate=True)
        data = lzma.decompress(raw) if raw.startswith(_XZ_MAGIC) else gzip.decompress(raw)
        return json.loads(data)
    except (ValueError, OSError, lzma.LZMAError) as err:
        raise StatusError(f"status.{field} is not base64 of gzip of JSON (nor of xz): {err}") from None


# -------------------------------------------------------------------------------------------- reading
def tasks_from_status(status: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The task entries of a Workflow's status, whether stored plainly or compressed."""
    if not status:
        return []
    packed = status.get("tasksCompressed")
    if isinstance(packed, str) and packed:
        entries = unpack(packed, "tasksCompressed")
    else:
        entries = status.get("tasks") or []
    if not isinstance(entries, list):
        raise StatusError("status.tasks must be a list")
    return [e for e in entries if isinstance(e, dict)]


def output_from_status(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The workflow's output, whether stored plainly or compressed."""
    if not status:
        return {}
    packed = status.get("outputCompressed")
    output = unpack(packed, "outputCompressed") if isinstance(packed, str) and packed else status.get("output")
    return dict(output) if isinstance(output, Mapping) else {}


@dataclass(frozen=True)
class StoredStatus:
    """What a Workflow's status says: the engine state (None until started) and the driver's fields."""

    workflow: Workflow | None
    definition: WorkflowDef | None
    observed_suspend: bool = False
    observed_generation: int = 0
    conditions: tuple[Mapping[str, Any], ...] = ()
    phase: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: Values stored outside the status (see POINTERS); the Workflow holds them empty until fetched.
    external: External = field(default_factory=dict)


def read_status(status: Mapping[str, Any] | None) -> StoredStatus:
    """Decode a Workflow's status. Raises :class:`StatusError` when it cannot be read."""
    status = status or {}
    conditions = tuple(c for c in status.get("conditions") or [] if isinstance(c, Mapping))
    common = {
        "observed_suspend": bool(status.get("observedSuspend", False)),
        "observed_generation": int(status.get("observedGeneration") or 0),
        "conditions": conditions,
        "phase": status.get("phase"),
    }
    if not status.get("workflowId"):
        return StoredStatus(workflow=None, definition=None, **common)  # type: ignore[arg-type]
    document = {k: v for k, v in status.items() if k not in DRIVER_KEYS}
    document["tasks"] = tasks_from_status(status)
    document["output"] = output_from_status(status)
    external: dict[str, dict[str, str]] = {}
    for name in ("output", "input"):
        pointer = status.get(POINTERS[name])
        if isinstance(pointer, str) and pointer:
            external.setdefault(WORKFLOW_KEY, {})[name] = pointer
    for entry in document["tasks"]:
        entry.pop("jobName", None)
        entry.pop("subWorkflowName", None)
        for name in ("outputData", "inputData"):
            pointer = entry.pop(POINTERS[name], None)
            if isinstance(pointer, str) and pointer and isinstance(entry.get("taskId"), str):
                external.setdefault(entry["taskId"], {})[name] = pointer
    try:
        workflow = Workflow.model_validate(document)
        snapshot = status.get("definition")
        definition = WorkflowDef.model_validate(snapshot) if isinstance(snapshot, Mapping) else None
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        place = ".".join(str(p) for p in first.get("loc", ()))
        raise StatusError(f"status.{place}: {first.get('msg')}") from None
    return StoredStatus(workflow=workflow, definition=definition, external=external,
                        **common)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------- writing
def encode_task(task: Task, job_name: str | None = None, external: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One compact task entry: defaults omitted, except the fields people look for first; a field stored
    externally (``external``: field -> URI) is replaced by its pointer."""
    entry = task.model_dump(mode="json", exclude_defaults=True, exclude=set(external or ()))
    for name, uri in (external or {}).items():
        entry[POINTERS[name]] = uri
    for key in ALWAYS_SHOWN:
        if key not in entry:
            entry[key] = getattr(task, key).value if key == "status" else getattr(task, key)
    if job_name:
        entry["jobName"] = job_name
    return entry


#: Tasks per independently compressed block of ``tasksCompressed`` (see TaskEncoder.pack).
PACK_BLOCK_TASKS: Final = 256


@dataclass(frozen=True)
class _Encoded:
    """One task's entry, kept as its compact JSON only: a fork of 10,000 branches would otherwise keep every entry
    twice (as dicts and as text, ~20 MiB of dicts); the dicts are needed only for a small, uncompressed list."""

    task: Task
    text: bytes  # the entry as compact JSON

    @property
    def entry(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.text)
        return decoded


class TaskEncoder:
    """Encodes task entries incrementally: only the tasks that changed since the last call cost anything.

    Tasks are immutable values (the engine replaces a Task to change it), so an unchanged Task object
    means an unchanged entry. :meth:`pack` compresses the list in blocks of ``PACK_BLOCK_TASKS`` entries,
    each an xz stream of its piece of the JSON text, and reuses the block of the last call when none of
    its entries changed; concatenated xz streams decompress as one. For a fork of thousands of branches,
    where an event changes a few tasks, a status write then re-encodes a block or two, not everything.
    """

    def __init__(self) -> None:
        self._cache: dict[str, _Encoded] = {}
        self._blocks: dict[int, tuple[tuple[_Encoded, ...], bool, bytes]] = {}

    def encoded(self, tasks: Sequence[Task], job_name: Callable[[Task], str | None],
                external: External | None = None) -> list[_Encoded]:
        """Entries of ``tasks``; ``external`` must not change for a task object once it was encoded."""
        out: list[_Encoded] = []
        fresh: dict[str, _Encoded] = {}
        for task in tasks:
            hit = self._cache.get(task.taskId)
            if hit is None or hit.task is not task:
                entry = encode_task(task, job_name(task), (external or {}).get(task.taskId))
                text = json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
                hit = _Encoded(task, text)
            fresh[task.taskId] = hit
            out.append(hit)
        self._cache = fresh
        return out

    def encode(self, tasks: Sequence[Task], job_name: Callable[[Task], str | None]) -> list[dict[str, Any]]:
        return [item.entry for item in self.encoded(tasks, job_name)]

    def pack(self, items: Sequence[_Encoded]) -> str:
        """base64 of the xz-compressed JSON list of ``items`` (as :func:`unpack` reads it)."""
        if not items:
            return pack([])
        parts: list[bytes] = []
        fresh: dict[int, tuple[tuple[_Encoded, ...], bool, bytes]] = {}
        for start in range(0, len(items), PACK_BLOCK_TASKS):
            block = tuple(items[start:start + PACK_BLOCK_TASKS])
            last = start + len(block) >= len(items)
            cached = self._blocks.get(start)
            if cached is not None and cached[1] == last and len(cached[0]) == len(block) and all(
                    a is b for a, b in zip(cached[0], block, strict=True)):
                data = cached[2]
            else:
                text = (b"[" if start == 0 else b"") + b",".join(item.text for item in block) + (
                    b"]" if last else b",")
                data = lzma.compress(text, preset=0)
            fresh[start] = (block, last, data)
            parts.append(data)
        self._blocks = fresh
        return base64.b64encode(b"".join(parts)).decode("ascii")


def _latest_attempts(tasks: Sequence[Task]) -> dict[str, Task]:
    latest: dict[str, Task] = {}
    for task in tasks:
        latest[task.referenceTaskName] = task
    return latest


def progress(workflow: Workflow, definition: WorkflowDef | None) -> str:
    """"finished/known" over the latest attempt of each task reference, e.g. ``3/5``.

    Known = the references that have an attempt, plus (while the workflow runs) the top-level tasks of
    the definition not reached yet; branches not taken are never counted.
    """
    latest = _latest_attempts(workflow.tasks)
    done = sum(1 for t in latest.values() if t.status.terminal)
    total = len(latest)
    if definition is not None and not workflow.status.terminal:
        total += sum(1 for t in definition.tasks if t.taskReferenceName not in latest)
    return f"{done}/{total}"


def status_message(workflow: Workflow) -> str:
    """One line for ``kubectl get wf``: why it failed, or what runs now."""
    state = workflow.status
    if state in (WorkflowStatus.FAILED, WorkflowStatus.TIMED_OUT, WorkflowStatus.TERMINATED):
        text = workflow.reasonForIncompletion or state.value.lower().replace("_", " ")
    elif state is WorkflowStatus.COMPLETED:
        text = "completed"
    else:
        running = [t.referenceTaskName for t in _latest_attempts(workflow.tasks).values() if not t.status.terminal]
        shown = ", ".join(running[:3]) + (f" (+{len(running) - 3} more)" if len(running) > 3 else "")
        prefix = "paused" if state is WorkflowStatus.PAUSED else "running"
        text = f"{prefix}: {shown}" if shown else prefix
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


_REASONS: Final = {
    WorkflowStatus.RUNNING: "Running",
    WorkflowStatus.PAUSED: "Paused",
    WorkflowStatus.COMPLETED: "Completed",
    WorkflowStatus.FAILED: "Failed",
    WorkflowStatus.TIMED_OUT: "TimedOut",
    WorkflowStatus.TERMINATED: "Terminated",
}


def merge_conditions(
    wanted: Sequence[tuple[str, str, str, str]],
    previous: Sequence[Mapping[str, Any]],
    generation: int,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """metav1.Conditions from (type, status, reason, message); lastTransitionTime moves only on change."""
    return conditions.merge(wanted, previous, generation, now)


#: The phases kstatus must see as Failed (Stalled=True): nothing happens any more without a change.
_ENDED_BADLY: Final = (WorkflowStatus.FAILED, WorkflowStatus.TIMED_OUT, WorkflowStatus.TERMINATED)


def workflow_conditions(
    workflow: Workflow, message: str, reason_override: str | None = None
) -> list[tuple[str, str, str, str]]:
    """The conditions of a started workflow (see docs/gitops.md for what GitOps tools make of them).

    Ready is True once it COMPLETED, False when it ended otherwise or is paused, Unknown while it runs;
    Reconciling is there while it runs, Stalled once it ended FAILED, TIMED_OUT or TERMINATED; Succeeded,
    Failed and Suspended say the same in Kondukt's own words.
    """
    state = workflow.status
    reason = reason_override or _REASONS[state]
    failed = state in _ENDED_BADLY
    running = state is WorkflowStatus.RUNNING
    ready = "True" if state is WorkflowStatus.COMPLETED else ("Unknown" if running else "False")
    return [
        *conditions.health(ready=ready, reason=reason, message=message, reconciling=running, stalled=failed),
        ("Succeeded", "True" if state is WorkflowStatus.COMPLETED else ("False" if failed else "Unknown"),
         reason, message),
        ("Failed", "True" if failed else "False", reason, message),
        ("Suspended", "True" if state is WorkflowStatus.PAUSED else "False", reason, message),
    ]


def build_status(
    workflow: Workflow,
    definition: WorkflowDef | None,
    *,
    generation: int,
    observed_suspend: bool,
    previous_conditions: Sequence[Mapping[str, Any]],
    now: dt.datetime,
    job_name: Callable[[Task], str | None] = lambda task: None,
    encoder: TaskEncoder | None = None,
    definition_snapshot: Mapping[str, Any] | None = None,
    reason_override: str | None = None,
    compress_over_bytes: int = DEFAULT_COMPRESS_OVER_BYTES,
    external: External | None = None,
) -> dict[str, Any]:
    """The whole ``status`` for ``workflow`` (written with PUT on the status subresource); the values named in
    ``external`` are replaced by their pointers."""
    stored_outside = (external or {}).get(WORKFLOW_KEY, {})
    body = workflow.model_dump(mode="json", exclude_defaults=True, exclude={"tasks", *stored_outside})
    for name, uri in stored_outside.items():
        body[POINTERS[name]] = uri
    body["workflowId"] = workflow.workflowId
    body["status"] = workflow.status.value
    encoder = encoder or TaskEncoder()
    items = encoder.encoded(workflow.tasks, job_name, external)
    if sum(len(item.text) + 1 for item in items) > compress_over_bytes:
        body["tasksCompressed"] = encoder.pack(items)
    else:
        body["tasks"] = [item.entry for item in items]
    if "output" in body and len(json.dumps(body["output"], separators=(",", ":"))) > compress_over_bytes // 2:
        body["outputCompressed"] = pack(body.pop("output"))
    message = status_message(workflow)
    body.update({
        "phase": workflow.status.value,
        "progress": progress(workflow, definition),
        "message": message,
        "observedGeneration": generation,
        "observedSuspend": observed_suspend,
        "taskCounts": dict(Counter(t.status.value for t in workflow.tasks)),
        "conditions": merge_conditions(
            workflow_conditions(workflow, message, reason_override), previous_conditions, generation, now
        ),
    })
    if definition_snapshot is not None:
        body["definition"] = dict(definition_snapshot)
    elif definition is not None:
        body["definition"] = definition.model_dump(mode="json", exclude_defaults=True)
    return body


def build_waiting_status(
    reason: str,
    message: str,
    *,
    generation: int,
    previous_conditions: Sequence[Mapping[str, Any]],
    now: dt.datetime,
) -> dict[str, Any]:
    """The status of a Workflow that has not started yet (e.g. its WorkflowDef is not there yet)."""
    text = message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
    return {
        "message": text,
        "observedGeneration": generation,
        "conditions": merge_conditions(
            [*conditions.health(ready="False", reason=reason, message=text, reconciling=True),
             ("Succeeded", "Unknown", reason, text), ("Failed", "False", reason, text),
             ("Suspended", "False", reason, text)],
            previous_conditions, generation, now,
        ),
    }
