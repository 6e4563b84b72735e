"""Kubernetes Events about Workflows: what a person needs to see in ``kubectl describe wf``.

An Event is an API request (and an object in etcd for an hour). On a busy cluster the API server is the
bottleneck, and a 1,000-branch fan-out with one Event per task transition cost ~3,000 of them, none of
which anyone reads: a task's progress is in the Workflow's status. So Events are posted only for what
needs a person's attention or marks the run's course (docs/operations.md lists them):

- the workflow's own milestones: started (``WorkflowRunning``, also on resume), paused, and its end;
- a task attempt that failed, failed terminally or timed out (Warnings), completed with errors (an
  optional task), was canceled or skipped;
- a retry scheduled (``TaskRetried``: which attempt, of which task);
- never a first attempt scheduled, started or completed.

Events are never needed for correctness: they are queued in memory and posted in the background, so a
slow or failing Events API never delays a reconcile; when the queue is full, new Events are dropped and
counted (``kondukt_events_dropped_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import os
import time
from typing import Any

from kondukt.engine.decision import TaskTransition
from kondukt.engine.models import TaskStatus, WorkflowStatus
from kondukt.kube.builders import OwnerRef, build_event
from kondukt.kube.kubeapi import ApiError, KubeClient
from kondukt.kube.metrics import Metrics

logger = logging.getLogger(__name__)

#: The task transitions that get an Event (a retry's SCHEDULED is ``TaskRetried``, see describe_transition).
_TASK_REASONS = {
    TaskStatus.COMPLETED_WITH_ERRORS: "TaskCompletedWithErrors",
    TaskStatus.FAILED: "TaskFailed",
    TaskStatus.FAILED_WITH_TERMINAL_ERROR: "TaskFailedWithTerminalError",
    TaskStatus.TIMED_OUT: "TaskTimedOut",
    TaskStatus.CANCELED: "TaskCanceled",
    TaskStatus.SKIPPED: "TaskSkipped",
}
_WARNING_TASK = frozenset({TaskStatus.FAILED, TaskStatus.FAILED_WITH_TERMINAL_ERROR, TaskStatus.TIMED_OUT})
_WORKFLOW_REASONS = {
    WorkflowStatus.RUNNING: "WorkflowRunning",
    WorkflowStatus.PAUSED: "WorkflowPaused",
    WorkflowStatus.COMPLETED: "WorkflowCompleted",
    WorkflowStatus.FAILED: "WorkflowFailed",
    WorkflowStatus.TIMED_OUT: "WorkflowTimedOut",
    WorkflowStatus.TERMINATED: "WorkflowTerminated",
}


def describe_transition(transition: TaskTransition, retry_count: int = 0) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event for one task transition; None: no Event (routine progress).

    ``retry_count`` is the attempt's (0: the first attempt): a retry's scheduling is ``TaskRetried``."""
    if transition.toStatus is TaskStatus.SCHEDULED and transition.fromStatus is None and retry_count > 0:
        return ("Normal", "TaskRetried",
                f"{transition.referenceTaskName} ({transition.taskType}): retry {retry_count} scheduled")
    reason = _TASK_REASONS.get(transition.toStatus)
    if reason is None:
        return None
    kind = "Warning" if transition.toStatus in _WARNING_TASK else "Normal"
    before = transition.fromStatus.value if transition.fromStatus else "new"
    message = f"{transition.referenceTaskName} ({transition.taskType}): {before} -> {transition.toStatus.value}"
    if transition.reason and transition.toStatus is not TaskStatus.COMPLETED:
        message += f": {transition.reason}"
    return kind, reason, message


def describe_workflow(status: WorkflowStatus, reason: str | None) -> tuple[str, str, str]:
    kind = "Warning" if status in (WorkflowStatus.FAILED, WorkflowStatus.TIMED_OUT) else "Normal"
    message = f"workflow {status.value}" + (f": {reason}" if reason else "")
    return kind, _WORKFLOW_REASONS[status], message


class EventRecorder:
    """Posts Events from a bounded queue in the background."""

    def __init__(self, api: KubeClient, metrics: Metrics, *, capacity: int = 10_000, posters: int = 4,
                 instance: str | None = None) -> None:
        self._api = api
        self._metrics = metrics
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=capacity)
        self._posters = posters
        self._tasks: list[asyncio.Task[None]] = []
        self._instance = instance or os.environ.get("POD_ID") or os.uname().nodename
        self._counter = itertools.count()
        self._prefix = f"{int(time.time() * 1000):x}"

    def record(self, regarding: OwnerRef, event_type: str, reason: str, message: str) -> None:
        event = build_event(
            regarding, event_type=event_type, reason=reason, message=message, now=dt.datetime.now(dt.UTC),
            name_suffix=f"{self._prefix}{next(self._counter):x}", reporting_instance=self._instance,
        )
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._metrics.events_dropped.inc()

    async def _post(self) -> None:
        while True:
            event = await self._queue.get()
            namespace = event["metadata"]["namespace"]
            try:
                await self._api.request("POST", f"/api/v1/namespaces/{namespace}/events", body=event,
                                        what=f"event {event['reason']} in {namespace}")
            except ApiError as err:
                logger.debug("event not posted: %s", err)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._post(), name=f"kondukt-events-{i}") for i in range(self._posters)]

    async def stop(self, drain_seconds: float = 2.0) -> None:
        deadline = time.monotonic() + drain_seconds
        while not self._queue.empty() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
