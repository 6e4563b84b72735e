"""DYNAMIC (engine/tasks/dynamic.py): a SIMPLE task whose name comes from an input."""

from __future__ import annotations

from kondukt.engine import StartTask, WorkflowStatus
from tests.unit.engine.flows import WORK, run
from tests.unit.engine.harness import system, task_def


def test_dynamic_task_runs_the_named_task_def() -> None:
    dyn = system("dyn", "DYNAMIC", {"taskToExecute": "${workflow.input.which}", "x": 1},
                 dynamicTaskNameParam="taskToExecute")
    sim = run([dyn], defs=[task_def("resize"), WORK], input={"which": "resize"})
    action = sim.actions(StartTask)[0]
    assert isinstance(action, StartTask)
    assert (action.taskType, action.taskDefName, action.referenceTaskName) == ("resize", "resize", "dyn")
    assert action.inputData == {"taskToExecute": "resize", "x": 1}
    assert sim.workflow.status is WorkflowStatus.COMPLETED


def test_dynamic_task_without_a_name_fails_the_workflow() -> None:
    sim = run([system("dyn", "DYNAMIC", {"taskToExecute": "${workflow.input.which}"},
                      dynamicTaskNameParam="taskToExecute")])
    assert sim.workflow.status is WorkflowStatus.FAILED
    assert "does not name a task" in (sim.workflow.reasonForIncompletion or "")


def test_dynamic_task_naming_an_unknown_task_def_fails_the_workflow() -> None:
    sim = run([system("dyn", "DYNAMIC", {"taskToExecute": "ghost"}, dynamicTaskNameParam="taskToExecute")])
    assert "no TaskDef named 'ghost'" in (sim.workflow.reasonForIncompletion or "")
