"""``image_multiple_convert_resize``: the dynamic-fork generator of the seed's FORK_JOIN_DYNAMIC pipeline.

Input: ``fileLocation``, ``outputFormats`` (a list of formats, or one format as a string),
``outputSizes`` (a list of ``{"width": .., "height": ..}``), ``maintainAspectRatio`` (default true),
optional ``outputLocation`` (passed on to every branch).

Output, for the FORK_JOIN_DYNAMIC task that follows (``dynamicForkTasksParam: dynamicTasks``,
``dynamicForkTasksInputParamName: dynamicTasksInput``): one ``image_convert_resize`` task per (format,
size), formats outer, sizes inner, numbered from 0, as the original Java worker did:

    dynamicTasks:      [{"name": "image_convert_resize", "taskReferenceName": "image_convert_resize_jpg_300x300_0",
                         "type": "SIMPLE"}, ...]
    dynamicTasksInput: {"image_convert_resize_jpg_300x300_0": {"fileLocation": ..., "outputFormat": "jpg",
                         "outputWidth": 300, "outputHeight": 300, "maintainAspectRatio": true}, ...}

Every recipe is validated here (formats, sizes), so a bad one fails this task once, before fanning out.
This module must not import Pillow: it only plans work.
"""

from __future__ import annotations

from typing import Any

from kondukt_workers.builtin.image_parameters import (
    normalise_format_name,
    parse_dimension,
    parse_flag,
    require_location,
)
from kondukt_workers.registry import worker_task
from kondukt_workers.results import TerminalError

#: A guard against a recipe that would fan out absurdly (Kondukt's target is 10,000 branches).
MAX_BRANCHES = 10_000


def _formats(value: object) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise TerminalError(
            f'outputFormats must be a non-empty list of formats such as ["jpg", "webp"], not {value!r}'
        )
    return [normalise_format_name(item, f"outputFormats[{index}]") for index, item in enumerate(value)]


def _sizes(value: object) -> list[tuple[int, int]]:
    if not isinstance(value, list) or not value:
        raise TerminalError(
            f'outputSizes must be a non-empty list of {{"width": .., "height": ..}} objects, not {value!r}'
        )
    sizes = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise TerminalError(f"outputSizes[{index}] must be an object with width and height, not {item!r}")
        width = parse_dimension(item.get("width"), f"outputSizes[{index}].width")
        height = parse_dimension(item.get("height"), f"outputSizes[{index}].height")
        if width is None or height is None:
            raise TerminalError(f"outputSizes[{index}] needs both width and height, got {item!r}")
        sizes.append((width, height))
    return sizes


@worker_task(task_definition_name="image_multiple_convert_resize")
def image_multiple_convert_resize(task_input: dict[str, Any]) -> dict[str, Any]:
    file_location = require_location(task_input.get("fileLocation"))
    formats = _formats(task_input.get("outputFormats"))
    sizes = _sizes(task_input.get("outputSizes"))
    keep_aspect_ratio = parse_flag(task_input.get("maintainAspectRatio"), "maintainAspectRatio", True)
    output_location = task_input.get("outputLocation")
    if len(formats) * len(sizes) > MAX_BRANCHES:
        raise TerminalError(
            f"{len(formats)} formats x {len(sizes)} sizes = {len(formats) * len(sizes)} branches, "
            f"more than the maximum of {MAX_BRANCHES}"
        )
    dynamic_tasks: list[dict[str, Any]] = []
    dynamic_tasks_input: dict[str, dict[str, Any]] = {}
    for output_format in formats:
        for width, height in sizes:
            reference = f"image_convert_resize_{output_format}_{width}x{height}_{len(dynamic_tasks)}"
            dynamic_tasks.append(
                {"name": "image_convert_resize", "taskReferenceName": reference, "type": "SIMPLE"}
            )
            branch_input: dict[str, Any] = {
                "fileLocation": file_location,
                "outputFormat": output_format,
                "outputWidth": width,
                "outputHeight": height,
                "maintainAspectRatio": keep_aspect_ratio,
            }
            if output_location:
                branch_input["outputLocation"] = output_location
            dynamic_tasks_input[reference] = branch_input
    return {"dynamicTasks": dynamic_tasks, "dynamicTasksInput": dynamic_tasks_input}
