"""A small driver for decider tests: the engine in a simulated world with a fake clock.

``Sim`` plays the driver's part the way the real drivers do (observe, ``decide``, carry out the actions,
decide again at ``wakeAt`` or when something is observed), but the world is scripted:

- task results per reference name, one entry per attempt handed out (the last entry repeats): ``ok(output)``,
  ``fail(reason)``, ``timed_out()``, ``terminal_error()``, ``never()`` (starts, never finishes),
  ``never_started()`` (its pod never runs), or a function of the attempt for outputs built from the input;
- SUB_WORKFLOW children run as their own engine state in the same world (same clock);
- JSON_JQ_TRANSFORM evaluations (``EvaluateScript``) are carried out with the drivers' own evaluation function
  and report their result at the same instant;
- user operations and namespace load are observations injected at chosen instants;
- the clock jumps straight to the next scripted event or to the engine's ``wakeAt``.

Every ``decide`` is checked against the engine's invariants (``Invariants``): no attempt id is handed out
twice, deciding again at the same instant with nothing new changes nothing, a terminal workflow stays
terminal, ``wakeAt`` is never in the past, and no decision reports an internal engine error. With
``check_roundtrip`` every step is also decided from a JSON round trip of the state (the decider rebuilds
its index) and both outcomes must be identical.

Nothing here sleeps or reads a real clock: a whole run takes milliseconds.
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kondukt.engine import (
    Action,
    Blueprint,
    CallHttp,
    CancelTask,
    Decision,
    EvaluateScript,
    FailureWorkflowStarted,
    Load,
    Observation,
    Operation,
    OperationKind,
    StartSubWorkflow,
    StartTask,
    StartWorkflow,
    Task,
    TaskDef,
    TaskLoad,
    TaskStatus,
    TaskUpdate,
    Workflow,
    WorkflowDef,
    WorkflowStatus,
    decide,
    new_workflow,
)
from kondukt.engine.tasks.jq import evaluate as evaluate_script

#: The instant every simulation starts at (ms since the epoch): 2024-01-01T00:00:00Z.
T0 = 1_704_067_200_000

# --------------------------------------------------------------------------------------------------
# Building definitions from dicts
# --------------------------------------------------------------------------------------------------


def task_def(name: str, **policy: Any) -> dict[str, Any]:
    """A TaskDef dict with no retries, no delays and no timeouts unless the test says otherwise."""
    spec: dict[str, Any] = {
        "name": name,
        "retryCount": 0,
        "retryDelaySeconds": 0,
        "responseTimeoutSeconds": 0,
        "timeoutSeconds": 0,
    }
    spec.update(policy)
    return spec


def simple(ref: str, name: str = "work", inputs: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "taskReferenceName": ref, "type": "SIMPLE", "inputParameters": dict(inputs or {}), **extra}


def system(ref: str, task_type: str, inputs: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": ref, "taskReferenceName": ref, "type": task_type, "inputParameters": dict(inputs or {}), **extra}


def workflow_def(tasks: Sequence[Mapping[str, Any]], name: str = "wf", **extra: Any) -> dict[str, Any]:
    return {"name": name, "version": 1, "tasks": list(tasks), **extra}


def blueprint(definition: Mapping[str, Any], task_defs: Iterable[Mapping[str, Any]] = ()) -> Blueprint:
    defs = [TaskDef.model_validate(d) for d in task_defs]
    return Blueprint(workflow=WorkflowDef.model_validate(dict(definition)), taskDefs={d.name: d for d in defs})


# --------------------------------------------------------------------------------------------------
# Scripted results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """What one attempt does once the driver starts it.

    ``status`` None = runs forever (unless ``started`` is False too: its pod never runs).
    """

    status: TaskStatus | None
    output: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None
    runs_ms: int = 1000
    starts_after_ms: int = 10
    started: bool = True
    heartbeats_ms: tuple[int, ...] = ()  # heartbeats at these offsets from the dispatch


def failed_by(task: Task, status: str, reason: str) -> str:
    """Conductor's reasonForIncompletion of a workflow failed by ``task`` (DeciderService's wording)."""
    return f"Task {task.taskId} failed with status: {status} and reason: '{reason}'"


def ok(output: Mapping[str, Any] | None = None, *, runs_ms: int = 1000, **extra: Any) -> Result:
    return Result(TaskStatus.COMPLETED, dict(output or {}), runs_ms=runs_ms, **extra)


def fail(reason: str = "worker failed", *, runs_ms: int = 1000, output: Mapping[str, Any] | None = None) -> Result:
    return Result(TaskStatus.FAILED, dict(output or {}), reason, runs_ms=runs_ms)


def terminal_error(reason: str = "bad input", *, runs_ms: int = 1000) -> Result:
    return Result(TaskStatus.FAILED_WITH_TERMINAL_ERROR, {}, reason, runs_ms=runs_ms)


def timed_out(reason: str = "deadline exceeded", *, runs_ms: int = 1000) -> Result:
    return Result(TaskStatus.TIMED_OUT, {}, reason, runs_ms=runs_ms)


def never(*, heartbeats_ms: tuple[int, ...] = ()) -> Result:
    return Result(None, heartbeats_ms=heartbeats_ms)


def never_started() -> Result:
    return Result(None, started=False)


@dataclass(frozen=True)
class Attempt:
    """What a scripted result function sees of the attempt it decides for.

    ``ordinal`` counts the attempts of this reference handed out so far in the run (0 for the first):
    retries, retries requested by a user, reruns and restarts all count.
    """

    task: Task
    action: Action
    ordinal: int


ResultFn = Callable[[Attempt], Result]
Script = Sequence[Result | ResultFn] | Result | ResultFn


def _pick(script: Script, attempt: Attempt) -> Result:
    if isinstance(script, Result):
        return script
    if callable(script):
        return script(attempt)
    if not script:
        return ok()
    chosen = script[min(attempt.ordinal, len(script) - 1)]
    return chosen if isinstance(chosen, Result) else chosen(attempt)


# --------------------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------------------


class InvariantError(AssertionError):
    pass


def _state_json(workflow: Workflow) -> dict[str, Any]:
    return workflow.model_dump(mode="json")


def _decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "workflow": _state_json(decision.workflow),
        "actions": [a.model_dump(mode="json") for a in decision.actions],
        "transitions": [t.model_dump(mode="json") for t in decision.transitions],
        "wakeAt": decision.wakeAt,
        "changed": decision.changed,
        "messages": list(decision.messages),
        "waitingOn": list(decision.waitingOn),
    }


def roundtrip(workflow: Workflow) -> Workflow:
    """The state as a driver that re-reads it from storage sees it (no carried index)."""
    return Workflow.model_validate(json.loads(workflow.model_dump_json()))


# --------------------------------------------------------------------------------------------------
# The simulation
# --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One workflow execution in the simulated world (the main one or a SUB_WORKFLOW child)."""

    run_id: str
    blueprint: Blueprint
    workflow: Workflow
    results: Mapping[str, Script]
    parent: tuple[Run, str] | None = None  # (parent run, the SUB_WORKFLOW task's id)
    wake_at: int | None = None
    decisions: list[Decision] = field(default_factory=list)
    instants: list[int] = field(default_factory=list)  # when each decision was made
    reported: bool = False


@dataclass(order=True)
class _Event:
    at: int
    seq: int
    run_id: str = field(compare=False)
    observation: Observation | None = field(compare=False)  # None = just decide
    task_id: str | None = field(compare=False, default=None)


@dataclass(frozen=True)
class Logged:
    at: int
    run_id: str
    action: Action


class Sim:
    """Drive ``decide`` for a workflow (and its children) through a scripted world."""

    def __init__(
        self,
        definition: Mapping[str, Any] | Blueprint,
        task_defs: Iterable[Mapping[str, Any]] = (),
        *,
        results: Mapping[str, Script] | None = None,
        input: Mapping[str, Any] | None = None,
        children: Mapping[str, Mapping[str, Any]] | None = None,
        start: int = T0,
        workflow_id: str = "wf-1",
        correlation_id: str | None = None,
        feed_load: bool = False,
        external_load: Mapping[str, TaskLoad] | None = None,
        check_roundtrip: bool = False,
        check_redecide: bool = True,
        reread: bool = False,
    ) -> None:
        self.task_defs = [dict(d) for d in task_defs]
        bp = definition if isinstance(definition, Blueprint) else blueprint(definition, self.task_defs)
        self.now = start
        self.children_defs = dict(children or {})
        self.feed_load = feed_load
        self.external_load = dict(external_load or {})
        self.check_roundtrip = check_roundtrip
        self.check_redecide = check_redecide
        self.reread = reread  # persist and re-read the state as JSON after every decision (no carried index)
        self._seq = itertools.count()
        self._events: list[_Event] = []
        self._canceled: set[str] = set()
        self.handed_out: dict[str, Logged] = {}
        self.log: list[Logged] = []
        self.started_workflows: list[tuple[int, StartWorkflow]] = []
        self.steps = 0
        self.dispatched: dict[str, tuple[str, int]] = {}  # taskId -> (taskDefName, dispatch time)
        self.finished: set[str] = set()
        self._ordinals: dict[tuple[str, str], int] = {}
        workflow = new_workflow(bp, workflow_id, dict(input or {}), start, correlation_id=correlation_id)
        self.main = Run(workflow_id, bp, workflow, results if results is not None else {})
        self.runs: dict[str, Run] = {workflow_id: self.main}
        self._push(start, workflow_id, None)

    # ------------------------------------------------------------------------------------------ API

    @property
    def workflow(self) -> Workflow:
        return self.main.workflow

    @property
    def decisions(self) -> list[Decision]:
        return self.main.decisions

    def attempts(self, ref: str, run: Run | None = None) -> list[Task]:
        return [t for t in (run or self.main).workflow.tasks if t.referenceTaskName == ref]

    def task(self, ref: str, run: Run | None = None) -> Task:
        found = self.attempts(ref, run)
        if not found:
            raise KeyError(f"no task {ref!r}; tasks: {self.refs(run)}")
        return found[-1]

    def refs(self, run: Run | None = None) -> list[str]:
        return [t.referenceTaskName for t in (run or self.main).workflow.tasks]

    def statuses(self, run: Run | None = None) -> list[tuple[str, str]]:
        return [(t.referenceTaskName, t.status.value) for t in (run or self.main).workflow.tasks]

    def actions(self, kind: type[Action] | None = None, run_id: str | None = None) -> list[Action]:
        return [entry.action for entry in self.log
                if (kind is None or isinstance(entry.action, kind)) and (run_id is None or entry.run_id == run_id)]

    def started_refs(self) -> list[str]:
        return [a.referenceTaskName for a in self.actions(StartTask, self.main.run_id) if isinstance(a, StartTask)]

    def child(self, parent_ref: str) -> Run:
        task = self.task(parent_ref)
        for run in self.runs.values():
            if run.parent is not None and run.parent[1] == task.taskId:
                return run
        raise KeyError(f"no child workflow for {parent_ref!r}")

    def observe(self, observation: Observation, at: int | None = None, run: Run | None = None) -> None:
        """Deliver ``observation`` to the main run (or ``run``) at ``at`` (default: now)."""
        self._push(self.now if at is None else at, (run or self.main).run_id, observation)

    def operate(self, op: OperationKind | str, at: int | None = None, **fields: Any) -> None:
        kind = OperationKind(op)
        nonce = fields.pop("nonce", f"{kind.value}-{next(self._seq)}")
        self.observe(Operation(op=kind, nonce=nonce, **fields), at)

    def run(self, *, until: Callable[[Sim], bool] | None = None, max_steps: int = 2000,
            until_time: int | None = None) -> Workflow:
        """Advance the world until the main workflow is terminal (and its children done), ``until`` holds,
        the clock would pass ``until_time``, or nothing is left to happen."""
        for _ in range(max_steps):
            if until is not None and until(self):
                return self.workflow
            at = self._next_instant()
            if at is None:
                if until_time is not None:
                    self.now = max(self.now, until_time)
                return self.workflow
            if until_time is not None and at > until_time:
                self.now = max(self.now, until_time)
                return self.workflow
            self.now = max(self.now, at)
            self._step()
        raise AssertionError(f"the simulation did not settle within {max_steps} steps: {self.statuses()}")

    # -------------------------------------------------------------------------------------- internals

    def _push(self, at: int, run_id: str, observation: Observation | None, task_id: str | None = None) -> None:
        heapq.heappush(self._events, _Event(at, next(self._seq), run_id, observation, task_id))

    def _next_instant(self) -> int | None:
        candidates = [self._events[0].at] if self._events else []
        for run in self.runs.values():
            if run.wake_at is not None and not run.workflow.status.terminal:
                candidates.append(run.wake_at)
        return min(candidates) if candidates else None

    def _step(self) -> None:
        due: dict[str, list[Observation]] = {}
        while self._events and self._events[0].at <= self.now:
            event = heapq.heappop(self._events)
            if event.task_id is not None and event.task_id in self._canceled:
                continue
            bucket = due.setdefault(event.run_id, [])
            if event.observation is not None:
                bucket.append(event.observation)
                if isinstance(event.observation, TaskUpdate) and event.observation.status is not None \
                        and event.observation.status.terminal:
                    self.finished.add(event.observation.taskId)
        for run in list(self.runs.values()):
            if run.run_id not in due and run.wake_at is not None and run.wake_at <= self.now \
                    and not run.workflow.status.terminal:
                due[run.run_id] = []
        for run_id, observations in due.items():
            self._decide(self.runs[run_id], observations)

    def _load(self, stopping: frozenset[str] = frozenset()) -> Load:
        """The namespace load a driver observes; ``stopping``: attempts canceled but not gone yet."""
        by_def: dict[str, list[int]] = {}
        running: dict[str, int] = {}
        for task_id, (name, at) in self.dispatched.items():
            by_def.setdefault(name, []).append(at)
            if task_id not in self.finished and (task_id not in self._canceled or task_id in stopping):
                running[name] = running.get(name, 0) + 1
        loads = {name: TaskLoad(running=running.get(name, 0), recentStarts=tuple(sorted(starts)))
                 for name, starts in by_def.items()}
        for name, extra in self.external_load.items():
            mine = loads.get(name, TaskLoad())
            loads[name] = TaskLoad(running=mine.running + extra.running,
                                   recentStarts=tuple(sorted(mine.recentStarts + extra.recentStarts)))
        return Load(byTaskDef=loads)

    def _decide(self, run: Run, observations: list[Observation]) -> None:
        self.steps += 1
        if self.feed_load:
            observations = [self._load(), *observations]
        before = run.workflow
        before_json = _state_json(before) if self.check_roundtrip else None
        decision = decide(run.blueprint, before, observations, self.now)
        if self.check_roundtrip:
            assert before_json is not None
            replay = decide(run.blueprint, Workflow.model_validate(before_json), observations, self.now)
            mine, theirs = _decision_json(decision), _decision_json(replay)
            if mine != theirs:
                raise InvariantError(_diff("decision from a JSON round trip differs", mine, theirs))
        self._check(run, before, decision, observations)
        run.decisions.append(decision)
        run.instants.append(self.now)
        run.workflow = roundtrip(decision.workflow) if self.reread else decision.workflow
        run.wake_at = decision.wakeAt
        for action in decision.actions:
            self._carry_out(run, action)
        if self.check_redecide and decision.wakeAt != self.now:
            # A driver observes the namespace load afresh (its own new attempts included) before deciding;
            # attempts this decision canceled still hold their slot until their Job is gone (a new event).
            stopping = frozenset(a.taskId for a in decision.actions if isinstance(a, CancelTask))
            load = [self._load(stopping)] if self.feed_load else [o for o in observations if isinstance(o, Load)]
            self._check_redecide(run, load)
        if run.workflow.status.terminal and run.parent is not None and not run.reported:
            run.reported = True
            parent, task_id = run.parent
            status = TaskStatus.COMPLETED if run.workflow.status is WorkflowStatus.COMPLETED else TaskStatus.FAILED
            self._push(self.now, parent.run_id, TaskUpdate(
                taskId=task_id, status=status, outputData=dict(run.workflow.output),
                reasonForIncompletion=run.workflow.reasonForIncompletion))

    def _check(self, run: Run, before: Workflow, decision: Decision, observations: Sequence[Observation]) -> None:
        where = f"[{run.run_id} @ {self.now - T0} ms]"
        internal = [m for m in decision.messages if "internal error" in m]
        if internal:
            raise InvariantError(f"{where} the engine reported an internal error: {internal[0]}")
        if decision.wakeAt is not None and decision.wakeAt < self.now:
            raise InvariantError(f"{where} wakeAt {decision.wakeAt} is in the past")
        operated = any(isinstance(o, Operation) for o in observations)
        # The one news that changes a terminal workflow: its failureWorkflow started (its id goes in the output).
        recorded = any(isinstance(o, FailureWorkflowStarted) for o in observations) and \
            decision.workflow.model_dump(exclude={"output", "updateTime"}) == before.model_dump(
                exclude={"output", "updateTime"})
        if before.status.terminal and not operated and (decision.changed or decision.actions
                                                        or decision.workflow.status is not before.status) \
                and not (recorded and not decision.actions):
            raise InvariantError(f"{where} a terminal workflow ({before.status.value}) changed without an operation")
        for action in decision.actions:
            key: str | None = None
            if isinstance(action, (StartTask, StartSubWorkflow, CallHttp, EvaluateScript)):
                key = action.taskId
            elif isinstance(action, StartWorkflow):
                key = action.taskId or action.requestId  # START_WORKFLOW attempts and failure workflows
            if key is not None:
                if key in self.handed_out:
                    raise InvariantError(f"{where} {action.kind} for {key} was handed out twice")
                self.handed_out[key] = Logged(self.now, run.run_id, action)

    def _check_redecide(self, run: Run, load: Sequence[Observation]) -> None:
        """Decide once more at the same instant, seeing the same namespace load and nothing else."""
        where = f"[{run.run_id} @ {self.now - T0} ms]"
        state = run.workflow
        again = decide(run.blueprint, state, list(load), self.now)
        if again.changed or again.actions:
            raise InvariantError(f"{where} deciding again at the same instant changed something: "
                                 f"changed={again.changed} actions={[a.kind for a in again.actions]} "
                                 f"transitions={[(t.referenceTaskName, t.toStatus.value) for t in again.transitions]}")
        if again.wakeAt != run.wake_at:
            raise InvariantError(f"{where} deciding again moved wakeAt {run.wake_at} -> {again.wakeAt}")
        run.workflow = roundtrip(again.workflow) if self.reread else again.workflow

    def _carry_out(self, run: Run, action: Action) -> None:
        self.log.append(Logged(self.now, run.run_id, action))
        if isinstance(action, (StartTask, CallHttp)):
            self._start_attempt(run, action, action.taskId)
        elif isinstance(action, StartSubWorkflow):
            self._start_child(run, action)
        elif isinstance(action, EvaluateScript):
            # The drivers evaluate it in a worker process; here in the test's process, with the same function.
            # Its result arrives at the same instant (scripts take no simulated time).
            self._push(self.now, run.run_id, evaluate_script(action), action.taskId)
        elif isinstance(action, StartWorkflow):
            self.started_workflows.append((self.now, action))
            if action.purpose == "START_WORKFLOW" and action.taskId is not None:
                self._push(self.now + 5, run.run_id, TaskUpdate(
                    taskId=action.taskId, status=TaskStatus.COMPLETED,
                    outputData={"workflowId": f"started-{action.requestId}"}), action.taskId)
            elif action.purpose == "failureWorkflow":
                self._push(self.now + 5, run.run_id, FailureWorkflowStarted(workflowId=f"started-{action.requestId}"))
        elif isinstance(action, CancelTask):
            self._canceled.add(action.taskId)
            if action.subWorkflowId and action.subWorkflowId in self.runs:
                child = self.runs[action.subWorkflowId]
                self._push(self.now, child.run_id, Operation(
                    op=OperationKind.TERMINATE, nonce=f"cancel-{action.taskId}", reason=action.reason))

    def _task_of(self, run: Run, task_id: str) -> Task:
        for task in reversed(run.workflow.tasks):
            if task.taskId == task_id:
                return task
        raise InvariantError(f"an action names task {task_id}, which is not in the state")

    def _script_for(self, run: Run, task: Task) -> Script | None:
        ref = task.referenceTaskName
        if ref in run.results:
            return run.results[ref]
        base = ref.rsplit("__", 1)[0] if "__" in ref else ref
        if base in run.results:
            return run.results[base]
        return None

    def _start_attempt(self, run: Run, action: StartTask | CallHttp, task_id: str) -> None:
        task = self._task_of(run, task_id)
        self.dispatched[task_id] = (task.taskDefName, self.now)
        script = self._script_for(run, task)
        if script is None:
            result = ok({"response": {"statusCode": 200, "body": {}}} if isinstance(action, CallHttp) else {})
        else:
            key = (run.run_id, task.referenceTaskName)
            ordinal = self._ordinals.get(key, 0)
            self._ordinals[key] = ordinal + 1
            result = _pick(script, Attempt(task, action, ordinal))
        if not result.started:
            return
        if not isinstance(action, CallHttp):
            self._push(self.now + result.starts_after_ms, run.run_id, TaskUpdate(taskId=task_id, started=True),
                       task_id)
        for offset in result.heartbeats_ms:
            self._push(self.now + offset, run.run_id, TaskUpdate(taskId=task_id, heartbeat=True), task_id)
        if result.status is not None:
            self._push(self.now + result.runs_ms, run.run_id, TaskUpdate(
                taskId=task_id, status=result.status, outputData=dict(result.output),
                reasonForIncompletion=result.reason), task_id)

    def _start_child(self, parent: Run, action: StartSubWorkflow) -> None:
        child_id = f"{parent.run_id}/{action.referenceTaskName}/{action.taskId[:8]}"
        spec = self.children_defs.get(action.name)
        if spec is None and action.definition is not None:
            spec = {"definition": action.definition}
        if spec is None:
            self._push(self.now + 1, parent.run_id, TaskUpdate(
                taskId=action.taskId, status=TaskStatus.FAILED,
                reasonForIncompletion=f"no workflow definition named {action.name!r}"), action.taskId)
            return
        bp = blueprint(spec["definition"], spec.get("task_defs", self.task_defs))
        workflow = new_workflow(bp, child_id, action.input, self.now, correlation_id=action.correlationId,
                                parent_workflow_id=parent.run_id, parent_workflow_task_id=action.taskId)
        child = Run(child_id, bp, workflow, spec.get("results", parent.results), parent=(parent, action.taskId))
        self.runs[child_id] = child
        self._push(self.now, parent.run_id, TaskUpdate(taskId=action.taskId, subWorkflowId=child_id), action.taskId)
        self._push(self.now, child_id, None)


def _diff(title: str, left: Any, right: Any, path: str = "") -> str:
    if isinstance(left, dict) and isinstance(right, dict):
        for key in sorted(set(left) | set(right), key=str):
            if left.get(key) != right.get(key):
                return _diff(title, left.get(key), right.get(key), f"{path}.{key}")
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        for i, (a, b) in enumerate(zip(left, right, strict=True)):
            if a != b:
                return _diff(title, a, b, f"{path}[{i}]")
    return f"{title} at {path or '<root>'}: {left!r} != {right!r}"


def step(bp: Blueprint, workflow: Workflow, observations: Sequence[Observation] = (), *, now: int) -> Decision:
    """One bare ``decide`` call for tests that drive the engine by hand."""
    return decide(bp, workflow, list(observations), now)


def start(bp: Blueprint, input: Mapping[str, Any] | None = None, *, now: int = T0,
          workflow_id: str = "wf-1") -> Decision:
    """The first decision of a fresh run."""
    return decide(bp, new_workflow(bp, workflow_id, dict(input or {}), now), [], now)


def only(actions: Iterable[Action], kind: type[Action]) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]
