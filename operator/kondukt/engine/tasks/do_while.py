"""DO_WHILE: run the loop body, then after each iteration record its outputs and go on or complete.

Everything a loop does is here: started when reached (``schedule``: iteration 1, or complete at once over
an empty ``items``), evaluated when an iteration's last task is executed (``evaluate``: the
``loopCondition`` in JavaScript with the body's outputs, or the next element of ``items``), old iterations
dropped under ``keepLastN``, and the loop's output put back to an earlier iteration for a rerun
(``rewound_output``). Body tasks carry ``ref__N`` references (iteration N) and the loop's reference in
``loopTaskRef``; the loop's own ``iteration`` field is its counter (1 on the first pass, n after n). Each
evaluation spends one unit of the call's loop budget, so a loop of engine-only tasks
yields to the driver instead of spinning in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kondukt.engine import scripting
from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import Task, TaskStatus
from kondukt.engine.plan import base_ref, iteration_ref
from kondukt.engine.tasks.base import Reached, append_result, type_name


def schedule(run: Evaluation, at: Reached) -> Task:
    wt = at.wt
    input_data = at.input(run)
    top_level_items = (wt.model_extra or {}).get("items")
    if "items" not in input_data and top_level_items is not None:
        # conductor-oss names the list at the task's top level (an expression); Orkes in inputParameters.
        input_data = {**input_data, "items": run.resolve(top_level_items)}
    items = input_data.get("items")
    if items is not None and not isinstance(items, list):
        return append_result(run, at, wt.type, input_data, None,
                             f"task {wt.taskReferenceName!r}: input items must be a list, got {type_name(items)}",
                             status=TaskStatus.FAILED_WITH_TERMINAL_ERROR)
    if (isinstance(items, list) and not items) or not wt.loopOver:
        return append_result(run, at, wt.type, input_data, {"iteration": 0})
    output: dict[str, Any] = {"iteration": 1}
    if isinstance(items, list):
        output.update(loop_item(items, 1))
    loop = append_result(run, at, wt.type, input_data, output, status=TaskStatus.IN_PROGRESS)
    loop = _count(run, loop, 1)
    run.schedule(run, wt.loopOver[0], 1, wt.taskReferenceName, None)
    return loop


def evaluate(run: Evaluation, loop: Task) -> None:
    """An iteration of ``loop`` ended: record its outputs, then start the next one or complete the loop."""
    run.loop_budget -= 1
    workflow_task = run.workflow_task(loop)
    if workflow_task is None:
        return
    current = int(loop.outputData.get("iteration", 1))
    body_outputs: dict[str, Any] = {}
    for slot_ref, slot in run.plan.slots.items():
        if slot.loop_ref == workflow_task.taskReferenceName:
            done = run.latest(iteration_ref(slot_ref, current))
            if done is not None:
                body_outputs[slot_ref] = done.outputData
    output = {**loop.outputData, str(current): body_outputs}
    items = loop.inputData.get("items")
    go_on = True
    if isinstance(items, list):
        go_on = current < len(items)
    if go_on and workflow_task.loopCondition:
        # As in Conductor, the loop's inputParameters are resolved again for every evaluation.
        fresh_input = run.resolve(workflow_task.inputParameters)
        bindings = {**(fresh_input if isinstance(fresh_input, dict) else {}), **body_outputs,
                    loop.referenceTaskName: output}
        try:
            value = scripting.evaluate_expression("javascript", workflow_task.loopCondition, bindings,
                                                  now_ms=run.now)
        except scripting.ScriptError as error:
            run.replace(loop, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR, endTime=run.now, outputData=output,
                        reasonForIncompletion=f"task {loop.referenceTaskName!r}: loopCondition: {error}")
            return
        go_on = scripting.conductor_truthy(value)
    elif not isinstance(items, list):
        go_on = False
    if not go_on:
        run.replace(loop, status=TaskStatus.COMPLETED, endTime=run.now, outputData=output)
        return
    following = current + 1
    output["iteration"] = following
    if isinstance(items, list):
        output.update(loop_item(items, following))
    keep_last = loop.inputData.get("keepLastN")
    oldest_kept = 1
    if isinstance(keep_last, int) and not isinstance(keep_last, bool) and keep_last > 0:
        # keepLastN iterations stay, the one starting now included: in the task list and in the output.
        oldest_kept = following - keep_last + 1
        output = {k: v for k, v in output.items() if not (k.isdigit() and int(k) < oldest_kept)}
    loop = _count(run, run.replace(loop, outputData=output), following)
    _drop_old_iterations(run, loop, oldest_kept)
    run.schedule(run, workflow_task.loopOver[0], following, workflow_task.taskReferenceName, None)


def rewound_output(loop: Task, target: Task) -> dict[str, Any]:
    """The loop's output put back to ``target``'s iteration for a rerun (later iterations' outputs are gone)."""
    iteration = max(1, target.iteration)
    output = {k: v for k, v in loop.outputData.items() if not (k.isdigit() and int(k) >= iteration)}
    output["iteration"] = iteration
    items = loop.inputData.get("items")
    if isinstance(items, list) and iteration <= len(items):
        output.update(loop_item(items, iteration))
    return output


def loop_item(items: Sequence[Any], iteration: int) -> dict[str, Any]:
    """The current element of a DO_WHILE over ``items`` (Orkes' and conductor-oss' output names)."""
    index = iteration - 1
    return {"item": items[index], "index": index, "loopItem": items[index], "loopIndex": index}


def _count(run: Evaluation, loop: Task, iteration: int) -> Task:
    """The loop's ``iteration`` field is its counter, as in Conductor (``${loop.iteration}``).

    Only for a loop at the top of the flow: a loop inside another one keeps the enclosing loop's iteration
    there (its reference and successors depend on it); its counter stays readable in ``output.iteration``.
    """
    return run.replace(loop, iteration=iteration) if not loop.loopTaskRef else loop


def _drop_old_iterations(run: Evaluation, loop: Task, oldest_kept: int) -> None:
    if oldest_kept <= 1:
        return
    name = base_ref(loop.referenceTaskName) if loop.loopTaskRef else loop.referenceTaskName
    kept = [t for t in run.tasks if not (t.loopTaskRef == name and t.iteration < oldest_kept and t.status.terminal)]
    if len(kept) != len(run.tasks):
        run.replace_tasks(kept)
