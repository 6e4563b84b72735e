"""Conductor JSON -> Kondukt manifests: the whole corpus, names, templates, bad data, and the round trip."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kondukt.cli.definitions import dump_manifests, import_files
from kondukt.engine.conductor import (
    API_VERSION,
    MAX_NAME_LENGTH,
    WorkerTemplate,
    find_name_clashes,
    import_conductor,
    is_conductor_document,
    resource_name,
    workflow_def_resource_name,
)
from kondukt.errors import ManifestError
from kondukt.manifests import load_files

EXAMPLES = Path(__file__).resolve().parents[4] / "shared" / "conductor-examples"
CORPUS = sorted(EXAMPLES.glob("*.json"))
INVALID_UPSTREAM = {
    "workflow__image_convert_resize_multipleformat.json": (85, 2, "Extra data"),
    "workflow__image_effects_pipeline.json": (30, 7, "Expecting value"),
}
VALID = [p for p in CORPUS if p.name not in INVALID_UPSTREAM]
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def test_the_corpus_is_there() -> None:
    assert len(CORPUS) >= 30 and set(INVALID_UPSTREAM) <= {p.name for p in CORPUS}


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_every_valid_corpus_file_imports_unchanged(path: Path) -> None:
    original = json.loads(path.read_text())
    manifests, problems = import_conductor(original)
    assert problems == []
    (manifest,) = manifests
    kind = "WorkflowDef" if "tasks" in original else "TaskDef"
    assert manifest["apiVersion"] == API_VERSION
    assert manifest["kind"] == kind
    assert manifest["spec"] == original  # unchanged, unknown fields (createTime, updateTime...) kept
    expected_name = (
        workflow_def_resource_name(original["name"], original.get("version", 1))
        if kind == "WorkflowDef"
        else resource_name(original["name"])
    )
    assert manifest["metadata"] == {"name": expected_name}
    assert re.match(DNS_SUBDOMAIN, expected_name)


@pytest.mark.parametrize("name", sorted(INVALID_UPSTREAM))
def test_invalid_upstream_json_reports_line_and_column(name: str) -> None:
    line, column, what = INVALID_UPSTREAM[name]
    path = str(EXAMPLES / name)
    with pytest.raises(ManifestError) as caught:
        import_files([path])
    assert caught.value.problems[0].startswith(f"{path}: line {line}, column {column}: invalid JSON: {what}")


def test_corpus_names_match_the_design() -> None:
    by_file = {
        p.name: import_conductor(json.loads(p.read_text()))[0][0]["metadata"]["name"]
        for p in VALID
        if p.name
        in (
            "workflow__image_convert_resize.json",
            "task__upload_toS3.json",
            "workflow__visual_image_search.json",
        )
    }
    assert by_file == {
        "workflow__image_convert_resize.json": "image-convert-resize-v1",
        "task__upload_toS3.json": "upload-tos3",
        "workflow__visual_image_search.json": "visualimagesearchx-v13",
    }


# --------------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------------

NAMES: list[Any] = [
    pytest.param("image_convert_resize", "image-convert-resize", id="underscores"),
    pytest.param("VisualImageSearchx", "visualimagesearchx", id="upper-case"),
    pytest.param("resize image", "resize-image", id="space"),
    pytest.param("a:b/c@d", "abcd", id="invalid-chars-dropped"),
    pytest.param("_leading_and_trailing_", "leading-and-trailing", id="edges-trimmed"),
    pytest.param("v1..2", "v1.2", id="empty-label-dropped"),
    pytest.param("team.-job-.x", "team.job.x", id="labels-trimmed"),
]


@pytest.mark.parametrize(("conductor_name", "resource"), NAMES)
def test_resource_names(conductor_name: str, resource: str) -> None:
    assert resource_name(conductor_name) == resource


def test_a_name_with_nothing_usable_gets_a_stable_hash() -> None:
    assert resource_name("日本語") == resource_name("日本語")
    assert resource_name("日本語").startswith("conductor-")
    assert resource_name("日本語") != resource_name("中文")


def test_long_names_are_cut_with_a_hash_and_stay_distinct() -> None:
    first, second = resource_name("x" * 300 + "a"), resource_name("x" * 300 + "b")
    assert len(first) == len(second) == MAX_NAME_LENGTH
    assert first != second
    assert first == resource_name("x" * 300 + "a")
    assert re.match(DNS_SUBDOMAIN, first)


WORKFLOW_NAMES: list[Any] = [
    pytest.param("image_convert_resize", 1, "image-convert-resize-v1", id="v1"),
    pytest.param("VisualImageSearchx", 13, "visualimagesearchx-v13", id="v13"),
]


@pytest.mark.parametrize(("name", "version", "resource"), WORKFLOW_NAMES)
def test_workflow_def_resource_names(name: str, version: int, resource: str) -> None:
    assert workflow_def_resource_name(name, version) == resource


def test_long_workflow_names_keep_their_version_suffix() -> None:
    resource = workflow_def_resource_name("w" * 400, 7)
    assert len(resource) <= MAX_NAME_LENGTH and resource.endswith("-v7")
    assert resource != workflow_def_resource_name("w" * 401, 7)


def test_versions_without_a_version_field_default_to_one() -> None:
    manifests, _ = import_conductor({"name": "wf", "tasks": [{"name": "t", "taskReferenceName": "t"}]})
    assert manifests[0]["metadata"]["name"] == "wf-v1"
    assert "version" not in manifests[0]["spec"]


# --------------------------------------------------------------------------------------------------
# Templates and namespaces
# --------------------------------------------------------------------------------------------------

TEMPLATES: list[Any] = [
    pytest.param(
        WorkerTemplate(image="ghcr.io/x/workers:0.1.0", command=("kondukt-worker",)),
        {"image": "ghcr.io/x/workers:0.1.0", "command": ["kondukt-worker", "upload_toS3"]},
        id="image-and-command",
    ),
    pytest.param(
        WorkerTemplate(command=("python", "-m", "workers")),
        {"command": ["python", "-m", "workers", "upload_toS3"]},
        id="command-only",
    ),
]


@pytest.mark.parametrize(("template", "expected"), TEMPLATES)
def test_task_defs_get_the_worker_template(template: WorkerTemplate, expected: dict[str, Any]) -> None:
    manifests, problems = import_conductor({"name": "upload_toS3", "retryCount": 1}, worker_template=template)
    assert problems == []
    assert manifests[0]["spec"]["template"] == expected
    assert manifests[0]["spec"]["retryCount"] == 1


def test_an_existing_template_is_kept() -> None:
    mine = {"image": "mine:1", "command": ["run"]}
    manifests, _ = import_conductor(
        {"name": "t", "template": mine}, worker_template=WorkerTemplate(image="other:2")
    )
    assert manifests[0]["spec"]["template"] == mine


def test_workflow_defs_get_no_template_and_namespace_is_set() -> None:
    document = [{"name": "t"}, {"name": "wf", "tasks": [{"name": "t", "taskReferenceName": "t_ref"}]}]
    manifests, problems = import_conductor(
        document, worker_template=WorkerTemplate(image="img"), namespace="team-a"
    )
    assert problems == []
    assert [m["metadata"] for m in manifests] == [
        {"name": "t", "namespace": "team-a"},
        {"name": "wf-v1", "namespace": "team-a"},
    ]
    assert "template" not in manifests[1]["spec"]


# --------------------------------------------------------------------------------------------------
# Bad data never raises
# --------------------------------------------------------------------------------------------------

BAD_DATA: list[Any] = [
    pytest.param(None, "must be a Conductor WorkflowDef or TaskDef object (got NoneType)", id="null"),
    pytest.param(42, "must be a Conductor WorkflowDef or TaskDef object (got int)", id="number"),
    pytest.param({"retryCount": 3}, "TaskDef: name is missing", id="taskdef-without-name"),
    pytest.param(
        {"name": "t", "timeoutPolicy": "NEVER"},
        "TaskDef 't': timeoutPolicy 'NEVER' is not one of",
        id="bad-enum",
    ),
    pytest.param(
        {"name": "wf", "tasks": "all of them"},
        "WorkflowDef 'wf': tasks must be a list",
        id="tasks-not-a-list",
    ),
    pytest.param(
        {"name": "wf", "tasks": [{"name": "t", "taskReferenceName": "t_ref", "type": "SIMPL"}]},
        "WorkflowDef 'wf': task 't_ref' (tasks[0]): type 'SIMPL' is not a task type",
        id="unknown-type",
    ),
    pytest.param(
        {"apiVersion": API_VERSION, "kind": "TaskDef", "name": "t"},
        "kind is set: this is already a Kondukt manifest (TaskDef)",
        id="already-a-manifest",
    ),
]


@pytest.mark.parametrize(("document", "message"), BAD_DATA)
def test_bad_data_becomes_problems(document: Any, message: str) -> None:
    manifests, problems = import_conductor(document)
    assert manifests == []
    assert any(message in str(p) for p in problems), [str(p) for p in problems]


def test_array_problems_name_the_item_and_good_items_still_import() -> None:
    manifests, problems = import_conductor([{"name": "good"}, {"name": "bad", "retryCount": -1}, "junk"])
    assert [m["metadata"]["name"] for m in manifests] == ["good"]
    assert [str(p) for p in problems] == [
        "item [1] (TaskDef 'bad'): retryCount must not be negative (got -1)",
        "item [2]: must be a Conductor WorkflowDef or TaskDef object (got str)",
    ]


def test_check_false_skips_definition_checks_but_not_the_schema() -> None:
    unknown_type = {"name": "wf", "tasks": [{"name": "t", "taskReferenceName": "t_ref", "type": "SIMPL"}]}
    assert import_conductor(unknown_type, check=False)[1] == []
    assert import_conductor({"name": "t", "retryCount": "x"}, check=False)[1] != []


def test_is_conductor_document() -> None:
    assert is_conductor_document({"name": "t"}) and is_conductor_document([{"name": "t"}])
    assert not is_conductor_document({"apiVersion": API_VERSION, "kind": "TaskDef"})
    assert not is_conductor_document({"kind": "TaskDef"}) and not is_conductor_document("text")


# --------------------------------------------------------------------------------------------------
# Several files: duplicates and clashes
# --------------------------------------------------------------------------------------------------


def test_identical_duplicates_are_dropped() -> None:
    manifests, _ = import_conductor([{"name": "t"}, {"name": "t"}])
    kept, clashes = find_name_clashes(manifests)
    assert (len(kept), clashes) == (1, [])


def test_distinct_definitions_with_one_resource_name_clash() -> None:
    manifests, _ = import_conductor(
        [{"name": "a_b"}, {"name": "a-b"}, {"name": "t", "retryCount": 1}, {"name": "t"}]
    )
    kept, clashes = find_name_clashes(manifests, ["x.json", "y.json", "z.json", "w.json"])
    assert [m["spec"]["name"] for m in kept] == ["a_b", "t"]
    assert clashes == [
        "TaskDef 'a_b' and 'a-b' both become the resource name 'a-b' (x.json and y.json)",
        "TaskDef 't' is defined twice with different content (z.json and w.json)",
    ]


def test_dated_corpus_versions_of_one_workflow_clash() -> None:
    files = [
        str(EXAMPLES / "workflow__image_convert_resize.json"),
        str(EXAMPLES / "workflow__image_convert_resize__2022-01-24_f2a9a4a_blog-era.json"),
    ]
    with pytest.raises(ManifestError) as caught:
        import_files(files)
    assert caught.value.problems == (
        f"WorkflowDef 'image_convert_resize' is defined twice with different content ({files[0]} and {files[1]})",
    )


# --------------------------------------------------------------------------------------------------
# Round trip: import -> YAML -> load_files gives what loading the JSON directly gives
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_round_trip_through_yaml_manifests(path: Path, tmp_path: Path) -> None:
    manifests = import_files([str(path)], WorkerTemplate(image="img:1", command=("kondukt-worker",)))
    text = dump_manifests(manifests)
    assert [d["kind"] for d in yaml.safe_load_all(text)] == [m["kind"] for m in manifests]
    manifest_file = tmp_path / "imported.yaml"
    manifest_file.write_text(text)
    from_yaml, from_json = load_files([manifest_file]), load_files([path])
    assert from_yaml.workflow_defs == from_json.workflow_defs
    assert from_yaml.task_defs.keys() == from_json.task_defs.keys()
    for name, task_def in from_json.task_defs.items():
        assert from_yaml.task_defs[name].model_copy(update={"template": None}) == task_def
        template = from_yaml.task_defs[name].template
        assert template is not None and template.command == ["kondukt-worker", name]
