"""JOIN and EXCLUSIVE_JOIN: wait for references to become final, then complete with their outputs.

Everything a join does is here: created with its fork (``create``) or reached by the flow (``schedule``),
told when a reference it waits for becomes final (``notify_final``), evaluated (``evaluate``), and settled
again when an operation reopens it (``settle_reopened``). Which references it waits for is index
bookkeeping (``index.join_refs`` / ``Index.register_join``): the index is rebuilt from a bare task list.
A JOIN completes when all its references are final, as Conductor's Join does: FAILED when one failed (an
optional task that failed is absorbed as COMPLETED_WITH_ERRORS first; a permissive one stays FAILED),
COMPLETED_WITH_ERRORS when one completed with errors, else COMPLETED. An EXCLUSIVE_JOIN completes when the
first one is final.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import FAILED_TASK_STATUSES, Task, TaskStatus, TaskType, WorkflowTask
from kondukt.engine.plan import iteration_ref
from kondukt.engine.tasks.base import Reached


def schedule(run: Evaluation, at: Reached) -> Task:
    """A JOIN reached by the flow (not created with its fork) or an EXCLUSIVE_JOIN."""
    wt = at.wt
    existing = run.latest(at.ref)
    if wt.type == TaskType.JOIN.value and existing is not None and existing.taskType == TaskType.JOIN.value \
            and not existing.executed:
        return existing  # created with its fork
    join_on = [iteration_ref(r, at.iteration) if at.loop_ref else r for r in wt.joinOn]
    join = run.append(run.new_task(
        wt, at.ref, task_type=wt.type, task_def_name=wt.type, input_data={"joinOn": join_on},
        iteration=at.iteration, loop_ref=at.loop_ref, parent_ref=at.parent_ref, status=TaskStatus.IN_PROGRESS,
        keep_workflow_task=at.dynamic))
    run.register_join(join)
    evaluate(run, join)
    return join


def create(run: Evaluation, join_wt: WorkflowTask, iteration: int, loop_ref: str | None, parent_ref: str | None,
           join_on: list[str]) -> Task:
    """The JOIN after a fork, created as the fork runs (its joinOn fixed from the fork's branches)."""
    ref = iteration_ref(join_wt.taskReferenceName, iteration) if loop_ref else join_wt.taskReferenceName
    join = run.append(run.new_task(
        join_wt, ref, task_type=TaskType.JOIN.value, task_def_name=TaskType.JOIN.value,
        input_data={"joinOn": join_on}, iteration=iteration, loop_ref=loop_ref, parent_ref=parent_ref,
        status=TaskStatus.IN_PROGRESS))
    run.register_join(join)
    if not run.idx.join_wait.get(join.taskId):
        evaluate(run, join)
    return join


def notify_final(run: Evaluation, task: Task) -> None:
    """``task`` will not run again: the joins waiting for its reference may now complete."""
    for join_id in run.idx.waiters.pop(task.referenceTaskName, []):
        remaining = run.idx.join_wait.get(join_id)
        if remaining is None:
            continue
        remaining.discard(task.referenceTaskName)
        join = run.get(join_id)
        if join is None or join.status.terminal:
            continue
        if join.taskType == TaskType.EXCLUSIVE_JOIN.value or not remaining:
            evaluate(run, join)


def settle_reopened(run: Evaluation, join_ids: Sequence[str]) -> None:
    """A reopened JOIN whose joined tasks are all final already completes now (nothing else would wake it)."""
    for join_id in join_ids:
        join = run.get(join_id)
        if join is not None and not join.status.terminal and not run.idx.join_wait.get(join_id):
            evaluate(run, join)


def evaluate(run: Evaluation, join: Task) -> None:
    refs = run.join_refs(join)
    if join.taskType == TaskType.EXCLUSIVE_JOIN.value:
        for ref in refs:
            if run.is_final(ref):
                done = run.latest(ref)
                assert done is not None
                _finish(run, join, dict(done.outputData),
                        None if done.status.successful else f"task {ref!r} ended {done.status.value}")
                return
        return
    if any(not run.is_final(r) for r in refs):
        return
    output: dict[str, Any] = {}
    failure: str | None = None
    with_errors = False
    for ref in refs:
        done = run.latest(ref)
        if done is None:
            continue
        if done.outputData:
            output[ref] = done.outputData
        with_errors = with_errors or done.status is TaskStatus.COMPLETED_WITH_ERRORS
        if failure is None and done.status in FAILED_TASK_STATUSES:
            failure = f"task {ref!r} ended {done.status.value}" + (
                f": {done.reasonForIncompletion}" if done.reasonForIncompletion else "")
    _finish(run, join, output, failure, with_errors=with_errors)


def _finish(run: Evaluation, join: Task, output: dict[str, Any], failure: str | None, *,
            with_errors: bool = False) -> None:
    run.idx.join_wait.pop(join.taskId, None)
    status = TaskStatus.FAILED if failure else \
        TaskStatus.COMPLETED_WITH_ERRORS if with_errors else TaskStatus.COMPLETED
    run.replace(join, status=status, outputData=output, endTime=run.now, reasonForIncompletion=failure)
