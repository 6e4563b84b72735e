"""Loading manifests and Conductor JSON from files: the bundle, and every error naming its place."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from kondukt.engine.models import TaskDef
from kondukt.errors import KonduktUserError, ManifestError
from kondukt.manifests import Bundle, load_files, read_documents

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "conductor-examples"

PIPELINE = """\
apiVersion: kondukt.io/v1alpha1
kind: TaskDef
metadata: {name: image-convert-resize}
spec:
  name: image_convert_resize
  timeoutSeconds: 60
  responseTimeoutSeconds: 60
  template: {image: "workers:1", command: [kondukt-worker, image_convert_resize]}
---
apiVersion: kondukt.io/v1alpha1
kind: TaskDef
metadata: {name: upload}
spec: {retryCount: 1}
---
apiVersion: kondukt.io/v1alpha1
kind: WorkflowDef
metadata: {name: image-convert-resize-v1}
spec:
  name: image_convert_resize
  version: 1
  tasks:
  - {name: image_convert_resize, taskReferenceName: resize_ref}
  - name: upload
    taskReferenceName: upload_ref
    inputParameters: {fileLocation: "${resize_ref.output.fileLocation}"}
---
apiVersion: kondukt.io/v1alpha1
kind: WorkflowDef
metadata: {name: image-convert-resize-v2}
spec:
  name: image_convert_resize
  version: 2
  tasks: [{name: upload, taskReferenceName: upload_ref}]
---
apiVersion: kondukt.io/v1alpha1
kind: Workflow
metadata: {name: run-1}
spec:
  workflowDefRef: {name: image_convert_resize, version: 1}
  input: {fileLocation: "file:///tmp/a.jpg"}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path: Path, name: str, text: str) -> ManifestError:
    path = write(tmp_path, name, text)
    with pytest.raises(ManifestError) as caught:
        load_files([path])
    return caught.value


# --------------------------------------------------------------------------------------------------
# A good bundle
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:
    return load_files([write(tmp_path, "pipeline.yaml", PIPELINE)])


def test_bundle_holds_every_kind(bundle: Bundle) -> None:
    assert sorted(bundle.task_defs) == ["image_convert_resize", "upload"]
    assert sorted(bundle.workflow_defs) == [("image_convert_resize", 1), ("image_convert_resize", 2)]
    ((metadata, spec),) = bundle.workflows
    assert metadata == {"name": "run-1"}
    assert spec.input == {"fileLocation": "file:///tmp/a.jpg"}


def test_task_def_name_defaults_to_metadata_name(bundle: Bundle) -> None:
    assert bundle.task_defs["upload"].retryCount == 1
    template = bundle.task_defs["image_convert_resize"].template
    assert template is not None and template.command == ["kondukt-worker", "image_convert_resize"]


def test_find_workflow_def_by_version_or_highest(bundle: Bundle) -> None:
    assert (
        bundle.find_workflow_def("image_convert_resize") is bundle.workflow_defs[("image_convert_resize", 2)]
    )
    assert (
        bundle.find_workflow_def("image_convert_resize", 1)
        is bundle.workflow_defs[("image_convert_resize", 1)]
    )
    assert bundle.find_workflow_def("image_convert_resize", 3) is None
    assert bundle.find_workflow_def("other") is None


def test_require_workflow_def_lists_what_exists(bundle: Bundle) -> None:
    with pytest.raises(ManifestError) as caught:
        bundle.require_workflow_def("other", 4)
    assert str(caught.value) == (
        "names WorkflowDef 'other' version 4, which is not in the files "
        "(they define: image_convert_resize v1, image_convert_resize v2)"
    )


def test_workflow_def_for_and_blueprint(bundle: Bundle) -> None:
    _, spec = bundle.workflows[0]
    workflow_def = bundle.workflow_def_for(spec)
    assert workflow_def.version == 1
    blueprint = bundle.blueprint_for(workflow_def)
    assert blueprint.workflow is workflow_def and sorted(blueprint.taskDefs) == [
        "image_convert_resize",
        "upload",
    ]


def test_a_self_contained_bundle_has_no_problems(bundle: Bundle) -> None:
    assert bundle.problems() == []
    bundle.check()


def test_yaml_dates_stay_strings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "wait.yaml",
        """\
        name: waiting
        tasks:
        - {name: w, taskReferenceName: w_ref, type: WAIT, inputParameters: {until: 2026-11-27}}
        - {name: w, taskReferenceName: w2_ref, type: WAIT, inputParameters: {until: 2026-11-27T10:00:00Z}}
        """,
    )
    workflow_def = load_files([path]).workflow_defs[("waiting", 1)]
    assert [t.inputParameters["until"] for t in workflow_def.tasks] == ["2026-11-27", "2026-11-27T10:00:00Z"]


def test_list_manifests_and_inline_workflow_definitions(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "list.yaml",
        """\
        apiVersion: v1
        kind: List
        items:
        - apiVersion: kondukt.io/v1alpha1
          kind: TaskDef
          metadata: {name: t}
        - apiVersion: kondukt.io/v1alpha1
          kind: Workflow
          metadata: {generateName: run-}
          spec:
            definition: {name: inline, tasks: [{name: t, taskReferenceName: t_ref}]}
        """,
    )
    bundle = load_files([path])
    assert list(bundle.task_defs) == ["t"]
    _, spec = bundle.workflows[0]
    assert bundle.workflow_def_for(spec).name == "inline"
    assert bundle.problems() == []


def test_directories_stdin_and_identical_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "a.json", '{"name": "t", "retryCount": 2}')
    write(tmp_path, "b.yml", "name: t\nretryCount: 2\n")
    write(tmp_path, "notes.txt", "not a manifest")
    monkeypatch.setattr("sys.stdin", io.StringIO('[{"name": "from_stdin"}]'))
    bundle = load_files([tmp_path, "-"])
    assert sorted(bundle.task_defs) == ["from_stdin", "t"]


def test_read_documents_numbers_yaml_documents(tmp_path: Path) -> None:
    path = write(tmp_path, "two.yaml", "a: 1\n---\nb: 2\n")
    assert [(d.number, d.content) for d in read_documents(path)] == [(1, {"a": 1}), (2, {"b": 2})]


@pytest.mark.parametrize(
    "name",
    [
        "workflow__image_convert_resize.json",
        "workflow__image_convert_resize_multipleformat__2022-02-02_af15736.json",
        "workflow__image_multiple_convert_resize.json",
        "workflow__image_convert_resize_multipleformat_subworkflow.json",
        "workflow__visual_image_search.json",
    ],
)
def test_corpus_workflows_load_and_check_with_their_task_defs(name: str) -> None:
    files = [EXAMPLES / name, *sorted(EXAMPLES.glob("task__*.json"))]
    if "subworkflow" in name:
        files.append(EXAMPLES / "workflow__image_convert_resize.json")
    bundle = load_files(files)
    assert bundle.problems() == []


# --------------------------------------------------------------------------------------------------
# Errors name the file, the document, the kind and name, and the field
# --------------------------------------------------------------------------------------------------

ERRORS: list[Any] = [
    pytest.param(
        "x.yaml",
        """\
        apiVersion: kondukt.io/v1alpha1
        kind: TaskDef
        metadata: {name: ok}
        ---
        apiVersion: kondukt.io/v1alpha1
        kind: WorkflowDef
        metadata: {name: image-convert-resize}
        spec:
          name: image_convert_resize
          tasks:
          - {name: a, taskReferenceName: a_ref, type: NOOP}
          - {name: b, taskReferenceName: b_ref, type: SIMPL}
        """,
        "x.yaml: document 2 (WorkflowDef image-convert-resize): task 'b_ref' (spec.tasks[1]): "
        "type 'SIMPL' is not a task type",
        id="unknown-task-type",
    ),
    pytest.param(
        "bad.yaml",
        "kind: TaskDef\nmetadata: {name: [unclosed\n",
        "bad.yaml: line 3, column 1: invalid YAML: while parsing a flow sequence did not find expected ',' or ']'",
        id="invalid-yaml",
    ),
    pytest.param(
        "bad.json",
        '{\n  "name": "t",\n  "retryCount": \n}\n',
        "bad.json: line 4, column 1: invalid JSON: Expecting value",
        id="invalid-json",
    ),
    pytest.param(
        "k.yaml",
        "apiVersion: kondukt.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\nspec: {}\n",
        "k.yaml: document 1 (Pipeline p): kind 'Pipeline' is not one of TaskDef, WorkflowDef, Workflow, CronWorkflow",
        id="unknown-kind",
    ),
    pytest.param(
        "v.yaml",
        "apiVersion: kondukt.io/v2\nkind: TaskDef\nmetadata: {name: t}\nspec: {}\n",
        "v.yaml: document 1 (TaskDef t): apiVersion is 'kondukt.io/v2'; it must be kondukt.io/v1alpha1",
        id="wrong-api-version",
    ),
    pytest.param(
        "m.yaml",
        "apiVersion: kondukt.io/v1alpha1\nkind: TaskDef\nmetadata: {}\nspec: {name: t}\n",
        "m.yaml: document 1 (TaskDef): metadata.name is missing",
        id="missing-metadata-name",
    ),
    pytest.param(
        "n.yaml",
        "apiVersion: kondukt.io/v1alpha1\nkind: TaskDef\nmetadata: {name: Image_Resize}\nspec: {}\n",
        "n.yaml: document 1 (TaskDef Image_Resize): metadata.name 'Image_Resize' is not a valid Kubernetes name",
        id="invalid-metadata-name",
    ),
    pytest.param(
        "s.yaml",
        "apiVersion: kondukt.io/v1alpha1\nkind: WorkflowDef\nmetadata: {name: w}\n",
        "s.yaml: document 1 (WorkflowDef w): spec is missing",
        id="missing-spec",
    ),
    pytest.param(
        "e.yaml",
        "apiVersion: kondukt.io/v1alpha1\nkind: TaskDef\nmetadata: {name: t}\nspec: {timeoutPolicy: NEVER}\n",
        "e.yaml: document 1 (TaskDef t): spec: timeoutPolicy 'NEVER' is not one of 'RETRY', 'TIME_OUT_WF' or 'ALERT_ONLY'",
        id="bad-enum",
    ),
    pytest.param(
        "w.yaml",
        "apiVersion: kondukt.io/v1alpha1\nkind: Workflow\nmetadata: {name: r}\nspec: {input: {}}\n",
        "w.yaml: document 1 (Workflow r): spec.workflowDefRef is missing",
        id="workflow-without-definition",
    ),
    pytest.param(
        "i.yaml",
        """\
        apiVersion: kondukt.io/v1alpha1
        kind: Workflow
        metadata: {name: r}
        spec:
          definition:
            name: inline
            tasks: [{name: j, taskReferenceName: j_ref, type: JOIN}]
        """,
        "i.yaml: document 1 (Workflow r): task 'j_ref' (spec.definition.tasks[0]): type is JOIN but the task before it",
        id="inline-definition-checked",
    ),
    pytest.param(
        "c.json",
        '[{"name": "ok"}, {"name": "wf", "tasks": [{"name": "t", "taskReferenceName": "t_ref", "retryCount": -3}]}]',
        "c.json: item [1] (WorkflowDef wf): task 't_ref' (tasks[0]): retryCount must not be negative (got -3)",
        id="conductor-array-item",
    ),
    pytest.param(
        "scalar.yaml",
        "just text\n",
        "scalar.yaml: document 1: is a str, not a manifest or a Conductor definition",
        id="scalar-document",
    ),
    pytest.param(
        "dup.yaml",
        """\
        apiVersion: kondukt.io/v1alpha1
        kind: TaskDef
        metadata: {name: t}
        spec: {retryCount: 1}
        ---
        apiVersion: kondukt.io/v1alpha1
        kind: TaskDef
        metadata: {name: t}
        spec: {retryCount: 2}
        """,
        "dup.yaml: document 2 (TaskDef t): TaskDef 't' is already defined differently by dup.yaml: document 1 (TaskDef t)",
        id="conflicting-duplicate",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), ERRORS)
def test_errors_name_their_place(tmp_path: Path, name: str, text: str, message: str) -> None:
    error = load_error(tmp_path, name, text)
    shown = [line.replace(f"{tmp_path}/", "") for line in error.problems]
    assert any(line.startswith(message) for line in shown), shown
    assert isinstance(error, KonduktUserError) and error.exit_code == 2


def test_missing_file_and_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError) as caught:
        load_files([tmp_path / "nope.yaml"])
    assert str(caught.value) == f"{tmp_path}/nope.yaml: no such file"
    with pytest.raises(ManifestError) as caught:
        load_files([tmp_path / "empty"])
    assert "no *.yaml, *.yml or *.json files" in str(caught.value)


def test_every_mistake_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    first = write(tmp_path, "first.json", '{"name": "t", "retryLogic": "SOMETIMES"}')
    second = write(tmp_path, "second.json", "{,}")
    with pytest.raises(ManifestError) as caught:
        load_files([first, second, tmp_path / "third.json"])
    assert [line.split(" ")[0].rstrip(":") for line in caught.value.problems] == [
        str(first),
        str(second),
        str(tmp_path / "third.json"),
    ]
    assert "retryLogic 'SOMETIMES' is not one of" in caught.value.problems[0]
    assert "line 1, column 2: invalid JSON" in caught.value.problems[1]


# --------------------------------------------------------------------------------------------------
# Checks of the files as a set
# --------------------------------------------------------------------------------------------------

SET_PROBLEMS: list[Any] = [
    pytest.param(
        {"name": "wf", "tasks": [{"name": "nowhere", "taskReferenceName": "n_ref"}]},
        "wf.json (WorkflowDef wf): task 'n_ref' (tasks[0]): name 'nowhere' has no TaskDef",
        id="simple-task-without-taskdef",
    ),
    pytest.param(
        {
            "name": "wf",
            "tasks": [
                {
                    "name": "s",
                    "taskReferenceName": "s_ref",
                    "type": "SUB_WORKFLOW",
                    "subWorkflowParam": {"name": "child", "version": 2},
                }
            ],
        },
        "wf.json (WorkflowDef wf): task 's_ref' (tasks[0]): subWorkflowParam.name names WorkflowDef 'child' version 2, which is not in the files",
        id="unknown-sub-workflow",
    ),
    pytest.param(
        {
            "name": "wf",
            "failureWorkflow": "cleanup",
            "tasks": [{"name": "n", "taskReferenceName": "n_ref", "type": "NOOP"}],
        },
        "wf.json (WorkflowDef wf): failureWorkflow names WorkflowDef 'cleanup', which is not in the files",
        id="unknown-failure-workflow",
    ),
]


@pytest.mark.parametrize(("definition", "message"), SET_PROBLEMS)
def test_set_problems_unless_refs_are_external(
    tmp_path: Path, definition: dict[str, Any], message: str
) -> None:
    bundle = load_files([write(tmp_path, "wf.json", json.dumps(definition))])
    (problem,) = bundle.problems()
    assert problem.replace(f"{tmp_path}/", "").startswith(message)
    assert bundle.problems(self_contained=False) == []
    with pytest.raises(ManifestError):
        bundle.check()


def test_extra_task_defs_satisfy_simple_tasks(tmp_path: Path) -> None:
    bundle = load_files(
        [write(tmp_path, "wf.json", '{"name": "wf", "tasks": [{"name": "w", "taskReferenceName": "w_ref"}]}')]
    )
    assert bundle.problems() != []
    assert bundle.problems({"w": TaskDef(name="w")}) == []


def test_unresolved_workflow_def_ref(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "run.yaml",
        "apiVersion: kondukt.io/v1alpha1\nkind: Workflow\nmetadata: {name: r}\nspec: {workflowDefRef: {name: ghost}}\n",
    )
    bundle = load_files([path])
    assert [line.replace(f"{tmp_path}/", "") for line in bundle.problems()] == [
        "run.yaml: document 1 (Workflow r): spec.workflowDefRef names WorkflowDef 'ghost', which is not in the files "
        "(they define: none)"
    ]
    with pytest.raises(ManifestError):
        bundle.workflow_def_for(bundle.workflows[0][1])


def test_a_bundle_built_in_code_can_be_checked() -> None:
    from kondukt.engine.models import WorkflowDef, WorkflowSpec

    definition = WorkflowDef.model_validate(
        {"name": "wf", "tasks": [{"name": "nowhere", "taskReferenceName": "n_ref"}]}
    )
    bundle = Bundle(
        workflow_defs={("wf", 1): definition},
        workflows=[({"name": "r"}, WorkflowSpec.model_validate({"workflowDefRef": {"name": "ghost"}}))],
    )
    problems = bundle.problems()
    assert problems[0].startswith(
        "(not from a file) (WorkflowDef wf): task 'n_ref' (tasks[0]): name 'nowhere' has no TaskDef"
    )
    assert problems[1].startswith(
        "(not from a file) (Workflow r): spec.workflowDefRef names WorkflowDef 'ghost'"
    )
