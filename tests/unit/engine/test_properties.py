"""Hypothesis properties of the engine: invariants that must hold for any definition and any world.

Generated here: random trees of every task type (well-formed and malformed: a FORK without its JOIN, a
JOIN without a fork, missing TaskDefs, expressions naming nothing, unknown types, bad WAIT times),
random task results per attempt, random user operations at random instants, random clock jumps.

Checked on every ``decide`` by the harness (``tests/unit/engine_harness.py``): no internal engine error
(bad data must become a FAILED task or workflow with a reason, never an exception), no attempt handed out
twice, deciding again at the same instant changes nothing, a terminal workflow stays terminal without an
operation, ``wakeAt`` never in the past; and, where asked, a decision made from the state's JSON round trip
is identical to the in-memory one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from kondukt.engine import (
    Load,
    Operation,
    OperationKind,
    StartTask,
    TaskDef,
    TaskLoad,
    TaskStatus,
    TaskUpdate,
    Workflow,
    WorkflowStatus,
    decide,
)
from kondukt.engine.models import RetryLogic
from kondukt.engine.policies import retry_delay_seconds
from tests.profiles import examples
from tests.unit.engine.harness import (
    T0,
    Attempt,
    Result,
    Sim,
    blueprint,
    fail,
    never,
    never_started,
    ok,
    roundtrip,
    simple,
    system,
    task_def,
    terminal_error,
    timed_out,
    workflow_def,
)

#: CI runs a fixed, moderate set of examples; the ``dev`` hypothesis profile searches deeper (tests/conftest.py).
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
PROPERTY_SETTINGS = examples(60, suppress_health_check=_SLOW_OK)

TASK_DEFS = [
    task_def("work"),
    task_def("flaky", retryCount=2, retryDelaySeconds=1, retryLogic="EXPONENTIAL_BACKOFF"),
    task_def("slow", timeoutSeconds=3, timeoutPolicy="RETRY", retryCount=1, pollTimeoutSeconds=5,
             responseTimeoutSeconds=2),
    task_def("strict", timeoutSeconds=4, timeoutPolicy="TIME_OUT_WF", concurrentExecLimit=1),
    task_def("limited", rateLimitPerFrequency=1, rateLimitFrequencyInSeconds=2, totalTimeoutSeconds=10,
             retryCount=3),
]
NAMES = [d["name"] for d in TASK_DEFS] + ["undefined_def"]
CHILD = workflow_def([simple("child_a"), simple("child_b", name="flaky")], name="child")


# --------------------------------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------------------------------


class _Refs:
    def __init__(self) -> None:
        self.counter = itertools.count()
        self.made: list[str] = []

    def new(self, prefix: str) -> str:
        ref = f"{prefix}{next(self.counter)}"
        self.made.append(ref)
        return ref


def _input_value(draw: Callable[..., Any], refs: _Refs) -> Any:
    choices: list[Any] = ["${workflow.input.x}", "${workflow.input.items}", "${workflow.variables.v}", 7, "text",
                          {"nested": "${workflow.input.x}"}, "${nowhere.output.y}"]
    if refs.made:
        choices += [f"${{{refs.made[-1]}.output.v}}", f"${{{refs.made[0]}.status}}"]
    return draw(st.sampled_from(choices))


def _inputs(draw: Callable[..., Any], refs: _Refs) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(["x", "y", "v", "items"]), max_size=2, unique=True))
    return {k: _input_value(draw, refs) for k in keys}


@st.composite
def task_lists(draw: Callable[..., Any], depth: int = 0, refs: _Refs | None = None) -> list[dict[str, Any]]:
    refs = refs if refs is not None else _Refs()
    size = draw(st.integers(min_value=1, max_value=3 if depth else 4))
    tasks: list[dict[str, Any]] = []
    for _ in range(size):
        tasks.extend(draw(task_specs(depth, refs)))
    return tasks


@st.composite
def task_specs(draw: Callable[..., Any], depth: int, refs: _Refs) -> list[dict[str, Any]]:
    """One task (or a FORK with its JOIN) as WorkflowTask dicts; sometimes malformed on purpose."""
    leaf = ["SIMPLE", "SIMPLE", "SIMPLE", "HTTP", "WAIT", "HUMAN", "TERMINATE", "SET_VARIABLE", "INLINE",
            "JSON_JQ_TRANSFORM", "NOOP", "START_WORKFLOW", "DYNAMIC", "SUB_WORKFLOW", "JOIN", "EXCLUSIVE_JOIN",
            "BOGUS_TYPE"]
    nested = ["FORK_JOIN", "FORK_JOIN_DYNAMIC", "SWITCH", "DECISION", "DO_WHILE"] if depth < 2 else []
    kind = draw(st.sampled_from(leaf + nested * 2))
    ref = refs.new(kind.lower()[:4])
    inputs = _inputs(draw, refs)
    extra: dict[str, Any] = {}
    if draw(st.integers(0, 9)) == 0:
        extra["optional"] = True
    if draw(st.integers(0, 9)) == 0:
        extra["permissive"] = True
    if kind == "SIMPLE":
        return [simple(ref, name=draw(st.sampled_from(NAMES)), inputs=inputs,
                       startDelay=draw(st.sampled_from([0, 0, 0, 2])), **extra)]
    if kind == "HTTP":
        return [system(ref, kind, {"http_request": {"uri": "http://svc/${workflow.input.x}", "method": "GET"}})]
    if kind == "WAIT":
        wait = draw(st.sampled_from([{"duration": "2s"}, {"until": "2024-01-01 00:00:05 UTC"}, {}, {"duration": "x"},
                                     {"until": "2020-01-01"}]))
        return [system(ref, kind, wait)]
    if kind == "TERMINATE":
        status = draw(st.sampled_from(["COMPLETED", "FAILED", "TERMINATED", "WHATEVER", None]))
        return [system(ref, kind, {"terminationStatus": status, "workflowOutput": _input_value(draw, refs)})]
    if kind == "INLINE":
        expression = draw(st.sampled_from(["$.x", "1 + 1", "throw new Error('no')", "$.missing.deep"]))
        return [system(ref, kind, {"evaluatorType": "javascript", "expression": expression, **inputs})]
    if kind == "JSON_JQ_TRANSFORM":
        return [system(ref, kind, {"queryExpression": draw(st.sampled_from([".", ".x", "error(\"e\")", "{{"])),
                                   **inputs})]
    if kind in ("HUMAN", "SET_VARIABLE", "NOOP", "BOGUS_TYPE"):
        return [system(ref, kind, inputs, **extra)]
    if kind == "START_WORKFLOW":
        return [system(ref, kind, {"startWorkflow": {"name": "other", "input": inputs}})]
    if kind == "DYNAMIC":
        return [system(ref, kind, {"taskToExecute": draw(st.sampled_from([*NAMES, None]))},
                       dynamicTaskNameParam="taskToExecute")]
    if kind == "SUB_WORKFLOW":
        name = draw(st.sampled_from(["child", "child", "missing_child"]))
        return [{"name": name, "taskReferenceName": ref, "type": kind, "inputParameters": inputs,
                 "subWorkflowParam": {"name": name, "version": 1}, **extra}]
    if kind == "JOIN":
        return [system(ref, kind, joinOn=[draw(st.sampled_from(refs.made))])]  # a JOIN without its fork
    if kind == "EXCLUSIVE_JOIN":
        return [system(ref, kind, joinOn=refs.made[-2:], defaultExclusiveJoinTask=refs.made[:1])]
    if kind == "FORK_JOIN":
        branches = [draw(task_lists(depth + 1, refs)) for _ in range(draw(st.integers(1, 3)))]
        fork = system(ref, kind, forkTasks=branches)
        if draw(st.integers(0, 7)) == 0:
            return [fork]  # no JOIN after it
        join_on = draw(st.sampled_from([[], [b[-1]["taskReferenceName"] for b in branches],
                                        [branches[0][0]["taskReferenceName"]]]))
        return [fork, system(refs.new("join"), "JOIN", joinOn=join_on)]
    if kind == "FORK_JOIN_DYNAMIC":
        form = draw(st.sampled_from(["name", "tasks", "bad"]))
        if form == "name":
            fork = system(ref, kind, {"forkTaskName": draw(st.sampled_from(NAMES)),
                                      "forkTaskInputs": draw(st.sampled_from([[{"a": 1}, 2], [], "${workflow.input.items}"]))})
        elif form == "tasks":
            tasks = [{"name": draw(st.sampled_from(NAMES)), "taskReferenceName": f"{ref}_d{i}"}
                     for i in range(draw(st.integers(0, 3)))]
            fork = system(ref, kind, {"dt": tasks, "di": {t["taskReferenceName"]: {"i": 1} for t in tasks}},
                          dynamicForkTasksParam="dt", dynamicForkTasksInputParamName="di")
        else:
            fork = system(ref, kind, {"dt": "${workflow.input.x}", "di": [1]},
                          dynamicForkTasksParam="dt", dynamicForkTasksInputParamName="di")
        return [fork, system(refs.new("djoin"), "JOIN")]
    if kind in ("SWITCH", "DECISION"):
        cases = {"a": draw(task_lists(depth + 1, refs)), "b": draw(st.sampled_from([[], [simple(refs.new("cb"))]]))}
        default = draw(st.sampled_from([[], [system(refs.new("dflt"), "NOOP")]]))
        if kind == "SWITCH":
            return [system(ref, kind, {"v": "${workflow.input.x}"}, decisionCases=cases, defaultCase=default,
                           evaluatorType=draw(st.sampled_from(["value-param", "javascript", "nope"])),
                           expression=draw(st.sampled_from(["v", "$.v", "$.v == 'a' ? 'a' : 'b'"])))]
        return [system(ref, kind, {"v": "${workflow.input.x}"}, decisionCases=cases, defaultCase=default,
                       caseValueParam="v")]
    assert kind == "DO_WHILE"
    body = draw(task_lists(depth + 1, refs))
    loop_inputs: dict[str, Any] = {}
    condition: str | None = f"if ($.{ref}['iteration'] < {draw(st.integers(1, 3))}) {{ true; }} else {{ false; }}"
    shape = draw(st.sampled_from(["condition", "items", "keep", "broken"]))
    if shape == "items":
        loop_inputs["items"] = draw(st.sampled_from([[1, 2], [], "${workflow.input.items}", "${workflow.input.x}"]))
        condition = None
    elif shape == "keep":
        loop_inputs["keepLastN"] = 1
    elif shape == "broken":
        condition = "$.nothing.here"
    spec = system(ref, kind, loop_inputs, loopOver=body)
    if condition is not None:
        spec["loopCondition"] = condition
    return [spec]


@st.composite
def definitions(draw: Callable[..., Any]) -> dict[str, Any]:
    tasks = draw(task_lists())
    extra: dict[str, Any] = {}
    if draw(st.booleans()):
        extra["outputParameters"] = {"out": "${workflow.input.x}", "last": f"${{{tasks[-1]['taskReferenceName']}.output}}"}
    if draw(st.integers(0, 3)) == 0:
        extra.update(timeoutSeconds=draw(st.sampled_from([5, 30])),
                     timeoutPolicy=draw(st.sampled_from(["TIME_OUT_WF", "ALERT_ONLY"])))
    if draw(st.booleans()):
        extra["failureWorkflow"] = "on_failure"
    return workflow_def(tasks, variables={"v": 1}, **extra)


# --------------------------------------------------------------------------------------------------
# Worlds
# --------------------------------------------------------------------------------------------------

OUTCOMES: list[Result] = [ok({"v": 1}), ok({}), ok({"v": [1, 2]}, runs_ms=50), fail(), terminal_error(), timed_out(),
                          never(), never(heartbeats_ms=(500,)), never_started(), ok(runs_ms=7000)]

OPERATIONS = [OperationKind.PAUSE, OperationKind.RESUME, OperationKind.TERMINATE, OperationKind.RETRY,
              OperationKind.RESTART, OperationKind.RERUN, OperationKind.SKIP, OperationKind.COMPLETE]


@st.composite
def worlds(draw: Callable[..., Any]) -> dict[str, Any]:
    outcomes = draw(st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=12))
    operations = draw(st.lists(st.tuples(st.integers(0, 20_000), st.sampled_from(OPERATIONS),
                                         st.integers(0, 30), st.sampled_from([None, TaskStatus.COMPLETED,
                                                                              TaskStatus.FAILED])),
                               max_size=4))
    return {"outcomes": outcomes, "operations": operations,
            "input": draw(st.sampled_from([{"x": "a", "items": [1, 2]}, {"x": None}, {}, {"x": "b", "items": "no"}])),
            "feed_load": draw(st.booleans())}


def _simulate(definition: dict[str, Any], world: dict[str, Any], *, check_roundtrip: bool = False) -> Sim:
    outcomes: itertools.cycle[Result] = itertools.cycle(world["outcomes"])

    def script(attempt: Attempt) -> Result:
        return next(outcomes)

    refs = [t["taskReferenceName"] for t in definition["tasks"]]
    results = _AllRefs(script)
    sim = Sim(definition, TASK_DEFS, results=results, input=world["input"], feed_load=world["feed_load"],
              children={"child": {"definition": CHILD}}, check_roundtrip=check_roundtrip)
    for at, kind, pick, status in world["operations"]:
        ref = refs[pick % len(refs)]
        sim.observe(Operation(op=kind, nonce=f"op-{at}-{pick}", taskReferenceName=ref, status=status,
                              reason="by a property test"), at=T0 + at)
    sim.run(until_time=T0 + 120_000, max_steps=600)
    return sim


class _AllRefs(dict[str, Any]):
    """Every reference gets the same scripted outcome stream."""

    def __init__(self, script: Callable[[Attempt], Result]) -> None:
        super().__init__()
        self.script = script

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> Any:
        return self.script


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(definitions(), worlds())
def test_engine_invariants_hold_for_generated_workflows_and_worlds(definition: dict[str, Any],
                                                                   world: dict[str, Any]) -> None:
    sim = _simulate(definition, world)
    ids = [t.taskId for t in sim.workflow.tasks]
    assert len(ids) == len(set(ids))
    if sim.workflow.status.terminal:
        assert sim.workflow.endTime >= sim.workflow.startTime
    if sim.workflow.status is WorkflowStatus.FAILED:
        assert sim.workflow.reasonForIncompletion


@examples(25, suppress_health_check=_SLOW_OK)
@given(definitions(), worlds())
def test_decisions_from_a_json_round_trip_equal_the_in_memory_ones(definition: dict[str, Any],
                                                                   world: dict[str, Any]) -> None:
    # With the namespace Load observed (as both drivers do). Without one, rate limits fall back to this
    # workflow's own dispatch times, which a re-read state only knows as start times (a later, safe estimate).
    _simulate(definition, {**world, "feed_load": True}, check_roundtrip=True)


@PROPERTY_SETTINGS
@given(definitions(), worlds(), st.data())
def test_terminal_workflow_stays_terminal_whatever_is_observed(definition: dict[str, Any], world: dict[str, Any],
                                                               data: st.DataObject) -> None:
    world = {**world, "operations": [], "outcomes": [o for o in world["outcomes"] if o.status] or [ok()]}
    sim = _simulate(definition, world)
    if not sim.workflow.status.terminal:
        return
    terminal = sim.workflow
    task_ids = [t.taskId for t in terminal.tasks] or ["none"]
    noise = data.draw(st.lists(st.one_of(
        st.builds(TaskUpdate, taskId=st.sampled_from(task_ids), status=st.sampled_from(list(TaskStatus)),
                  outputData=st.sampled_from([None, {"late": True}]), started=st.booleans(),
                  heartbeat=st.booleans()),
        st.builds(Load, byTaskDef=st.just({"work": TaskLoad(running=5, recentStarts=(T0,))}))), max_size=5))
    for jump in data.draw(st.lists(st.integers(0, 10**9), min_size=1, max_size=3)):
        decision = decide(sim.main.blueprint, terminal, noise, sim.now + jump)
        assert decision.workflow.status is terminal.status
        assert not decision.changed and decision.actions == () and decision.wakeAt is None


@PROPERTY_SETTINGS
@given(definitions(), worlds(), st.integers(0, 40))
def test_deciding_again_after_applying_a_decision_schedules_nothing_new(definition: dict[str, Any],
                                                                        world: dict[str, Any], cut: int) -> None:
    # Without a namespace Load: what the engine knows is then all in the state.
    sim = _simulate(definition, {**world, "operations": [], "feed_load": False})
    decisions = sim.decisions
    chosen = min(cut, len(decisions) - 1)
    decision, at = decisions[chosen], sim.main.instants[chosen]
    # From storage (no carried index), at the instant the decision was made: nothing new.
    state = roundtrip(decision.workflow)
    if decision.wakeAt is not None and decision.wakeAt <= at:
        return  # the engine asked to be called again at once (a loop yielding): it has more to do
    again = decide(sim.main.blueprint, state, [], at)
    assert not any(isinstance(a, StartTask) for a in again.actions)
    assert again.actions == () and not again.changed


@PROPERTY_SETTINGS
@given(definitions(), worlds())
def test_no_attempt_is_handed_out_twice(definition: dict[str, Any], world: dict[str, Any]) -> None:
    sim = _simulate(definition, world)
    handed = [getattr(a, "taskId", None) for a in sim.actions() if a.kind in ("start_task", "call_http",
                                                                                 "start_sub_workflow")]
    assert len(handed) == len(set(handed))
    for run in sim.runs.values():
        dispatched_now = {t.taskId for t in run.workflow.tasks if t.dispatched}
        assert dispatched_now <= set(sim.handed_out)


task_defs_strategy = st.builds(
    lambda logic, delay, scale, cap: TaskDef(name="t", retryLogic=logic, retryDelaySeconds=delay,
                                             backoffScaleFactor=scale, maxRetryDelaySeconds=cap),
    st.sampled_from(list(RetryLogic)), st.integers(0, 600), st.integers(1, 10), st.one_of(st.none(), st.integers(0, 900)))


@examples(300)
@given(task_defs_strategy, st.integers(0, 80))
def test_retry_delays_follow_the_formulas(definition: TaskDef, n: int) -> None:
    delay = retry_delay_seconds(definition, n)
    base = definition.retryDelaySeconds
    if definition.retryLogic is RetryLogic.FIXED:
        assert delay == base
        return
    raw = base * definition.backoffScaleFactor * (n + 1) if definition.retryLogic is RetryLogic.LINEAR_BACKOFF \
        else base * 2 ** min(n, 32)
    assert delay == (min(raw, definition.maxRetryDelaySeconds) if definition.maxRetryDelaySeconds else raw)
    assert delay >= 0


@examples(30)
@given(st.sampled_from(list(RetryLogic)), st.integers(0, 20), st.integers(1, 3), st.one_of(st.none(), st.integers(1, 30)),
       st.integers(1, 4))
def test_the_engine_waits_the_formula_delay_between_attempts(logic: RetryLogic, delay: int, scale: int,
                                                             cap: int | None, failures: int) -> None:
    policy = task_def("work", retryCount=failures, retryLogic=logic.value, retryDelaySeconds=delay,
                      backoffScaleFactor=scale, maxRetryDelaySeconds=cap)
    sim = Sim(workflow_def([simple("a")]), [policy], results={"a": [fail(runs_ms=100)] * failures + [ok()]})
    assert sim.run().status is WorkflowStatus.COMPLETED
    times = [e.at for e in sim.log if isinstance(e.action, StartTask)]
    expected = [retry_delay_seconds(TaskDef.model_validate(policy), n) * 1000 for n in range(failures)]
    assert [b - a - 100 for a, b in itertools.pairwise(times)] == expected


@examples(40, suppress_health_check=_SLOW_OK)
@given(definitions(), st.lists(st.tuples(st.integers(-5, 10**6), st.integers(0, 12), st.sampled_from(list(TaskStatus)),
                                         st.booleans()), max_size=25))
def test_decide_never_raises_on_arbitrary_observation_streams(definition: dict[str, Any],
                                                              stream: list[tuple[int, int, TaskStatus, bool]]) -> None:
    bp = blueprint(definition, TASK_DEFS)
    from kondukt.engine import new_workflow

    state: Workflow = new_workflow(bp, "wf-p", {"x": "a"}, T0)
    now = T0
    for jump, pick, status, with_op in stream:
        now += jump  # may even go back a little: decide must still answer
        ids = [t.taskId for t in state.tasks] or ["none"]
        observations: list[Any] = [TaskUpdate(taskId=ids[pick % len(ids)], status=status, started=with_op,
                                              outputData={"v": pick})]
        if with_op:
            observations.append(Operation(op=OPERATIONS[pick % len(OPERATIONS)], nonce=f"n{pick}-{jump}",
                                          taskReferenceName=state.tasks[pick % len(state.tasks)].referenceTaskName
                                          if state.tasks else None))
        decision = decide(bp, state, observations, now)
        assert not any("internal error" in m for m in decision.messages), decision.messages
        assert decision.wakeAt is None or decision.wakeAt >= now
        state = decision.workflow
