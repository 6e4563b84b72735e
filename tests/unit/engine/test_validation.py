"""Definition validation: one named case per rule, each both ways, plus WAIT parsing and the corpus.

Every invalid case says which task reference and which field the problem must name, and a phrase of the
message; every valid case must produce no problem at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from kondukt.engine.models import Blueprint, TaskDef, WorkflowDef
from kondukt.engine.validation import (
    Problem,
    join_key,
    model_problems,
    problems_from_validation_error,
    validate,
    validate_task_def,
    validate_workflow_def,
    walk_tasks,
)
from kondukt.engine.waits import parse_wait_duration, parse_wait_until

EXAMPLES = Path(__file__).resolve().parents[4] / "shared" / "conductor-examples"
INVALID_UPSTREAM = {
    "workflow__image_convert_resize_multipleformat.json",
    "workflow__image_effects_pipeline.json",
}

TASK_DEFS = {"work": TaskDef(name="work"), "generator": TaskDef(name="generator")}


def simple(ref: str, name: str = "work", **fields: Any) -> dict[str, Any]:
    return {"name": name, "taskReferenceName": ref, "type": "SIMPLE", **fields}


def task(ref: str, type_: str, **fields: Any) -> dict[str, Any]:
    return {"name": ref.removesuffix("_ref"), "taskReferenceName": ref, "type": type_, **fields}


def fork(ref: str, *branches: list[dict[str, Any]]) -> dict[str, Any]:
    return task(ref, "FORK_JOIN", forkTasks=list(branches))


def join(ref: str, *join_on: str) -> dict[str, Any]:
    return task(ref, "JOIN", joinOn=list(join_on))


def dynamic_fork(ref: str = "dyn_ref", **fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "inputParameters": {
            "dynamicTasks": "${gen_ref.output.dynamicTasks}",
            "dynamicTasksInput": "${gen_ref.output.input}",
        },
        "dynamicForkTasksParam": "dynamicTasks",
        "dynamicForkTasksInputParamName": "dynamicTasksInput",
    }
    return task(ref, "FORK_JOIN_DYNAMIC", **{**defaults, **fields})


def workflow(*tasks: dict[str, Any], **fields: Any) -> WorkflowDef:
    return WorkflowDef.model_validate({"name": "wf", "tasks": list(tasks), **fields})


def check(*tasks: dict[str, Any], **fields: Any) -> list[Problem]:
    return validate_workflow_def(workflow(*tasks, **fields), TASK_DEFS)


# --------------------------------------------------------------------------------------------------
# Valid definitions: no problem at all
# --------------------------------------------------------------------------------------------------

VALID: list[Any] = [
    pytest.param([simple("a_ref")], id="simple-with-taskdef"),
    pytest.param([{"name": "work", "taskReferenceName": "a_ref"}], id="type-omitted-is-simple"),
    pytest.param(
        [simple("a_ref", name="elsewhere", taskDefinition={"name": "elsewhere"})], id="inline-taskdefinition"
    ),
    pytest.param(
        [
            fork(
                "f_ref",
                [simple("a_ref"), simple("b_ref")],
                [fork("inner_ref", [simple("c_ref")]), join("ij_ref", "c_ref")],
            ),
            join("j_ref", "b_ref", "c_ref"),
        ],
        id="fork-join-on-nested-branch-refs",
    ),
    pytest.param(
        [simple("gen_ref", name="generator"), dynamic_fork(), join("j_ref")], id="dynamic-fork-param-form"
    ),
    pytest.param(
        [
            task(
                "dyn_ref",
                "FORK_JOIN_DYNAMIC",
                inputParameters={"forkTaskName": "work", "forkTaskInputs": [{"x": 1}]},
            ),
            join("j_ref"),
        ],
        id="dynamic-fork-forktaskname-form",
    ),
    pytest.param(
        [
            task(
                "dyn_ref",
                "FORK_JOIN_DYNAMIC",
                dynamicForkJoinTasksParam="tasks",
                inputParameters={"tasks": []},
            ),
            join("j_ref"),
        ],
        id="dynamic-fork-legacy-param",
    ),
    pytest.param(
        [
            simple("gen_ref", name="generator"),
            dynamic_fork(),
            join("j_ref"),
            simple("after_ref", inputParameters={"x": "${made_at_run_time_ref.output}"}),
        ],
        id="unknown-ref-allowed-with-dynamic-fork",
    ),
    pytest.param(
        [
            task(
                "sw_ref",
                "SWITCH",
                evaluatorType="value-param",
                expression="kind",
                inputParameters={"kind": "${workflow.input.kind}"},
                decisionCases={"a": [simple("a_ref")]},
                defaultCase=[simple("d_ref")],
            )
        ],
        id="switch-value-param",
    ),
    pytest.param(
        [
            task(
                "sw_ref",
                "SWITCH",
                evaluatorType="javascript",
                expression="$.n > 1 ? 'big' : 'small'",
                inputParameters={"n": 2},
                decisionCases={"big": [simple("a_ref")]},
            )
        ],
        id="switch-javascript",
    ),
    pytest.param(
        [
            task(
                "dec_ref",
                "DECISION",
                caseValueParam="kind",
                inputParameters={"kind": "x"},
                decisionCases={"x": [simple("a_ref")]},
            )
        ],
        id="decision-case-value-param",
    ),
    pytest.param(
        [
            task(
                "loop_ref",
                "DO_WHILE",
                loopCondition="if ($.loop_ref['iteration'] < 3) { true; } else { false; }",
                inputParameters={"keepLastN": 2},
                loopOver=[simple("body_ref")],
            ),
            simple(
                "after_ref", inputParameters={"last": "${body_ref.output}", "second": "${body_ref__2.output}"}
            ),
        ],
        id="do-while-and-iteration-refs",
    ),
    pytest.param(
        [task("loop_ref", "DO_WHILE", inputParameters={"items": [1, 2]}, loopOver=[simple("body_ref")])],
        id="do-while-items-form",
    ),
    pytest.param(
        [task("sub_ref", "SUB_WORKFLOW", subWorkflowParam={"name": "child", "version": 1})],
        id="sub-workflow-by-name",
    ),
    pytest.param(
        [
            task(
                "sub_ref",
                "SUB_WORKFLOW",
                subWorkflowParam={"workflowDefinition": {"name": "inline", "tasks": [simple("a_ref")]}},
            )
        ],
        id="sub-workflow-inline-definition",
    ),
    pytest.param(
        [task("dyn_ref", "DYNAMIC", dynamicTaskNameParam="taskToRun", inputParameters={"taskToRun": "work"})],
        id="dynamic-task",
    ),
    pytest.param(
        [
            task(f"t{i}_ref", "TERMINATE", inputParameters={"terminationStatus": status})
            for i, status in enumerate(["COMPLETED", "FAILED", "TERMINATED", "${workflow.input.status}"])
        ],
        id="terminate-statuses-and-expression",
    ),
    pytest.param(
        [
            task("w1_ref", "WAIT", inputParameters={"duration": "10s"}),
            task("w2_ref", "WAIT", inputParameters={"duration": "1 days 2 hours"}),
            task("w3_ref", "WAIT", inputParameters={"until": "2026-11-27 10:00"}),
            task("w4_ref", "WAIT", inputParameters={"until": "2026-11-27T10:00:00+01:00"}),
            task("w5_ref", "WAIT", inputParameters={"duration": "${workflow.input.delay}"}),
            task("w6_ref", "WAIT"),
        ],
        id="wait-forms",
    ),
    pytest.param(
        [
            task(
                "h_ref",
                "HTTP",
                inputParameters={"http_request": {"uri": "https://example.com", "method": "GET"}},
            )
        ],
        id="http-request",
    ),
    pytest.param(
        [
            task(
                "h_ref",
                "HTTP",
                taskDefinition={
                    "name": "h",
                    "inputTemplate": {"http_request": {"uri": "https://example.com"}},
                },
            )
        ],
        id="http-request-from-taskdef-input-template",
    ),
    pytest.param(
        [
            task("jq_ref", "JSON_JQ_TRANSFORM", inputParameters={"queryExpression": ".a"}),
            task("js_ref", "INLINE", inputParameters={"evaluatorType": "javascript", "expression": "1 + 1"}),
            task("lam_ref", "LAMBDA", scriptExpression="return 1;"),
            task("var_ref", "SET_VARIABLE", inputParameters={"v": 1}),
            task("noop_ref", "NOOP"),
            task("human_ref", "HUMAN"),
            task("start_ref", "START_WORKFLOW", inputParameters={"startWorkflow": {"name": "other"}}),
        ],
        id="system-tasks",
    ),
    pytest.param(
        [
            task(
                "dec_ref",
                "SWITCH",
                evaluatorType="value-param",
                expression="k",
                inputParameters={"k": "a"},
                decisionCases={"a": [simple("a_ref")], "b": [simple("b_ref")]},
            ),
            task("ej_ref", "EXCLUSIVE_JOIN", joinOn=["a_ref", "b_ref"], defaultExclusiveJoinTask=["a_ref"]),
        ],
        id="exclusive-join",
    ),
    pytest.param(
        [
            simple(
                "a_ref",
                inputParameters={
                    "id": "${CPEWF_TASK_ID}",
                    "wf": "${workflow.workflowId}",
                    "later": "${b_ref.output.x}",
                    "escaped": "$${not_a_ref.output}",
                },
            ),
            simple("b_ref"),
        ],
        id="system-names-forward-refs-and-escapes",
    ),
]


@pytest.mark.parametrize("tasks", VALID)
def test_valid_definitions_have_no_problems(tasks: list[dict[str, Any]]) -> None:
    assert check(*tasks) == []


# --------------------------------------------------------------------------------------------------
# Invalid definitions: each names its task reference and field
# --------------------------------------------------------------------------------------------------

INVALID: list[Any] = [
    pytest.param(
        [task("a_ref", "SIMPL")], "a_ref", "type", "'SIMPL' is not a task type", id="unknown-task-type"
    ),
    pytest.param(
        [simple("a_ref"), simple("a_ref")],
        "a_ref",
        "taskReferenceName",
        "also used by tasks[0]",
        id="duplicate-ref",
    ),
    pytest.param(
        [fork("f_ref", [simple("a_ref")]), join("j_ref", "a_ref"), simple("a_ref")],
        "a_ref",
        "taskReferenceName",
        "also used by tasks[0].forkTasks[0][0]",
        id="duplicate-ref-across-nesting",
    ),
    pytest.param(
        [simple("")], None, "taskReferenceName", "is missing (in the task named 'work')", id="blank-ref"
    ),
    pytest.param(
        [{"name": "", "taskReferenceName": "a_ref", "type": "NOOP"}],
        "a_ref",
        "name",
        "is missing",
        id="blank-name",
    ),
    pytest.param(
        [join("j_ref")], "j_ref", "type", "not a FORK_JOIN or FORK_JOIN_DYNAMIC", id="join-first-in-list"
    ),
    pytest.param(
        [simple("a_ref"), join("j_ref")],
        "j_ref",
        "type",
        "is JOIN but the task before it",
        id="join-after-simple",
    ),
    pytest.param(
        [fork("f_ref", [simple("a_ref")]), simple("b_ref"), join("j_ref", "a_ref")],
        "f_ref",
        "type",
        "next task in the same list is not a JOIN",
        id="fork-not-followed-by-join",
    ),
    pytest.param([fork("f_ref", [simple("a_ref")])], "f_ref", "type", "not a JOIN", id="fork-last-in-list"),
    pytest.param(
        [fork("f_ref", [simple("a_ref")]), join("j_ref", "a_ref", "zz_ref")],
        "j_ref",
        "joinOn[1]",
        "'zz_ref', which is not a task of the fork 'f_ref'",
        id="join-on-unknown-ref",
    ),
    pytest.param(
        [simple("before_ref"), fork("f_ref", [simple("a_ref")]), join("j_ref", "before_ref")],
        "j_ref",
        "joinOn[0]",
        "not a task of the fork",
        id="join-on-ref-outside-fork",
    ),
    pytest.param(
        [task("ej_ref", "EXCLUSIVE_JOIN", joinOn=["ghost_ref"])],
        "ej_ref",
        "joinOn[0]",
        "unknown task reference 'ghost_ref'",
        id="exclusive-join-unknown-ref",
    ),
    pytest.param(
        [simple("a_ref"), simple("b_ref", inputParameters={"file": {"uri": "${a_rfe.output.file}"}})],
        "b_ref",
        "inputParameters.file.uri",
        "names unknown task reference 'a_rfe'",
        id="expression-unknown-ref",
    ),
    pytest.param(
        [simple("a_ref", inputParameters={"list": ["ok", "x=${nope_ref.output}"]})],
        "a_ref",
        "inputParameters.list[1]",
        "unknown task reference 'nope_ref'",
        id="interpolated-unknown-ref-in-list",
    ),
    pytest.param(
        [simple("a_ref", inputParameters={"x": "${workflow.input.}"})],
        "a_ref",
        "inputParameters.x",
        "malformed expression",
        id="malformed-expression",
    ),
    pytest.param(
        [simple("a_ref", name="missing_def")],
        "a_ref",
        "name",
        "'missing_def' has no TaskDef",
        id="simple-without-taskdef",
    ),
    pytest.param(
        [task("s_ref", "SUB_WORKFLOW")],
        "s_ref",
        "subWorkflowParam",
        "is missing",
        id="sub-workflow-no-params",
    ),
    pytest.param(
        [task("s_ref", "SUB_WORKFLOW", subWorkflowParam={"version": 1})],
        "s_ref",
        "subWorkflowParam.name",
        "is missing",
        id="sub-workflow-no-name",
    ),
    pytest.param(
        [
            task(
                "s_ref",
                "SUB_WORKFLOW",
                subWorkflowParam={"workflowDefinition": {"name": "in", "tasks": [task("x_ref", "NOPE")]}},
            )
        ],
        "x_ref",
        "type",
        "'NOPE' is not a task type",
        id="sub-workflow-inline-definition-checked",
    ),
    pytest.param(
        [
            task(
                "sw_ref",
                "SWITCH",
                expression="k",
                inputParameters={"k": 1},
                decisionCases={"1": [simple("a_ref")]},
            )
        ],
        "sw_ref",
        "evaluatorType",
        "is missing",
        id="switch-no-evaluator",
    ),
    pytest.param(
        [
            task(
                "sw_ref",
                "SWITCH",
                evaluatorType="python",
                expression="k",
                decisionCases={"1": [simple("a_ref")]},
            )
        ],
        "sw_ref",
        "evaluatorType",
        "'python' is not an evaluator type",
        id="switch-unknown-evaluator",
    ),
    pytest.param(
        [task("sw_ref", "SWITCH", evaluatorType="javascript", decisionCases={"1": [simple("a_ref")]})],
        "sw_ref",
        "expression",
        "is missing (a script)",
        id="switch-no-expression",
    ),
    pytest.param(
        [
            task(
                "sw_ref",
                "SWITCH",
                evaluatorType="value-param",
                expression="kind",
                decisionCases={"1": [simple("a_ref")]},
            )
        ],
        "sw_ref",
        "expression",
        "input parameter 'kind', which is not in inputParameters",
        id="switch-value-param-not-an-input",
    ),
    pytest.param(
        [task("sw_ref", "SWITCH", evaluatorType="value-param", expression="k", inputParameters={"k": 1})],
        "sw_ref",
        "decisionCases",
        "is empty",
        id="switch-without-cases",
    ),
    pytest.param(
        [task("d_ref", "DECISION", decisionCases={"1": [simple("a_ref")]})],
        "d_ref",
        "caseValueParam",
        "caseValueParam or caseExpression",
        id="decision-without-case-param",
    ),
    pytest.param(
        [task("l_ref", "DO_WHILE", loopOver=[simple("a_ref")])],
        "l_ref",
        "loopCondition",
        "is missing",
        id="do-while-without-condition-or-items",
    ),
    pytest.param(
        [task("l_ref", "DO_WHILE", loopCondition="false")],
        "l_ref",
        "loopOver",
        "is empty",
        id="do-while-without-body",
    ),
    pytest.param(
        [
            task(
                "l_ref",
                "DO_WHILE",
                loopCondition="false",
                loopOver=[simple("a_ref")],
                inputParameters={"keepLastN": 0},
            )
        ],
        "l_ref",
        "inputParameters.keepLastN",
        "must be a positive integer",
        id="do-while-bad-keep-last-n",
    ),
    pytest.param(
        [task("d_ref", "FORK_JOIN_DYNAMIC"), join("j_ref")],
        "d_ref",
        "dynamicForkTasksParam",
        "forkTaskName and forkTaskInputs",
        id="dynamic-fork-without-parameters",
    ),
    pytest.param(
        [dynamic_fork(dynamicForkTasksInputParamName=None), join("j_ref")],
        "dyn_ref",
        "dynamicForkTasksInputParamName",
        "is missing",
        id="dynamic-fork-half-the-parameters",
    ),
    pytest.param(
        [dynamic_fork(inputParameters={"dynamicTasks": []}), join("j_ref")],
        "dyn_ref",
        "dynamicForkTasksInputParamName",
        "'dynamicTasksInput', which is not in inputParameters",
        id="dynamic-fork-parameter-not-an-input",
    ),
    pytest.param(
        [dynamic_fork(dynamicForkJoinTasksParam="legacy"), join("j_ref")],
        "dyn_ref",
        "dynamicForkJoinTasksParam",
        "cannot be combined",
        id="dynamic-fork-both-forms",
    ),
    pytest.param(
        [task("d_ref", "DYNAMIC")],
        "d_ref",
        "dynamicTaskNameParam",
        "is missing",
        id="dynamic-without-name-param",
    ),
    pytest.param(
        [task("d_ref", "DYNAMIC", dynamicTaskNameParam="which")],
        "d_ref",
        "dynamicTaskNameParam",
        "'which', which is not in inputParameters",
        id="dynamic-name-param-not-an-input",
    ),
    pytest.param(
        [task("t_ref", "TERMINATE", inputParameters={"terminationStatus": "DONE"})],
        "t_ref",
        "inputParameters.terminationStatus",
        "'DONE' is not one of COMPLETED, FAILED, TERMINATED",
        id="terminate-bad-status",
    ),
    pytest.param(
        [task("t_ref", "TERMINATE")],
        "t_ref",
        "inputParameters.terminationStatus",
        "is missing",
        id="terminate-no-status",
    ),
    pytest.param(
        [task("t_ref", "TERMINATE", optional=True, inputParameters={"terminationStatus": "FAILED"})],
        "t_ref",
        "optional",
        "cannot be optional",
        id="terminate-optional",
    ),
    pytest.param(
        [task("w_ref", "WAIT", inputParameters={"duration": "10 parsecs"})],
        "w_ref",
        "inputParameters.duration",
        "'10 parsecs' is not a duration",
        id="wait-bad-duration",
    ),
    pytest.param(
        [task("w_ref", "WAIT", inputParameters={"duration": 10})],
        "w_ref",
        "inputParameters.duration",
        "10 is not a duration",
        id="wait-duration-without-unit",
    ),
    pytest.param(
        [task("w_ref", "WAIT", inputParameters={"until": "next tuesday"})],
        "w_ref",
        "inputParameters.until",
        "is not a date-time",
        id="wait-bad-until",
    ),
    pytest.param(
        [task("w_ref", "WAIT", inputParameters={"until": "2026-02-30 10:00"})],
        "w_ref",
        "inputParameters.until",
        "is not a date-time",
        id="wait-until-impossible-date",
    ),
    pytest.param(
        [task("w_ref", "WAIT", inputParameters={"duration": "1m", "until": "2026-11-27 10:00"})],
        "w_ref",
        "inputParameters",
        "both 'duration' and 'until'",
        id="wait-both-duration-and-until",
    ),
    pytest.param(
        [task("h_ref", "HTTP")],
        "h_ref",
        "inputParameters.http_request",
        "is missing",
        id="http-without-request",
    ),
    pytest.param(
        [task("h_ref", "HTTP", inputParameters={"http_request": {"method": "GET"}})],
        "h_ref",
        "inputParameters.http_request.uri",
        "is missing",
        id="http-request-without-uri",
    ),
    pytest.param(
        [task("jq_ref", "JSON_JQ_TRANSFORM", inputParameters={"a": 1})],
        "jq_ref",
        "inputParameters.queryExpression",
        "is missing",
        id="jq-without-query",
    ),
    pytest.param(
        [task("js_ref", "INLINE", inputParameters={"evaluatorType": "lua", "expression": "1"})],
        "js_ref",
        "inputParameters.evaluatorType",
        "'lua' is not an evaluator type",
        id="inline-bad-evaluator",
    ),
    pytest.param(
        [task("js_ref", "INLINE", inputParameters={"evaluatorType": "javascript"})],
        "js_ref",
        "inputParameters.expression",
        "is missing",
        id="inline-without-expression",
    ),
    pytest.param(
        [task("l_ref", "LAMBDA")], "l_ref", "scriptExpression", "is missing", id="lambda-without-script"
    ),
    pytest.param(
        [task("s_ref", "START_WORKFLOW", inputParameters={"startWorkflow": {"version": 1}})],
        "s_ref",
        "inputParameters.startWorkflow.name",
        "is missing",
        id="start-workflow-without-name",
    ),
    pytest.param(
        [fork("f_ref"), join("j_ref")],
        "f_ref",
        "forkTasks",
        "needs at least one branch",
        id="fork-without-branches",
    ),
    pytest.param(
        [fork("f_ref", [simple("a_ref")], []), join("j_ref", "a_ref")],
        "f_ref",
        "forkTasks[1]",
        "empty branch",
        id="fork-with-empty-branch",
    ),
    pytest.param(
        [simple("a_ref", taskDefinition={"name": "inline", "timeoutSeconds": 10})],
        "a_ref",
        "taskDefinition.responseTimeoutSeconds",
        "must not exceed timeoutSeconds (10)",
        id="inline-taskdef-response-timeout",
    ),
]


@pytest.mark.parametrize(("tasks", "reference", "field", "phrase"), INVALID)
def test_each_problem_names_reference_field_and_cause(
    tasks: list[dict[str, Any]], reference: str | None, field: str, phrase: str
) -> None:
    found = check(*tasks)
    matching = [
        p for p in found if p.taskReferenceName == reference and p.field == field and phrase in p.message
    ]
    assert matching, f"expected ({reference!r}, {field!r}, {phrase!r}) among {[str(p) for p in found]}"
    problem = matching[0]
    assert problem.path.endswith(field)
    if reference is not None:
        assert str(problem).startswith(f"task '{reference}' (")


def test_workflow_output_naming_an_unknown_reference() -> None:
    problems = check(simple("a_ref"), outputParameters={"out": "${b_ref.output.x}"})
    assert [(p.path, p.taskReferenceName, p.field) for p in problems] == [
        ("outputParameters.out", None, "outputParameters.out")
    ]
    assert str(problems[0]) == "outputParameters.out names unknown task reference 'b_ref'"


def test_an_empty_workflow_is_a_problem() -> None:
    assert [str(p) for p in check()] == ["tasks is empty (a workflow needs at least one task)"]


def test_problem_reads_like_the_design_example() -> None:
    corpus = json.loads(
        (EXAMPLES / "workflow__image_convert_resize_multipleformat__2022-02-02_af15736.json").read_text()
    )
    corpus["tasks"][0]["forkTasks"][0][1]["inputParameters"]["fileLocation"] = (
        "${image_convert_resize_jgp_ref.output.fileLocation}"
    )
    problems = validate_workflow_def(WorkflowDef.model_validate(corpus), None)
    assert [str(p) for p in problems] == [
        "task 'upload_toS3_jpg_ref' (tasks[0].forkTasks[0][1]): inputParameters.fileLocation names unknown task "
        "reference 'image_convert_resize_jgp_ref'"
    ]
    assert problems[0].path == "tasks[0].forkTasks[0][1].inputParameters.fileLocation"
    assert problems[0].location == "tasks[0].forkTasks[0][1]"


def test_missing_taskdefs_are_not_checked_when_unknown() -> None:
    assert validate_workflow_def(workflow(simple("a_ref", name="defined_elsewhere")), None) == []


def test_problem_with_prefix_keeps_reference_and_field() -> None:
    problem = Problem("tasks[1].type", "a_ref", "type", "'X' is not a task type")
    moved = problem.with_prefix("spec")
    assert (moved.path, moved.location, moved.taskReferenceName, moved.field) == (
        "spec.tasks[1].type",
        "spec.tasks[1]",
        "a_ref",
        "type",
    )
    assert str(moved) == "task 'a_ref' (spec.tasks[1]): type 'X' is not a task type"


def test_decision_case_keys_are_quoted_in_paths() -> None:
    problems = check(
        task(
            "sw_ref",
            "SWITCH",
            evaluatorType="javascript",
            expression="1",
            decisionCases={"a b": [task("x_ref", "BAD")]},
        )
    )
    assert [p.path for p in problems] == ["tasks[0].decisionCases['a b'][0].type"]
    assert (
        join_key("x", "plain") == "x.plain"
        and join_key("x", 3) == "x[3]"
        and join_key("", "it's") == "['it\\'s']"
    )


def test_walk_tasks_visits_every_nested_task_with_its_path() -> None:
    wf = workflow(
        fork("f_ref", [simple("a_ref")]),
        join("j_ref", "a_ref"),
        task("l_ref", "DO_WHILE", loopCondition="false", loopOver=[simple("b_ref")]),
    )
    assert [(path, t.taskReferenceName) for path, t in walk_tasks(wf.tasks)] == [
        ("tasks[0]", "f_ref"),
        ("tasks[0].forkTasks[0][0]", "a_ref"),
        ("tasks[1]", "j_ref"),
        ("tasks[2]", "l_ref"),
        ("tasks[2].loopOver[0]", "b_ref"),
    ]


# --------------------------------------------------------------------------------------------------
# TaskDefs and blueprints
# --------------------------------------------------------------------------------------------------

TASK_DEF_CASES: list[Any] = [
    pytest.param(
        {"timeoutSeconds": 30},
        "responseTimeoutSeconds",
        "must not exceed timeoutSeconds (30)",
        id="response-timeout-default",
    ),
    pytest.param(
        {"rateLimitPerFrequency": 5, "rateLimitFrequencyInSeconds": 0},
        "rateLimitFrequencyInSeconds",
        "is 0",
        id="rate-window-zero",
    ),
    pytest.param({"name": " "}, "name", "is missing", id="blank-name"),
]


@pytest.mark.parametrize(("fields", "field", "phrase"), TASK_DEF_CASES)
def test_task_def_problems(fields: dict[str, Any], field: str, phrase: str) -> None:
    task_def = TaskDef.model_validate({"name": "t", **fields})
    assert [(p.field, phrase in p.message) for p in validate_task_def(task_def)] == [(field, True)]


def test_task_def_with_consistent_timeouts_is_fine() -> None:
    assert validate_task_def(TaskDef(name="t", timeoutSeconds=30, responseTimeoutSeconds=30)) == []


def test_negative_numbers_are_caught_even_without_pydantic() -> None:
    task_def = TaskDef.model_construct(**{**TaskDef(name="t").model_dump(), "retryCount": -2})
    assert [str(p) for p in validate_task_def(task_def)] == ["retryCount must not be negative (got -2)"]


def test_validate_blueprint_reports_used_taskdefs_only() -> None:
    wf = workflow(simple("a_ref"))
    bad = TaskDef(name="work", timeoutSeconds=5)
    unused_bad = TaskDef(name="unused", timeoutSeconds=5)
    problems = validate(Blueprint(workflow=wf, taskDefs={"work": bad, "unused": unused_bad}))
    assert [p.path for p in problems] == ["taskDefs.work.responseTimeoutSeconds"]
    assert str(problems[0]).startswith("taskDefs.work: responseTimeoutSeconds (3600) must not exceed")


# --------------------------------------------------------------------------------------------------
# Pydantic errors -> problems
# --------------------------------------------------------------------------------------------------

PYDANTIC_CASES: list[Any] = [
    pytest.param(
        {
            "name": "wf",
            "tasks": [simple("a_ref", taskDefinition={"name": "x", "timeoutPolicy": "SOMETIMES"})],
        },
        "spec.tasks[0].taskDefinition.timeoutPolicy",
        "task 'a_ref' (spec.tasks[0]): taskDefinition.timeoutPolicy 'SOMETIMES' is not one of 'RETRY', 'TIME_OUT_WF' or 'ALERT_ONLY'",
        id="bad-enum",
    ),
    pytest.param(
        {"name": "wf", "tasks": [simple("a_ref", retryCount=-1)]},
        "spec.tasks[0].retryCount",
        "task 'a_ref' (spec.tasks[0]): retryCount must not be negative (got -1)",
        id="negative-number",
    ),
    pytest.param(
        {"name": "wf", "tasks": [fork("f_ref", [{"name": "work"}])]},
        "spec.tasks[0].forkTasks[0][0].taskReferenceName",
        "spec.tasks[0].forkTasks[0][0]: taskReferenceName is missing (in the task named 'work')",
        id="missing-reference-in-fork",
    ),
    pytest.param(
        {"name": "wf", "tasks": ["oops"]},
        "spec.tasks[0]",
        "spec: tasks[0] must be an object (a map) (got 'oops')",
        id="task-not-an-object",
    ),
    pytest.param(
        {"name": "wf", "tasks": [], "timeoutSeconds": "soon"},
        "spec.timeoutSeconds",
        "spec: timeoutSeconds must be an integer (got 'soon')",
        id="wrong-type",
    ),
    pytest.param(
        {"name": "wf", "tasks": [], "timeoutPolicy": "RETRY"},
        "spec.timeoutPolicy",
        "spec: timeoutPolicy 'RETRY' is not one of 'TIME_OUT_WF' or 'ALERT_ONLY'",
        id="workflow-timeout-policy",
    ),
]


@pytest.mark.parametrize(("data", "path", "text"), PYDANTIC_CASES)
def test_pydantic_errors_become_readable_problems(data: dict[str, Any], path: str, text: str) -> None:
    model, problems = model_problems(WorkflowDef, data, "spec")
    assert model is None
    assert [p.path for p in problems] == [path]
    assert str(problems[0]) == text


def test_problems_from_validation_error_without_raw_data() -> None:
    with pytest.raises(ValidationError) as caught:
        TaskDef.model_validate({"name": "t", "retryLogic": "SOMETIMES"})
    (problem,) = problems_from_validation_error(caught.value)
    assert (problem.path, problem.taskReferenceName) == ("retryLogic", None)
    assert "'SOMETIMES' is not one of" in str(problem)


# --------------------------------------------------------------------------------------------------
# WAIT parsing (shared with the decider)
# --------------------------------------------------------------------------------------------------

DURATIONS: list[Any] = [
    pytest.param("10s", 10, id="seconds"),
    pytest.param("1m", 60, id="minute"),
    pytest.param("2h", 7200, id="hours"),
    pytest.param("1d", 86400, id="day"),
    pytest.param("1 days 2 hours", 93600, id="words"),
    pytest.param(" 3 mins 4 secs ", 184, id="spaces-and-short-words"),
    pytest.param("1d2h3m4s", 93784, id="compact"),
    pytest.param("2 HRS", 7200, id="case-insensitive"),
    pytest.param("10", None, id="no-unit"),
    pytest.param("", None, id="blank"),
    pytest.param("1m 1d", None, id="units-out-of-order"),
    pytest.param("-5s", None, id="negative"),
]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS)
def test_parse_wait_duration(text: str, seconds: int | None) -> None:
    assert parse_wait_duration(text) == seconds


NOV_27_10H_UTC_MS = 1_795_773_600_000

UNTILS: list[Any] = [
    pytest.param("2026-11-27 10:00", NOV_27_10H_UTC_MS, id="conductor-naive-is-utc"),
    pytest.param("2026-11-27 10:00 UTC", NOV_27_10H_UTC_MS, id="conductor-with-zone"),
    pytest.param("2026-11-27 11:00 +01:00", NOV_27_10H_UTC_MS, id="numeric-offset"),
    pytest.param("2026-11-27 02:00 PST", NOV_27_10H_UTC_MS, id="us-abbreviation"),
    pytest.param("2026-11-27T10:00:00Z", NOV_27_10H_UTC_MS, id="iso-z"),
    pytest.param("2026-11-27T10:00:00.250Z", NOV_27_10H_UTC_MS + 250, id="iso-fraction"),
    pytest.param("2026-11-27T15:30:00+05:30", NOV_27_10H_UTC_MS, id="iso-offset"),
    pytest.param("2026-11-27", NOV_27_10H_UTC_MS - 10 * 3_600_000, id="date-only"),
    pytest.param("2024-02-29 00:00", 1_709_164_800_000, id="leap-day"),
    pytest.param("1969-12-31 23:59", -60_000, id="before-epoch"),
    pytest.param("2026-02-29 10:00", None, id="not-a-leap-year"),
    pytest.param("2026-11-27 24:00", None, id="hour-out-of-range"),
    pytest.param("2026-11-27 10:00 Mars/Olympus", None, id="unknown-zone"),
    pytest.param("tomorrow", None, id="words"),
]


@pytest.mark.parametrize(("text", "epoch_ms"), UNTILS)
def test_parse_wait_until(text: str, epoch_ms: int | None) -> None:
    assert parse_wait_until(text) == epoch_ms


# --------------------------------------------------------------------------------------------------
# The Conductor corpus validates clean, given its TaskDefs
# --------------------------------------------------------------------------------------------------

CORPUS = sorted(EXAMPLES.glob("*.json"))


def _corpus_task_defs() -> dict[str, TaskDef]:
    task_defs = {}
    for path in CORPUS:
        if not path.name.startswith("task__") and not path.name.startswith("blog_sample_taskdef"):
            continue
        data = json.loads(path.read_text())
        if "tasks" not in data:
            task_defs[data["name"]] = TaskDef.model_validate(data)
    return task_defs


def test_the_corpus_is_there() -> None:
    assert len(CORPUS) >= 30, f"expected the Conductor examples in {EXAMPLES}"


@pytest.mark.parametrize(
    "path",
    [p for p in CORPUS if p.name.startswith("workflow__") and p.name not in INVALID_UPSTREAM],
    ids=lambda p: p.stem,
)
def test_corpus_workflows_validate_clean(path: Path) -> None:
    wf = WorkflowDef.model_validate(json.loads(path.read_text()))
    assert [str(p) for p in validate(Blueprint(workflow=wf, taskDefs=_corpus_task_defs()))] == []


def test_corpus_task_defs_validate_clean() -> None:
    task_defs = _corpus_task_defs()
    assert len(task_defs) >= 15
    assert {name: [str(p) for p in validate_task_def(td)] for name, td in task_defs.items()} == {
        name: [] for name in task_defs
    }
