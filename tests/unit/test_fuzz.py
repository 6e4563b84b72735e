"""Fuzzing: generated and mutated definitions never crash validation, import, ``kondukt run`` or ``decide``.

Two sources of input:
- manifests generated from the CRDs' own schemas (``crds/*.yaml``): every field the API server would accept,
  and now and then a value of the wrong type, in TaskDef, WorkflowDef and Workflow manifests;
- the seed's Conductor JSON (``tests/fixtures/conductor-corpus``, a copy of ``../shared/conductor-examples``)
  with a few random mutations each: keys dropped, values replaced, task types changed, tasks duplicated.

Each goes through ``kondukt validate`` and ``kondukt import conductor`` (in-process, as the console script
runs them), through ``decide`` in the simulated world of ``tests/unit/engine/harness.py`` (every decision checked against
the engine's invariants), and the Conductor ones through ``kondukt run``'s planning and the local runner
(tasks are ``true``, HTTP calls never leave the process, a deadline ends what waits). The rule: exit code 0
or 2, a message that names the file, never an internal error; a loaded definition runs to an end.

CI runs a fixed, derandomized set of examples (a few seconds); ``HYPOTHESIS_PROFILE=dev HYPOTHESIS_EXAMPLES=2000``
searches deeper with random seeds. Every case a search found is kept below as an explicit test (``test_found_*``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kondukt import cli
from kondukt.cli.app import EXIT_INTERNAL_ERROR
from kondukt.cli.runplan import plan_run
from kondukt.engine import Blueprint, TaskType, WorkflowDef
from kondukt.errors import KonduktUserError
from kondukt.local import workflow as local_workflow
from kondukt.local.runner import LocalRunner
from kondukt.manifests import Bundle, load_files
from tests.profiles import examples
from tests.unit.engine.harness import Sim, fail, ok, terminal_error

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
CORPUS = REPO / "tests" / "fixtures" / "conductor-corpus"

def fuzz_settings(ci_examples: int) -> settings:
    """A fixed set of examples in CI; the ``dev`` hypothesis profile searches wider (tests/conftest.py)."""
    return examples(ci_examples, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])


# --------------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------------

TASK_TYPES = [t.value for t in TaskType] + ["BOGUS", "simple", "FORK"]
REFS = ["a", "b", "c", "d", "a__1"]
NAMES = ["a", "b", "echo", "wf", "image_convert_resize", "forever"]
EXPRESSIONS = [
    "${workflow.input.x}", "${a.output.v}", "${b.output}", "${workflow.variables.v}", "${c.input.y}",
    "${workflow.input}", "${", "}", "${a.output.result[0]}", "plain", "x ${workflow.input.x} y", "$.a", "${CPEWF_TASK_ID}",
]
#: Values by field name, where a random string would only ever be rejected.
STRINGS_BY_KEY: dict[str, list[str]] = {
    "type": TASK_TYPES,
    "taskReferenceName": REFS,
    "name": NAMES,
    "evaluatorType": ["javascript", "value-param", "graaljs", "bogus"],
    "expression": ["$.x", "1 + 1", "$.a ? 'yes' : 'no'", "x", "", "(", "$.x.y.z"],
    "queryExpression": [".", ".a", "[.[]?]", "{a: .b}", "not jq (", "", ".x | length"],
    "caseValueParam": ["x", "case", ""],
    "caseExpression": ["$.x", "(", "'a'"],
    "scriptExpression": ["$.x", "(", "'a'"],
    "loopCondition": ["false", "$.a['iteration'] < 2", "bogus(", "", "true"],
    "dynamicTaskNameParam": ["taskToExecute", "x"],
    "dynamicForkTasksParam": ["dynamicTasks", "x"],
    "dynamicForkTasksInputParamName": ["dynamicTasksInput", "x"],
    "sink": ["conductor", "bogus"],
    "failureWorkflow": ["wf", "", "${workflow.input.x}"],
    "ownerEmail": ["a@b.c", ""],
}
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(EXPRESSIONS), st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["x", "v", "y", *REFS]), inner, max_size=3), max_leaves=8)
JSON_OBJECTS = st.dictionaries(st.sampled_from(["x", "v", "y", "evaluatorType", "expression", "queryExpression",
                                                "http_request", "duration", "until", "terminationStatus",
                                                "startWorkflow", *REFS]), JSON, max_size=4)
SMALL_TEXT = st.one_of(st.sampled_from(EXPRESSIONS),
                       st.text(st.characters(blacklist_categories=("Cs",)), max_size=6))

_MAX_SCHEMA_DEPTH = 8
#: Fields generated whenever the schema has them (a task without a name only ever meets the same error).
_ALWAYS = frozenset({"name", "taskReferenceName", "tasks"})


def from_schema(schema: Mapping[str, Any], key: str | None = None, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values the schema allows (``manifests`` then breaks a few of them on purpose)."""
    kind = schema.get("type")
    base: st.SearchStrategy[Any]
    if "enum" in schema:
        base = st.sampled_from(list(schema["enum"]))
    elif key in STRINGS_BY_KEY and kind in (None, "string"):
        known = st.sampled_from(STRINGS_BY_KEY[key])
        base = st.one_of(known, known, known, SMALL_TEXT)
    elif kind == "object":
        properties = schema.get("properties")
        if properties:
            required = [k for k in properties if k in schema.get("required", ()) or k in _ALWAYS]
            optional = {k: from_schema(v, k, depth + 1) for k, v in properties.items()
                        if k not in required and depth < _MAX_SCHEMA_DEPTH}
            base = st.fixed_dictionaries({k: from_schema(properties[k], k, depth + 1) for k in required},
                                         optional=optional)
        elif isinstance(schema.get("additionalProperties"), Mapping) and depth < _MAX_SCHEMA_DEPTH:
            base = st.dictionaries(st.sampled_from(["x", "jpg", "webp", "1", *REFS]),
                                   from_schema(schema["additionalProperties"], None, depth + 1), max_size=2)
        else:
            base = JSON_OBJECTS
    elif kind == "array":
        items = schema.get("items") or {}
        size = 3 if depth < 3 else (1 if depth < _MAX_SCHEMA_DEPTH else 0)
        base = st.lists(from_schema(items, None, depth + 1), min_size=1 if key == "tasks" else 0, max_size=size)
    elif kind == "string":
        base = SMALL_TEXT
    elif kind == "integer":
        base = st.integers(min_value=-2, max_value=10**10)
    elif kind == "number":
        base = st.floats(min_value=-2, max_value=1e6, allow_nan=False)
    elif kind == "boolean":
        base = st.booleans()
    else:
        base = JSON
    if schema.get("nullable"):
        base = st.none() | base
    return base


def _crd_schema(plural: str) -> dict[str, Any]:
    document = yaml.safe_load((CRDS / f"kondukt.io_{plural}.yaml").read_text())
    return dict(document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])


SPEC_STRATEGIES = {kind: from_schema(_crd_schema(plural), "spec")
                   for kind, plural in (("TaskDef", "taskdefs"), ("WorkflowDef", "workflowdefs"),
                                        ("Workflow", "workflows"))}


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(list(SPEC_STRATEGIES)))
    name = draw(st.sampled_from(["a", "wf", "echo", "x-1", "forever"]))
    manifest: dict[str, Any] = {"apiVersion": "kondukt.io/v1alpha1", "kind": kind, "metadata": {"name": name},
                                "spec": draw(SPEC_STRATEGIES[kind])}
    if draw(st.integers(0, 3)):
        _unique_references(manifest["spec"])  # most graphs pass that check, to reach the deeper ones
    # Half of them are broken on purpose, a few places each (any field, any type, the envelope too).
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        mutate(draw, manifest)
    return manifest


def _unique_references(spec: Any) -> None:
    """Rename the task references of a generated spec a, b, c, ... in document order."""
    counter = iter(range(10_000))
    for path in list(_paths(spec)):
        node = _get(spec, path)
        if isinstance(node, dict) and "taskReferenceName" in node:
            index = next(counter)
            node["taskReferenceName"] = REFS[index] if index < 4 else f"t{index}"


def _corpus_documents() -> dict[str, Any]:
    documents = {}
    for path in sorted(CORPUS.glob("*.json")):
        try:
            documents[path.name] = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue  # the two upstream files with a trailing comma: kept for the syntax-error tests
    return documents


CORPUS_DOCUMENTS = _corpus_documents()
CORPUS_WORKFLOWS = {k: v for k, v in CORPUS_DOCUMENTS.items() if k.startswith("workflow__")}
CORPUS_TASK_NAMES = sorted({d["name"] for k, d in CORPUS_DOCUMENTS.items() if k.startswith("task__")})


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


CORPUS_REFS = sorted({node["taskReferenceName"] for document in CORPUS_WORKFLOWS.values()
                      for path in _paths(document) if isinstance(node := _get(document, path), dict)
                      and isinstance(node.get("taskReferenceName"), str)})


def mutate(draw: st.DrawFn, document: Any) -> None:
    """Change one random place of ``document`` (in place): drop it, replace it, retype a task, ..."""
    paths = [p for p in _paths(document) if p]
    if not paths:
        return
    path = draw(st.sampled_from(paths))
    parent, last = _get(document, path[:-1]), path[-1]
    operation = draw(st.sampled_from(["drop", "replace", "retype", "duplicate", "expression", "empty"]))
    if operation == "drop":
        del parent[last]
    elif operation == "replace":
        parent[last] = draw(JSON)
    elif operation == "retype" and isinstance(parent, dict) and "taskReferenceName" in parent:
        parent["type"] = draw(st.sampled_from(TASK_TYPES))
    elif operation == "duplicate" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    elif operation == "expression":
        parent[last] = draw(st.sampled_from(EXPRESSIONS))
    elif operation == "empty":
        parent[last] = type(parent[last])() if isinstance(parent[last], dict | list | str) else None


@st.composite
def mutated(draw: st.DrawFn, documents: Mapping[str, Any]) -> tuple[str, Any]:
    """A corpus document with one to three random mutations."""
    name = draw(st.sampled_from(sorted(documents)))
    document = copy.deepcopy(documents[name])
    for _ in range(draw(st.integers(1, 3))):
        mutate(draw, document)
    return name, document


# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------


def run_command(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """The ``kondukt`` command in-process: exit code and stderr, never an internal error."""
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    assert code != EXIT_INTERNAL_ERROR and "internal error" not in err and "Traceback" not in err, err
    return code, err


def check_command(capsys: pytest.CaptureFixture[str], path: Path, *argv: str) -> int:
    code, err = run_command(capsys, *argv, str(path))
    assert code in (0, 2), (code, err)
    if code == 2:
        assert str(path) in err, f"the error does not name the file:\n{err}"
    return code


def results_for(outcomes: Mapping[str, Any]) -> dict[str, Any]:
    """The simulated workers' answers: an output (any JSON object: workers are not trusted) or a failure."""
    made = {"fail": fail("fuzz"), "terminal": terminal_error("fuzz")}
    return {ref: made[outcome] if isinstance(outcome, str) else ok(outcome) for ref, outcome in outcomes.items()}


def decide_through(bundle: Bundle, definition: WorkflowDef, outcomes: Mapping[str, Any],
                   workflow_input: Mapping[str, Any]) -> None:
    """Drive ``decide`` for ``definition`` (children from the bundle) with the engine's invariants checked."""
    children = {name: {"definition": d.model_dump(mode="json", exclude_none=True)}
                for (name, _), d in bundle.workflow_defs.items()}
    sim = Sim(Blueprint(workflow=definition, taskDefs=dict(bundle.task_defs)), results=results_for(outcomes),
              input=dict(workflow_input), children=children, check_roundtrip=True)
    sim.run(until=lambda s: s.steps >= 300, max_steps=5000)


#: A task a worker's output may name (a dynamic fork's generator, a DYNAMIC task's input).
TASK_LIKE = st.fixed_dictionaries(
    {"name": st.sampled_from(NAMES), "taskReferenceName": st.sampled_from([*REFS, "x", "x"])},
    optional={"type": st.sampled_from(TASK_TYPES), "inputParameters": JSON_OBJECTS,
              "subWorkflowParam": st.fixed_dictionaries({"name": st.sampled_from(NAMES)})})
WORKER_OUTPUTS = st.dictionaries(
    st.sampled_from(["v", "result", "dynamicTasks", "dynamicTasksInput", "taskToExecute", "fileLocation", "x",
                     "case", "outputs"]),
    st.one_of(JSON, st.lists(TASK_LIKE, max_size=3), st.dictionaries(st.sampled_from([*REFS, "x"]), JSON_OBJECTS,
                                                                     max_size=3)),
    max_size=4)
OUTCOMES = st.dictionaries(
    st.sampled_from([*REFS, *CORPUS_REFS]),
    st.one_of(WORKER_OUTPUTS, WORKER_OUTPUTS, st.sampled_from(["fail", "terminal"])), max_size=4)


def decide_every_definition(bundle: Bundle, outcomes: Mapping[str, Any]) -> None:
    for definition in bundle.workflow_defs.values():
        decide_through(bundle, definition, outcomes, {})
    for _, spec in bundle.workflows:
        if spec.definition is not None:
            decide_through(bundle, spec.definition, outcomes, spec.input or {})


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------


@fuzz_settings(40)
@given(documents=st.lists(manifests(), min_size=1, max_size=3), outcomes=OUTCOMES)
def test_generated_manifests_validate_or_fail_located(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str],
    documents: list[dict[str, Any]], outcomes: dict[str, Any],
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(documents, allow_unicode=True))
    check_command(capsys, path, "validate")
    if check_command(capsys, path, "validate", "--allow-external-refs") == 0:
        decide_every_definition(load_files([path]), outcomes)


@fuzz_settings(60)
@given(document=mutated(CORPUS_DOCUMENTS), outcomes=OUTCOMES)
def test_mutated_conductor_json_imports_validates_and_decides(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str],
    document: tuple[str, Any], outcomes: dict[str, Any],
) -> None:
    name, content = document
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_text(json.dumps(content))
    check_command(capsys, path, "import", "conductor")
    if check_command(capsys, path, "validate", "--allow-external-refs") == 0:
        decide_every_definition(load_files([path]), outcomes)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP tasks of fuzzed workflows never leave the process (this machine's network rule)."""
    monkeypatch.setattr(local_workflow, "perform_http_task", _no_network_http_task)


TRUE = shutil.which("true") or "/bin/true"


#: A worker that answers with the result file it is given (any JSON object: workers are not trusted).
_ANSWER = "import os, shutil, sys; shutil.copyfile(sys.argv[1], os.environ['KONDUKT_OUTPUT_FILE'])"


def _task_defs_manifest(names: list[str], answer: Path | None = None) -> str:
    command = [TRUE] if answer is None else [sys.executable, "-c", _ANSWER, str(answer)]
    return yaml.safe_dump_all([
        {"apiVersion": "kondukt.io/v1alpha1", "kind": "TaskDef",
         "metadata": {"name": name.lower().replace("_", "-")},
         "spec": {"name": name, "retryCount": 1, "retryDelaySeconds": 0, "responseTimeoutSeconds": 5,
                  "timeoutSeconds": 5, "template": {"command": command}}}
        for name in names
    ])


def run_locally(plan: Any, attempt_dir: Path, deadline_seconds: float = 5.0) -> Any:
    runner = LocalRunner(plan.bundle, plan.blueprint, plan.workflow_input, attempt_dir=attempt_dir,
                         parallelism=4, max_sub_workflow_depth=5)

    async def go() -> Any:
        # A WAIT of days or a loop without end is the workflow's design, not a crash: end it.
        handle = asyncio.get_running_loop().call_later(deadline_seconds, runner.terminate, "fuzz deadline")
        try:
            return await asyncio.wait_for(runner.run(), deadline_seconds + 30)
        finally:
            handle.cancel()

    return asyncio.run(go())


@fuzz_settings(20)
@given(document=mutated(CORPUS_WORKFLOWS), workflow_input=JSON_OBJECTS, output=WORKER_OUTPUTS)
def test_mutated_conductor_json_runs_locally_or_is_refused(
    tmp_path_factory: pytest.TempPathFactory, no_network: None, document: tuple[str, Any],
    workflow_input: dict[str, Any], output: dict[str, Any],
) -> None:
    name, content = document
    directory = tmp_path_factory.mktemp("fuzz")
    path = directory / name
    path.write_text(json.dumps(content))
    answer = directory / "answer.json"
    answer.write_text(json.dumps({"outputData": output}))
    (directory / "taskdefs.yaml").write_text(_task_defs_manifest(CORPUS_TASK_NAMES + NAMES, answer))
    try:
        plan = plan_run([str(directory / "taskdefs.yaml"), name], selector=None,
                        input_argument=json.dumps(workflow_input), cwd=directory)
    except KonduktUserError as err:
        assert err.message
        return
    result = run_locally(plan, directory / "runs")
    assert result.workflow.status.terminal, result.workflow.status


def _without_commands(document: Any) -> Any:
    """The same manifest with every task template made harmless: generated commands never run."""
    if isinstance(document, dict):
        for key, value in document.items():
            document[key] = {"command": [TRUE]} if key == "template" else _without_commands(value)
    elif isinstance(document, list):
        document[:] = [_without_commands(item) for item in document]
    return document


@fuzz_settings(15)
@given(documents=st.lists(manifests(), min_size=1, max_size=3), workflow_input=JSON_OBJECTS)
def test_generated_manifests_run_locally_or_are_refused(
    tmp_path_factory: pytest.TempPathFactory, no_network: None, documents: list[dict[str, Any]],
    workflow_input: dict[str, Any],
) -> None:
    directory = tmp_path_factory.mktemp("fuzz")
    (directory / "manifests.yaml").write_text(
        yaml.safe_dump_all([_without_commands(copy.deepcopy(d)) for d in documents], allow_unicode=True))
    (directory / "taskdefs.yaml").write_text(_task_defs_manifest(NAMES))
    try:
        plan = plan_run(["taskdefs.yaml", "manifests.yaml"], selector=None,
                        input_argument=json.dumps(workflow_input), cwd=directory)
    except KonduktUserError as err:
        assert err.message
        return
    result = run_locally(plan, directory / "runs")
    assert result.workflow.status.terminal, result.workflow.status


def test_the_corpus_copy_is_complete() -> None:
    copied = sorted(p.name for p in CORPUS.glob("*.json"))
    assert len(copied) == 32 and len(CORPUS_WORKFLOWS) >= 10
    shared = REPO.parent / "shared" / "conductor-examples"
    if shared.is_dir():  # beside the repository on a developer's machine; CI may not have it
        assert sorted(p.name for p in shared.glob("*.json")) == copied


#: What a typo, a bad merge or a hostile edit puts in a file: YAML's syntax, tags and special numbers.
YAML_NOISE = st.lists(st.sampled_from([*"{}[]:,-&*!|>'\"#%@` \n\t\\aé1",
    "\u2028", "\ufeff", "${", "!!binary ", "!!set ", "!!python/object:os.system ", ".nan", ".inf", "*a", "&a ",
    "<<: ", "? ", "---\n", "...\n", "NaN", "1e999", "0x1F", "~", "null", "\\u0000", "\x00",
]), min_size=1, max_size=6).map("".join)


@st.composite
def mangled_text(draw: st.DrawFn) -> tuple[str, str]:
    """A real file's text with a few character-level edits: what a typo or a bad merge does."""
    sources = sorted([*CORPUS.glob("*.json"), *(REPO / "examples").glob("*.yaml")])
    source = draw(st.sampled_from(sources))
    text = source.read_text()
    for _ in range(draw(st.integers(1, 3))):
        start = draw(st.integers(0, len(text)))
        end = min(len(text), start + draw(st.integers(0, 12)))
        text = text[:start] + draw(st.one_of(st.just(""), YAML_NOISE)) + text[end:]
    return source.name, text


@fuzz_settings(60)
@given(case=mangled_text())
def test_mangled_files_are_a_located_error_or_valid(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str], case: tuple[str, str],
) -> None:
    name, text = case
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_text(text)
    check_command(capsys, path, "validate", "--allow-external-refs")
    if path.suffix == ".json":
        check_command(capsys, path, "import", "conductor")


_KUBERNETES_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


async def _reconcile_everything(documents: list[dict[str, Any]], answers: list[tuple[int, str]]) -> None:
    from kondukt.kube import actions as actions_module
    from tests.unit.kube.harness import Harness

    harness = Harness()
    try:
        with mock.patch.object(actions_module, "perform_http_task", _no_network_http_task):
            await _reconcile_with(harness, documents, answers)
    finally:
        await harness.reconciler.stop()


async def _no_network_http_task(task_id: str, request: Mapping[str, Any], timeout: int | None,
                                session: Any, policy: Any = None) -> Any:
    """The drivers' HTTP tasks of fuzzed workflows never leave the process (this machine's network rule)."""
    from kondukt.engine import TaskStatus, TaskUpdate

    return TaskUpdate(taskId=task_id, status=TaskStatus.FAILED, reasonForIncompletion="fuzz: no network")


async def _reconcile_with(harness: Any, documents: list[dict[str, Any]], answers: list[tuple[int, str]]) -> None:
    from kondukt.kube.status import tasks_from_status

    workflows: list[str] = []
    for index, document in enumerate(documents):
        metadata = document.get("metadata")
        if document.get("kind") not in ("TaskDef", "WorkflowDef", "Workflow") or not isinstance(metadata, dict) \
                or not isinstance(document.get("spec", {}), dict) or not isinstance(metadata.get("name"), str) \
                or not _KUBERNETES_NAME.match(metadata["name"]):
            continue  # the API server refuses it: no kind, no valid name, or a spec that is not an object
        if document["kind"] == "Workflow":
            metadata["name"] = f"{metadata['name']}-{index}"
            workflows.append(metadata["name"])
        harness.cluster.apply(document)
    for _ in range(6):
        for name in workflows:
            await harness.reconcile(name)
        for index, job_name in enumerate(harness.cluster.jobs()):
            if not any(job_name in path for path in harness.cluster.objects if "/pods/" in path):
                if answers:  # a pod's termination message is whatever its container wrote
                    exit_code, message = answers[index % len(answers)]
                    harness.cluster.finish(job_name, exit_code=exit_code, message=message)
                else:
                    harness.cluster.echo(job_name)
    for name in workflows:
        status = harness.status(name)
        assert status.get("phase") or status.get("message"), f"workflow {name} says nothing: {status}"
        tasks_from_status(status)  # what the operator wrote, it can read back


TERMINATION_MESSAGES = st.lists(st.tuples(st.sampled_from([0, 0, 1, 137]), st.one_of(
    WORKER_OUTPUTS.map(lambda output: json.dumps({"outputData": output})),
    st.fixed_dictionaries({"status": st.sampled_from(["COMPLETED", "FAILED", "FAILED_WITH_TERMINAL_ERROR",
                                                      "IN_PROGRESS", "BOGUS", ""]),
                           "reasonForIncompletion": SMALL_TEXT, "outputData": JSON}).map(json.dumps),
    JSON.map(json.dumps), SMALL_TEXT,
)), max_size=3)


@fuzz_settings(40)
@given(documents=st.lists(manifests(), min_size=1, max_size=4), answers=TERMINATION_MESSAGES)
def test_the_operator_reconciles_generated_manifests_without_raising(
    documents: list[dict[str, Any]], answers: list[tuple[int, str]],
) -> None:
    asyncio.run(_reconcile_everything(copy.deepcopy(documents), answers))


@fuzz_settings(40)
@given(document=mutated(CORPUS_WORKFLOWS), answers=TERMINATION_MESSAGES)
def test_the_operator_runs_mutated_conductor_json_without_raising(
    document: tuple[str, Any], answers: list[tuple[int, str]],
) -> None:
    _, content = document
    definition = content if isinstance(content, dict) else {"tasks": content}
    task_defs = [{"apiVersion": "kondukt.io/v1alpha1", "kind": "TaskDef",
                  "metadata": {"name": name.lower().replace("_", "-")},
                  "spec": {"name": name, "retryCount": 1, "retryDelaySeconds": 0, "template": {"image": "w:1"}}}
                 for name in CORPUS_TASK_NAMES]
    workflow = {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "run"},
                "spec": {"definition": definition, "input": {"fileLocation": "s3://b/k"}}}
    asyncio.run(_reconcile_everything([*task_defs, workflow], answers))
