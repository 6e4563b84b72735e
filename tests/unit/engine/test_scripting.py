"""Sandboxed JavaScript (QuickJS) and jq: Conductor's scripts, results as JSON, errors, limits, isolation."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kondukt.engine.models import TaskStatus
from kondukt.engine.scripting import (
    ScriptError,
    conductor_truthy,
    evaluate_expression,
    evaluate_javascript,
    evaluate_jq,
    jq_transform_output,
)
from tests.profiles import examples

TASK_INPUT: dict[str, Any] = {
    "loop": {"iteration": 2},
    "value": 3,
    "name": "img",
    "items": [{"w": 100}, {"w": 200}],
    "nested": {"a": {"b": None}},
}

# --------------------------------------------------------------------------------------------------
# JavaScript: results
# --------------------------------------------------------------------------------------------------

JAVASCRIPT_RESULTS = [
    pytest.param("if ($.loop['iteration'] < 3) { true; } else { false; }", True, id="loop-condition-true"),
    pytest.param("if ($.loop['iteration'] < 2) { true; } else { false; }", False, id="loop-condition-false"),
    pytest.param("$.value > 1 ? 'big' : 'small'", "big", id="ternary-case"),
    pytest.param("function e() { return $.value * 2; } e();", 6, id="function-then-call"),
    pytest.param("(function(){ return $.name + '.png'; })()", "img.png", id="inline-iife"),
    pytest.param("({total: $.items.reduce((s, i) => s + i.w, 0)})", {"total": 300}, id="object-result"),
    pytest.param("$.items.map(i => i.w / 100)", [1, 2], id="array-of-integral-numbers"),
    pytest.param("[0.5, 'x', null, true, {a: []}]", [0.5, "x", None, True, {"a": []}], id="mixed-array"),
    pytest.param("$.nested", {"a": {"b": None}}, id="input-object-back"),
    pytest.param("$.nested?.x?.y ?? 'default'", "default", id="modern-syntax"),
    pytest.param("undefined", None, id="undefined-is-none"),
    pytest.param("null", None, id="null"),
    pytest.param("var x = 1;", None, id="no-completion-value"),
    pytest.param("6 / 3", 2, id="integral-float-is-int"),
    pytest.param("2 ** 53", 2**53, id="largest-exact-integer"),
    pytest.param("2 ** 60", float(2**60), id="beyond-exact-stays-float"),
    pytest.param("0.1 + 0.2", 0.1 + 0.2, id="float"),
    pytest.param("-0", 0, id="negative-zero"),
    pytest.param("({keep: 1, dropped: undefined, fn() {}})", {"keep": 1}, id="json-stringify-rules"),
    pytest.param("JSON.stringify($.items)", '[{"w":100},{"w":200}]', id="json-builtin"),
    pytest.param("console.log('ignored'); console.error($); 'ok'", "ok", id="console-is-available"),
    pytest.param("$.items.push({w: 1}); $.items.length", 3, id="script-may-change-its-copy"),
]


@pytest.mark.parametrize(("script", "expected"), JAVASCRIPT_RESULTS)
def test_javascript_results_come_back_as_json_values(script: str, expected: Any) -> None:
    before = copy.deepcopy(TASK_INPUT)
    result = evaluate_javascript(script, {"$": TASK_INPUT})
    assert result == expected
    assert type(result) is type(expected)
    assert before == TASK_INPUT, "the script changed the caller's input"


def test_every_binding_is_a_global() -> None:
    result = evaluate_javascript(
        "[$.a, other, flag, status]", {"$": {"a": 1}, "other": "x", "flag": True, "status": TaskStatus.FAILED}
    )
    assert result == [1, "x", True, "FAILED"]


def test_the_clock_is_the_given_instant() -> None:
    script = "[Date.now(), new Date().toISOString(), new Date(0).getTime(), new Date() instanceof Date]"
    assert evaluate_javascript(script, {}, now_ms=86_400_000) == [
        86_400_000,
        "1970-01-02T00:00:00.000Z",
        0,
        True,
    ]


@pytest.mark.parametrize("script", ["Date.now()", "new Date()", "Date()"])
def test_without_a_given_instant_reading_the_clock_fails_clearly(script: str) -> None:
    with pytest.raises(ScriptError, match=r"need the current time.*\(line 1, column \d+\)"):
        evaluate_javascript(script, {})


def test_dates_from_data_work_without_a_clock() -> None:
    assert (
        evaluate_javascript("new Date(Date.UTC(2024, 0, 2)).toISOString()", {}) == "2024-01-02T00:00:00.000Z"
    )


# --------------------------------------------------------------------------------------------------
# JavaScript: errors and limits
# --------------------------------------------------------------------------------------------------

JAVASCRIPT_ERRORS = [
    pytest.param(
        "x + 1", "javascript: ReferenceError: x is not defined (line 1, column 1)", id="reference-error"
    ),
    pytest.param("(", "javascript: SyntaxError:", id="syntax-error"),
    pytest.param(
        "1;\n\nnull.x", "TypeError: cannot read property 'x' of null (line 3, column", id="type-error-line"
    ),
    pytest.param("throw new Error('boom')", "javascript: Error: boom (line 1", id="thrown-error"),
    pytest.param("throw 42", "javascript: uncaught exception: 42", id="thrown-value"),
    pytest.param(
        "function f() { return f(); } f()", "RangeError: Maximum call stack size exceeded", id="recursion"
    ),
    pytest.param("NaN", "the result NaN is not a JSON value", id="nan-result"),
    pytest.param("1 / 0", "the result Infinity is not a JSON value", id="infinity-result"),
    pytest.param("-1 / 0", "the result -Infinity is not a JSON value", id="negative-infinity-result"),
    pytest.param("(function () {})", "not a JSON value (a function or a symbol)", id="function-result"),
    pytest.param("Symbol('s')", "not a JSON value (a function or a symbol)", id="symbol-result"),
    pytest.param("10n", "the result is not a JSON value", id="bigint-result"),
    pytest.param("({n: 10n})", "BigInt", id="bigint-inside-result"),
    pytest.param("var o = {}; o.self = o; o", "circular", id="circular-result"),
]


@pytest.mark.parametrize(("script", "message"), JAVASCRIPT_ERRORS)
def test_javascript_errors_raise_a_short_clear_script_error(script: str, message: str) -> None:
    with pytest.raises(ScriptError) as raised:
        evaluate_javascript(script, {"$": TASK_INPUT})
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith("javascript: ")


@pytest.mark.parametrize(
    "script",
    [
        "while (true) {}",
        "for (;;) { try { while (true) {} } catch (e) {} }",
        "while (true) { Math.sqrt(2); }",
    ],
    ids=["empty-loop", "loop-that-catches", "busy-loop"],
)
def test_a_runaway_script_is_stopped_at_the_time_limit(script: str) -> None:
    with pytest.raises(ScriptError, match=r"^javascript: exceeded the 100 ms time limit$"):
        evaluate_javascript(script, {}, time_limit_ms=100)


@pytest.mark.parametrize(
    "script",
    ["var a = []; while (true) { a.push(new Array(100000).fill(1)); }", "'x'.repeat(64 * 1024 * 1024)"],
    ids=["arrays", "one-big-string"],
)
def test_a_memory_blowup_is_stopped_at_the_memory_limit(script: str) -> None:
    with pytest.raises(ScriptError, match=r"^javascript: exceeded the 4 MiB memory limit$"):
        evaluate_javascript(script, {}, memory_limit_bytes=4 * 1024 * 1024)


def test_a_binding_that_is_not_json_is_an_error() -> None:
    with pytest.raises(ScriptError, match=r"value bound to '\$' is not JSON"):
        evaluate_javascript("$", {"$": {"x": float("nan")}})


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        evaluate_javascript("1", {}, time_limit_ms=0)


# --------------------------------------------------------------------------------------------------
# JavaScript: isolation
# --------------------------------------------------------------------------------------------------

LEAKS = [
    pytest.param(
        "globalThis.leak = 1; var leak2 = 2; 0",
        "typeof leak + typeof leak2",
        "undefinedundefined",
        id="globals",
    ),
    pytest.param("Object.prototype.polluted = 1; 0", "({}).polluted === undefined", True, id="prototypes"),
    pytest.param("Array.prototype.map = null; 0", "[1].map(x => x + 1)", [2], id="builtins"),
    pytest.param("$.value = 99; 0", "$.value", 3, id="bindings"),
    pytest.param("Date.now = () => 5; 0", "Date.now()", 7, id="clock"),
]


@pytest.mark.parametrize(("first", "second", "expected"), LEAKS)
def test_nothing_leaks_from_one_evaluation_to_the_next(first: str, second: str, expected: Any) -> None:
    evaluate_javascript(first, {"$": TASK_INPUT}, now_ms=7)
    assert evaluate_javascript(second, {"$": TASK_INPUT}, now_ms=7) == expected


@pytest.mark.parametrize(
    "name", ["std", "os", "require", "process", "setTimeout", "fetch", "XMLHttpRequest", "import.meta"]
)
def test_no_host_access_is_available(name: str) -> None:
    if name == "import.meta":
        with pytest.raises(ScriptError, match="SyntaxError"):
            evaluate_javascript("import.meta", {})
    else:
        assert evaluate_javascript(f"typeof {name}", {}) == "undefined"


# --------------------------------------------------------------------------------------------------
# Evaluator dispatch and Conductor's truthiness
# --------------------------------------------------------------------------------------------------

EVALUATORS = [
    pytest.param("value-param", "name", "img", id="value-param"),
    pytest.param("value-param", "absent", None, id="value-param-missing"),
    pytest.param("javascript", "$.value > 2 ? 'yes' : 'no'", "yes", id="javascript"),
    pytest.param("graaljs", "$.items.length", 2, id="graaljs-alias"),
]


@pytest.mark.parametrize(("evaluator", "expression", "expected"), EVALUATORS)
def test_evaluator_types(evaluator: str, expression: str, expected: Any) -> None:
    assert evaluate_expression(evaluator, expression, TASK_INPUT) == expected


def test_an_unknown_evaluator_type_is_a_script_error() -> None:
    with pytest.raises(ScriptError, match="unknown evaluatorType 'python'"):
        evaluate_expression("python", "1", TASK_INPUT)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0.5, True),
        (0, False),
        (-1, False),
        ("true", False),
        (None, False),
        ([1], False),
    ],
    ids=["true", "false", "one", "half", "zero", "negative", "string", "none", "list"],
)
def test_conductor_truthiness(value: Any, expected: bool) -> None:
    assert conductor_truthy(value) is expected


# --------------------------------------------------------------------------------------------------
# jq
# --------------------------------------------------------------------------------------------------

JQ_RESULTS = [
    pytest.param(
        "{key3: (.key1.value1 + .key2.value2)}",
        {"key1": {"value1": ["a", "b"]}, "key2": {"value2": ["c", "d"]}},
        [{"key3": ["a", "b", "c", "d"]}],
        id="conductor-docs-example",
    ),
    pytest.param(".[] | .x", [{"x": 1}, {"x": 2}], [1, 2], id="several-results"),
    pytest.param("empty", {"a": 1}, [], id="no-result"),
    pytest.param(".a", {}, [None], id="missing-is-null"),
    pytest.param("[.[] | select(. > 1)] | length", [1, 2, 3], [2], id="select-and-length"),
    pytest.param("def double: . * 2; map(double)", [1, 2], [[2, 4]], id="user-definitions"),
    pytest.param(". # a comment", 5, [5], id="trailing-comment"),
    pytest.param("1.0, 1.5", None, [1, 1.5], id="numbers"),
    pytest.param(".status", {"status": TaskStatus.COMPLETED}, ["COMPLETED"], id="enum-input"),
    pytest.param("[$ENV, env]", None, [[{}, {}]], id="environment-is-empty"),
]


@pytest.mark.parametrize(("query", "data", "expected"), JQ_RESULTS)
def test_jq_results(query: str, data: Any, expected: list[Any]) -> None:
    assert evaluate_jq(query, data) == expected


@pytest.mark.parametrize(
    ("query", "data", "expected"),
    [
        (".[]", [1, 2], {"result": 1, "resultList": [1, 2]}),
        ("empty", {}, {"result": None, "resultList": []}),
        (".a", {"a": {"b": 1}}, {"result": {"b": 1}, "resultList": [{"b": 1}]}),
    ],
    ids=["first-and-all", "nothing", "object"],
)
def test_jq_transform_output_has_conductors_shape(query: str, data: Any, expected: dict[str, Any]) -> None:
    assert jq_transform_output(query, data) == expected


JQ_ERRORS = [
    pytest.param(
        ".a |||", {}, "jq: syntax error, unexpected '|' at <top-level>, line 1, column 5", id="syntax"
    ),
    pytest.param(".a + 1", {"a": "s"}, 'jq: string ("s") and number (1) cannot be added', id="runtime"),
    pytest.param('error("boom")', {}, "jq: boom", id="user-error"),
    pytest.param("nope(1)", {}, "jq: nope/1 is not defined", id="unknown-function"),
    pytest.param('include "lib"; .', {}, "jq: module not found: lib", id="no-modules"),
    pytest.param('import "/etc/passwd" as $d; $d', {}, "jq: module not found", id="no-files"),
    pytest.param("   ", {}, "jq: the query is empty", id="empty-query"),
    pytest.param("now", {}, "jq: now needs the current time", id="no-clock"),
    pytest.param("halt_error", "stop", "jq: stop", id="halt-error"),
]


@pytest.mark.parametrize(("query", "data", "message"), JQ_ERRORS)
def test_jq_errors_raise_a_short_clear_script_error(query: str, data: Any, message: str) -> None:
    with pytest.raises(ScriptError) as raised:
        evaluate_jq(query, data)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_jq_now_is_the_given_instant() -> None:
    assert evaluate_jq("now", None, now_ms=1_500) == [1.5]
    assert evaluate_jq("now | todate", None, now_ms=86_400_000) == ["1970-01-02T00:00:00Z"]


def test_endless_jq_output_is_cut_off() -> None:
    with pytest.raises(ScriptError, match="more than 10 results"):
        evaluate_jq("repeat(1)", None, max_results=10)
    assert evaluate_jq("range(10)", None, max_results=10) == list(range(10))


def test_jq_debug_output_goes_nowhere(capfd: pytest.CaptureFixture[str]) -> None:
    assert evaluate_jq('debug | debug("msg") | stderr | . + 1', 1) == [2]
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err == ""


def test_a_jq_input_that_is_not_json_is_an_error() -> None:
    with pytest.raises(ScriptError, match="jq: the input is not JSON"):
        evaluate_jq(".", {"when": object()})


# --------------------------------------------------------------------------------------------------
# Properties: JSON goes through both engines unchanged
# --------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=15,
)


@examples(60)
@given(value=json_values)
@example(value="\x00")  # found by this property on a fresh clone: QuickJS cut strings at a NUL
@example(value={"k": "a\x00b"})
def test_javascript_gives_back_what_it_was_given(value: Any) -> None:
    assert evaluate_javascript("$", {"$": value}) == value


@examples(60)
@given(value=json_values)
def test_jq_identity_gives_back_what_it_was_given(value: Any) -> None:
    assert evaluate_jq(".", value) == [json.loads(json.dumps(value))]


@pytest.mark.parametrize("value", [
    pytest.param("\x00", id="only-nul"),
    pytest.param("a\x00b", id="nul-inside"),
    pytest.param("ab\x00", id="nul-at-the-end"),
    pytest.param(["\x00", {"k": "\x00v"}], id="nul-in-containers"),
])
def test_javascript_round_trips_strings_holding_nul(value: Any) -> None:
    # The example the property test above found (a string result came back cut at its NUL).
    assert evaluate_javascript("$", {"$": value}) == value
    assert evaluate_javascript("$.concat('')" if isinstance(value, str) else "$", {"$": value}) == value


def test_javascript_string_built_with_a_nul_comes_back_whole() -> None:
    assert evaluate_javascript("'x' + String.fromCharCode(0) + 'y'", {}) == "x\x00y"
