"""The engine's actions handed to a driver: one match over the closed ``Action`` union.

``decide`` returns actions (start a task, a sub-workflow, an independent workflow, send an HTTP
request, evaluate a script, cancel an attempt); each driver carries them out its own way (Jobs and
child Workflow objects, or processes and in-process runs). :func:`dispatch` is the one place that maps
an action to the driver's handler: a driver implements :class:`ActionHandler`, and a new kind of action
is a mypy error here (``assert_never``) and in every driver's handler class, not a silent "unknown
action" at run time.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, assert_never

from kondukt.engine.decision import (
    Action,
    CallHttp,
    CancelTask,
    EvaluateScript,
    StartSubWorkflow,
    StartTask,
    StartWorkflow,
)

R_co = TypeVar("R_co", covariant=True)


class ActionHandler(Protocol[R_co]):
    """What a driver does for each kind of action; ``R_co`` is what its handlers return (the operator:
    an awaitable of the updates known at once; ``kondukt run``: nothing)."""

    def start_task(self, action: StartTask) -> R_co: ...

    def start_sub_workflow(self, action: StartSubWorkflow) -> R_co: ...

    def start_workflow(self, action: StartWorkflow) -> R_co: ...

    def call_http(self, action: CallHttp) -> R_co: ...

    def evaluate_script(self, action: EvaluateScript) -> R_co: ...

    def cancel_task(self, action: CancelTask) -> R_co: ...


def dispatch(action: Action, handler: ActionHandler[R_co]) -> R_co:
    """Hand ``action`` to the matching method of ``handler`` and return what it returns."""
    if isinstance(action, StartTask):
        return handler.start_task(action)
    if isinstance(action, StartSubWorkflow):
        return handler.start_sub_workflow(action)
    if isinstance(action, StartWorkflow):
        return handler.start_workflow(action)
    if isinstance(action, CallHttp):
        return handler.call_http(action)
    if isinstance(action, EvaluateScript):
        return handler.evaluate_script(action)
    if isinstance(action, CancelTask):
        return handler.cancel_task(action)
    assert_never(action)
