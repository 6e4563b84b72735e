"""What a worker hands back: Conductor's TaskResult, and the exception that means "do not retry".

A worker function returns a plain ``dict`` (its ``outputData``) or a :class:`TaskResult`, or raises.
:class:`TerminalError` (or any exception whose ``terminal`` attribute is true) ends the attempt as
``FAILED_WITH_TERMINAL_ERROR``: Kondukt does not retry it. Any other exception is ``FAILED``, retried
by the TaskDef's policy.

This module must stay dependency-free: everything else in the package imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

COMPLETED: Final = "COMPLETED"
FAILED: Final = "FAILED"
FAILED_WITH_TERMINAL_ERROR: Final = "FAILED_WITH_TERMINAL_ERROR"

#: The statuses a worker may report (the worker protocol, docs/worker-protocol.md).
RESULT_STATUSES: Final = frozenset({COMPLETED, FAILED, FAILED_WITH_TERMINAL_ERROR})

#: Reasons are shown in ``kubectl get`` columns and termination messages: keep them short.
MAX_REASON_CHARS: Final = 1000


class TerminalError(Exception):
    """Raise it from a worker to fail the task without retries (``FAILED_WITH_TERMINAL_ERROR``).

    Use it for what a retry cannot fix: invalid input, a file that is not an image, a missing
    configuration. The message becomes ``reasonForIncompletion``: say what is wrong and where.
    """

    terminal: bool = True


def shorten_reason(reason: str) -> str:
    """One reason string of bounded size (a termination message holds 4 KiB in total)."""
    reason = reason.strip()
    if len(reason) <= MAX_REASON_CHARS:
        return reason
    return reason[: MAX_REASON_CHARS - 1] + "…"


@dataclass(frozen=True)
class TaskResult:
    """Conductor's TaskResult as the worker protocol carries it.

    ``status`` is one of COMPLETED, FAILED, FAILED_WITH_TERMINAL_ERROR.
    """

    status: str = COMPLETED
    output_data: Mapping[str, Any] = field(default_factory=dict)
    reason_for_incompletion: str | None = None

    def __post_init__(self) -> None:
        if self.status not in RESULT_STATUSES:
            raise ValueError(
                f"TaskResult status {self.status!r} is not one of {', '.join(sorted(RESULT_STATUSES))}"
            )

    @classmethod
    def completed(cls, output_data: Mapping[str, Any] | None = None) -> TaskResult:
        return cls(COMPLETED, dict(output_data or {}))

    @classmethod
    def failed(cls, reason: str, output_data: Mapping[str, Any] | None = None) -> TaskResult:
        """A failure Kondukt retries according to the TaskDef's retry policy."""
        return cls(FAILED, dict(output_data or {}), shorten_reason(reason))

    @classmethod
    def failed_terminally(cls, reason: str, output_data: Mapping[str, Any] | None = None) -> TaskResult:
        """A failure that is never retried."""
        return cls(FAILED_WITH_TERMINAL_ERROR, dict(output_data or {}), shorten_reason(reason))

    def to_json_dict(self) -> dict[str, Any]:
        """The protocol's JSON shape, with Conductor's field names."""
        document: dict[str, Any] = {"status": self.status, "outputData": dict(self.output_data)}
        if self.reason_for_incompletion:
            document["reasonForIncompletion"] = self.reason_for_incompletion
        return document

    @classmethod
    def from_json_dict(cls, document: Mapping[str, Any]) -> TaskResult:
        """Read the protocol's JSON shape (every key optional; no status means COMPLETED)."""
        output = document.get("outputData") or {}
        if not isinstance(output, Mapping):
            raise ValueError(f"outputData must be a JSON object, not {type(output).__name__}")
        reason = document.get("reasonForIncompletion")
        return cls(
            status=str(document.get("status") or COMPLETED),
            output_data=dict(output),
            reason_for_incompletion=None if reason is None else str(reason),
        )
