"""Handing attempts out (engine/dispatch.py): start delays, and the concurrency and rate gates
(``concurrentExecLimit`` and ``rateLimitPerFrequency`` per window).

The limits hold across a namespace, so the driver feeds the engine a ``Load`` (running attempts and recent
dispatch times per TaskDef, every workflow counted). Without one, the engine counts its own workflow's
attempts. A gate that waits for a slot says so in ``waitingOn``; a rate window that reopens is a ``wakeAt``.
"""

from __future__ import annotations

import pytest

from kondukt.engine import Load, StartTask, TaskLoad, TaskStatus, TaskUpdate, WorkflowStatus, new_workflow
from tests.unit.engine.flows import WORK
from tests.unit.engine.harness import (
    T0,
    Sim,
    blueprint,
    never,
    ok,
    only,
    roundtrip,
    simple,
    start,
    step,
    system,
    task_def,
    workflow_def,
)


def wide(n: int, name: str = "work") -> dict[str, object]:
    branches = [[simple(f"t{i}", name=name)] for i in range(n)]
    return workflow_def([system("f", "FORK_JOIN", forkTasks=branches),
                         system("j", "JOIN", joinOn=[f"t{i}" for i in range(n)])])


def dispatches(sim: Sim) -> list[tuple[int, str]]:
    return [(e.at - T0, e.action.referenceTaskName) for e in sim.log if isinstance(e.action, StartTask)]


def max_running(sim: Sim) -> int:
    events: list[tuple[int, int]] = []
    for task in sim.workflow.tasks:
        if task.taskType == "work":
            events += [(task.updateTime if task.startTime == 0 else task.startTime - 10, 1), (task.endTime, -1)]
    running = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    return peak


def test_concurrent_exec_limit_holds_within_one_workflow() -> None:
    sim = Sim(wide(5), [task_def("work", concurrentExecLimit=2)], results={f"t{i}": ok(runs_ms=1000) for i in range(5)})
    first = sim.run(until=lambda s: s.steps >= 1)
    assert first.status is WorkflowStatus.RUNNING
    assert [ref for at, ref in dispatches(sim)] == ["t0", "t1"]
    assert sim.decisions[0].waitingOn == ("work",)
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert dispatches(sim) == [(0, "t0"), (0, "t1"), (1000, "t2"), (1000, "t3"), (2000, "t4")]
    assert max_running(sim) == 2
    assert sim.decisions[-1].waitingOn == ()


def test_concurrent_exec_limit_counts_other_workflows_through_load() -> None:
    sim = Sim(wide(3), [task_def("work", concurrentExecLimit=3)], feed_load=True,
              external_load={"work": TaskLoad(running=2)})
    sim.run(until=lambda s: s.steps >= 1)
    assert [ref for _, ref in dispatches(sim)] == ["t0"]
    assert sim.decisions[0].waitingOn == ("work",)
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert dispatches(sim) == [(0, "t0"), (1000, "t1"), (2000, "t2")]


def test_load_that_frees_a_slot_lets_the_next_attempt_start() -> None:
    bp = blueprint(wide(2), [task_def("work", concurrentExecLimit=1)])
    busy = Load(byTaskDef={"work": TaskLoad(running=1)})
    blocked = step(bp, new_workflow(bp, "wf-1", {}, T0), [busy], now=T0)
    assert only(blocked.actions, StartTask) == [] and blocked.waitingOn == ("work",)
    still = step(bp, blocked.workflow, [busy], now=T0 + 5)
    assert only(still.actions, StartTask) == [] and not still.changed
    freed = step(bp, still.workflow, [Load(byTaskDef={"work": TaskLoad(running=0)})], now=T0 + 10)
    assert [a.referenceTaskName for a in only(freed.actions, StartTask)] == ["t0"]
    assert freed.waitingOn == ("work",)


def test_rate_limit_spreads_starts_over_windows_and_wakes_when_one_reopens() -> None:
    sim = Sim(wide(5), [task_def("work", rateLimitPerFrequency=2, rateLimitFrequencyInSeconds=10)],
              results={f"t{i}": ok(runs_ms=100) for i in range(5)})
    sim.run(until=lambda s: s.steps >= 1)
    assert sim.decisions[0].wakeAt == T0 + 10_000
    assert sim.decisions[0].waitingOn == ()
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert [at for at, _ in dispatches(sim)] == [0, 0, 10_000, 10_000, 20_000]


def test_rate_limit_counts_recent_starts_of_other_workflows() -> None:
    sim = Sim(wide(2), [task_def("work", rateLimitPerFrequency=2, rateLimitFrequencyInSeconds=60)], feed_load=True,
              external_load={"work": TaskLoad(recentStarts=(T0 - 50_000, T0 - 20_000))},
              results={"t0": ok(runs_ms=100), "t1": ok(runs_ms=100)})
    sim.run(until=lambda s: s.steps >= 1)
    assert dispatches(sim) == []
    assert sim.decisions[0].wakeAt == T0 + 10_000  # the older start leaves the window
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert [at for at, _ in dispatches(sim)] == [10_000, 40_000]


def test_old_starts_outside_the_window_do_not_count() -> None:
    bp = blueprint(wide(2), [task_def("work", rateLimitPerFrequency=1, rateLimitFrequencyInSeconds=10)])
    old = Load(byTaskDef={"work": TaskLoad(recentStarts=(T0 - 10_000, T0 - 30_000))})
    decision = step(bp, start(bp).workflow, [old], now=T0 + 1)
    assert len(only(decision.actions, StartTask)) == 1


@pytest.mark.parametrize(("policy", "blocked"), [
    pytest.param(dict(concurrentExecLimit=1), ("limited",), id="concurrency"),
    pytest.param(dict(rateLimitPerFrequency=1, rateLimitFrequencyInSeconds=30), (), id="rate"),
])
def test_gates_only_hold_back_their_own_task_def(policy: dict[str, int], blocked: tuple[str, ...]) -> None:
    branches = [[simple("l0", name="limited")], [simple("l1", name="limited")], [simple("free", name="free")]]
    bp = blueprint(workflow_def([system("f", "FORK_JOIN", forkTasks=branches),
                                 system("j", "JOIN", joinOn=["l0", "l1", "free"])]),
                   [task_def("limited", **policy), task_def("free")])
    decision = start(bp)
    assert sorted(a.referenceTaskName for a in only(decision.actions, StartTask)) == ["free", "l0"]
    assert decision.waitingOn == blocked


def test_gated_attempts_start_in_scheduling_order() -> None:
    sim = Sim(wide(4), [task_def("work", concurrentExecLimit=1)])
    sim.run()
    assert [ref for _, ref in dispatches(sim)] == ["t0", "t1", "t2", "t3"]


def test_a_retry_waits_for_its_gate_too() -> None:
    sim = Sim(wide(2), [task_def("work", concurrentExecLimit=1, retryCount=1)],
              results={"t0": [ok(runs_ms=5000)], "t1": never()})
    sim.run(until_time=T0 + 1000)
    assert [ref for _, ref in dispatches(sim)] == ["t0"]
    assert sim.task("t1").status is TaskStatus.SCHEDULED
    assert not sim.task("t1").dispatched


def test_deciding_again_with_the_same_load_starts_nothing_new() -> None:
    bp = blueprint(wide(3), [task_def("work", concurrentExecLimit=2)])
    load = Load(byTaskDef={"work": TaskLoad(running=0)})
    first = step(bp, start(bp, now=T0).workflow, [load], now=T0)
    again = step(bp, first.workflow, [Load(byTaskDef={"work": TaskLoad(running=2)})], now=T0)
    assert only(again.actions, StartTask) == [] and not again.changed


def test_started_attempts_stop_counting_once_finished() -> None:
    sim = Sim(wide(3), [task_def("work", concurrentExecLimit=1)], feed_load=True,
              results={"t0": ok(runs_ms=100), "t1": ok(runs_ms=100), "t2": ok(runs_ms=100)})
    assert sim.run().status is WorkflowStatus.COMPLETED
    assert [at for at, _ in dispatches(sim)] == [0, 100, 200]


def test_a_state_read_back_from_storage_without_load_still_respects_the_rate_limit() -> None:
    bp = blueprint(wide(3), [task_def("work", rateLimitPerFrequency=1, rateLimitFrequencyInSeconds=10)])
    first = start(bp)
    assert [a.referenceTaskName for a in only(first.actions, StartTask)] == ["t0"]
    started = step(bp, first.workflow, [TaskUpdate(taskId=first.workflow.tasks[1].taskId, started=True)],
                   now=T0 + 2000)
    reread = roundtrip(started.workflow)
    # The re-read state knows t0 only by its start (2 s): the window reopens at 12 s, not earlier.
    assert step(bp, reread, now=T0 + 11_999).actions == ()
    assert [a.referenceTaskName for a in only(step(bp, roundtrip(reread), now=T0 + 12_000).actions, StartTask)] == ["t1"]


def test_start_delay_holds_the_first_attempt_back_and_wakes_exactly() -> None:
    bp = blueprint(workflow_def([simple("a", startDelay=30)]), [WORK])
    first = start(bp)
    assert only(first.actions, StartTask) == []
    assert first.wakeAt == T0 + 30_000
    assert first.workflow.tasks[0].startDelayInSeconds == 30
    too_early = step(bp, first.workflow, now=T0 + 29_999)
    assert only(too_early.actions, StartTask) == []
    due = step(bp, too_early.workflow, now=T0 + 30_000)
    assert [a.referenceTaskName for a in only(due.actions, StartTask)] == ["a"]
