"""``image_multiple_convert_resize``: the dynamic-fork generator's output shape (as the seed's
FORK_JOIN_DYNAMIC expects it), its validation, and that every branch it plans really runs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from kondukt_workers import TaskContext, TaskResult, execute, read_uri

CONTEXT = TaskContext(workflow_id="wf-fan", task_id="t-fan", task_ref="image_multiple_convert_resize_ref")


def generate(task_input: dict[str, Any]) -> TaskResult:
    return execute("image_multiple_convert_resize", task_input, CONTEXT)


def test_one_branch_per_format_and_size_formats_outer() -> None:
    result = generate(
        {
            "fileLocation": "s3://images/photo.jpg",
            "outputFormats": ["jpg", "WEBP"],
            "outputSizes": [{"width": 300, "height": 300}, {"width": "200", "height": "100"}],
            "maintainAspectRatio": "true",
        }
    )
    assert result.status == "COMPLETED", result.reason_for_incompletion
    references = [
        "image_convert_resize_jpg_300x300_0",
        "image_convert_resize_jpg_200x100_1",
        "image_convert_resize_webp_300x300_2",
        "image_convert_resize_webp_200x100_3",
    ]
    assert result.output_data["dynamicTasks"] == [
        {"name": "image_convert_resize", "taskReferenceName": reference, "type": "SIMPLE"}
        for reference in references
    ]
    assert list(result.output_data["dynamicTasksInput"]) == references
    assert result.output_data["dynamicTasksInput"]["image_convert_resize_webp_200x100_3"] == {
        "fileLocation": "s3://images/photo.jpg",
        "outputFormat": "webp",
        "outputWidth": 200,
        "outputHeight": 100,
        "maintainAspectRatio": True,
    }


def test_defaults_single_format_and_output_location_pass_through() -> None:
    result = generate(
        {
            "fileLocation": "file:///tmp/a.png",
            "outputFormats": "png",
            "outputSizes": [{"width": 10, "height": 10}],
            "maintainAspectRatio": None,
            "outputLocation": "s3://bucket/resized/",
        }
    )
    branch = result.output_data["dynamicTasksInput"]["image_convert_resize_png_10x10_0"]
    assert branch["maintainAspectRatio"] is True and branch["outputLocation"] == "s3://bucket/resized/"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"outputFormats": []}, "outputFormats must be a non-empty list", id="no-formats"),
        pytest.param(
            {"outputFormats": ["jpg", "psd"]},
            "outputFormats[1]: unsupported image format 'psd'",
            id="bad-format",
        ),
        pytest.param({"outputSizes": None}, "outputSizes must be a non-empty list", id="no-sizes"),
        pytest.param(
            {"outputSizes": [{"width": 10}]}, "outputSizes[0] needs both width and height", id="half-size"
        ),
        pytest.param(
            {"outputSizes": [{"width": 10, "height": 0}]}, "outputSizes[0].height must be positive", id="zero"
        ),
        pytest.param({"outputSizes": ["300x300"]}, "outputSizes[0] must be an object", id="size-as-text"),
        pytest.param({"fileLocation": ""}, "fileLocation is required", id="no-file"),
        pytest.param(
            {"maintainAspectRatio": "sometimes"}, "maintainAspectRatio must be true or false", id="bad-flag"
        ),
        pytest.param(
            {"outputSizes": [{"width": w, "height": 1} for w in range(1, 5002)]},
            "more than the maximum of 10000",
            id="too-many-branches",
        ),
    ],
)
def test_bad_recipes_fail_once_before_fanning_out(changes: dict[str, Any], reason: str) -> None:
    task_input = {
        "fileLocation": "s3://b/a.jpg",
        "outputFormats": ["jpg", "png"],
        "outputSizes": [{"width": 10, "height": 10}],
        **changes,
    }
    result = generate(task_input)
    assert result.status == "FAILED_WITH_TERMINAL_ERROR"
    assert reason in (result.reason_for_incompletion or "")


def test_every_planned_branch_runs_through_image_convert_resize(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "photo.jpg"
    Image.new("RGB", (400, 200), (10, 120, 200)).save(source, "JPEG")
    monkeypatch.setenv("KONDUKT_OUTPUT_PREFIX", (tmp_path / "out").as_uri())
    plan = generate(
        {
            "fileLocation": source.as_uri(),
            "outputFormats": ["jpg", "webp", "gif"],
            "outputSizes": [{"width": 100, "height": 100}, {"width": 40, "height": 80}],
        }
    )
    sizes = []
    for task in plan.output_data["dynamicTasks"]:
        reference = task["taskReferenceName"]
        branch = TaskContext(workflow_id="wf-fan", task_id=f"t-{reference}", task_ref=reference)
        result = execute(task["name"], plan.output_data["dynamicTasksInput"][reference], branch)
        assert result.status == "COMPLETED", result.reason_for_incompletion
        image = Image.open(io.BytesIO(read_uri(result.output_data["fileLocation"])))
        sizes.append((image.format, image.size))
    assert sizes == [
        ("JPEG", (100, 50)),
        ("JPEG", (40, 20)),
        ("WEBP", (100, 50)),
        ("WEBP", (40, 20)),
        ("GIF", (100, 50)),
        ("GIF", (40, 20)),
    ]
