"""The script pool both drivers evaluate jq in: real processes, real limits, real kills.

No timed assertions: a limit is shown by its reason and by the process that was replaced, never by how long
something took.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from kondukt.engine import EvaluateScript, TaskStatus
from kondukt.engine.tasks.jq import evaluate as evaluate_script
from kondukt.scriptpool import MIB, ScriptLimits, ScriptLimitsError, ScriptPool, _Child, _FairQueue, _Request

NEVER_ENDS = "def f: f; f"
#: Doubles a string forty times: a terabyte, far past any memory limit, reached in well under a second.
EXHAUSTS_MEMORY = 'reduce range(40) as $i ("x"; . + .) | length'


def action(expression: str, task_id: str = "t1", ref: str = "jq", **data: Any) -> EvaluateScript:
    return EvaluateScript(taskId=task_id, referenceTaskName=ref, expression=expression,
                          input={"queryExpression": expression, **data}, nowMs=1_704_067_200_000)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not alive
        return stat.read().split(")")[-1].split()[0] != "Z"


@pytest.fixture
async def pool() -> Any:
    """A pool whose time limit no ordinary evaluation reaches, however loaded the machine (the memory limit's
    test must end by its memory limit, not by time)."""
    scripts = ScriptPool(ScriptLimits(time_limit_seconds=120, memory_limit_bytes=256 * MIB, workers=1))
    yield scripts
    await scripts.close()


async def running_process(scripts: ScriptPool) -> int:
    """The pid of the process that has taken the request just handed out (bounded wait)."""
    await asyncio.sleep(0)  # the caller's evaluate() runs up to its queued request
    for _ in range(12_000):  # at most 120 s: a new process imports what it needs first
        if scripts.queued == 0 and scripts.processes:
            return scripts.processes[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no evaluation process took the request")


@pytest.mark.parametrize("expression", [
    pytest.param(".a + .b", id="one-result"),
    pytest.param(".xs[]", id="many-results"),
    pytest.param("now", id="clock-from-the-action"),
    pytest.param('.a | error("nope")', id="jq-error"),
    pytest.param("{{{", id="syntax-error"),
    pytest.param("env", id="no-environment"),
])
async def test_a_pooled_evaluation_gives_what_the_engine_function_gives(pool: ScriptPool, expression: str) -> None:
    request = action(expression, a=1, b=2, xs=[1, 2])
    assert await pool.evaluate(request) == evaluate_script(request)


async def test_results_keep_todays_output_shapes(pool: ScriptPool) -> None:
    done = await pool.evaluate(action(".xs[]", xs=[1, 2]))
    assert (done.status, done.outputData) == (TaskStatus.COMPLETED, {"result": 1, "resultList": [1, 2]})
    failed = await pool.evaluate(action('error("nope")'))
    assert failed.status is TaskStatus.FAILED
    assert failed.outputData == {"error": "nope"}  # jq's own message, as Conductor's JsonJqTransform reports it
    assert failed.reasonForIncompletion == "nope"


async def test_a_program_that_never_ends_fails_naming_the_time_limit_and_its_process_is_replaced() -> None:
    # Only the stuck program meets this pool's limit: the pid is read while it spins, and the evaluation after
    # it is checked by its answer (a one-second limit is a thousand times what ".a" takes, even under load).
    scripts = ScriptPool(ScriptLimits(time_limit_seconds=1, memory_limit_bytes=256 * MIB, workers=1))
    try:
        spinning = asyncio.get_running_loop().create_task(scripts.evaluate(action(NEVER_ENDS, ref="spin")))
        first = await running_process(scripts)
        stuck = await spinning
        assert stuck.status is TaskStatus.FAILED
        assert stuck.reasonForIncompletion == "task 'spin': jq: the evaluation exceeded its time limit of 1 s"
        assert stuck.outputData == {"error": "jq: the evaluation exceeded its time limit of 1 s"}
        assert not alive(first)
        after = await scripts.evaluate(action(".a", a=7))
        assert after.outputData == {"result": 7, "resultList": [7]}
        assert scripts.processes and scripts.processes[0] != first
        assert scripts.killed == 1
    finally:
        await scripts.close()


def test_a_child_ended_by_its_own_alarm_reports_the_time_limit() -> None:
    # The child arms SIGALRM a little past the limit; when it fires before the parent's kill (a parent whose
    # event loop wakes late on a loaded machine), the answer still names the limit, not a bare signal.
    ended = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    os.kill(ended.pid, signal.SIGALRM)
    assert ended.wait(timeout=120) == -signal.SIGALRM
    child = object.__new__(_Child)
    child.process = ended  # type: ignore[assignment]  # only its returncode is read
    child.stderr_tail = b""
    update = child._death(action(NEVER_ENDS, ref="spin"), ScriptLimits(time_limit_seconds=3))
    assert update.reasonForIncompletion == "task 'spin': jq: the evaluation exceeded its time limit of 3 s"


async def test_a_program_that_exhausts_memory_fails_naming_the_memory_limit(pool: ScriptPool) -> None:
    update = await pool.evaluate(action(EXHAUSTS_MEMORY))
    assert update.status is TaskStatus.FAILED
    assert update.reasonForIncompletion == "task 'jq': jq: the evaluation exceeded its memory limit of 256 MiB"
    assert (await pool.evaluate(action("1"))).status is TaskStatus.COMPLETED


async def test_withdrawing_a_running_evaluation_kills_its_process(pool: ScriptPool) -> None:
    await pool.evaluate(action("."))
    (worker,) = pool.processes
    pending = asyncio.get_running_loop().create_task(pool.evaluate(action(NEVER_ENDS)))
    assert await running_process(pool) == worker
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert (await pool.evaluate(action("2"))).outputData == {"result": 2, "resultList": [2]}
    assert not alive(worker)


async def test_close_kills_every_process_and_refuses_new_work() -> None:
    scripts = ScriptPool(ScriptLimits(time_limit_seconds=30, workers=2))
    running = [asyncio.get_running_loop().create_task(scripts.evaluate(action(NEVER_ENDS, task_id=f"t{i}")))
               for i in range(3)]
    for _ in range(500):
        await asyncio.sleep(0.01)
        if len(scripts.processes) == 2 and scripts.queued == 1:
            break
    pids = list(scripts.processes)
    assert len(pids) == 2
    await scripts.close()
    assert not any(alive(pid) for pid in pids)
    for task in running:
        with pytest.raises(asyncio.CancelledError):
            await task
    with pytest.raises(RuntimeError, match="closed"):
        await scripts.evaluate(action("."))


async def test_the_queue_serves_fairness_keys_in_turns() -> None:
    queue = _FairQueue()
    loop = asyncio.get_running_loop()
    order = [("tenant-a", "a1"), ("tenant-a", "a2"), ("tenant-a", "a3"), ("tenant-b", "b1"), ("tenant-c", "c1"),
             ("tenant-b", "b2")]
    withdrawn = _Request(action(".", task_id="gone"), loop.create_future())
    for key, task_id in order[:2]:
        queue.put(key, _Request(action(".", task_id=task_id), loop.create_future()))
    queue.put("tenant-a", withdrawn)
    withdrawn.future.cancel()
    for key, task_id in order[2:]:
        queue.put(key, _Request(action(".", task_id=task_id), loop.create_future()))
    served = [(await queue.get()).action.taskId for _ in range(6)]
    assert served == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert len(queue) == 0


@pytest.mark.parametrize(("environ", "expected"), [
    pytest.param({}, ScriptLimits(), id="defaults"),
    pytest.param({"KONDUKT_SCRIPT_TIME_LIMIT": "2.5", "KONDUKT_SCRIPT_MEMORY_LIMIT": "300",
                  "KONDUKT_SCRIPT_WORKERS": "3"},
                 ScriptLimits(time_limit_seconds=2.5, memory_limit_bytes=300 * MIB, workers=3), id="all-set"),
])
def test_limits_from_the_environment(environ: dict[str, str], expected: ScriptLimits) -> None:
    assert ScriptLimits.from_environ(environ) == expected


@pytest.mark.parametrize(("environ", "message"), [
    pytest.param({"KONDUKT_SCRIPT_TIME_LIMIT": "soon"}, "KONDUKT_SCRIPT_TIME_LIMIT='soon' is not a number",
                 id="not-a-number"),
    pytest.param({"KONDUKT_SCRIPT_TIME_LIMIT": "0"}, "time limit must be positive", id="zero-time"),
    pytest.param({"KONDUKT_SCRIPT_MEMORY_LIMIT": "16"}, "memory limit must be at least 192 MiB", id="tiny-memory"),
    pytest.param({"KONDUKT_SCRIPT_WORKERS": "0"}, "at least 1", id="no-workers"),
])
def test_unusable_limits_are_refused_with_their_name(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ScriptLimitsError, match=message):
        ScriptLimits.from_environ(environ)


def test_time_limits_read_as_people_write_them() -> None:
    assert ScriptLimits(time_limit_seconds=5).time_text() == "5 s"
    assert ScriptLimits(time_limit_seconds=0.5).time_text() == "0.5 s"
