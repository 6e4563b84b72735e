"""JSON_JQ_TRANSFORM: the ``queryExpression`` jq program over the task's input, evaluated by the driver.

Never evaluated here: libjq has no time or memory limit and holds the interpreter while it runs, so a
program that never ends would freeze the driver's process. The attempt is scheduled like a driver-run
task and ``dispatch`` hands it out as ``EvaluateScript``; the driver evaluates it in a limited worker
process, with :func:`evaluate` (the one place that shapes the result), and reports it as a TaskUpdate. A
retry comes back through ``schedule`` (the query is checked again).
"""

from __future__ import annotations

from kondukt.engine import dispatch, scripting
from kondukt.engine.decision import EvaluateScript, TaskUpdate
from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import Task, TaskStatus
from kondukt.engine.tasks.base import Reached, append_result, oversized_input


def schedule(run: Evaluation, at: Reached) -> Task:
    wt = at.wt
    input_data = at.input(run)
    query = input_data.get("queryExpression")
    if not isinstance(query, str):
        return append_result(run, at, wt.type, input_data, None,
                             f"task {wt.taskReferenceName!r}: input queryExpression must be a jq program")
    refused = oversized_input(run, at, wt.type, input_data)
    if refused is not None:
        return refused
    task = run.append(run.new_task(wt, at.ref, task_type=wt.type, task_def_name=wt.name, input_data=input_data,
                                   iteration=at.iteration, loop_ref=at.loop_ref, parent_ref=at.parent_ref,
                                   keep_workflow_task=at.dynamic))
    dispatch.enqueue(run, task, 0)
    return task


def evaluate(action: EvaluateScript) -> TaskUpdate:
    """The result of an ``EvaluateScript`` action as the task's update — run by the drivers' script workers,
    never by ``decide``.

    COMPLETED with ``{"result", "resultList"}``; a jq error FAILS the task with jq's own message, no prefix
    added, as its reason and as ``{"error": ...}`` (as Conductor's JsonJqTransform reports it).
    """
    try:
        output = scripting.jq_transform_output(action.expression, action.input, now_ms=action.nowMs)
    except scripting.ScriptError as error:
        message = str(error).removeprefix("jq: ")
        return TaskUpdate(taskId=action.taskId, status=TaskStatus.FAILED, outputData={"error": message},
                          reasonForIncompletion=message)
    return TaskUpdate(taskId=action.taskId, status=TaskStatus.COMPLETED, outputData=output)
