"""The format of the operation requests users make with annotations: ``ops.kondukt.io/<op>`` = JSON.

Operations that are not spec fields (``retry``, ``restart``, ``rerun``, ``skip``, ``complete``) are asked
for by setting the annotation ``ops.kondukt.io/<op>`` on a Workflow; its value is a JSON object with a
fresh ``nonce`` and the request's fields (``reason``, ``taskReferenceName``, ``taskId``, ``status``,
``outputData``, ``taskInput``, ``workflowInput``), i.e. the engine's
:class:`~kondukt.engine.Operation` without its ``op``. The operator applies a request once: its nonce is
then in ``status.appliedOperations``. A new request of the same kind replaces the annotation.

The CLI writes these annotations (``kondukt retry|...``) and the operator reads them; both go through
this module, so the two cannot disagree on the format. Pure: no Kubernetes client, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Final

from kondukt.engine import Operation
from kondukt.kube.resources import OPERATION_ANNOTATION_PREFIX

#: The operations a user requests through an annotation (the others are spec fields).
ANNOTATION_OPERATIONS: Final = ("retry", "restart", "rerun", "skip", "complete")
#: Order in which pending annotation operations apply when several wait at once.
APPLY_ORDER: Final = ("terminate", "pause", "resume", "complete", "skip", "rerun", "retry", "restart")


def annotation_key(op: str) -> str:
    """``ops.kondukt.io/<op>``."""
    return OPERATION_ANNOTATION_PREFIX + op


def encode(nonce: str | None, fields: Mapping[str, Any]) -> str:
    """The annotation's value: compact JSON, the nonce first, then the fields that are set (keys sorted)."""
    value: dict[str, Any] = {"nonce": nonce}
    value.update((key, item) for key, item in fields.items() if item is not None)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def operation_annotations(annotations: Mapping[str, str]) -> Iterator[tuple[str, str, str]]:
    """``(key, op, value)`` of each operation annotation among a Workflow's annotations."""
    for key, value in annotations.items():
        if key.startswith(OPERATION_ANNOTATION_PREFIX):
            yield key, key[len(OPERATION_ANNOTATION_PREFIX):], value


def nonce_of(value: str) -> str | None:
    """The nonce of an annotation's value; None when the value is not a JSON object with one."""
    try:
        nonce = json.loads(value).get("nonce")
    except (ValueError, AttributeError):
        return None
    return str(nonce) if nonce else None


def decode(op: str, value: str) -> Operation:
    """The engine Operation an annotation asks for; ValueError (pydantic's included) when it is not one."""
    document = json.loads(value)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return Operation.model_validate({**document, "op": op})


def has_unapplied(annotations: Mapping[str, str], applied: set[str]) -> bool:
    """Some operation annotation carries a nonce that is not in ``applied``."""
    for _key, _op, value in operation_annotations(annotations):
        nonce = nonce_of(value)
        if nonce and nonce not in applied:
            return True
    return False


def apply_rank(op: str) -> int:
    """Where a pending request of this kind goes in :data:`APPLY_ORDER` (unknown kinds last)."""
    return APPLY_ORDER.index(op) if op in APPLY_ORDER else len(APPLY_ORDER)
