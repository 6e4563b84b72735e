"""``kondukt.driver.load``: which TaskDefs are limited, the rate window, and the load both drivers report."""

from __future__ import annotations

from kondukt.driver.load import LoadTracker, is_limited, rate_window_ms, task_load
from kondukt.engine.decision import TaskLoad
from kondukt.engine.models import TaskDef


def test_a_task_def_is_limited_by_concurrency_or_a_complete_rate_limit() -> None:
    assert not is_limited(None)
    assert not is_limited(TaskDef(name="free"))
    assert is_limited(TaskDef(name="c", concurrentExecLimit=2))
    assert is_limited(TaskDef(name="r", rateLimitPerFrequency=3, rateLimitFrequencyInSeconds=10))
    assert not is_limited(TaskDef(name="half", rateLimitFrequencyInSeconds=10))
    assert rate_window_ms(TaskDef(name="r", rateLimitPerFrequency=3, rateLimitFrequencyInSeconds=10)) == 10_000
    assert rate_window_ms(TaskDef(name="half", rateLimitFrequencyInSeconds=10)) == 0


def test_only_starts_inside_the_window_count_sorted_and_none_without_a_window() -> None:
    assert task_load(2, [9_500, 1_000, 5_000, 5_001], 5_000, 10_000) == TaskLoad(running=2, recentStarts=(5_001, 9_500))
    assert task_load(1, [9_500], 0, 10_000) == TaskLoad(running=1)


def test_the_tracker_counts_dispatches_until_they_finish_and_forgets_old_starts() -> None:
    limited = TaskDef(name="r", rateLimitPerFrequency=1, rateLimitFrequencyInSeconds=1)
    tracker = LoadTracker()
    tracker.dispatched("r", limited, 1_000)
    tracker.dispatched("r", limited, 1_500)
    tracker.dispatched("c", TaskDef(name="c", concurrentExecLimit=1), 1_500)
    tracker.finished("r")
    load = tracker.observation(2_200)
    assert load.byTaskDef == {"r": TaskLoad(running=1, recentStarts=(1_500,)), "c": TaskLoad(running=1)}
    tracker.finished("r")
    tracker.finished("r")  # more finishes than starts never go below zero
    assert tracker.observation(3_000).byTaskDef["r"] == TaskLoad(running=0)
