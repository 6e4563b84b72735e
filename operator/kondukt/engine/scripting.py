"""Embedded, sandboxed scripts: JavaScript (SWITCH, DO_WHILE, INLINE) and jq (JSON_JQ_TRANSFORM).

Why this module exists: Conductor evaluates JavaScript with ``$`` bound to the task's input, and jq
programs over the task's input. Kondukt does both in-process, in engines with no access to anything
outside the data handed in:

- JavaScript runs in QuickJS (the ``quickjs-ng`` package): a fresh context per evaluation (nothing
  leaks between workflows), a CPU-time limit and a memory limit, no ``std``/``os`` modules, no timers.
  The script's completion value is the result, so ``$.x > 1 ? 'a' : 'b'``, ``if (...) { true; } else
  { false; }``, ``function e() {...} e();`` and ``(function(){ ... })()`` all work.
- jq runs in libjq (the ``jq`` package) with ``env`` / ``$ENV`` emptied (the operator's environment holds
  credentials) and no module search path.
- The clock is an input like any other: ``Date.now()`` / ``new Date()`` in JavaScript and ``now`` in jq
  give ``now_ms`` when the caller passes it, and fail with a clear error when it does not.
- ``console.log`` and friends exist (Conductor scripts call them) and discard what they are given.

Results come back as JSON values (dict, list, str, int, float, bool, None; integral numbers as int;
``undefined`` as None). Every failure — syntax, runtime error, time or memory limit, a result that is not
JSON — raises ``ScriptError`` with a short message starting ``javascript:`` or ``jq:``; the decider turns
it into a failed task with that reason.

libjq has no time or memory limit, and the ``jq`` binding holds the interpreter (the GIL) while it runs: a
program that never ends (``def f: f; f``) would freeze whatever process evaluates it. So jq never runs in
the engine: the decider hands a JSON_JQ_TRANSFORM out as an ``EvaluateScript`` action, and the drivers run
``tasks.jq.evaluate`` in worker processes with a hard time and memory limit (:mod:`kondukt.scriptpool`).
QuickJS stops itself at its limits, so JavaScript stays in-process.

This module must never import a clock, threads, processes, files or the network itself.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

import jq
import quickjs

MIB: Final = 1024 * 1024
DEFAULT_TIME_LIMIT_MS: Final = 1000
DEFAULT_MEMORY_LIMIT_BYTES: Final = 32 * MIB
DEFAULT_MAX_JQ_RESULTS: Final = 100_000

VALUE_PARAM: Final = "value-param"
JAVASCRIPT_EVALUATORS: Final = frozenset({"javascript", "graaljs"})
"""Conductor's evaluatorType names for JavaScript (``graaljs`` is an alias of ``javascript``)."""


class ScriptError(Exception):
    """A script failed; the message says why in one line (``javascript: ...`` or ``jq: ...``)."""


# --------------------------------------------------------------------------------------------------
# Evaluator dispatch (SWITCH, DECISION, DO_WHILE, INLINE)
# --------------------------------------------------------------------------------------------------


def evaluate_expression(
    evaluator_type: str,
    expression: str,
    task_input: Mapping[str, Any],
    *,
    now_ms: int | None = None,
    time_limit_ms: int = DEFAULT_TIME_LIMIT_MS,
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
) -> Any:
    """Evaluate a SWITCH / INLINE ``expression`` the way Conductor's evaluator of that type does.

    ``value-param`` reads the input parameter the expression names; ``javascript`` and ``graaljs`` run
    the expression with ``$`` bound to the task's input.
    """
    if evaluator_type == VALUE_PARAM:
        return task_input.get(expression)
    if evaluator_type in JAVASCRIPT_EVALUATORS:
        return evaluate_javascript(
            expression,
            {"$": task_input},
            now_ms=now_ms,
            time_limit_ms=time_limit_ms,
            memory_limit_bytes=memory_limit_bytes,
        )
    raise ScriptError(
        f"unknown evaluatorType {evaluator_type!r} (expected value-param, javascript or graaljs)"
    )


def conductor_truthy(value: Any) -> bool:
    """Conductor's reading of a script result as a condition (DO_WHILE): a boolean, or a number > 0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value > 0
    return False


# --------------------------------------------------------------------------------------------------
# JavaScript
# --------------------------------------------------------------------------------------------------

_PRELUDE: Final = """(function (now) {
  const RealDate = Date;
  function currentTime() {
    if (now === null) {
      throw new Error("%s");
    }
    return now;
  }
  function KonduktDate(...args) {
    if (!new.target) { return new RealDate(currentTime()).toString(); }
    return args.length === 0 ? new RealDate(currentTime()) : new RealDate(...args);
  }
  KonduktDate.prototype = RealDate.prototype;
  KonduktDate.now = currentTime;
  KonduktDate.UTC = RealDate.UTC;
  KonduktDate.parse = RealDate.parse;
  globalThis.Date = KonduktDate;
  const discard = function () {};
  globalThis.console = {log: discard, info: discard, warn: discard, error: discard, debug: discard};
})(%s);"""
_CLOCK_UNAVAILABLE: Final = (
    "Date.now() and new Date() need the current time, which this evaluation was not given"
)

#: The user's script runs as global code (an indirect eval keeps its completion value); the value is kept
#: so that a string result can be read back exactly.
_RUN_SCRIPT: Final = "globalThis.__konduktResult = (0, eval)(__konduktScript); globalThis.__konduktResult"

_FRAME: Final = re.compile(r"at (?:(\S+) \()?<input>:(\d+):(\d+)")
_PRELUDE_FUNCTIONS: Final = frozenset({"currentTime", "KonduktDate"})
_MAX_SAFE_INTEGER: Final = 2**53


def evaluate_javascript(
    script: str,
    bindings: Mapping[str, Any],
    *,
    now_ms: int | None = None,
    time_limit_ms: int = DEFAULT_TIME_LIMIT_MS,
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
) -> Any:
    """Run ``script`` in a fresh QuickJS context with each binding as a global; return its completion value.

    Conductor binds ``$`` to the task's input: pass ``{"$": task_input}``. Raises ScriptError.
    """
    if time_limit_ms <= 0 or memory_limit_bytes <= 0:
        raise ValueError("the time and memory limits must be positive")
    context = quickjs.Context()
    context.set_time_limit(time_limit_ms / 1000)
    context.set_memory_limit(memory_limit_bytes)
    limits = (time_limit_ms, memory_limit_bytes)
    try:
        context.eval(_PRELUDE % (_CLOCK_UNAVAILABLE, "null" if now_ms is None else int(now_ms)))
        for name, value in bindings.items():
            text = _binding_json(name, value)
            if isinstance(value, str):
                # A string crosses from Python as a C string (cut at a NUL): let JavaScript parse its JSON.
                context.set("__konduktJson", text)
                context.eval(f"globalThis[{json.dumps(name)}] = JSON.parse(globalThis.__konduktJson)")
            else:
                context.set(name, context.parse_json(text))
        context.set("__konduktScript", script)
        result = context.eval(_RUN_SCRIPT)
        if isinstance(result, str):
            # QuickJS hands a string over as a C string (cut at its first NUL): read it back as JSON instead.
            result = json.loads(context.eval("JSON.stringify(globalThis.__konduktResult)"))
        return _javascript_result(result)
    except quickjs.JSException as error:
        raise ScriptError(_javascript_message(str(error), limits)) from None
    except (TypeError, OverflowError) as error:  # a result QuickJS cannot hand to Python (a BigInt)
        raise ScriptError(f"javascript: the result is not a JSON value ({error})") from None


def _binding_json(name: str, value: Any) -> str:
    try:
        return json.dumps(value, default=_json_default, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise ScriptError(f"javascript: the value bound to {name!r} is not JSON: {error}") from None


def _javascript_result(result: Any) -> Any:
    if isinstance(result, quickjs.Object):
        text = result.json()
        if text is None:
            raise ScriptError("javascript: the result is not a JSON value (a function or a symbol)")
        return json.loads(text, parse_float=_json_number)
    if isinstance(result, float):
        if not math.isfinite(result):
            raise ScriptError(f"javascript: the result {_js_number_name(result)} is not a JSON value")
        return _integral(result)
    return result


def _javascript_message(raw: str, limits: tuple[int, int]) -> str:
    lines = raw.strip().splitlines()
    first = lines[0].strip() if lines else "unknown error"
    if first == "InternalError: interrupted":
        return f"javascript: exceeded the {limits[0]} ms time limit"
    if first == "InternalError: out of memory":
        return f"javascript: exceeded the {_bytes_text(limits[1])} memory limit"
    if not re.match(r"^[A-Za-z]*Error\b", first):
        first = f"uncaught exception: {first}"
    # The innermost frame of the script itself (not of the prelude, which throws the clock error).
    frames = [(line, column) for name, line, column in _FRAME.findall(raw) if name not in _PRELUDE_FUNCTIONS]
    where = f" (line {frames[0][0]}, column {frames[0][1]})" if frames else ""
    return f"javascript: {first}{where}"


def _bytes_text(size: int) -> str:
    return f"{size // MIB} MiB" if size % MIB == 0 else f"{size} bytes"


def _js_number_name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _json_number(text: str) -> int | float:
    return _integral(float(text))


def _integral(value: float) -> int | float:
    """A whole number as an int (JavaScript has only doubles), within the exactly representable range."""
    if value.is_integer() and abs(value) <= _MAX_SAFE_INTEGER:
        return int(value)
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


# --------------------------------------------------------------------------------------------------
# jq
# --------------------------------------------------------------------------------------------------

# The user's program runs inside this wrapper: the environment is emptied, debug output is dropped, and
# `now` is the instant the caller passed in (the input is [now_seconds, data]).
_JQ_WRAPPER: Final = (
    "def env: {}; def input_filename: null; def debug: .; def debug(message): .; def stderr: .; "
    "def halt_error($code): error(.); def halt_error: halt_error(5); "
    ". as [$kondukt_now, $kondukt_data] | {} as $ENV | "
    'def now: if $kondukt_now == null then error("now needs the current time, which this evaluation '
    'was not given") else $kondukt_now end; '
    "$kondukt_data | (\n%s\n)"
)


def evaluate_jq(
    query: str, data: Any, *, now_ms: int | None = None, max_results: int = DEFAULT_MAX_JQ_RESULTS
) -> list[Any]:
    """Run the jq program ``query`` over ``data``; every result, in order. Raises ScriptError."""
    program = _compiled_jq(query)
    now = None if now_ms is None else now_ms / 1000
    try:
        text = json.dumps([now, data], default=_json_default, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise ScriptError(f"jq: the input is not JSON: {error}") from None
    results: list[Any] = []
    try:
        for result in program.input_text(text):
            if len(results) == max_results:
                raise ScriptError(f"jq: the program produced more than {max_results} results")
            results.append(result)
    except ValueError as error:
        raise ScriptError(f"jq: {_jq_message(str(error))}") from None
    return results


def jq_transform_output(query: str, data: Any, *, now_ms: int | None = None) -> dict[str, Any]:
    """JSON_JQ_TRANSFORM's output: ``{"result": <first result or None>, "resultList": [every result]}``."""
    results = evaluate_jq(query, data, now_ms=now_ms)
    return {"result": results[0] if results else None, "resultList": results}


@functools.lru_cache(maxsize=1024)
def _compiled_jq(query: str) -> Any:
    """Compile once per distinct program (libjq takes milliseconds to compile one)."""
    if not query.strip():
        raise ScriptError("jq: the query is empty")
    try:
        jq.compile(query)  # the user's text alone, so error positions refer to it
        return jq.compile(_JQ_WRAPPER % query)
    except ValueError as error:
        raise ScriptError(f"jq: {_jq_message(str(error))}") from None


def _jq_message(raw: str) -> str:
    first = raw.strip().splitlines()[0] if raw.strip() else "unknown error"
    return first.removeprefix("jq: error: ").removesuffix(":")
