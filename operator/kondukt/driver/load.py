"""A namespace's load, the observation behind ``concurrentExecLimit`` and ``rateLimitPerFrequency``.

The engine decides whether a limited task may start from a :class:`~kondukt.engine.decision.Load`: per
TaskDef, the attempts running and the dispatch times inside the rate window. Both drivers build it with
the rules here (which TaskDefs are limited, how long the window is, which starts are in it), so a limit
holds the same locally and in a cluster. Where the counts come from differs: the operator counts the
Jobs that exist (level-based, across replicas and restarts); ``kondukt run`` counts what it dispatched
(:class:`LoadTracker`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from kondukt.engine.decision import Load, TaskLoad
from kondukt.engine.models import TaskDef


def is_limited(task_def: TaskDef | None) -> bool:
    """Whether the engine needs this TaskDef's load: a concurrency limit or a complete rate limit."""
    return task_def is not None and bool(
        task_def.concurrentExecLimit or (task_def.rateLimitPerFrequency and task_def.rateLimitFrequencyInSeconds)
    )


def rate_window_ms(task_def: TaskDef | None) -> int:
    """The rate limit's window in ms; 0 when the TaskDef has no complete rate limit."""
    if task_def is None or not task_def.rateLimitPerFrequency:
        return 0
    return (task_def.rateLimitFrequencyInSeconds or 0) * 1000


def task_load(running: int, starts: Iterable[int], window_ms: int, now_ms: int) -> TaskLoad:
    """One TaskDef's load: ``running`` attempts, and the ``starts`` after ``now_ms - window_ms`` (sorted);
    no starts without a window."""
    horizon = now_ms - window_ms
    recent = sorted(at for at in starts if at > horizon) if window_ms > 0 else []
    return TaskLoad(running=running, recentStarts=tuple(recent))


class LoadTracker:
    """The load of a driver that sees every dispatch itself (``kondukt run``: one process runs it all)."""

    def __init__(self) -> None:
        self._running: dict[str, int] = {}
        self._starts: dict[str, deque[int]] = {}
        self._windows_ms: dict[str, int] = {}

    def dispatched(self, task_def_name: str, task_def: TaskDef | None, at_ms: int) -> None:
        self._running[task_def_name] = self._running.get(task_def_name, 0) + 1
        window = rate_window_ms(task_def)
        self._windows_ms[task_def_name] = max(window, self._windows_ms.get(task_def_name, 0))
        if self._windows_ms[task_def_name] > 0:
            self._starts.setdefault(task_def_name, deque()).append(at_ms)

    def finished(self, task_def_name: str) -> None:
        self._running[task_def_name] = max(0, self._running.get(task_def_name, 0) - 1)

    def observation(self, at_ms: int) -> Load:
        by_def: dict[str, TaskLoad] = {}
        for name in set(self._running) | set(self._starts):
            window = self._windows_ms.get(name, 0)
            starts = self._starts.get(name)
            if starts is not None:  # forget what left the window, so the deque stays bounded
                while starts and starts[0] <= at_ms - window:
                    starts.popleft()
            by_def[name] = task_load(self._running.get(name, 0), starts or (), window, at_ms)
        return Load(byTaskDef=by_def)
