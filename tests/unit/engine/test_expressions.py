"""Conductor's parameter expressions: path forms, types, interpolation, escapes, references, problems."""

from __future__ import annotations

import copy
import json
import types
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kondukt.engine.expressions import (
    expression_problems,
    parse_expression,
    referenced_tasks,
    resolve,
    task_view,
    workflow_view,
)
from kondukt.engine.models import Task, TaskStatus, Workflow, WorkflowStatus
from tests.profiles import examples

WORKFLOW: dict[str, Any] = {
    "workflowId": "wf-1",
    "workflowType": "image_pipeline",
    "version": 2,
    "status": WorkflowStatus.RUNNING,
    "correlationId": None,
    "input": {
        "fileLocation": "s3://in/a.jpg",
        "count": 3,
        "ratio": 0.5,
        "enabled": True,
        "nothing": None,
        "tags": ["holiday", "beach", "sun"],
        "recipe": {"width": 300, "format": "png"},
        "items": [{"name": "a", "size": 1}, {"name": "b", "size": 2}, {"size": 3}],
        "odd key.with.dots": "odd",
        "my-key": "dashed",
        "which": "count",
        "greeting": "héllo ✓",
        "empty": [],
    },
    "output": {"done": False},
    "variables": {"attempts": 2, "bucket": "thumbs"},
}
TASKS: dict[str, dict[str, Any]] = {
    "resize": {
        "input": {"fileLocation": "s3://in/a.jpg", "width": 300},
        "output": {"fileLocation": "s3://out/a.png", "sizes": [{"width": 100}, {"width": 200}]},
        "status": "COMPLETED",
        "taskId": "t-resize",
        "retryCount": 1,
        "referenceTaskName": "resize",
    },
}


def lookup(ref: str) -> Mapping[str, Any] | None:
    return TASKS.get(ref)


def resolved(template: Any, task_id: str | None = None) -> Any:
    return resolve(template, WORKFLOW, lookup, task_id=task_id)


# --------------------------------------------------------------------------------------------------
# One expression: the value keeps its type
# --------------------------------------------------------------------------------------------------

SINGLE_EXPRESSIONS = [
    pytest.param("${workflow.input.fileLocation}", "s3://in/a.jpg", id="workflow-input-string"),
    pytest.param("${workflow.input.count}", 3, id="int-keeps-type"),
    pytest.param("${workflow.input.ratio}", 0.5, id="float-keeps-type"),
    pytest.param("${workflow.input.enabled}", True, id="bool-keeps-type"),
    pytest.param("${workflow.input.nothing}", None, id="present-null"),
    pytest.param("${workflow.input.recipe}", {"width": 300, "format": "png"}, id="dict-keeps-type"),
    pytest.param("${workflow.input.tags}", ["holiday", "beach", "sun"], id="list-keeps-type"),
    pytest.param("${workflow.workflowId}", "wf-1", id="workflow-id"),
    pytest.param("${workflow.workflowType}", "image_pipeline", id="workflow-type"),
    pytest.param("${workflow.version}", 2, id="workflow-version"),
    pytest.param("${workflow.status}", "RUNNING", id="enum-status-as-its-value"),
    pytest.param("${workflow.variables.attempts}", 2, id="workflow-variable"),
    pytest.param("${workflow.output.done}", False, id="workflow-output"),
    pytest.param("${resize.output.fileLocation}", "s3://out/a.png", id="task-output"),
    pytest.param("${resize.input.width}", 300, id="task-input"),
    pytest.param("${resize.status}", "COMPLETED", id="task-status"),
    pytest.param("${resize.retryCount}", 1, id="task-retry-count"),
    pytest.param("${resize.output.sizes[1].width}", 200, id="index-then-key"),
    pytest.param("${workflow.input.tags[0]}", "holiday", id="index-first"),
    pytest.param("${workflow.input.tags[-1]}", "sun", id="negative-index-from-end"),
    pytest.param("${workflow.input.recipe['format']}", "png", id="bracket-single-quotes"),
    pytest.param('${workflow.input.recipe["format"]}', "png", id="bracket-double-quotes"),
    pytest.param("${workflow.input['odd key.with.dots']}", "odd", id="bracket-key-with-dots-and-space"),
    pytest.param("${workflow['input'][ 'count' ]}", 3, id="brackets-with-spaces"),
    pytest.param("${['resize'].status}", "COMPLETED", id="bracket-root"),
    pytest.param("${workflow.input.my-key}", "dashed", id="dashed-key"),
    pytest.param("${ workflow.input.count }", 3, id="spaces-around-path"),
    pytest.param("${$.workflow.input.count}", 3, id="jsonpath-root-prefix"),
    pytest.param("${workflow.input.items[*].name}", ["a", "b"], id="wildcard-skips-missing"),
    pytest.param("${workflow.input.items[*].size}", [1, 2, 3], id="wildcard-map"),
    pytest.param("${workflow.input.recipe.*}", [300, "png"], id="dot-star-on-dict"),
    pytest.param("${workflow.input.tags[*]}", ["holiday", "beach", "sun"], id="wildcard-whole-list"),
    pytest.param("${workflow.input.empty[*]}", [], id="wildcard-empty-list"),
    pytest.param("${workflow.input.tags[0:2]}", ["holiday", "beach"], id="slice"),
    pytest.param("${workflow.input.tags[-2:]}", ["beach", "sun"], id="slice-from-end"),
    pytest.param("${workflow.input.tags.length()}", 3, id="length-of-list"),
    pytest.param("${workflow.input.recipe.length()}", 2, id="length-of-dict"),
    pytest.param("${workflow.input.items[*].name.length()}", 2, id="length-of-matches"),
    pytest.param("${workflow.input.${workflow.input.which}}", 3, id="nested-expression-in-path"),
    pytest.param("${}", "", id="blank-is-empty-string"),
    pytest.param("${resize}", TASKS["resize"], id="whole-task-view"),
]


@pytest.mark.parametrize(("template", "expected"), SINGLE_EXPRESSIONS)
def test_one_expression_keeps_the_value_and_its_type(template: str, expected: Any) -> None:
    result = resolved(template)
    assert result == expected
    assert type(result) is type(expected)


MISSING = [
    pytest.param("${workflow.input.absent}", id="missing-key"),
    pytest.param("${workflow.input.absent.deeper}", id="missing-middle"),
    pytest.param("${workflow.input.nothing.deeper}", id="key-below-null"),
    pytest.param("${workflow.input.tags[3]}", id="index-past-end"),
    pytest.param("${workflow.input.tags[-4]}", id="negative-index-past-start"),
    pytest.param("${workflow.input.recipe[0]}", id="index-on-dict"),
    pytest.param("${workflow.input.tags.first}", id="key-on-list"),
    pytest.param("${workflow.input.fileLocation.scheme}", id="key-on-string"),
    pytest.param("${workflow.input.count.length()}", id="length-of-number"),
    pytest.param("${unknown_ref.output.x}", id="task-that-does-not-exist"),
    pytest.param("${unknown_ref}", id="bare-unknown-task"),
    pytest.param("${workflow.env.HOME}", id="no-environment"),
    pytest.param("${workflow.secrets.token}", id="no-secrets"),
    pytest.param("${workflow.input..count}", id="malformed-deep-scan"),
    pytest.param("${workflow.input.tags[x]}", id="malformed-index"),
    pytest.param("${workflow.input.${workflow.input.absent}}", id="nested-expression-to-missing-key"),
    pytest.param("${workflow.input.${workflow.input.recipe}}", id="nested-expression-to-malformed-path"),
    pytest.param("${CPEWF_TASK_ID}", id="task-id-not-given"),
]


@pytest.mark.parametrize("template", MISSING)
def test_what_cannot_be_found_is_null(template: str) -> None:
    assert resolved(template) is None


def test_an_indefinite_path_over_a_missing_task_is_an_empty_list() -> None:
    assert resolved("${unknown_ref.output.items[*].id}") == []


def test_task_id_parameter_is_the_given_task_id() -> None:
    assert resolved("${CPEWF_TASK_ID}", task_id="t-42") == "t-42"
    assert resolved("id-${CPEWF_TASK_ID}", task_id="t-42") == "id-t-42"


# --------------------------------------------------------------------------------------------------
# Interpolation
# --------------------------------------------------------------------------------------------------

INTERPOLATIONS = [
    pytest.param("file: ${workflow.input.fileLocation}", "file: s3://in/a.jpg", id="string-as-is"),
    pytest.param("n=${workflow.input.count}", "n=3", id="int-as-json"),
    pytest.param("r=${workflow.input.ratio}", "r=0.5", id="float-as-json"),
    pytest.param("on=${workflow.input.enabled}", "on=true", id="true-as-json"),
    pytest.param("done=${workflow.output.done}", "done=false", id="false-as-json"),
    pytest.param("v=${workflow.input.nothing}", "v=null", id="null-as-null"),
    pytest.param("v=${workflow.input.absent}", "v=null", id="missing-as-null"),
    pytest.param("r=${workflow.input.recipe}", 'r={"width":300,"format":"png"}', id="dict-as-compact-json"),
    pytest.param("t=${workflow.input.tags}", 't=["holiday","beach","sun"]', id="list-as-compact-json"),
    pytest.param("${workflow.input.greeting}!", "héllo ✓!", id="unicode-kept"),
    pytest.param("s=${workflow.status}", "s=RUNNING", id="enum-as-its-value"),
    pytest.param("${workflow.workflowId}/${resize.output.sizes[0].width}", "wf-1/100", id="two-expressions"),
    pytest.param(" ${workflow.input.count}", " 3", id="leading-space-makes-a-string"),
    pytest.param("${workflow.input.count}${workflow.input.count}", "33", id="adjacent-expressions"),
    pytest.param("x${}y", "xy", id="blank-interpolates-empty"),
    pytest.param("n=${workflow.input.tags[*]}", 'n=["holiday","beach","sun"]', id="indefinite-as-json"),
]


@pytest.mark.parametrize(("template", "expected"), INTERPOLATIONS)
def test_expressions_inside_a_longer_string_are_interpolated(template: str, expected: str) -> None:
    assert resolved(template) == expected


ESCAPES_AND_LITERALS = [
    pytest.param("$${workflow.input.count}", "${workflow.input.count}", id="escape-alone"),
    pytest.param(
        "cost $${price} for ${workflow.input.count}", "cost ${price} for 3", id="escape-next-to-expression"
    ),
    pytest.param("a ${workflow.input.count", "a ${workflow.input.count", id="unterminated-stays-literal"),
    pytest.param("${workflow.input.count} ${oops", "3 ${oops", id="unterminated-after-expression"),
    pytest.param("$ {workflow.input.count}", "$ {workflow.input.count}", id="not-an-expression"),
    pytest.param("plain text", "plain text", id="no-expression"),
    pytest.param("", "", id="empty-string"),
]


@pytest.mark.parametrize(("template", "expected"), ESCAPES_AND_LITERALS)
def test_escapes_and_literal_text(template: str, expected: str) -> None:
    assert resolved(template) == expected


@pytest.mark.parametrize("scalar", [5, 2.5, True, False, None], ids=["int", "float", "true", "false", "none"])
def test_non_string_scalars_are_returned_unchanged(scalar: Any) -> None:
    assert resolved(scalar) is scalar


def test_templates_nest_through_dicts_and_lists() -> None:
    template = {
        "image": {"source": "${resize.output.fileLocation}", "sizes": ["${resize.output.sizes[*].width}", 7]},
        "list": [{"n": "${workflow.input.count}"}, ["${workflow.variables.bucket}"]],
        "literal": {"keep": "as is", "number": 1},
    }
    assert resolved(template) == {
        "image": {"source": "s3://out/a.png", "sizes": [[100, 200], 7]},
        "list": [{"n": 3}, ["thumbs"]],
        "literal": {"keep": "as is", "number": 1},
    }


def test_the_template_is_never_mutated_and_containers_are_new() -> None:
    template: dict[str, Any] = {
        "a": ["${workflow.input.count}", {"b": "${workflow.input.recipe}"}],
        "c": {"d": 1},
    }
    before = copy.deepcopy(template)
    result = resolved(template)
    assert template == before
    assert result is not template
    assert result["a"] is not template["a"]
    assert result["a"][1] is not template["a"][1]
    assert result["c"] is not template["c"]


def test_each_task_is_looked_up_once_per_resolution() -> None:
    calls: list[str] = []

    def counting_lookup(ref: str) -> Mapping[str, Any] | None:
        calls.append(ref)
        return TASKS.get(ref)

    template = ["${resize.status}", "${resize.output.fileLocation}", "at ${resize.taskId}", "${ghost.x}"]
    resolve(template, WORKFLOW, counting_lookup)
    assert sorted(calls) == ["ghost", "resize"]


def test_a_read_only_mapping_view_comes_back_as_a_dict() -> None:
    view = types.MappingProxyType({"status": "COMPLETED", "output": {"a": 1}})
    result = resolve("${t.output.a} ${t.status}", {}, lambda ref: view)
    assert result == "1 COMPLETED"
    whole = resolve("${t}", {}, lambda ref: view)
    assert type(whole) is dict
    assert whole == {"status": "COMPLETED", "output": {"a": 1}}


def test_views_built_from_the_models_use_conductor_names() -> None:
    workflow = Workflow(
        workflowId="wf-9",
        workflowName="pipeline",
        workflowVersion=3,
        input={"x": 1},
        variables={"v": "w"},
    )
    task = Task(
        taskId="t-1",
        taskType="image_convert_resize",
        referenceTaskName="resize",
        taskDefName="image_convert_resize",
        status=TaskStatus.COMPLETED,
        inputData={"in": 1},
        outputData={"out": [1, 2]},
        iteration=2,
    )
    views = {"resize": task_view(task, workflow.workflowId)}
    template = {
        "name": "${workflow.workflowType}",
        "version": "${workflow.version}",
        "status": "${workflow.status}",
        "x": "${workflow.input.x}",
        "v": "${workflow.variables.v}",
        "out": "${resize.output.out[1]}",
        "in": "${resize.input.in}",
        "task": "${resize.status} ${resize.taskType} ${resize.iteration} ${resize.workflowInstanceId}",
    }
    assert resolve(template, workflow_view(workflow), views.get) == {
        "name": "pipeline",
        "version": 3,
        "status": "RUNNING",
        "x": 1,
        "v": "w",
        "out": 2,
        "in": 1,
        "task": "COMPLETED image_convert_resize 2 wf-9",
    }


# --------------------------------------------------------------------------------------------------
# References and problems, for the validator
# --------------------------------------------------------------------------------------------------

REFERENCES = [
    pytest.param("${resize.output.x}", {"resize"}, id="one-task"),
    pytest.param("${workflow.input.x} ${CPEWF_TASK_ID} ${NETFLIX_ENV}", set(), id="workflow-and-system"),
    pytest.param({"a": ["${a_ref.output}", {"b": "x ${b_ref.status}"}]}, {"a_ref", "b_ref"}, id="nested"),
    pytest.param("${['my ref'].output}", {"my ref"}, id="bracket-root"),
    pytest.param("${$.jp_ref.output}", {"jp_ref"}, id="jsonpath-prefix"),
    pytest.param("${outer.output.${inner.output.key}}", {"outer", "inner"}, id="nested-expression"),
    pytest.param("${${picker.output.ref}.output}", {"picker"}, id="dynamic-root-not-reported"),
    pytest.param("$${escaped.output}", set(), id="escape-not-a-reference"),
    pytest.param("${bad..path}", set(), id="malformed-not-a-reference"),
    pytest.param(["no expressions", 3, None], set(), id="nothing"),
]


@pytest.mark.parametrize(("template", "expected"), REFERENCES)
def test_referenced_tasks(template: Any, expected: set[str]) -> None:
    assert referenced_tasks(template) == expected


PROBLEMS = [
    pytest.param("${workflow.input.x", "unterminated", id="unterminated"),
    pytest.param("${}", "empty expression", id="empty"),
    pytest.param("${   }", "empty expression", id="blank"),
    pytest.param("${workflow.input.}", "name is missing", id="trailing-dot"),
    pytest.param("${workflow..x}", "deep scan", id="deep-scan"),
    pytest.param("${a[?(@.x > 1)]}", "filters", id="filter"),
    pytest.param("${a[0,1]}", "unions", id="union"),
    pytest.param("${a['x','y']}", "several keys", id="several-keys"),
    pytest.param("${a[x]}", "bad index", id="bad-index"),
    pytest.param("${a[1:2:3]}", "bad slice", id="slice-with-step"),
    pytest.param("${a['x]}", "unterminated quote", id="unterminated-quote"),
    pytest.param("${a[0}", "unclosed '['", id="unclosed-bracket"),
    pytest.param("${a.keys()}", "keys() is not supported", id="unknown-function"),
    pytest.param("${a.length().b}", "must end the path", id="length-not-last"),
    pytest.param("${a b}", "unexpected ' '", id="space-inside"),
    pytest.param("${$}", "must start with", id="bare-root"),
    pytest.param("${[0].x}", "must start with", id="index-root"),
    pytest.param("${x.${y..z}}", "deep scan", id="inside-nested-expression"),
]


@pytest.mark.parametrize(("text", "message"), PROBLEMS)
def test_malformed_expressions_are_reported(text: str, message: str) -> None:
    problems = parse_expression(text)
    assert len(problems) == 1
    assert message in problems[0].message
    assert problems[0].expression.startswith("${")
    assert message in str(problems[0])


@pytest.mark.parametrize(
    "text",
    [
        "${workflow.input.x}",
        "a ${b.output['c'][0]} d",
        "$${not.checked..}",
        "plain",
        "${a.b[*].c[1:].length()}",
    ],
)
def test_well_formed_expressions_have_no_problems(text: str) -> None:
    assert parse_expression(text) == []


def test_problems_name_their_place_in_the_template() -> None:
    template = {"ok": "${workflow.input.x}", "outer": {"list": ["fine", "${bad..x}"]}, "top": "${}"}
    problems = expression_problems(template)
    assert [(p.location, p.expression) for p in problems] == [("outer.list[1]", "${bad..x}"), ("top", "${}")]
    assert str(problems[0]).startswith("outer.list[1]: deep scan")


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
# Strings made of the characters expressions are built from, so the parser meets its edge cases often.
expression_text = st.text(alphabet="${}[]().'\"*:-,?@ \\0123abxworkflinpuesta", max_size=40)
templates = st.recursive(
    expression_text | json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@examples(300)
@given(
    template=templates,
    workflow=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    tasks=json_values,
)
def test_resolve_never_raises_and_gives_json(template: Any, workflow: dict[str, Any], tasks: Any) -> None:
    def any_lookup(ref: str) -> Mapping[str, Any] | None:
        return tasks if isinstance(tasks, dict) else None

    result = resolve(template, {**workflow, "input": tasks}, any_lookup, task_id="t")
    json.dumps(result)
    referenced_tasks(template)
    expression_problems(template)


def _without_expressions(value: Any) -> bool:
    if isinstance(value, str):
        return "${" not in value
    if isinstance(value, dict):
        return all(_without_expressions(item) for item in value.values())
    if isinstance(value, list):
        return all(_without_expressions(item) for item in value)
    return True


@examples(200)
@given(template=templates.filter(_without_expressions))
def test_a_template_without_expressions_resolves_to_itself(template: Any) -> None:
    assert resolve(template, WORKFLOW, lookup) == template


@examples(200)
@given(value=json_values)
def test_a_single_expression_returns_exactly_the_value_it_names(value: Any) -> None:
    assert resolve("${workflow.input.v}", {"input": {"v": value}}, lookup) == value
