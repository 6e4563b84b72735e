"""Deterministic names: the idempotence of every create the operator makes rests on them."""

from __future__ import annotations

import re

import pytest

from kondukt.kube import names

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@pytest.mark.parametrize(
    ("workflow", "ref"),
    [
        pytest.param("run-1", "first", id="short"),
        pytest.param("a" * 253, "b" * 200, id="very-long"),
        pytest.param("Image_Pipeline.v2", "convert__resize__3", id="underscores-dots-and-case"),
        pytest.param("x", "___", id="reference-with-no-usable-character"),
    ],
)
def test_job_names_are_dns_labels_of_at_most_63_characters(workflow: str, ref: str) -> None:
    name = names.job_name(workflow, "uid-1", ref, "task-1")
    assert len(name) <= 63
    assert DNS_LABEL.match(name), name


def test_job_name_is_a_function_of_workflow_uid_and_task_id() -> None:
    first = names.job_name("wf", "uid-1", "ref", "task-1")
    assert first == names.job_name("wf", "uid-1", "ref", "task-1")
    assert first != names.job_name("wf", "uid-2", "ref", "task-1"), "a re-created Workflow gets new Jobs"
    assert first != names.job_name("wf", "uid-1", "ref", "task-2"), "each attempt gets its own Job"
    assert first.startswith("wf-ref-")


def test_child_and_started_workflow_names_differ_from_job_names() -> None:
    job = names.job_name("wf", "uid", "sub", "t1")
    child = names.child_workflow_name("wf", "uid", "sub", "t1")
    started = names.started_workflow_name("wf", "uid", "t1")
    assert len({job, child, started}) == 3
    for name in (child, started):
        assert DNS_LABEL.match(name) and len(name) <= 63


@pytest.mark.parametrize(
    "text",
    ["plain", "with spaces and / slashes", "-leading-and-trailing-", "x" * 100, "ünïcödé", "a.b_c-d"],
)
def test_label_values_are_valid_and_keep_distinct_inputs_distinct(text: str) -> None:
    value = names.label_value(text)
    assert len(value) <= 63 and LABEL_VALUE.match(value), value
    assert names.label_value(text + "!") != value or text + "!" == text


def test_valid_label_values_pass_unchanged() -> None:
    assert names.label_value("image_convert_resize") == "image_convert_resize"
