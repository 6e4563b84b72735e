"""The table of workers by task definition name, and the ``@worker_task`` decorator that fills it.

Like Conductor's Python SDK, a worker is a plain function registered under the name tasks refer to:

    @worker_task(task_definition_name="greet")
    def greet(task_input: dict) -> dict:
        return {"greeting": f"Hello {task_input['name']}"}

The decorator returns the function unchanged, so it stays an ordinary, testable function.
The built-in workers register lazily: their modules (which import Pillow or boto3) are imported only
when their name is looked up, so starting ``kondukt-worker`` for one task never pays for the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kondukt_workers.results import TaskResult

#: What a worker function looks like: input data in; output data, a TaskResult or None out.
WorkerFunction = Callable[[dict[str, Any]], "Mapping[str, Any] | TaskResult | None"]
_F = TypeVar("_F", bound=Callable[..., Any])

#: Built-in worker name → the module whose import registers it.
BUILTIN_WORKERS: Mapping[str, str] = {
    "image_convert_resize": "kondukt_workers.builtin.image_convert_resize",
    "upload_toS3": "kondukt_workers.builtin.upload_to_s3",
    "image_multiple_convert_resize": "kondukt_workers.builtin.image_multiple_convert_resize",
}

_registry: dict[str, Callable[..., Any]] = {}


class UnknownWorker(LookupError):
    """No worker is registered under the requested name (a deployment error: retrying cannot help)."""

    terminal = True


#: Top-level modules the built-in workers import from the ``builtin`` extra → the distribution to install.
_BUILTIN_DEPENDENCIES: Mapping[str, str] = {"PIL": "Pillow", "boto3": "boto3", "botocore": "boto3"}


class MissingDependency(LookupError):
    """A built-in worker's third-party dependency (the ``kondukt-workers[builtin]`` extra) is missing."""

    terminal = True


def worker_task(task_definition_name: str) -> Callable[[_F], _F]:
    """Register the decorated function as the worker for tasks named ``task_definition_name``."""
    if not isinstance(task_definition_name, str) or not task_definition_name.strip():
        raise ValueError("worker_task needs a non-empty task_definition_name")

    def register(function: _F) -> _F:
        existing = _registry.get(task_definition_name)
        if existing is not None and _qualified_name(existing) != _qualified_name(function):
            raise ValueError(
                f"worker {task_definition_name!r} is already registered by {_qualified_name(existing)}; "
                f"cannot register {_qualified_name(function)} under the same name"
            )
        _registry[task_definition_name] = function
        return function

    return register


def _qualified_name(function: Callable[..., Any]) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"


def get_worker(name: str) -> Callable[..., Any]:
    """The worker registered under ``name`` (importing a built-in's module on first use)."""
    if name not in _registry and name in BUILTIN_WORKERS:
        try:
            importlib.import_module(BUILTIN_WORKERS[name])
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] not in _BUILTIN_DEPENDENCIES:
                raise
            raise MissingDependency(
                f"the built-in worker {name!r} needs {_BUILTIN_DEPENDENCIES[exc.name.split('.')[0]]}, "
                "which is not installed: pip install 'kondukt-workers[builtin]'"
            ) from None
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(registered_names()) or "none"
        raise UnknownWorker(f"no worker is registered as {name!r} (known workers: {known})") from None


def registered_names() -> list[str]:
    """Every name ``get_worker`` accepts: the built-ins and whatever has been registered."""
    return sorted(set(_registry) | set(BUILTIN_WORKERS))


def unregister(name: str) -> None:
    """Forget the worker registered as ``name`` (for tests and interactive sessions)."""
    _registry.pop(name, None)
