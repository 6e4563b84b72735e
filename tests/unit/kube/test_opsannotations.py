"""The operation annotations' format: what ``kondukt <op>`` writes is what the operator reads."""

from __future__ import annotations

import pytest

from kondukt.cli import app, operations
from kondukt.engine import Operation, OperationKind, TaskStatus
from kondukt.kube import opsannotations

NONCE = "5b0c3f9e-5f4a-4b8e-9a59-3a0f7f1e2d11"


def requested(*argv: str) -> Operation:
    """The engine Operation the operator makes of the annotation `kondukt ARGV` writes."""
    request = operations.operation_from_args(app.parse_args(list(argv)), new_nonce=lambda: NONCE)
    ((key, value),) = request.patch()["metadata"]["annotations"].items()
    ((found_key, op, found_value),) = opsannotations.operation_annotations({key: value, "other/annotation": "x"})
    assert (found_key, found_value) == (key, value)
    return opsannotations.decode(op, value)


def test_the_cli_writes_what_the_operator_reads() -> None:
    assert requested("retry", "wf", "--reason", "fixed") == Operation(
        op=OperationKind.RETRY, nonce=NONCE, reason="fixed"
    )
    assert requested("complete", "wf", "--task", "approve_ref", "--status", "FAILED", "--output", '{"ok": 0}') == (
        Operation(op=OperationKind.COMPLETE, nonce=NONCE, taskReferenceName="approve_ref",
                  status=TaskStatus.FAILED, outputData={"ok": 0})
    )
    assert requested("rerun", "wf", "--task", "t_ref", "--task-input", '{"a": 1}', "--input", '{"b": 2}') == (
        Operation(op=OperationKind.RERUN, nonce=NONCE, taskReferenceName="t_ref", taskInput={"a": 1},
                  workflowInput={"b": 2})
    )


def test_the_value_is_compact_json_with_the_set_fields_only() -> None:
    assert opsannotations.encode("n1", {"reason": "r", "taskId": None}) == '{"nonce":"n1","reason":"r"}'
    assert opsannotations.annotation_key("skip") == "ops.kondukt.io/skip"


@pytest.mark.parametrize("value", ["not json", "[1, 2]", '"text"', "{}", '{"nonce": ""}'])
def test_a_value_without_a_nonce_has_none(value: str) -> None:
    assert opsannotations.nonce_of(value) is None


@pytest.mark.parametrize("value", ["not json", "[1]", '{"reason": "no nonce"}', '{"nonce": "n", "status": "BOGUS"}'])
def test_a_malformed_request_is_a_value_error(value: str) -> None:
    with pytest.raises(ValueError):
        opsannotations.decode("complete", value)


def test_unapplied_requests_are_found_by_their_nonce() -> None:
    annotations = {"ops.kondukt.io/retry": '{"nonce":"a"}', "ops.kondukt.io/skip": "garbage", "x/y": '{"nonce":"z"}'}
    assert opsannotations.has_unapplied(annotations, set())
    assert not opsannotations.has_unapplied(annotations, {"a"})


def test_requests_apply_in_a_fixed_order() -> None:
    ops = ["restart", "retry", "mystery", "skip", "terminate"]
    assert sorted(ops, key=opsannotations.apply_rank) == ["terminate", "skip", "retry", "restart", "mystery"]
