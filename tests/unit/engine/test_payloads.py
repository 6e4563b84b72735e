"""Values too large to keep in a workflow's state (engine/payloads.py, PayloadLimits): the task FAILS naming
the size and the limit, the moment the value appears; without limits nothing changes."""

from __future__ import annotations

from typing import Any

import pytest

from kondukt.engine import TaskStatus, TaskUpdate, WorkflowStatus
from kondukt.engine.models import PayloadLimits
from kondukt.engine.payloads import json_size, oversize, size_text
from tests.unit.engine.harness import Sim, blueprint, ok, simple, start, step, system, task_def, workflow_def

LIMITS = PayloadLimits(maxValueBytes=1024, hint="configure storage")
BIG = "x" * 2000  # 2,000 characters: over the 1 KiB limit as JSON


def limited(tasks: list[dict[str, Any]], **extra: Any) -> Any:
    bp = blueprint(workflow_def(tasks, **extra), [task_def("work")])
    return bp.model_copy(update={"payloadLimits": LIMITS})


def test_sizes_are_read_as_people_write_them() -> None:
    assert (size_text(256 * 1024), size_text(300), size_text(2_621_456)) == ("256 KiB", "300 bytes",
                                                                            "2.5 MiB (2621456 bytes)")
    assert json_size({"a": "é"}) == len('{"a":"é"}'.encode())
    assert oversize("its output is", {"a": 1}, PayloadLimits()) is None


def test_an_inline_result_too_large_fails_its_task_naming_size_and_limit() -> None:
    sim = Sim(limited([system("big", "INLINE", {"evaluatorType": "javascript",
                                                "expression": "'x'.repeat(2000)"}), simple("after")]))
    sim.run()
    task = sim.task("big")
    assert task.status is TaskStatus.FAILED_WITH_TERMINAL_ERROR and task.outputData == {}
    assert task.reasonForIncompletion == ("task 'big': its output is 2.0 KiB (2013 bytes), more than the 1 KiB a "
                                          "value may take in the workflow's state; configure storage")
    assert sim.workflow.status is WorkflowStatus.FAILED and "after" not in sim.refs()


def test_a_driver_result_too_large_fails_its_task_and_is_not_kept() -> None:
    bp = limited([simple("a")])
    first = start(bp)
    task_id = first.workflow.tasks[0].taskId
    done = step(bp, first.workflow, [TaskUpdate(taskId=task_id, status=TaskStatus.COMPLETED,
                                                 outputData={"blob": BIG})], now=first.workflow.startTime + 5)
    task = done.workflow.tasks[0]
    assert task.status is TaskStatus.FAILED_WITH_TERMINAL_ERROR and task.outputData == {}
    assert "its output is 2.0 KiB" in (task.reasonForIncompletion or "")
    assert done.workflow.status is WorkflowStatus.FAILED


def test_an_input_too_large_fails_the_task_before_it_is_handed_out() -> None:
    sim = Sim(limited([simple("a", inputs={"blob": "${workflow.input.blob}"})]), results={"a": ok()},
              input={"blob": BIG})
    sim.run()
    task = sim.task("a")
    assert task.status is TaskStatus.FAILED_WITH_TERMINAL_ERROR and task.inputData == {}
    assert "task 'a': its input is 2.0 KiB" in (task.reasonForIncompletion or "")
    assert not sim.started_refs()


def test_variables_that_would_grow_too_large_fail_set_variable_and_stay_as_they_were() -> None:
    sim = Sim(limited([system("grow", "SET_VARIABLE", {"blob": "${workflow.input.blob}"})], variables={"kept": 1}),
              input={"blob": BIG})
    sim.run()
    task = sim.task("grow")
    assert task.status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert "the workflow's variables would be 2.0 KiB" in (task.reasonForIncompletion or "")
    assert sim.workflow.variables == {"kept": 1}


@pytest.mark.parametrize("limits", [PayloadLimits(), PayloadLimits(maxValueBytes=10_000)], ids=["none", "roomy"])
def test_values_within_the_limit_are_kept(limits: PayloadLimits) -> None:
    bp = blueprint(workflow_def([system("big", "INLINE", {"evaluatorType": "javascript",
                                                          "expression": "'x'.repeat(2000)"})]))
    sim = Sim(bp.model_copy(update={"payloadLimits": limits}))
    sim.run()
    assert sim.workflow.status is WorkflowStatus.COMPLETED
    assert sim.task("big").outputData == {"result": BIG}
