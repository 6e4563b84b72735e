"""Handing driver-run attempts out: the ready queues, the concurrency and rate gates, the actions, wake-ups.

A SCHEDULED driver attempt waits in ``Index.delayed`` until its start / retry delay passes, then in its
TaskDef's ready queue until ``gate`` lets it start (``concurrentExecLimit`` over the namespace's Load or
this workflow's own count, ``rateLimitPerFrequency`` over recent dispatches); ``hand_out`` turns it into a
StartTask / CallHttp / EvaluateScript (JSON_JQ_TRANSFORM) / StartSubWorkflow / StartWorkflow action. ``next_wakeup`` says when ``decide`` wants
to be called again: the nearest live timer, delay, rate window or the workflow timeout.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any

from kondukt.engine.decision import CallHttp, EvaluateScript, StartSubWorkflow, StartTask, StartWorkflow
from kondukt.engine.evaluation import Evaluation
from kondukt.engine.models import Task, TaskStatus, TaskType, TimeoutPolicy, WorkflowStatus


def enqueue(run: Evaluation, task: Task, delay_seconds: int) -> None:
    """Queue a new SCHEDULED driver attempt: after ``delay_seconds``, or ready for its gate now."""
    if delay_seconds > 0:
        heapq.heappush(run.idx.delayed, (run.now + delay_seconds * 1000, task.seq, task.taskId))
    else:
        run.idx.ready.setdefault(task.taskDefName, deque()).append(task.taskId)


def dispatch(run: Evaluation) -> None:
    index = run.idx
    while index.delayed and index.delayed[0][0] <= run.now:
        _, _, task_id = heapq.heappop(index.delayed)
        task = run.get(task_id)
        if task is not None and task.status is TaskStatus.SCHEDULED and not task.dispatched:
            index.ready.setdefault(task.taskDefName, deque()).append(task_id)
    # Task definitions in the order their first waiting attempt became ready: the queues' own order
    # depends on the index's history, and the same state must hand attempts out in the same order.
    for def_name in sorted(index.ready, key=lambda name: _queue_key(run, name)):
        queue = index.ready[def_name]
        while queue:
            task = run.get(queue[0])
            if task is None or task.status is not TaskStatus.SCHEDULED or task.dispatched:
                queue.popleft()
                continue
            reopen = _gate(run, task)
            if reopen is not None:
                if reopen > 0:
                    run.wake_candidates.append(reopen)
                else:
                    run.waiting_on.add(def_name)
                break
            queue.popleft()
            _hand_out(run, task)
        if not queue:
            del index.ready[def_name]


def next_wakeup(run: Evaluation) -> int | None:
    index = run.idx
    candidates = list(run.wake_candidates)
    if run.status is not WorkflowStatus.RUNNING:
        # PAUSED: task timers and retry delays wait for the resume (only the workflow timeout runs).
        return max(min(candidates), run.now) if candidates else None
    heap = index.deadlines
    while heap:
        at, _, task_id, kind = heap[0]
        task = run.get(task_id)
        if task is None or task.status.terminal or not run.deadline_valid(task, at, kind):
            heapq.heappop(heap)
            continue
        candidates.append(at)
        break
    delayed = index.delayed
    while delayed:
        at, _, task_id = delayed[0]
        task = run.get(task_id)
        if task is None or task.status is not TaskStatus.SCHEDULED or task.dispatched:
            heapq.heappop(delayed)
            continue
        candidates.append(at)
        break
    if run.definition.timeoutSeconds and not run.field("timeoutAlerted"):
        candidates.append(run.timeout_base() + run.definition.timeoutSeconds * 1000)
    return max(min(candidates), run.now) if candidates else None


def _queue_key(run: Evaluation, def_name: str) -> tuple[int, int]:
    queue = run.idx.ready[def_name]
    head = run.get(queue[0]) if queue else None
    if head is None:
        return (0, 0)
    return (head.scheduledTime + head.callbackAfterSeconds * 1000, head.seq)


def _gate(run: Evaluation, task: Task) -> int | None:
    """None if ``task`` may start now; else when the rate window reopens (ms), or 0 for "a slot frees"."""
    task_def = run.task_def(task.taskDefName, run.workflow_task(task))
    if task_def is None:
        return None
    load = run.load.get(task.taskDefName)
    started_now = run.dispatched_now.get(task.taskDefName, [])
    limit = task_def.concurrentExecLimit
    if limit:
        own = run.idx.running.get(task.taskDefName, 0)
        running = max(load.running + len(started_now), own) if load is not None else own
        if running >= limit:
            return 0
    per, window_s = task_def.rateLimitPerFrequency, task_def.rateLimitFrequencyInSeconds
    if per and window_s:
        window = window_s * 1000
        horizon = run.now - window
        recent = run.idx.recent_starts.setdefault(task.taskDefName, deque())
        while recent and recent[0] <= horizon:
            recent.popleft()
        starts = sorted(
            [s for s in load.recentStarts if s > horizon] + started_now if load is not None else list(recent)
        )
        if len(starts) >= per:
            return starts[len(starts) - per] + window
    return None


def _hand_out(run: Evaluation, task: Task) -> None:
    now = run.now
    run.dispatched_now.setdefault(task.taskDefName, []).append(now)
    run.idx.recent_starts.setdefault(task.taskDefName, deque()).append(now)
    workflow_task = run.workflow_task(task)
    task_def = run.def_for(task)
    ttype = task.taskType
    if ttype == TaskType.HTTP.value:
        task = run.replace(task, dispatched=True, status=TaskStatus.IN_PROGRESS, startTime=now, updateTime=now)
        request = task.inputData.get("http_request")
        run.actions.append(CallHttp(taskId=task.taskId, referenceTaskName=task.referenceTaskName,
                                    request=request if isinstance(request, dict) else {},
                                    timeoutSeconds=task_def.timeoutSeconds or None))
    elif ttype == TaskType.JSON_JQ_TRANSFORM.value:
        task = run.replace(task, dispatched=True, status=TaskStatus.IN_PROGRESS, startTime=now, updateTime=now)
        evaluation = EvaluateScript.for_task(task)
        if evaluation is not None:  # tasks.jq checked the query: always
            run.actions.append(evaluation)
    elif ttype == TaskType.SUB_WORKFLOW.value:
        params = workflow_task.subWorkflowParam if workflow_task is not None else None
        definition = task.inputData.get("subWorkflowDefinition")
        if definition is not None and not isinstance(definition, dict):
            run.replace(task, status=TaskStatus.FAILED, startTime=now, endTime=now, updateTime=now,
                        reasonForIncompletion=f"task {task.referenceTaskName!r}: subWorkflowParam.workflowDefinition "
                        f"must be a workflow definition (a map), got {_type_name(definition)}")
            return
        task = run.replace(task, dispatched=True, status=TaskStatus.IN_PROGRESS, startTime=now, updateTime=now)
        name = task.inputData.get("subWorkflowName") or (definition or {}).get("name") or ""
        version = task.inputData.get("subWorkflowVersion")
        input_data = {k: v for k, v in task.inputData.items()
                      if k not in ("subWorkflowName", "subWorkflowVersion", "subWorkflowDefinition")}
        run.actions.append(StartSubWorkflow(
            taskId=task.taskId, referenceTaskName=task.referenceTaskName, name=str(name),
            version=version if isinstance(version, int) else None, input=input_data, definition=definition,
            correlationId=run.original.correlationId,
            taskToDomain=params.taskToDomain if params is not None else None))
    elif ttype == TaskType.START_WORKFLOW.value:
        request = task.inputData.get("startWorkflow")
        problem = _start_request_problem(request)
        if problem is not None:
            # As Conductor's StartWorkflow: a request it cannot read FAILS the task (retriable by its TaskDef).
            run.replace(task, status=TaskStatus.FAILED, startTime=now, endTime=now, updateTime=now,
                        reasonForIncompletion=f"task {task.referenceTaskName!r}: {problem}")
            return
        assert isinstance(request, dict)
        task = run.replace(task, dispatched=True, status=TaskStatus.IN_PROGRESS, startTime=now, updateTime=now)
        version = request.get("version")
        definition = request.get("workflowDefinition")
        run.actions.append(StartWorkflow(
            requestId=task.taskId, name=str(request.get("name") or (definition or {}).get("name") or ""),
            version=version if isinstance(version, int) else None,
            input=request.get("input") if isinstance(request.get("input"), dict) else {},
            definition=definition, correlationId=request.get("correlationId"), taskId=task.taskId,
            purpose="START_WORKFLOW"))
    else:
        task = run.replace(task, dispatched=True, updateTime=now)
        deadline = task_def.timeoutSeconds if task_def.timeoutPolicy is not TimeoutPolicy.ALERT_ONLY else 0
        run.actions.append(StartTask(
            taskId=task.taskId, referenceTaskName=task.referenceTaskName, taskDefName=task.taskDefName,
            taskType=task.taskType, inputData=task.inputData, retryCount=task.retryCount,
            iteration=task.iteration, timeoutSeconds=deadline or None,
            taskDef=run.task_def(task.taskDefName, workflow_task)))


def _start_request_problem(request: Any) -> str | None:
    """What makes a START_WORKFLOW request unreadable (None when it is fine)."""
    if not isinstance(request, dict):
        return f"input startWorkflow must be a map (a start request), got {_type_name(request)}"
    definition = request.get("workflowDefinition")
    if definition is not None and not isinstance(definition, dict):
        return f"startWorkflow.workflowDefinition must be a workflow definition (a map), got {_type_name(definition)}"
    name = request.get("name") or (definition or {}).get("name")
    if not isinstance(name, str) or not name:
        return "startWorkflow.name is missing (it names the workflow to start)"
    version = request.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        return f"startWorkflow.version must be an integer, got {_type_name(version)}"
    start_input = request.get("input")
    if start_input is not None and not isinstance(start_input, dict):
        return f"startWorkflow.input must be a map, got {_type_name(start_input)}"
    return None


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__
