"""Deterministic names for what the operator creates: Jobs, child Workflows, started Workflows, labels.

Idempotence rests on these names: a crashed operator that carries out the same action again gets
AlreadyExists instead of a second attempt. So a name is a pure function of what identifies the thing
(the workflow's uid and the attempt's taskId; the request id of a START_WORKFLOW), never random, never
time-based. Names are at most 63 characters (a DNS label: usable as a label value and as a pod's
hostname) and keep a readable prefix (workflow and task reference) for ``kubectl get jobs``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

MAX_NAME: Final = 63
HASH_CHARS: Final = 10

_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9._-]+")


def digest(*parts: str, chars: int = HASH_CHARS) -> str:
    """A short, stable hash of ``parts`` (lower-case hex, so it is valid in every Kubernetes name)."""
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return h[:chars]


def dns_fragment(text: str, limit: int) -> str:
    """``text`` as a fragment of a DNS label: lower case, ``[a-z0-9-]``, at most ``limit`` characters."""
    cleaned = _NOT_DNS.sub("-", text.lower().replace("_", "-")).strip("-")
    return cleaned[:limit].strip("-")


def _joined(fragments: list[str], suffix: str) -> str:
    return "-".join([f for f in fragments if f] + [suffix])


def job_name(workflow_name: str, workflow_uid: str, task_ref: str, task_id: str) -> str:
    """The Job of one task attempt: ``<workflow>-<ref>-<hash(uid, taskId)>``, at most 63 characters.

    The hash covers the workflow's uid (a Workflow deleted and created again under the same name gets new
    Jobs) and the taskId (unique per attempt: reference, iteration and retry).
    """
    suffix = digest(workflow_uid, task_id)
    room = MAX_NAME - len(suffix) - 2
    return _joined([dns_fragment(workflow_name, room // 2), dns_fragment(task_ref, room - room // 2)], suffix)


def child_workflow_name(parent_name: str, parent_uid: str, task_ref: str, task_id: str) -> str:
    """The child Workflow of a SUB_WORKFLOW attempt (owned by the parent)."""
    suffix = digest(parent_uid, task_id, "child")
    room = MAX_NAME - len(suffix) - 2
    return _joined([dns_fragment(parent_name, room // 2), dns_fragment(task_ref, room - room // 2)], suffix)


def started_workflow_name(workflow_def_name: str, starter_uid: str, request_id: str) -> str:
    """A Workflow started by START_WORKFLOW or as a failureWorkflow (not owned by the starter)."""
    suffix = digest(starter_uid, request_id, "start")
    return _joined([dns_fragment(workflow_def_name, MAX_NAME - len(suffix) - 1)], suffix)


def label_value(text: str) -> str:
    """``text`` as a valid label value (at most 63 of ``[A-Za-z0-9._-]``, alphanumeric at both ends).

    Long or unusual values keep a readable head and a hash, so different inputs stay different.
    """
    cleaned = _NOT_LABEL.sub("-", text).strip("._-")
    if cleaned == text and len(cleaned) <= MAX_NAME:
        return cleaned
    suffix = digest(text, chars=8)
    head = cleaned[: MAX_NAME - len(suffix) - 1].strip("._-")
    return f"{head}-{suffix}" if head else suffix
