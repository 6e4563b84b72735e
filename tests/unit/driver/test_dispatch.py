"""``kondukt.driver.dispatch``: every kind of the closed ``Action`` union reaches its own handler, and the
handler's result comes back (the operator's handlers are coroutines, ``kondukt run``'s return nothing)."""

from __future__ import annotations

import typing

from kondukt.driver.dispatch import ActionHandler, dispatch
from kondukt.engine.decision import (
    Action,
    CallHttp,
    CancelTask,
    EvaluateScript,
    StartSubWorkflow,
    StartTask,
    StartWorkflow,
)

ACTIONS: list[Action] = [
    StartTask(taskId="t1", referenceTaskName="a", taskDefName="a", taskType="SIMPLE", inputData={}),
    StartSubWorkflow(taskId="t2", referenceTaskName="b", name="child"),
    StartWorkflow(requestId="r1", name="other"),
    CallHttp(taskId="t3", referenceTaskName="c", request={"uri": "http://127.0.0.1:9/"}),
    EvaluateScript(taskId="t4", referenceTaskName="d", expression=".", input={}, nowMs=0),
    CancelTask(taskId="t5", referenceTaskName="e", taskType="SIMPLE"),
]


class Recorder:
    def start_task(self, action: StartTask) -> str:
        return f"start_task {action.taskId}"

    def start_sub_workflow(self, action: StartSubWorkflow) -> str:
        return f"start_sub_workflow {action.taskId}"

    def start_workflow(self, action: StartWorkflow) -> str:
        return f"start_workflow {action.requestId}"

    def call_http(self, action: CallHttp) -> str:
        return f"call_http {action.taskId}"

    def evaluate_script(self, action: EvaluateScript) -> str:
        return f"evaluate_script {action.taskId}"

    def cancel_task(self, action: CancelTask) -> str:
        return f"cancel_task {action.taskId}"


def test_each_action_goes_to_its_handler() -> None:
    handler: ActionHandler[str] = Recorder()
    assert [dispatch(action, handler) for action in ACTIONS] == [
        "start_task t1", "start_sub_workflow t2", "start_workflow r1", "call_http t3", "evaluate_script t4",
        "cancel_task t5",
    ]


def test_the_examples_cover_the_whole_union() -> None:
    """A new kind of action must get an example here (and a handler in both drivers: mypy checks those)."""
    assert {type(action) for action in ACTIONS} == set(typing.get_args(Action))
