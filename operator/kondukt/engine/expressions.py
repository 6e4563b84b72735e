"""Conductor's parameter expressions: ``${workflow.input.x}``, ``${ref.output.a.b[0]}``, ``$${`` escapes.

Why this module exists: every task's input, every workflow's output and every SET_VARIABLE value is a
template whose strings may name data from the running workflow. Conductor resolves them with
``ParametersUtils`` over a JsonPath document ``{"workflow": {...}, "<ref>": {...}, ...}``; this module is
that resolution, pure and fast (it runs on the decider's hot path for workflows of 10,000 tasks):

- a string that is exactly one expression keeps the value's type (dict, list, number, bool, null);
- otherwise each expression is interpolated: strings as is, null as ``null``, numbers and booleans as
  JSON, dicts and lists as compact JSON;
- ``$${`` is a literal ``${`` (never evaluated); an unterminated ``${`` stays literal text, as in Conductor;
- ``${}`` (blank) gives the empty string, as in Conductor; an expression may nest expressions
  (``${workflow.input.${workflow.input.key}}``): the inner ones are interpolated into the path first;
- paths: ``.key``, ``['key']``, ``["key"]``, ``[n]`` (negative counts from the end, as in JsonPath),
  ``[*]`` / ``.*`` (every element or value), ``[a:b]`` slices, and a final ``.length()``. A path with
  ``[*]`` or a slice is *indefinite*: it gives the list of what it finds (``[]`` when nothing), as
  JsonPath does; a definite path gives one value, or null when anything along it is missing;
- ``${CPEWF_TASK_ID}`` is the id of the task whose input is being resolved. There is no environment in a
  pure engine: ``${workflow.env.X}`` and ``${workflow.secrets.X}`` resolve like any missing path (null).

Resolution never raises on data: a missing key, a wrong type, an out-of-range index, a task that does not
exist yet, or a malformed expression all give null. Definitions are checked beforehand by the validator
through ``expression_problems`` / ``parse_expression`` (malformed text) and ``referenced_tasks``
(references to unknown tasks).

Resolved values may share structure with the workflow data they came from (no deep copies: state is
immutable by convention); the containers of the template itself are always new, never the input ones.

This module must never touch a clock, a file, the environment or the network.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from kondukt.engine.models import Task, Workflow

TaskLookup = Callable[[str], Mapping[str, Any] | None]
"""Returns the view of the task with that reference name (see ``task_view``), or None if it has none."""

WORKFLOW_ROOT: Final = "workflow"
TASK_ID_PARAMETER: Final = "CPEWF_TASK_ID"
SYSTEM_PARAMETERS: Final = frozenset({TASK_ID_PARAMETER, "NETFLIX_ENV", "NETFLIX_STACK"})
"""Names Conductor reads from its process environment; only the task id means something here."""


@dataclass(frozen=True, slots=True)
class ExpressionProblem:
    """A malformed expression in a template, for the validator to report."""

    expression: str
    """The offending text as written, e.g. ``${workflow.input.}``."""
    message: str
    location: str = ""
    """Where in the template: ``a.b[0]`` for ``{"a": {"b": ["..."]}}``; empty for the template itself."""

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.message} in {self.expression!r}"


# --------------------------------------------------------------------------------------------------
# Compiled form (cached per distinct string)
# --------------------------------------------------------------------------------------------------

_KEY: Final = 0
_INDEX: Final = 1
_WILDCARD: Final = 2
_SLICE: Final = 3
_LENGTH: Final = 4

_Step = tuple[int, Any]


@dataclass(frozen=True, slots=True)
class _Path:
    root: str
    steps: tuple[_Step, ...]
    definite: bool


@dataclass(frozen=True, slots=True)
class _Expression:
    text: str
    """What stood between ``${`` and ``}``."""
    path: _Path | None
    """The compiled path; None when the text is blank, malformed or nests expressions."""
    nested: _Template | None = None
    """Set when the text nests ``${...}``: rendered to a string, then read as a path."""
    blank: bool = False


@dataclass(frozen=True, slots=True)
class _Template:
    parts: tuple[str | _Expression, ...]
    whole: bool
    """The string is exactly one expression: its value keeps its type."""
    problems: tuple[ExpressionProblem, ...]
    references: frozenset[str]
    path: _Path | None = None
    """The compiled path when the string is exactly one expression with a static path (the common case)."""


class _PathSyntaxError(ValueError):
    pass


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def resolve(
    template: Any,
    workflow: Mapping[str, Any],
    task_lookup: TaskLookup,
    *,
    task_id: str | None = None,
) -> Any:
    """Resolve every expression in ``template`` (dicts and lists are walked; new containers returned).

    ``workflow`` is the workflow's view (see ``workflow_view``): ``${workflow.X}`` reads ``workflow[X]``.
    ``task_lookup(ref)`` gives the view of the task that ``${ref...}`` names, or None if it has none yet.
    ``task_id`` is what ``${CPEWF_TASK_ID}`` gives. Never raises for bad paths or data.
    """
    return _Scope(workflow, task_lookup, task_id).value(template)


def referenced_tasks(template: Any) -> set[str]:
    """The task reference names the expressions in ``template`` read (not ``workflow`` or system names)."""
    names: set[str] = set()
    for _, text in _template_strings(template, ""):
        names.update(_compile_template(text).references)
    return names


def parse_expression(text: str) -> list[ExpressionProblem]:
    """The malformed expressions in one template string (empty when it is well-formed)."""
    return list(_compile_template(text).problems) if "${" in text else []


def expression_problems(template: Any) -> list[ExpressionProblem]:
    """The malformed expressions anywhere in ``template``, each with its location inside it."""
    problems: list[ExpressionProblem] = []
    for location, text in _template_strings(template, ""):
        for problem in _compile_template(text).problems:
            problems.append(ExpressionProblem(problem.expression, problem.message, location))
    return problems


def workflow_view(workflow: Workflow) -> dict[str, Any]:
    """What ``${workflow.X}`` reads, with Conductor's names (``workflowType`` is the workflow's name)."""
    return {
        "input": workflow.input,
        "output": workflow.output,
        "variables": workflow.variables,
        "status": workflow.status.value,
        "workflowId": workflow.workflowId,
        "parentWorkflowId": workflow.parentWorkflowId,
        "parentWorkflowTaskId": workflow.parentWorkflowTaskId,
        "workflowType": workflow.workflowName,
        "version": workflow.workflowVersion,
        "correlationId": workflow.correlationId,
        "reasonForIncompletion": workflow.reasonForIncompletion,
        "schemaVersion": 2,
        "startTime": workflow.startTime,
    }


def task_view(task: Task, workflow_id: str | None = None) -> dict[str, Any]:
    """What ``${ref.X}`` reads for one task attempt, with Conductor's names (``input``/``output``).

    In a DO_WHILE, Conductor lets ``${ref...}`` (without the ``__N`` suffix) name the latest iteration's
    attempt; choosing that attempt is the task lookup's job.
    """
    return {
        "input": task.inputData,
        "output": task.outputData,
        "taskType": task.taskType,
        "status": task.status.value,
        "referenceTaskName": task.referenceTaskName,
        "retryCount": task.retryCount,
        "taskDefName": task.taskDefName,
        "scheduledTime": task.scheduledTime,
        "startTime": task.startTime,
        "endTime": task.endTime,
        "workflowInstanceId": workflow_id,
        "taskId": task.taskId,
        "reasonForIncompletion": task.reasonForIncompletion,
        "callbackAfterSeconds": task.callbackAfterSeconds,
        "workerId": task.workerId,
        "iteration": task.iteration,
    }


# --------------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------------

_MISSING: Final = object()
_PLAIN_TYPES: Final = frozenset({str, int, float, bool, type(None), dict, list})


class _Scope:
    """One resolution: the data expressions read, and the task views looked up so far."""

    __slots__ = ("_task_id", "_task_lookup", "_tasks", "_workflow")

    def __init__(self, workflow: Mapping[str, Any], task_lookup: TaskLookup, task_id: str | None) -> None:
        self._workflow = workflow
        self._task_lookup = task_lookup
        self._task_id = task_id
        self._tasks: dict[str, Any] = {}

    def value(self, template: Any) -> Any:
        kind = type(template)
        if kind is str:
            if "${" not in template:
                return template
            compiled = _compile_template(template)
            path = compiled.path
            if path is None:
                return self._render(compiled, typed=True)
            if path.definite:
                return _plain(_read_definite(self._root(path.root), path.steps))
            return _read_all(self._root(path.root), path.steps)
        if kind is dict:
            return {key: self.value(item) for key, item in template.items()}
        if kind is list:
            return [self.value(item) for item in template]
        if kind in _PLAIN_TYPES:
            return template
        if isinstance(template, str):
            return self.value(str(template))
        if isinstance(template, Mapping):
            return {key: self.value(item) for key, item in template.items()}
        if isinstance(template, (list, tuple)):
            return [self.value(item) for item in template]
        return template

    def _render(self, template: _Template, *, typed: bool) -> Any:
        parts = template.parts
        if typed and template.whole:
            return _plain(self._evaluate(parts[0]))  # type: ignore[arg-type]
        pieces: list[str] = []
        for part in parts:
            pieces.append(part if type(part) is str else _to_text(self._evaluate(part)))  # type: ignore[arg-type]
        return "".join(pieces)

    def _evaluate(self, expression: _Expression) -> Any:
        path = expression.path
        if path is None:
            if expression.nested is not None:
                text = self._render(expression.nested, typed=False)
                if not text.strip():
                    return ""
                compiled = _compile_path(text)
                if compiled is None:
                    return None
                path = compiled
            else:
                return "" if expression.blank else None
        root = self._root(path.root)
        if path.definite:
            return _read_definite(root, path.steps)
        return _read_all(root, path.steps)

    def _root(self, name: str) -> Any:
        if name == WORKFLOW_ROOT:
            return self._workflow
        if name == TASK_ID_PARAMETER:
            return self._task_id
        task = self._tasks.get(name, _MISSING)
        if task is _MISSING:
            task = self._tasks[name] = self._task_lookup(name)
        return task


def _read_definite(value: Any, steps: tuple[_Step, ...]) -> Any:
    for kind, arg in steps:
        if kind == _KEY:
            if type(value) is dict or isinstance(value, Mapping):
                value = value.get(arg)
                if value is None:
                    return None
            else:
                return None
        elif kind == _INDEX:
            if type(value) is list or isinstance(value, (list, tuple)):
                if -len(value) <= arg < len(value):
                    value = value[arg]
                else:
                    return None
            else:
                return None
        else:  # _LENGTH: the only other step a definite path has, and always the last one
            return len(value) if isinstance(value, (list, tuple, Mapping)) else None
    return value


def _read_all(value: Any, steps: tuple[_Step, ...]) -> Any:
    """Read an indefinite path: every match, in order (JsonPath skips what is missing)."""
    found: list[Any] = [] if value is None else [value]
    for kind, arg in steps:
        if kind == _LENGTH:  # ends the path: the number of matches
            return len(found)
        following: list[Any] = []
        for item in found:
            if kind == _KEY:
                if isinstance(item, Mapping) and arg in item:
                    following.append(item[arg])
            elif kind == _INDEX:
                if isinstance(item, (list, tuple)) and -len(item) <= arg < len(item):
                    following.append(item[arg])
            elif kind == _WILDCARD:
                if isinstance(item, Mapping):
                    following.extend(item.values())
                elif isinstance(item, (list, tuple)):
                    following.extend(item)
            elif isinstance(item, (list, tuple)):  # _SLICE
                following.extend(item[arg])
        found = following
    return found


def _plain(value: Any) -> Any:
    """A resolved value as plain JSON data (enums by value, any mapping as a dict)."""
    if type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping) and type(value) is not dict:
        return dict(value)
    return value


def _to_text(value: Any) -> str:
    """How a value reads when interpolated into a longer string."""
    if type(value) is str:
        return value
    if value is None:
        return "null"
    if isinstance(value, enum.Enum):
        value = value.value
        if isinstance(value, str):
            return value
    if isinstance(value, str):
        return str(value)
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError):  # circular data or keys JSON cannot hold: never raise on data
        return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return str(value)


# --------------------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
def _compile_template(text: str) -> _Template:
    """Split a template string into literal text and expressions; never raises."""
    parts: list[str | _Expression] = []
    problems: list[ExpressionProblem] = []
    references: set[str] = set()
    literal: list[str] = []
    position = 0
    while True:
        start = text.find("${", position)
        if start < 0:
            literal.append(text[position:])
            break
        if start > 0 and text[start - 1] == "$":  # "$${" is a literal "${"
            literal.append(text[position : start - 1])
            literal.append("${")
            position = start + 2
            continue
        end = _closing_brace(text, start + 2)
        if end < 0:
            problems.append(ExpressionProblem(text[start:], "unterminated '${' (no closing '}')"))
            literal.append(text[position:])
            break
        literal.append(text[position:start])
        if any(literal):
            parts.append("".join(literal))
        literal = []
        expression = _compile_expression(text[start + 2 : end], problems, references)
        parts.append(expression)
        position = end + 1
    if any(literal):
        parts.append("".join(literal))
    whole = len(parts) == 1 and isinstance(parts[0], _Expression)
    path = parts[0].path if whole and isinstance(parts[0], _Expression) else None
    return _Template(tuple(parts), whole, tuple(problems), frozenset(references), path)


def _closing_brace(text: str, position: int) -> int:
    depth = 1
    for index in range(position, len(text)):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
    return -1


def _compile_expression(text: str, problems: list[ExpressionProblem], references: set[str]) -> _Expression:
    written = "${" + text + "}"
    if "${" in text:
        nested = _compile_template(text)
        problems.extend(ExpressionProblem(written, p.message) for p in nested.problems)
        references.update(nested.references)
        root = _static_root(nested)
        if root is not None and _names_task(root):
            references.add(root)
        return _Expression(text, None, nested=nested)
    if not text.strip():
        problems.append(ExpressionProblem(written, "empty expression"))
        return _Expression(text, None, blank=True)
    try:
        path = _parse_path(text)
    except _PathSyntaxError as error:
        problems.append(ExpressionProblem(written, str(error)))
        return _Expression(text, None)
    if _names_task(path.root):
        references.add(path.root)
    return _Expression(text, path)


def _names_task(root: str) -> bool:
    return root != WORKFLOW_ROOT and root not in SYSTEM_PARAMETERS


def _static_root(nested: _Template) -> str | None:
    """The first name of a nested expression's path, when it is written out before any inner ``${``."""
    prefix = nested.parts[0] if nested.parts and isinstance(nested.parts[0], str) else ""
    prefix = prefix.lstrip()
    if prefix.startswith("$."):
        prefix = prefix[2:]
    for index, char in enumerate(prefix):
        if char in ".[":
            name = prefix[:index]
            return name if name and not any(c.isspace() for c in name) else None
    return None


@functools.lru_cache(maxsize=16384)
def _compile_path(text: str) -> _Path | None:
    """A path built at run time (from nested expressions); None when it is malformed."""
    try:
        return _parse_path(text)
    except _PathSyntaxError:
        return None


_NAME_ENDS: Final = frozenset(".[]()'\"") | frozenset(" \t\r\n")


def _parse_path(text: str) -> _Path:
    """Parse ``root(.key | [n] | ['key'] | [*] | .* | [a:b])*(.length())?``; raises _PathSyntaxError."""
    path = text.strip()
    position = 0
    if path.startswith("$"):
        if path.startswith("$."):
            position = 2
        elif path.startswith("$["):
            position = 1
        else:
            raise _PathSyntaxError("a path must start with workflow or a task reference name")
    if path.startswith("[", position):
        step, position = _parse_bracket(path, position)
        if step[0] != _KEY:
            raise _PathSyntaxError("a path must start with workflow or a task reference name")
        root = step[1]
    else:
        root, position = _read_name(path, position)
        if not root:
            raise _PathSyntaxError("a path must start with workflow or a task reference name")
    steps: list[_Step] = []
    definite = True
    while position < len(path):
        char = path[position]
        if char == ".":
            if path.startswith("..", position):
                raise _PathSyntaxError("deep scan '..' is not supported")
            position += 1
            if path.startswith("*", position):
                steps.append((_WILDCARD, None))
                definite = False
                position += 1
                continue
            name, position = _read_name(path, position)
            if not name:
                raise _PathSyntaxError(f"a name is missing after '.' at position {position}")
            if path.startswith("(", position):
                if name != "length" or not path.startswith("()", position):
                    raise _PathSyntaxError(f"function {name}() is not supported (only length())")
                position += 2
                if position != len(path):
                    raise _PathSyntaxError("length() must end the path")
                steps.append((_LENGTH, None))
                continue
            steps.append((_KEY, name))
        elif char == "[":
            step, position = _parse_bracket(path, position)
            if step[0] in (_WILDCARD, _SLICE):
                definite = False
            steps.append(step)
        else:
            raise _PathSyntaxError(f"unexpected {char!r} at position {position}")
    return _Path(root, tuple(steps), definite)


def _read_name(path: str, position: int) -> tuple[str, int]:
    end = position
    while end < len(path) and path[end] not in _NAME_ENDS:
        end += 1
    return path[position:end], end


def _parse_bracket(path: str, position: int) -> tuple[_Step, int]:
    """Parse ``[n]``, ``['key']``, ``["key"]``, ``[*]`` or ``[a:b]`` starting at the ``[``."""
    index = _skip_spaces(path, position + 1)
    if index < len(path) and path[index] in "'\"":
        key, index = _read_quoted(path, index)
        step: _Step = (_KEY, key)
    else:
        close = path.find("]", index)
        if close < 0:
            raise _PathSyntaxError(f"unclosed '[' at position {position}")
        content = path[index:close].strip()
        index = close
        step = _bracket_step(content)
    index = _skip_spaces(path, index)
    if not path.startswith("]", index):
        raise _PathSyntaxError(f"expected ']' at position {index} (several keys in one [] are not supported)")
    return step, index + 1


def _bracket_step(content: str) -> _Step:
    if content == "*":
        return (_WILDCARD, None)
    if content.startswith("?"):
        raise _PathSyntaxError("filters [?(...)] are not supported")
    if "," in content:
        raise _PathSyntaxError(f"unions [{content}] are not supported")
    if ":" in content:
        bounds = content.split(":")
        if len(bounds) != 2 or not all(_is_integer(b.strip()) or not b.strip() for b in bounds):
            raise _PathSyntaxError(f"bad slice [{content}] (expected [start:end])")
        start, end = (int(b) if b.strip() else None for b in bounds)
        return (_SLICE, slice(start, end))
    if not _is_integer(content):
        raise _PathSyntaxError(f"bad index [{content}] (expected a number, '*' or a quoted key)")
    return (_INDEX, int(content))


def _is_integer(text: str) -> bool:
    digits = text[1:] if text.startswith("-") else text
    return digits.isascii() and digits.isdigit()


def _read_quoted(path: str, position: int) -> tuple[str, int]:
    quote = path[position]
    chars: list[str] = []
    index = position + 1
    while index < len(path):
        char = path[index]
        if char == "\\" and index + 1 < len(path):
            chars.append(path[index + 1])
            index += 2
            continue
        if char == quote:
            return "".join(chars), index + 1
        chars.append(char)
        index += 1
    raise _PathSyntaxError(f"unterminated quote at position {position}")


def _skip_spaces(path: str, position: int) -> int:
    while position < len(path) and path[position].isspace():
        position += 1
    return position


def _template_strings(template: Any, location: str) -> list[tuple[str, str]]:
    """Every string of ``template`` that holds ``${``, with its location."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, Any]] = [(location, template)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if "${" in value:
                found.append((where, value))
        elif isinstance(value, Mapping):
            stack.extend((f"{where}.{key}" if where else str(key), item) for key, item in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{where}[{index}]", item) for index, item in enumerate(value))
    found.reverse()
    return found
