"""The errors Kondukt explains to its users instead of showing a traceback.

Anything that raises a ``KonduktError`` has already said, in its message, what is wrong and where (file,
document, field, task reference). The ``kondukt`` command prints the message on stderr and exits with the
error's ``exit_code``: 2 for invalid input (``KonduktUserError``), 1 otherwise. Raise these only for
conditions a user can fix; a bug stays an ordinary exception.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["KonduktError", "KonduktUserError", "ManifestError"]


class KonduktError(Exception):
    """A failure with a message written for the user (printed as is, never with a traceback)."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class KonduktUserError(KonduktError):
    """The input is invalid (a bad file, flag or definition): exit code 2."""

    exit_code = 2


class ManifestError(KonduktUserError):
    """Manifests or Conductor JSON that cannot be loaded; ``problems`` holds one line per mistake."""

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.problems: tuple[str, ...] = tuple(problems) if problems is not None else (message,)

    @classmethod
    def from_problems(cls, problems: Sequence[str]) -> ManifestError:
        return cls("\n".join(problems), problems)
