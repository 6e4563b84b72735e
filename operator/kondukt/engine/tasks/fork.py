"""FORK_JOIN and FORK_JOIN_DYNAMIC: schedule every branch's first task, then create the JOIN that follows.

The fork attempt (taskType FORK, as Conductor records it) completes as it runs; its JOIN is created at
once with the references it waits for (the static branches' ends, or the dynamic tasks). A dynamic fork
reads its branches from its input in either of Conductor's two forms (``_dynamic_branches``); input it
cannot read fails the workflow before any task is recorded, as Conductor's mapper does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kondukt.engine import lifecycle
from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import (
    FORK_TASK_TYPE,
    SYSTEM_TASK_TYPE_NAMES,
    Task,
    TaskStatus,
    TaskType,
    WorkflowStatus,
    WorkflowTask,
)
from kondukt.engine.plan import Next, iteration_ref
from kondukt.engine.tasks import join
from kondukt.engine.tasks.base import Reached, append_result, type_name


def schedule(run: Evaluation, at: Reached) -> Task:
    wt = at.wt
    fork = append_result(run, at, FORK_TASK_TYPE, at.input(run), {}, executed=True)
    join_wt = _join_after(run, wt)
    if join_wt is None:
        return _fail(run, fork, f"task {wt.taskReferenceName!r}: a FORK_JOIN must be followed by a JOIN")
    iteration, loop_ref = at.iteration, at.loop_ref
    join_on = [iteration_ref(r, iteration) if loop_ref else r for r in (join_wt.joinOn or [])] or [
        iteration_ref(r, iteration) if loop_ref else r for r in run.plan.fork_branch_ends(wt)]
    branch_firsts = [branch[0] for branch in wt.forkTasks if branch]
    for first in branch_firsts:
        run.schedule(run, first, iteration, loop_ref, None)
        if run.status.terminal:
            return fork
    join.create(run, join_wt, iteration, loop_ref, at.parent_ref, join_on)
    return fork


def schedule_dynamic(run: Evaluation, at: Reached) -> Task | None:
    wt = at.wt
    input_data = at.input(run)
    branches, problem = _dynamic_branches(wt, input_data)
    join_wt = _join_after(run, wt)
    if problem is None and join_wt is None:
        problem = f"task {wt.taskReferenceName!r}: a FORK_JOIN_DYNAMIC must be followed by a JOIN"
    refs = [branch.taskReferenceName for branch, _ in branches]
    iteration, loop_ref = at.iteration, at.loop_ref
    # Inside a DO_WHILE the forked tasks carry the iteration suffix like every other task there.
    run_refs = [iteration_ref(r, iteration) if loop_ref else r for r in refs]
    if problem is None and len(set(refs)) != len(refs):
        problem = f"task {wt.taskReferenceName!r}: the dynamic tasks repeat a taskReferenceName"
    if problem is None:
        clashes = [r for r, run_ref in zip(refs, run_refs, strict=True)
                   if run_ref in run.idx.latest or run.plan.slot(r) is not None]
        if clashes:
            problem = f"task {wt.taskReferenceName!r}: dynamic task reference {clashes[0]!r} is already used"
    # Conductor keeps the forked references on the FORK task; the definitions are on each task.
    fork_input = {k: v for k, v in input_data.items()
                  if k not in (wt.dynamicForkTasksParam, wt.dynamicForkTasksInputParamName)}
    fork_input["forkedTasks"] = refs
    if problem is not None:
        # As Conductor's ForkJoinDynamicTaskMapper: the input is rejected before anything is scheduled, and
        # the workflow FAILS with the reason (no FORK task is recorded).
        lifecycle.end(run, WorkflowStatus.FAILED, problem)
        return None
    assert join_wt is not None
    fork = append_result(run, at, FORK_TASK_TYPE, fork_input, {}, executed=True)
    for branch, branch_input in branches:
        run.schedule(run, branch, iteration, loop_ref, at.ref, overlay=branch_input, dynamic=True)
        if run.status.terminal:
            return fork
    join.create(run, join_wt, iteration, loop_ref, at.parent_ref, run_refs)
    return fork


def _join_after(run: Evaluation, wt: WorkflowTask) -> WorkflowTask | None:
    successor = run.plan.successor(wt.taskReferenceName)
    if successor.kind is Next.TASK and successor.task is not None and successor.task.type == TaskType.JOIN.value:
        return successor.task
    return None


def _fail(run: Evaluation, fork: Task, reason: str) -> Task:
    return run.replace(fork, status=TaskStatus.FAILED_WITH_TERMINAL_ERROR, executed=False,
                       reasonForIncompletion=reason)


def _dynamic_branches(
    wt: WorkflowTask, input_data: Mapping[str, Any]
) -> tuple[list[tuple[WorkflowTask, dict[str, Any]]], str | None]:
    """The dynamic fork's branches and their inputs, from either of Conductor's two forms."""
    where = f"task {wt.taskReferenceName!r}"
    fork_inputs = input_data.get("forkTaskInputs")
    fork_name = input_data.get("forkTaskName")
    fork_workflow = input_data.get("forkTaskWorkflow")
    if (fork_name is not None or fork_workflow is not None) and isinstance(fork_inputs, list):
        task_type = str(input_data.get("forkTaskType") or TaskType.SIMPLE.value)
        if fork_name is None and task_type in SYSTEM_TASK_TYPE_NAMES and task_type != TaskType.SIMPLE.value:
            fork_name = task_type  # Conductor names a system fork task after its type
        name = str(fork_name or wt.taskReferenceName)
        branches: list[tuple[WorkflowTask, dict[str, Any]]] = []
        for i, item in enumerate(fork_inputs):
            item_input = dict(item) if isinstance(item, dict) else {"input": item}
            item_input["__index"] = i
            spec: dict[str, Any] = {"name": name, "taskReferenceName": f"_{name}_{i}", "type": task_type,
                                    "optional": wt.optional}
            if fork_workflow is not None:
                version = input_data.get("forkTaskWorkflowVersion")
                spec.update(name=str(fork_workflow), type=TaskType.SUB_WORKFLOW.value, subWorkflowParam={
                    "name": str(fork_workflow),
                    "version": int(version) if isinstance(version, (int, str)) and str(version).isdigit() else None,
                })
            branches.append((WorkflowTask.model_validate(spec), item_input))
        return branches, None
    tasks_param = wt.dynamicForkTasksParam
    inputs_param = wt.dynamicForkTasksInputParamName
    if not tasks_param:
        return [], f"{where}: dynamicForkTasksParam is not set (nor forkTaskName/forkTaskInputs inputs)"
    raw_tasks = input_data.get(tasks_param)
    if not isinstance(raw_tasks, list):
        return [], f"{where}: input {tasks_param!r} must be a list of tasks, got {type_name(raw_tasks)}"
    raw_inputs = input_data.get(inputs_param or "") if inputs_param else {}
    if not isinstance(raw_inputs, dict):
        return [], (f"{where}: input {inputs_param!r} must be a map of task reference to input map, got "
                    f"{type_name(raw_inputs)}")
    branches = []
    for i, raw in enumerate(raw_tasks):
        if not isinstance(raw, dict) or not raw.get("taskReferenceName") or not raw.get("name"):
            return [], f"{where}: dynamic task #{i} must be an object with name and taskReferenceName"
        try:
            branch = WorkflowTask.model_validate(raw)
        except ValueError as error:
            return [], f"{where}: dynamic task #{i} is not a valid task: {_first_line(error)}"
        branch_input = raw_inputs.get(branch.taskReferenceName, {})
        if not isinstance(branch_input, dict):
            return [], (f"{where}: input {inputs_param!r}[{branch.taskReferenceName!r}] must be a map, got "
                        f"{type_name(branch_input)}")
        if wt.optional and not branch.optional:
            branch = branch.model_copy(update={"optional": True})
        branches.append((branch, branch_input))
    return branches, None


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
