"""The generated CRDs: up to date with the models, structural, and teaching the API through descriptions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kondukt.kube import crdgen

REPO = Path(__file__).resolve().parents[3]


def _walk(schema: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every (path, sub-schema) pair of an OpenAPI schema."""
    out: list[tuple[str, dict[str, Any]]] = []
    if not isinstance(schema, dict):
        return out
    out.append((path, schema))
    for name, sub in schema.get("properties", {}).items():
        out.extend(_walk(sub, f"{path}.{name}"))
    if isinstance(schema.get("items"), dict):
        out.extend(_walk(schema["items"], f"{path}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        out.extend(_walk(schema["additionalProperties"], f"{path}{{}}"))
    return out


def test_crds_directory_is_up_to_date_with_the_models() -> None:
    for name, text in crdgen.rendered_crds().items():
        path = REPO / "crds" / name
        assert path.exists(), f"crds/{name} is missing: run `make crds`"
        assert path.read_text() == text, f"crds/{name} is stale: run `make crds`"


def test_one_file_per_kind_each_a_single_crd() -> None:
    kinds = set()
    for name in crdgen.build_crds():
        documents = list(yaml.safe_load_all((REPO / "crds" / name).read_text()))
        assert len(documents) == 1
        assert documents[0]["kind"] == "CustomResourceDefinition"
        kinds.add(documents[0]["spec"]["names"]["kind"])
    assert kinds == {"TaskDef", "WorkflowDef", "Workflow", "CronWorkflow"}


@pytest.mark.parametrize("name", sorted(crdgen.build_crds()))
def test_schemas_are_structural(name: str) -> None:
    """The rules the API server enforces for structural schemas (apiextensions' structural package)."""
    crd = crdgen.build_crds()[name]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
        assert "type" in node or preserve or node.get("x-kubernetes-int-or-string"), f"{name}{path}: no type"
        assert "$ref" not in node and "anyOf" not in node and "oneOf" not in node, f"{name}{path}: not inlined"
        assert "default" not in node, f"{name}{path}: defaults must stay out of the schema"
        assert not ("properties" in node and "additionalProperties" in node), f"{name}{path}: both maps"
        if node.get("type") == "array":
            assert isinstance(node.get("items"), dict), f"{name}{path}: array without items"


def test_crds_stay_small_enough_for_client_side_kubectl_apply() -> None:
    # kubectl apply keeps the last applied JSON in an annotation limited to 256 KiB.
    import json

    for name, crd in crdgen.build_crds().items():
        assert len(json.dumps(crd)) < 200_000, name


def test_names_columns_and_subresources() -> None:
    crds = {c["spec"]["names"]["kind"]: c for c in crdgen.build_crds().values()}
    short = {kind: c["spec"]["names"]["shortNames"] for kind, c in crds.items()}
    assert short == {"TaskDef": ["td"], "WorkflowDef": ["wfd"], "Workflow": ["wf"], "CronWorkflow": ["cwf"]}
    for crd in crds.values():
        assert crd["spec"]["group"] == "kondukt.io"
        assert crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["names"]["categories"] == ["kondukt"]
        assert crd["spec"]["versions"][0]["name"] == "v1alpha1"
    workflow = crds["Workflow"]["spec"]["versions"][0]
    assert workflow["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in workflow["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Progress"] == ".status.progress"
    assert columns["Message"] == ".status.message"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_descriptions_teach_the_api() -> None:
    spec = crdgen.taskdef_spec_schema()
    assert "retries" in spec["properties"]["retryCount"]["description"].lower()
    assert "Defaults to 3" in spec["properties"]["retryCount"]["description"]
    task = crdgen.workflowdef_spec_schema()["properties"]["tasks"]["items"]
    assert task["properties"]["loopCondition"]["description"]
    assert task["properties"]["name"]["description"]


def test_recursive_tasks_are_expanded_two_levels_then_preserved() -> None:
    task = crdgen.workflowdef_spec_schema()["properties"]["tasks"]["items"]
    nested = task["properties"]["forkTasks"]["items"]["items"]
    assert "loopCondition" in nested["properties"], "one nested level is fully described"
    deeper = nested["properties"]["loopOver"]["items"]
    assert deeper["x-kubernetes-preserve-unknown-fields"] is True
    assert deeper["required"] == ["name", "taskReferenceName"]
    cases = task["properties"]["decisionCases"]
    assert cases["type"] == "object" and cases["additionalProperties"]["type"] == "array"


def test_conductor_unknown_fields_round_trip_and_free_json_is_preserved() -> None:
    spec = crdgen.workflowdef_spec_schema()
    assert spec["x-kubernetes-preserve-unknown-fields"] is True
    task = spec["properties"]["tasks"]["items"]
    assert task["x-kubernetes-preserve-unknown-fields"] is True
    parameters = task["properties"]["inputParameters"]
    assert parameters["type"] == "object" and parameters["x-kubernetes-preserve-unknown-fields"] is True
    workflow = crdgen.workflow_spec_schema()
    assert workflow["properties"]["input"]["x-kubernetes-preserve-unknown-fields"] is True


def test_spec_name_defaults_to_metadata_name() -> None:
    assert "name" not in crdgen.taskdef_spec_schema().get("required", [])
    assert "name" not in crdgen.workflowdef_spec_schema().get("required", [])


def test_cel_rules_cover_the_cross_field_constraints() -> None:
    workflow_rules = " ".join(v["rule"] for v in crdgen.workflow_spec_schema()["x-kubernetes-validations"])
    assert "has(self.workflowDefRef) != has(self.definition)" in workflow_rules
    assert "oldSelf.input" in workflow_rules and "oldSelf.workflowDefRef" in workflow_rules
    taskdef_rules = " ".join(v["rule"] for v in crdgen.taskdef_spec_schema()["x-kubernetes-validations"])
    assert "rateLimitFrequencyInSeconds > 0" in taskdef_rules


def test_check_mode_reports_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen.main([str(tmp_path), "--check"]) == 1
    assert "stale CRDs" in capsys.readouterr().err
    assert crdgen.main([str(tmp_path)]) == 0
    assert crdgen.main([str(tmp_path), "--check"]) == 0
