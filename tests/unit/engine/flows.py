"""Small workflow builders shared by the engine tests (run one in ``harness.Sim``, build a fork, a loop, ...)."""

from __future__ import annotations

from typing import Any

from kondukt.engine import StartTask
from tests.unit.engine.harness import Sim, blueprint, ok, simple, start, system, task_def, workflow_def

WORK = task_def("work")


def run(tasks: list[dict[str, Any]], results: dict[str, Any] | None = None, input: dict[str, Any] | None = None,
        defs: list[dict[str, Any]] | None = None, **workflow: Any) -> Sim:
    sim = Sim(workflow_def(tasks, **workflow), defs if defs is not None else [WORK], results=results or {},
              input=input)
    sim.run()
    return sim


def fork(ref: str, *branches: list[dict[str, Any]]) -> dict[str, Any]:
    return system(ref, "FORK_JOIN", forkTasks=[list(b) for b in branches])


def join(ref: str, *on: str) -> dict[str, Any]:
    return system(ref, "JOIN", joinOn=list(on))


def loop(ref: str, body: list[dict[str, Any]], condition: str | None = None, **inputs: Any) -> dict[str, Any]:
    spec = system(ref, "DO_WHILE", inputs, loopOver=body)
    if condition is not None:
        spec["loopCondition"] = condition
    return spec


def upto(ref: str, n: int) -> str:
    return f"if ($.{ref}['iteration'] < {n}) {{ true; }} else {{ false; }}"


def generator_output(n: int) -> dict[str, Any]:
    tasks = [{"name": "work", "taskReferenceName": f"d{i}", "type": "SIMPLE"} for i in range(n)]
    return {"tasks": tasks, "inputs": {f"d{i}": {"i": i} for i in range(n)}}


def dynamic_fork(ref: str = "df", **extra: Any) -> dict[str, Any]:
    spec = system(ref, "FORK_JOIN_DYNAMIC", {"tasks": "${gen.output.tasks}", "inputs": "${gen.output.inputs}"},
                  dynamicForkTasksParam="tasks", dynamicForkTasksInputParamName="inputs")
    spec.update(extra)
    return spec


def switch(ref: str = "sw", *, evaluator: str = "value-param", expression: str = "v",
           cases: dict[str, list[dict[str, Any]]] | None = None, default: list[dict[str, Any]] | None = None,
           inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    return system(ref, "SWITCH", inputs if inputs is not None else {"v": "${workflow.input.v}"},
                  evaluatorType=evaluator, expression=expression,
                  decisionCases=cases if cases is not None else {"x": [simple("x1"), simple("x2")],
                                                                 "y": [simple("y1")]},
                  defaultCase=default if default is not None else [simple("d1")])


def decision(**extra: Any) -> dict[str, Any]:
    return system("d", "DECISION", {"v": "${workflow.input.v}"}, decisionCases={"x": [simple("x1")]},
                  defaultCase=[simple("d1")], **extra)


def sub(ref: str = "sub", name: str = "child", **extra: Any) -> dict[str, Any]:
    return {"name": name, "taskReferenceName": ref, "type": "SUB_WORKFLOW",
            "inputParameters": {"x": "${workflow.input.x}"}, "subWorkflowParam": {"name": name, "version": 2},
            **extra}


CHILD = workflow_def([simple("inner", inputs={"x": "${workflow.input.x}"})], name="child",
                     outputParameters={"got": "${inner.output.r}"})


def exclusive(value: str, **join_fields: Any) -> Sim:
    dec = system("d", "DECISION", {"v": "${workflow.input.v}"}, caseValueParam="v",
                 decisionCases={"a": [simple("a1"), simple("a2")], "b": [simple("b1")], "c": [simple("c1")]},
                 defaultCase=[simple("dflt")])
    ej = system("ej", "EXCLUSIVE_JOIN", **join_fields)
    return run([dec, ej, simple("after", inputs={"got": "${ej.output.who}"})],
               {"a2": ok({"who": "a"}), "b1": ok({"who": "b"}), "c1": ok({"who": "c"}), "dflt": ok({"who": "default"})},
               input={"v": value})


def first_start(definition: dict[str, Any], task_defs: list[dict[str, Any]] | None = None,
                input: dict[str, Any] | None = None) -> StartTask:
    decision = start(blueprint(definition, task_defs if task_defs is not None else [WORK]), input)
    starts = [a for a in decision.actions if isinstance(a, StartTask)]
    assert len(starts) == 1, decision.actions
    return starts[0]
