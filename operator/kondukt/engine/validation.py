"""Definition checks that run before anything executes: every mistake Conductor would reject, and more.

``validate(blueprint)`` and ``validate_workflow_def(wf, task_defs)`` return a list of ``Problem`` values;
an empty list means the definition may run. Each problem names where it is (a JSON-pointer-ish path such
as ``tasks[0].forkTasks[1][0].joinOn``), the task reference it belongs to and the field, so a user finds
the mistake without reading a stack trace.

The checks follow Conductor's own constraints (``WorkflowTaskTypeConstraint``,
``TaskReferenceNameUniqueConstraint``, ``TaskTimeoutConstraint``) and the run-time failures of its task
mappers (a fork not followed by its JOIN), so a definition Conductor accepts is accepted here and a
definition that would fail at run time for a static reason fails here instead. Run-time data (what a
dynamic fork generator emits) is not a definition error: references that only exist at run time are
never flagged.

The checks for one task type live in one ``_check_<type>`` function registered in ``_TYPE_CHECKS``.
Pydantic errors (bad enum values, negative numbers, missing required fields) become problems through
``problems_from_validation_error``.

This module is pure: it never raises on bad data, and reads no clock, file or network.

Why it is longer than the ~600 lines a module here aims for: it is a list of self-contained units (one
``_check_<type>`` per task type, the Pydantic-error translation, the walk), each readable alone, as
Prefect's rule modules are; a definition mistake is found by reading the one check of its task type.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kondukt.engine.expressions import parse_expression, referenced_tasks
from kondukt.engine.models import Blueprint, TaskDef, TaskType, WorkflowDef, WorkflowTask
from kondukt.engine.waits import parse_wait_duration, parse_wait_until

ModelT = TypeVar("ModelT", bound=BaseModel)

__all__ = [
    "Problem",
    "join_key",
    "join_path",
    "model_problems",
    "problems_from_validation_error",
    "validate",
    "validate_task_def",
    "validate_workflow_def",
    "walk_tasks",
]


@dataclass(frozen=True)
class Problem:
    """One definition mistake.

    ``path`` locates the offending field from the definition's root (``tasks[2].forkTasks[0][1].joinOn``);
    ``field`` is the part of the path inside the task (``joinOn``); ``message`` reads as a predicate of the
    field (``names unknown task reference 'x'``).
    """

    path: str
    taskReferenceName: str | None
    field: str
    message: str

    @property
    def location(self) -> str:
        """The path of the task (or of the definition) the field belongs to."""
        if self.field and self.path.endswith(self.field):
            return self.path[: len(self.path) - len(self.field)].rstrip(".")
        return self.path

    def with_prefix(self, prefix: str) -> Problem:
        """The same problem, located inside a bigger document (``spec``, ``tasks[3].subWorkflowParam...``)."""
        return Problem(join_path(prefix, self.path), self.taskReferenceName, self.field, self.message)

    def __str__(self) -> str:
        what = f"{self.field} {self.message}" if self.field else self.message
        location = self.location
        if self.taskReferenceName is not None:
            return f"task '{self.taskReferenceName}' ({location}): {what}"
        if location:
            return f"{location}: {what}"
        return what


# --------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$\-]*$")


def join_path(base: str, sub_path: str) -> str:
    """Append a relative path: ``join_path('tasks[0]', 'joinOn[1]') == 'tasks[0].joinOn[1]'``."""
    if not sub_path:
        return base
    if not base:
        return sub_path
    return f"{base}{sub_path}" if sub_path.startswith("[") else f"{base}.{sub_path}"


def join_key(base: str, key: str | int) -> str:
    """Append one key or index: plain keys with a dot, list indexes and odd keys in brackets."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    if _PLAIN_KEY.match(key):
        return f"{base}.{key}" if base else key
    quoted = key.replace("\\", "\\\\").replace("'", "\\'")
    return f"{base}['{quoted}']"


# --------------------------------------------------------------------------------------------------
# Pydantic errors -> problems
# --------------------------------------------------------------------------------------------------

#: Where a list of WorkflowTasks hangs, and how many path tokens after the key lead to one task.
_TASK_LIST_SHAPES: dict[str, tuple[type, ...]] = {
    "tasks": (int,),
    "forkTasks": (int, int),
    "decisionCases": (str, int),
    "defaultCase": (int,),
    "loopOver": (int,),
}


def problems_from_validation_error(err: ValidationError, prefix: str = "", data: Any = None) -> list[Problem]:
    """Turn a pydantic ``ValidationError`` into problems with readable paths.

    ``data`` is the raw document that failed (optional): with it, each problem also names the task
    reference of the task the bad field belongs to.
    """
    problems = []
    for error in err.errors(include_url=False):
        loc = tuple(error.get("loc", ()))
        task_end = _task_boundary(loc)
        task_data = _dig(data, loc[:task_end]) if task_end else None
        reference = None
        message = _describe(error)
        if isinstance(task_data, Mapping):
            raw_ref = task_data.get("taskReferenceName")
            reference = raw_ref if isinstance(raw_ref, str) and raw_ref else None
            raw_name = task_data.get("name")
            if reference is None and isinstance(raw_name, str) and raw_name:
                message += f" (in the task named '{raw_name}')"
        location = _render_loc(loc[:task_end])
        field_path = _render_loc(loc[task_end:])
        path = join_path(location, field_path) if field_path else location
        problems.append(Problem(join_path(prefix, path) if prefix else path, reference, field_path, message))
    return problems


def _task_boundary(loc: tuple[Any, ...]) -> int:
    """How many leading tokens of ``loc`` point at the innermost WorkflowTask containing the error."""
    boundaries = [0]
    i = 0
    while i < len(loc):
        shape = _TASK_LIST_SHAPES.get(loc[i]) if isinstance(loc[i], str) else None
        following = loc[i + 1 : i + 1 + len(shape)] if shape else ()
        if (
            shape
            and len(following) == len(shape)
            and all(isinstance(tok, kind) for tok, kind in zip(following, shape, strict=True))
        ):
            i += 1 + len(shape)
            boundaries.append(i)
        elif len(boundaries) > 1:
            break
        else:
            i += 1
    if boundaries[-1] == len(loc):  # the error is about the task object itself: name it from its parent
        boundaries.pop()
    return boundaries[-1] if boundaries else 0


def _render_loc(tokens: Sequence[Any]) -> str:
    path = ""
    for token in tokens:
        path = join_key(path, token if isinstance(token, int) else str(token))
    return path


def _dig(data: Any, tokens: Sequence[Any]) -> Any:
    for token in tokens:
        if isinstance(data, Mapping):
            data = data.get(token)
        elif isinstance(data, list) and isinstance(token, int) and 0 <= token < len(data):
            data = data[token]
        else:
            return None
    return data


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_TYPE_NAMES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "an object (a map)",
    "model_type": "an object (a map)",
    "model_attributes_type": "an object (a map)",
    "list_type": "a list",
}


def _describe(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing":
        return "is missing"
    if kind == "enum":
        return f"{_short(value)} is not one of {ctx.get('expected', '')}"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        if bound == 0 and kind == "greater_than_equal":
            return f"must not be negative (got {_short(value)})"
        relation = "at least" if kind == "greater_than_equal" else "greater than"
        return f"must be {relation} {bound} (got {_short(value)})"
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        relation = "at most" if kind == "less_than_equal" else "less than"
        return f"must be {relation} {bound} (got {_short(value)})"
    if kind in _TYPE_NAMES:
        return f"must be {_TYPE_NAMES[kind]} (got {_short(value)})"
    return f"is invalid: {error.get('msg', kind)} (got {_short(value)})"


# --------------------------------------------------------------------------------------------------
# The walk
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    """A WorkflowTask with its place: its path and the task list it belongs to."""

    task: WorkflowTask
    path: str
    siblings: Sequence[WorkflowTask]
    index: int
    in_loop: bool

    @property
    def ref(self) -> str | None:
        return self.task.taskReferenceName or None

    @property
    def type(self) -> str:
        return self.task.type or TaskType.SIMPLE.value


def _walk(tasks: Sequence[WorkflowTask], base: str, in_loop: bool = False) -> Iterator[_Node]:
    for index, task in enumerate(tasks):
        path = f"{base}[{index}]" if base else f"tasks[{index}]"
        node = _Node(task, path, tasks, index, in_loop)
        yield node
        for branch_index, branch in enumerate(task.forkTasks):
            yield from _walk(branch, f"{path}.forkTasks[{branch_index}]", in_loop)
        for case, case_tasks in task.decisionCases.items():
            yield from _walk(case_tasks, join_key(f"{path}.decisionCases", case), in_loop)
        if task.defaultCase:
            yield from _walk(task.defaultCase, f"{path}.defaultCase", in_loop)
        if task.loopOver:
            yield from _walk(task.loopOver, f"{path}.loopOver", True)


def walk_tasks(tasks: Sequence[WorkflowTask]) -> Iterator[tuple[str, WorkflowTask]]:
    """Every task of a task list, nested ones included, with its path (``tasks[0].forkTasks[1][0]``)."""
    for node in _walk(tasks, ""):
        yield node.path, node.task


def _subtree_refs(task: WorkflowTask) -> set[str]:
    refs: set[str] = set()
    for tasks in task.children():
        for child in tasks:
            if child.taskReferenceName:
                refs.add(child.taskReferenceName)
            refs |= _subtree_refs(child)
    return refs


def _template_strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside an input template, with its path (``inputParameters.http_request.uri``)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _template_strings(item, join_key(path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _template_strings(item, join_key(path, index))


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


@dataclass
class _Checker:
    workflow: WorkflowDef
    task_defs: Mapping[str, TaskDef] | None
    problems: list[Problem] = field(default_factory=list)
    nodes: list[_Node] = field(default_factory=list)
    known_refs: set[str] = field(default_factory=set)
    loop_refs: set[str] = field(default_factory=set)

    def report(self, node: _Node | None, field_name: str, message: str) -> None:
        path = join_path(node.path, field_name) if node is not None else field_name
        self.problems.append(Problem(path, node.ref if node else None, field_name, message))

    # -- whole-workflow checks --------------------------------------------------------------------

    def run(self) -> list[Problem]:
        wf = self.workflow
        if not wf.name or not wf.name.strip():
            self.report(None, "name", "is missing")
        if not wf.tasks:
            self.report(None, "tasks", "is empty (a workflow needs at least one task)")
        if wf.timeoutSeconds < 0:
            self.report(None, "timeoutSeconds", f"must not be negative (got {wf.timeoutSeconds})")
        self.nodes = list(_walk(wf.tasks, ""))
        self._check_references_unique()
        for node in self.nodes:
            self._check_task(node)
        self._check_expressions()
        return self.problems

    def _check_references_unique(self) -> None:
        first_seen: dict[str, _Node] = {}
        for node in self.nodes:
            ref = node.task.taskReferenceName
            if not ref or not ref.strip():
                named = f" (in the task named '{node.task.name}')" if node.task.name else ""
                self.report(node, "taskReferenceName", f"is missing{named}")
                continue
            if ref in first_seen:
                self.report(
                    node,
                    "taskReferenceName",
                    f"'{ref}' is also used by {first_seen[ref].path} "
                    "(task references must be unique in a workflow)",
                )
            else:
                first_seen[ref] = node
                self.known_refs.add(ref)
                if node.in_loop:
                    self.loop_refs.add(ref)

    @functools.cached_property
    def has_dynamic_tasks(self) -> bool:
        """Whether tasks are made at run time (their references cannot be known beforehand)."""
        dynamic = {TaskType.FORK_JOIN_DYNAMIC.value, TaskType.DYNAMIC.value}
        return any(node.type in dynamic for node in self.nodes)

    def is_known_ref(self, ref: str) -> bool:
        if ref in self.known_refs:
            return True
        base, sep, iteration = ref.rpartition("__")  # a DO_WHILE iteration's copy: ref__3
        return bool(sep) and iteration.isdigit() and base in self.loop_refs

    def _check_expressions(self) -> None:
        for node in self.nodes:
            for field_path, text in _template_strings(node.task.inputParameters, "inputParameters"):
                self._check_template_string(node, field_path, text)
        for field_path, text in _template_strings(self.workflow.outputParameters, "outputParameters"):
            self._check_template_string(None, field_path, text)

    def _check_template_string(self, node: _Node | None, field_path: str, text: str) -> None:
        if "${" not in text:
            return
        for malformed in parse_expression(text):
            self.report(
                node, field_path, f"has a malformed expression {malformed.expression!r}: {malformed.message}"
            )
        if self.has_dynamic_tasks:
            return  # a generator may emit any reference at run time: none can be ruled out
        for ref in sorted(referenced_tasks(text)):
            if not self.is_known_ref(ref):
                self.report(node, field_path, f"names unknown task reference '{ref}'")

    # -- per-task checks ---------------------------------------------------------------------------

    def _check_task(self, node: _Node) -> None:
        task = node.task
        if not task.name or not task.name.strip():
            self.report(node, "name", "is missing")
        if task.startDelay < 0:
            self.report(node, "startDelay", f"must not be negative (got {task.startDelay})")
        if task.retryCount is not None and task.retryCount < 0:
            self.report(node, "retryCount", f"must not be negative (got {task.retryCount})")
        if task.taskDefinition is not None:
            for problem in validate_task_def(task.taskDefinition):
                self.problems.append(
                    Problem(
                        join_path(join_path(node.path, "taskDefinition"), problem.path),
                        node.ref,
                        join_path("taskDefinition", problem.field),
                        problem.message,
                    )
                )
        try:
            task_type = TaskType(node.type)
        except ValueError:
            known = ", ".join(t.value for t in TaskType)
            self.report(node, "type", f"'{node.type}' is not a task type (known: {known})")
            return
        check = _TYPE_CHECKS.get(task_type)
        if check is not None:
            check(self, node)

    def task_def_for(self, node: _Node) -> TaskDef | None:
        if node.task.taskDefinition is not None:
            return node.task.taskDefinition
        if self.task_defs is None:
            return None
        return self.task_defs.get(node.task.name)

    def require_input_param(self, node: _Node, param_field: str, param: str | None) -> None:
        """``param_field`` (e.g. dynamicTaskNameParam) names an input parameter that must exist."""
        if param and param not in node.task.inputParameters:
            self.report(
                node,
                param_field,
                f"names input parameter '{param}', which is not in inputParameters",
            )

    def input_from_task_or_def(self, node: _Node, key: str) -> bool:
        if key in node.task.inputParameters:
            return True
        task_def = self.task_def_for(node)
        return bool(task_def and task_def.inputTemplate and key in task_def.inputTemplate)


# --------------------------------------------------------------------------------------------------
# One check per task type
# --------------------------------------------------------------------------------------------------

_EVALUATOR_TYPES = ("value-param", "javascript", "graaljs")
_TERMINATION_STATUSES = ("COMPLETED", "FAILED", "TERMINATED")
_FORK_TYPES = (TaskType.FORK_JOIN.value, TaskType.FORK_JOIN_DYNAMIC.value)


def _check_simple(checker: _Checker, node: _Node) -> None:
    if checker.task_defs is None or not node.task.name:
        return
    if checker.task_def_for(node) is None:
        checker.report(
            node,
            "name",
            f"'{node.task.name}' has no TaskDef (define a TaskDef named '{node.task.name}', "
            "or give the task an inline taskDefinition)",
        )


def _check_fork_join(checker: _Checker, node: _Node) -> None:
    if not node.task.forkTasks:
        checker.report(node, "forkTasks", "is empty (a FORK_JOIN needs at least one branch)")
    for index, branch in enumerate(node.task.forkTasks):
        if not branch:
            checker.report(node, f"forkTasks[{index}]", "is an empty branch (each branch needs a task)")
    _check_followed_by_join(checker, node)


def _check_followed_by_join(checker: _Checker, node: _Node) -> None:
    following = node.siblings[node.index + 1] if node.index + 1 < len(node.siblings) else None
    if following is None or (following.type or TaskType.SIMPLE.value) != TaskType.JOIN.value:
        checker.report(
            node,
            "type",
            f"is {node.type} but the next task in the same list is not a JOIN "
            "(a fork must be followed by the JOIN that waits for it)",
        )


def _check_fork_join_dynamic(checker: _Checker, node: _Node) -> None:
    task = node.task
    legacy = task.dynamicForkJoinTasksParam
    if legacy and (task.dynamicForkTasksParam or task.dynamicForkTasksInputParamName):
        checker.report(
            node,
            "dynamicForkJoinTasksParam",
            "cannot be combined with dynamicForkTasksParam / dynamicForkTasksInputParamName (use one form)",
        )
    elif legacy:
        checker.require_input_param(node, "dynamicForkJoinTasksParam", legacy)
    elif task.dynamicForkTasksParam or task.dynamicForkTasksInputParamName:
        for name in ("dynamicForkTasksParam", "dynamicForkTasksInputParamName"):
            value = getattr(task, name)
            if not value:
                checker.report(node, name, "is missing (the dynamic fork's two parameters go together)")
            else:
                checker.require_input_param(node, name, value)
    else:
        inputs = task.inputParameters
        has_generator_form = ("forkTaskName" in inputs or "forkTaskWorkflow" in inputs) and (
            "forkTaskInputs" in inputs
        )
        if not has_generator_form:
            checker.report(
                node,
                "dynamicForkTasksParam",
                "is missing (give dynamicForkTasksParam and dynamicForkTasksInputParamName, "
                "or the inputs forkTaskName and forkTaskInputs)",
            )
    _check_followed_by_join(checker, node)


def _check_join(checker: _Checker, node: _Node) -> None:
    previous = node.siblings[node.index - 1] if node.index > 0 else None
    previous_type = (previous.type or TaskType.SIMPLE.value) if previous is not None else None
    if previous is None or previous_type not in _FORK_TYPES:
        checker.report(
            node,
            "type",
            "is JOIN but the task before it in the same list is not a FORK_JOIN or FORK_JOIN_DYNAMIC",
        )
        return
    if previous_type == TaskType.FORK_JOIN_DYNAMIC.value:
        return  # the dynamic fork fills joinOn at run time
    branch_refs = _subtree_refs(previous)
    fork_ref = previous.taskReferenceName
    for index, ref in enumerate(node.task.joinOn):
        if ref not in branch_refs:
            checker.report(
                node,
                f"joinOn[{index}]",
                f"names '{ref}', which is not a task of the fork '{fork_ref}' before this JOIN",
            )


def _check_exclusive_join(checker: _Checker, node: _Node) -> None:
    for list_name in ("joinOn", "defaultExclusiveJoinTask"):
        for index, ref in enumerate(getattr(node.task, list_name)):
            if not checker.is_known_ref(ref) and not checker.has_dynamic_tasks:
                checker.report(node, f"{list_name}[{index}]", f"names unknown task reference '{ref}'")


def _check_switch(checker: _Checker, node: _Node) -> None:
    task = node.task
    evaluator = task.evaluatorType
    if not evaluator:
        checker.report(node, "evaluatorType", f"is missing (one of {', '.join(_EVALUATOR_TYPES)})")
    elif evaluator not in _EVALUATOR_TYPES:
        checker.report(
            node,
            "evaluatorType",
            f"'{evaluator}' is not an evaluator type (one of {', '.join(_EVALUATOR_TYPES)})",
        )
    if not task.expression or not task.expression.strip():
        what = "the name of an input parameter" if evaluator == "value-param" else "a script"
        checker.report(node, "expression", f"is missing ({what})")
    elif evaluator == "value-param" and task.expression not in task.inputParameters:
        checker.report(
            node,
            "expression",
            f"names input parameter '{task.expression}', which is not in inputParameters",
        )
    _check_has_cases(checker, node)


def _check_decision(checker: _Checker, node: _Node) -> None:
    task = node.task
    if not task.caseValueParam and not task.caseExpression:
        checker.report(
            node, "caseValueParam", "is missing (a DECISION needs caseValueParam or caseExpression)"
        )
    elif task.caseValueParam:
        checker.require_input_param(node, "caseValueParam", task.caseValueParam)
    _check_has_cases(checker, node)


def _check_has_cases(checker: _Checker, node: _Node) -> None:
    if not node.task.decisionCases:
        checker.report(node, "decisionCases", f"is empty (a {node.type} needs at least one case)")


def _check_do_while(checker: _Checker, node: _Node) -> None:
    task = node.task
    has_items = "items" in task.inputParameters
    if (not task.loopCondition or not task.loopCondition.strip()) and not has_items:
        checker.report(
            node, "loopCondition", "is missing (give a loopCondition, or an 'items' input to iterate over)"
        )
    if not task.loopOver:
        checker.report(node, "loopOver", "is empty (a DO_WHILE needs at least one task to repeat)")
    keep_last = task.inputParameters.get("keepLastN")
    bad_keep_last = isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1
    if keep_last is not None and not _is_expression(keep_last) and bad_keep_last:
        checker.report(
            node, "inputParameters.keepLastN", f"must be a positive integer (got {_short(keep_last)})"
        )


def _check_sub_workflow(checker: _Checker, node: _Node) -> None:
    params = node.task.subWorkflowParam
    if params is None:
        checker.report(node, "subWorkflowParam", "is missing (it names the workflow to run)")
        return
    inline = params.workflowDefinition
    if inline is not None:
        _check_inline_workflow(checker, node, inline)
    elif not params.name or not params.name.strip():
        checker.report(
            node,
            "subWorkflowParam.name",
            "is missing (name a WorkflowDef, or give an inline subWorkflowParam.workflowDefinition)",
        )
    if params.version is not None and params.version < 0:
        checker.report(node, "subWorkflowParam.version", f"must not be negative (got {params.version})")


def _check_inline_workflow(checker: _Checker, node: _Node, inline: Any) -> None:
    field_name = "subWorkflowParam.workflowDefinition"
    prefix = join_path(node.path, field_name)
    if _is_expression(inline):
        return
    try:
        sub = WorkflowDef.model_validate(inline)
    except ValidationError as err:
        checker.problems.extend(problems_from_validation_error(err, prefix, inline))
        return
    for problem in validate_workflow_def(sub, checker.task_defs):
        checker.problems.append(problem.with_prefix(prefix))


def _check_dynamic(checker: _Checker, node: _Node) -> None:
    param = node.task.dynamicTaskNameParam
    if not param:
        checker.report(
            node, "dynamicTaskNameParam", "is missing (it names the input that holds the task name)"
        )
    else:
        checker.require_input_param(node, "dynamicTaskNameParam", param)


def _check_terminate(checker: _Checker, node: _Node) -> None:
    status = node.task.inputParameters.get("terminationStatus")
    choices = ", ".join(_TERMINATION_STATUSES)
    if status is None:
        checker.report(node, "inputParameters.terminationStatus", f"is missing (one of {choices})")
    elif not _is_expression(status) and status not in _TERMINATION_STATUSES:
        checker.report(node, "inputParameters.terminationStatus", f"{_short(status)} is not one of {choices}")
    if node.task.optional:
        checker.report(node, "optional", "is true, but a TERMINATE task cannot be optional")


def _check_wait(checker: _Checker, node: _Node) -> None:
    inputs = node.task.inputParameters
    duration, until = inputs.get("duration"), inputs.get("until")
    if _present(duration) and _present(until):
        checker.report(
            node, "inputParameters", "gives both 'duration' and 'until' (a WAIT takes one of them)"
        )
        return
    if _is_literal(duration) and (not isinstance(duration, str) or parse_wait_duration(duration) is None):
        checker.report(
            node,
            "inputParameters.duration",
            f"{_short(duration)} is not a duration (such as '30s', '5m', '2h', '1d' or '1 days 2 hours')",
        )
    if _is_literal(until) and (not isinstance(until, str) or parse_wait_until(until) is None):
        checker.report(
            node,
            "inputParameters.until",
            f"{_short(until)} is not a date-time (such as '2026-11-27 10:00', '2026-11-27 10:00 UTC' "
            "or '2026-11-27T10:00:00+01:00')",
        )


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _is_literal(value: Any) -> bool:
    """Given, and not an expression resolved at run time (only literals can be checked now)."""
    return _present(value) and not _is_expression(value)


def _check_http(checker: _Checker, node: _Node) -> None:
    if not (
        checker.input_from_task_or_def(node, "http_request") or checker.input_from_task_or_def(node, "uri")
    ):
        checker.report(
            node, "inputParameters.http_request", "is missing (it describes the request: uri, method...)"
        )
        return
    request = node.task.inputParameters.get("http_request")
    if isinstance(request, Mapping) and not _present(request.get("uri")):
        checker.report(node, "inputParameters.http_request.uri", "is missing")


def _check_json_jq_transform(checker: _Checker, node: _Node) -> None:
    if not checker.input_from_task_or_def(node, "queryExpression"):
        checker.report(node, "inputParameters.queryExpression", "is missing (the jq program to run)")


def _check_inline(checker: _Checker, node: _Node) -> None:
    inputs = node.task.inputParameters
    evaluator = inputs.get("evaluatorType")
    if not _present(evaluator):
        checker.report(
            node, "inputParameters.evaluatorType", f"is missing (one of {', '.join(_EVALUATOR_TYPES)})"
        )
    elif not _is_expression(evaluator) and evaluator not in _EVALUATOR_TYPES:
        checker.report(
            node,
            "inputParameters.evaluatorType",
            f"{_short(evaluator)} is not an evaluator type (one of {', '.join(_EVALUATOR_TYPES)})",
        )
    if not _present(inputs.get("expression")):
        checker.report(node, "inputParameters.expression", "is missing (the script to evaluate)")


def _check_lambda(checker: _Checker, node: _Node) -> None:
    if not node.task.scriptExpression and not _present(node.task.inputParameters.get("scriptExpression")):
        checker.report(node, "scriptExpression", "is missing (the script to evaluate)")


def _check_start_workflow(checker: _Checker, node: _Node) -> None:
    request = node.task.inputParameters.get("startWorkflow")
    if request is None:
        checker.report(node, "inputParameters.startWorkflow", "is missing (it names the workflow to start)")
    elif isinstance(request, Mapping) and not _present(request.get("name")) \
            and not _present(request.get("workflowDefinition")):
        checker.report(node, "inputParameters.startWorkflow.name", "is missing (or a workflowDefinition)")


_TYPE_CHECKS: dict[TaskType, Callable[[_Checker, _Node], None]] = {
    TaskType.SIMPLE: _check_simple,
    TaskType.FORK_JOIN: _check_fork_join,
    TaskType.FORK_JOIN_DYNAMIC: _check_fork_join_dynamic,
    TaskType.JOIN: _check_join,
    TaskType.EXCLUSIVE_JOIN: _check_exclusive_join,
    TaskType.SWITCH: _check_switch,
    TaskType.DECISION: _check_decision,
    TaskType.DO_WHILE: _check_do_while,
    TaskType.SUB_WORKFLOW: _check_sub_workflow,
    TaskType.DYNAMIC: _check_dynamic,
    TaskType.TERMINATE: _check_terminate,
    TaskType.WAIT: _check_wait,
    TaskType.HTTP: _check_http,
    TaskType.JSON_JQ_TRANSFORM: _check_json_jq_transform,
    TaskType.INLINE: _check_inline,
    TaskType.LAMBDA: _check_lambda,
    TaskType.START_WORKFLOW: _check_start_workflow,
}


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------

_NON_NEGATIVE_TASK_DEF_FIELDS = (
    "retryCount",
    "timeoutSeconds",
    "retryDelaySeconds",
    "responseTimeoutSeconds",
    "concurrentExecLimit",
    "rateLimitPerFrequency",
    "rateLimitFrequencyInSeconds",
    "pollTimeoutSeconds",
    "maxRetryDelaySeconds",
    "totalTimeoutSeconds",
)


def validate_task_def(task_def: TaskDef) -> list[Problem]:
    """Problems of one TaskDef on its own (paths are relative to the TaskDef)."""
    problems: list[Problem] = []

    def report(field_name: str, message: str) -> None:
        problems.append(Problem(field_name, None, field_name, message))

    if not task_def.name or not task_def.name.strip():
        report("name", "is missing")
    for name in _NON_NEGATIVE_TASK_DEF_FIELDS:
        value = getattr(task_def, name)
        if isinstance(value, int) and value < 0:
            report(name, f"must not be negative (got {value})")
    if task_def.backoffScaleFactor < 1:
        report("backoffScaleFactor", f"must be at least 1 (got {task_def.backoffScaleFactor})")
    if task_def.timeoutSeconds > 0 and task_def.responseTimeoutSeconds > task_def.timeoutSeconds:
        report(
            "responseTimeoutSeconds",
            f"({task_def.responseTimeoutSeconds}) must not exceed timeoutSeconds ({task_def.timeoutSeconds}); "
            "Conductor's default responseTimeoutSeconds is 3600, so set it when timeoutSeconds is shorter",
        )
    if (task_def.rateLimitPerFrequency or 0) > 0 and task_def.rateLimitFrequencyInSeconds == 0:
        report(
            "rateLimitFrequencyInSeconds",
            "is 0, but rateLimitPerFrequency is set (the window must be at least 1 second)",
        )
    return problems


def validate_workflow_def(wf: WorkflowDef, task_defs: Mapping[str, TaskDef] | None) -> list[Problem]:
    """Problems of a WorkflowDef given the TaskDefs its SIMPLE tasks may use.

    ``task_defs`` None means "not known here" (the TaskDefs live elsewhere, e.g. in a cluster): every
    check runs except "a SIMPLE task has a TaskDef".
    """
    return _Checker(wf, task_defs).run()


def validate(blueprint: Blueprint) -> list[Problem]:
    """Problems of a blueprint: its workflow, and the TaskDefs that workflow uses."""
    problems = validate_workflow_def(blueprint.workflow, blueprint.taskDefs)
    used = sorted(
        {
            node.task.name
            for node in _walk(blueprint.workflow.tasks, "")
            if node.type == TaskType.SIMPLE.value and node.task.taskDefinition is None
        }
    )
    for name in used:
        task_def = blueprint.taskDefs.get(name)
        if task_def is not None:
            problems.extend(p.with_prefix(join_key("taskDefs", name)) for p in validate_task_def(task_def))
    return problems


def model_problems(
    model_type: type[ModelT], data: Any, prefix: str = ""
) -> tuple[ModelT | None, list[Problem]]:
    """Validate raw data into ``model_type``: (the model, []) or (None, the problems)."""
    try:
        return model_type.model_validate(data), []
    except ValidationError as err:
        return None, problems_from_validation_error(err, prefix, data)
