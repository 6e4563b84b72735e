"""The seed's four image workflows through the engine, golden replays, and state round trips.

The definitions are the Conductor JSON of ``../shared/conductor-examples`` as they are (TaskDefs with their
retry, timeout and rate-limit settings included); task results are scripted. The dynamic-fork generator's
output is built the way that folder's README describes the original worker: one ``image_convert_resize``
task per (format, size), references ``image_convert_resize_<fmt>_<w>x<h>_<i>``.

Golden replays: a few executions' final state is recorded in ``tests/unit/golden/*.json`` (times come from
the fake clock, ids are deterministic) and compared on every run, so that any change of behaviour shows up
as a diff. After a deliberate change, regenerate them with ``KONDUKT_UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kondukt.engine import OperationKind, StartSubWorkflow, StartTask, TaskStatus, Workflow, WorkflowStatus
from tests.unit.engine.harness import (
    T0,
    Attempt,
    Result,
    Sim,
    fail,
    failed_by,
    never,
    never_started,
    ok,
    roundtrip,
    simple,
    system,
    task_def,
    terminal_error,
    workflow_def,
)

EXAMPLES = Path(__file__).resolve().parents[4] / "shared" / "conductor-examples"
GOLDEN = Path(__file__).resolve().parent / "golden"

SINGLE = "workflow__image_convert_resize.json"
FORK = "workflow__image_convert_resize_multipleformat__2022-02-02_af15736.json"
DYNAMIC = "workflow__image_multiple_convert_resize.json"
SUBWORKFLOW = "workflow__image_convert_resize_multipleformat_subworkflow.json"
TASK_DEF_FILES = ["task__image_convert_resize.json", "task__upload_toS3.json",
                  "task__image_multiple_convert_resize.json"]

IMAGE_INPUT = {"fileLocation": "https://images.example/cat.jpg",
               "recipeParameters": {"outputSize": {"width": 300, "height": 200}, "outputFormat": "png"}}


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return data


def seed_task_defs() -> list[dict[str, Any]]:
    return [example(name) for name in TASK_DEF_FILES]


def resized(attempt: Attempt) -> Result:
    """image_convert_resize: writes the resized image to object storage, outputs its URI."""
    data = attempt.task.inputData
    fmt = data.get("outputFormat")
    return ok({"fileLocation": f"s3://work/{attempt.task.referenceTaskName}.{fmt}",
               "width": data.get("outputWidth"), "height": data.get("outputHeight"), "format": fmt}, runs_ms=800)


def uploaded(attempt: Attempt) -> Result:
    """upload_toS3: copies the file to the bucket, outputs the object's URL."""
    source = str(attempt.task.inputData.get("fileLocation"))
    return ok({"fileLocation": "https://bucket.example/" + source.rsplit("/", 1)[-1]}, runs_ms=300)


def generator(attempt: Attempt) -> Result:
    """image_multiple_convert_resize: the dynamic-fork generator of the seed (as its README describes)."""
    data = attempt.task.inputData
    tasks: list[dict[str, Any]] = []
    inputs: dict[str, Any] = {}
    pairs = [(f, s) for f in data.get("outputFormats") or [] for s in data.get("outputSizes") or []]
    for i, (fmt, size) in enumerate(pairs):
        ref = f"image_convert_resize_{fmt}_{size['width']}x{size['height']}_{i}"
        tasks.append({"name": "image_convert_resize", "taskReferenceName": ref, "type": "SIMPLE"})
        inputs[ref] = {"fileLocation": data.get("fileLocation"), "outputFormat": fmt, "outputWidth": size["width"],
                       "outputHeight": size["height"], "maintainAspectRatio": data.get("maintainAspectRatio")}
    return ok({"dynamicTasks": tasks, "dynamicTasksInput": inputs}, runs_ms=200)


class ByTaskDef(dict[str, Any]):
    """Scripts chosen by the attempt's TaskDef (the seed's workers), whatever the reference."""

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        super().__init__(overrides or {})
        self.by_def = {"image_convert_resize": resized, "upload_toS3": uploaded,
                       "image_multiple_convert_resize": generator}

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, ref: str) -> Any:
        if dict.__contains__(self, ref):
            return dict.__getitem__(self, ref)
        return self._dispatch

    def _dispatch(self, attempt: Attempt) -> Result:
        script = self.by_def.get(attempt.task.taskDefName)
        return script(attempt) if script is not None else ok()


def seed_sim(workflow_file: str, input: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
             **options: Any) -> Sim:
    return Sim(example(workflow_file), seed_task_defs(), input=input if input is not None else IMAGE_INPUT,
               results=ByTaskDef(overrides), children={"image_convert_resize": {"definition": example(SINGLE)}},
               **options)


def assert_golden(name: str, workflow: Workflow) -> None:
    path = GOLDEN / f"{name}.json"
    actual = workflow.model_dump(mode="json")
    if os.environ.get("KONDUKT_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
    assert path.exists(), f"{path} is missing: run with KONDUKT_UPDATE_GOLDEN=1 once and check it in"
    expected = json.loads(path.read_text())
    assert actual == expected, f"the execution differs from the recorded {path.name}"


# --------------------------------------------------------------------------------------------------
# 1. The single-image pipeline
# --------------------------------------------------------------------------------------------------


def test_single_image_pipeline() -> None:
    sim = seed_sim(SINGLE)
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    convert, upload = workflow.tasks
    assert (convert.taskType, convert.referenceTaskName) == ("image_convert_resize", "image_convert_resize_ref")
    assert convert.inputData == {"fileLocation": "https://images.example/cat.jpg", "outputFormat": "png",
                                 "outputWidth": 300, "outputHeight": 200}
    assert upload.inputData == {"fileLocation": "s3://work/image_convert_resize_ref.png"}
    assert workflow.output == {"fileLocation": "https://bucket.example/image_convert_resize_ref.png"}
    assert workflow.endTime == T0 + 1100
    start = sim.actions(StartTask)[0]
    assert isinstance(start, StartTask) and start.timeoutSeconds == 30


def test_single_image_transient_failure_is_retried_after_the_task_def_delay() -> None:
    sim = seed_sim(SINGLE, overrides={"image_convert_resize_ref": [fail("pod evicted", runs_ms=500), resized]})
    assert sim.run().status is WorkflowStatus.COMPLETED
    times = [e.at - T0 for e in sim.log if isinstance(e.action, StartTask)]
    assert times == [0, 500 + 30_000, 500 + 30_000 + 800]  # FIXED 30 s, then upload after the retry


def test_single_image_that_is_not_a_picture_fails_without_retrying() -> None:
    sim = seed_sim(SINGLE, overrides={"image_convert_resize_ref": terminal_error("not an image: text/html")})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.reasonForIncompletion == failed_by(sim.task("image_convert_resize_ref"),
                                                       "FAILED_WITH_TERMINAL_ERROR", "not an image: text/html")
    assert len(sim.attempts("image_convert_resize_ref")) == 1
    assert workflow.output == {"fileLocation": None}


def test_single_image_whose_pod_never_starts_times_out_after_the_poll_timeout() -> None:
    sim = seed_sim(SINGLE, overrides={"image_convert_resize_ref": never_started()})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.TIMED_OUT
    assert workflow.endTime == T0 + 30_000


def test_single_image_worker_that_hangs_times_the_workflow_out() -> None:
    sim = seed_sim(SINGLE, overrides={"image_convert_resize_ref": never()})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.TIMED_OUT
    assert workflow.endTime == T0 + 10 + 30_000
    assert [a.kind for a in sim.actions()] == ["start_task", "cancel_task"]


# --------------------------------------------------------------------------------------------------
# 2. FORK: jpg and webp in parallel
# --------------------------------------------------------------------------------------------------


def test_fork_jpg_and_webp_in_parallel() -> None:
    sim = seed_sim(FORK)
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    assert [(t.referenceTaskName, t.taskType) for t in workflow.tasks] == [
        ("image_convert_resize_multipleformat_ref", "FORK"),
        ("image_convert_resize_jpg_ref", "image_convert_resize"),
        ("image_convert_resize_webp_ref", "image_convert_resize"),
        ("image_convert_resize_multipleformat_join_ref", "JOIN"),
        ("upload_toS3_jpg_ref", "upload_toS3"),
        ("upload_toS3_webp_ref", "upload_toS3")]
    assert [e.at - T0 for e in sim.log] == [0, 0, 800, 800]
    assert workflow.output == {"fileLocationJpg": "https://bucket.example/image_convert_resize_jpg_ref.jpg",
                               "fileLocationWebp": "https://bucket.example/image_convert_resize_webp_ref.webp"}
    join = sim.task("image_convert_resize_multipleformat_join_ref")
    assert set(join.outputData) == {"upload_toS3_jpg_ref", "upload_toS3_webp_ref"}


def test_fork_branch_failure_cancels_the_other_branch() -> None:
    sim = seed_sim(FORK, overrides={"image_convert_resize_webp_ref": terminal_error("webp not supported"),
                                    "image_convert_resize_jpg_ref": never()})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.FAILED
    assert sim.task("image_convert_resize_jpg_ref").status is TaskStatus.CANCELED
    assert workflow.output == {"fileLocationJpg": None, "fileLocationWebp": None}


# --------------------------------------------------------------------------------------------------
# 3. FORK_JOIN_DYNAMIC over formats x sizes
# --------------------------------------------------------------------------------------------------

DYNAMIC_INPUT = {"fileLocation": "https://images.example/cat.jpg", "outputFormats": ["jpg", "webp"],
                 "outputSizes": [{"width": 100, "height": 100}, {"width": 640, "height": 480},
                                 {"width": 1920, "height": 1080}], "maintainAspectRatio": True}


def test_dynamic_fork_over_formats_and_sizes() -> None:
    sim = seed_sim(DYNAMIC, DYNAMIC_INPUT)
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    refs = [t.referenceTaskName for t in workflow.tasks]
    forked = [f"image_convert_resize_{f}_{w}x{h}_{i}" for i, (f, (w, h)) in enumerate(
        (f, s) for f in ["jpg", "webp"] for s in [(100, 100), (640, 480), (1920, 1080)])]
    assert refs == ["image_multiple_convert_resize_ref", "image_multiple_convert_resize_fork_ref", *forked,
                    "image_multiple_convert_resize_join_ref"]
    assert sim.task("image_multiple_convert_resize_fork_ref").taskType == "FORK"
    assert sim.task(forked[4]).inputData == {"fileLocation": "https://images.example/cat.jpg", "outputFormat": "webp",
                                             "outputWidth": 640, "outputHeight": 480, "maintainAspectRatio": True}
    assert list(workflow.output["fileLocations"]) == forked
    assert workflow.output["fileLocations"][forked[0]]["fileLocation"] == f"s3://work/{forked[0]}.jpg"
    assert workflow.endTime == T0 + 200 + 800


def test_dynamic_fork_wider_than_the_rate_limit_waits_for_the_window() -> None:
    sizes = [{"width": w, "height": w} for w in range(1, 31)]
    sim = seed_sim(DYNAMIC, {**DYNAMIC_INPUT, "outputSizes": sizes})  # 60 branches, 50 starts per 30 s
    assert sim.run().status is WorkflowStatus.COMPLETED
    converts = [e.at - T0 for e in sim.log if isinstance(e.action, StartTask)
                and e.action.taskDefName == "image_convert_resize"]
    assert converts == [200] * 50 + [30_200] * 10


def test_dynamic_fork_rate_limit_counts_other_workflows_through_load() -> None:
    from kondukt.engine import TaskLoad

    busy = TaskLoad(running=95, recentStarts=tuple(range(T0 - 1000, T0 - 960)))  # 40 starts elsewhere
    sim = seed_sim(DYNAMIC, DYNAMIC_INPUT, feed_load=True, external_load={"image_convert_resize": busy})
    assert sim.run().status is WorkflowStatus.COMPLETED
    converts = [e.at - T0 for e in sim.log if isinstance(e.action, StartTask)
                and e.action.taskDefName == "image_convert_resize"]
    # 95 running elsewhere: 5 slots of concurrentExecLimit 100 left, then one more when one finishes.
    assert converts == [200] * 5 + [1000]


def test_dynamic_fork_generator_with_malformed_output_fails_the_workflow() -> None:
    def broken(attempt: Attempt) -> Result:
        return ok({"dynamicTasks": [{"name": "image_convert_resize", "taskReferenceName": "a"}],
                   "dynamicTasksInput": {"a": "not a map"}})

    sim = seed_sim(DYNAMIC, DYNAMIC_INPUT, overrides={"image_multiple_convert_resize_ref": broken})
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.FAILED
    assert "'image_multiple_convert_resize_fork_ref'" in (workflow.reasonForIncompletion or "")
    assert "must be a map" in (workflow.reasonForIncompletion or "")


# --------------------------------------------------------------------------------------------------
# 4. SUB_WORKFLOW in a fork branch
# --------------------------------------------------------------------------------------------------


def test_sub_workflow_in_a_fork_branch() -> None:
    sim = seed_sim(SUBWORKFLOW)
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    start = sim.actions(StartSubWorkflow)[0]
    assert isinstance(start, StartSubWorkflow)
    assert (start.name, start.version) == ("image_convert_resize", 1)
    assert start.input == {"fileLocation": "https://images.example/cat.jpg",
                           "recipeParameters": {"outputSize": {"width": 300, "height": 200}, "outputFormat": "jpg"}}
    child = sim.child("subworkflow_jpg_ref").workflow
    assert child.status is WorkflowStatus.COMPLETED
    assert [t.referenceTaskName for t in child.tasks] == ["image_convert_resize_ref", "upload_toS3_ref"]
    assert child.tasks[0].inputData["outputFormat"] == "jpg"
    assert workflow.output == {"fileLocationJpg": "https://bucket.example/image_convert_resize_ref.jpg",
                               "fileLocationWebp": "https://bucket.example/image_convert_resize_webp_ref.webp"}


def test_sub_workflow_failure_fails_the_branch_and_the_parent() -> None:
    sim = seed_sim(SUBWORKFLOW, overrides={"image_convert_resize_ref": terminal_error("corrupt jpeg")})
    workflow = sim.run()
    assert sim.child("subworkflow_jpg_ref").workflow.status is WorkflowStatus.FAILED
    assert sim.task("subworkflow_jpg_ref").status is TaskStatus.FAILED
    assert workflow.status is WorkflowStatus.FAILED
    child = sim.child("subworkflow_jpg_ref").workflow
    child_reason = failed_by(child.tasks[0], "FAILED_WITH_TERMINAL_ERROR", "corrupt jpeg")
    assert child.reasonForIncompletion == child_reason
    assert workflow.reasonForIncompletion == failed_by(sim.task("subworkflow_jpg_ref"), "FAILED", child_reason)


def test_terminating_the_parent_terminates_the_child() -> None:
    sim = seed_sim(SUBWORKFLOW, overrides={"image_convert_resize_ref": never()})
    sim.operate(OperationKind.TERMINATE, at=T0 + 5000, reason="cancelled by the user")
    assert sim.run().status is WorkflowStatus.TERMINATED
    assert sim.child("subworkflow_jpg_ref").workflow.status is WorkflowStatus.TERMINATED


# --------------------------------------------------------------------------------------------------
# Golden replays
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "workflow_file", "input", "overrides"), [
    pytest.param("single_image", SINGLE, IMAGE_INPUT, None, id="single-image"),
    pytest.param("single_image_retried", SINGLE, IMAGE_INPUT,
                 {"upload_toS3_ref": [fail("503 slow down"), uploaded]}, id="single-image-retried"),
    pytest.param("fork_jpg_webp", FORK, IMAGE_INPUT, None, id="fork"),
    pytest.param("dynamic_formats_sizes", DYNAMIC, DYNAMIC_INPUT, None, id="dynamic-fork"),
    pytest.param("subworkflow_branch", SUBWORKFLOW, IMAGE_INPUT, None, id="sub-workflow"),
])
def test_golden_replay(name: str, workflow_file: str, input: dict[str, Any], overrides: dict[str, Any] | None) -> None:
    sim = seed_sim(workflow_file, input, overrides)
    assert_golden(name, sim.run())


def complex_workflow() -> dict[str, Any]:
    """Every moving part at once: a fork with a dynamic fork and a loop, a switch, a sub-workflow, retries."""
    loop = system("loop", "DO_WHILE", {"keepLastN": 2}, loopOver=[
        simple("step", name="flaky", inputs={"i": "${loop.output.iteration}"}),
        system("bump", "SET_VARIABLE", {"last": "${step.output.n}"})],
        loopCondition="if ($.loop['iteration'] < 4) { true; } else { false; }")
    dynamic = system("df", "FORK_JOIN_DYNAMIC", {"forkTaskName": "work", "forkTaskInputs": "${gen.output.items}"})
    fork = system("f", "FORK_JOIN", forkTasks=[
        [simple("gen"), dynamic, system("dj", "JOIN")],
        [loop],
        [{"name": "child", "taskReferenceName": "sub", "type": "SUB_WORKFLOW",
          "inputParameters": {"x": "${workflow.input.x}"}, "subWorkflowParam": {"name": "child"}}]])
    switch = system("sw", "SWITCH", {"v": "${workflow.variables.last}"}, evaluatorType="javascript",
                    expression="$.v > 2 ? 'big' : 'small'",
                    decisionCases={"big": [system("calc", "INLINE", {"evaluatorType": "javascript",
                                                                     "expression": "$.a * 2", "a": "${sub.output.r}"})]},
                    defaultCase=[system("w", "WAIT", {"duration": "3s"})])
    return workflow_def([fork, system("j", "JOIN", joinOn=["dj", "loop", "sub"]), switch,
                         simple("last", inputs={"calc": "${calc.output.result}"})],
                        outputParameters={"calc": "${calc.output.result}", "loop": "${loop.output.iteration}",
                                          "forked": "${dj.output}"})


def complex_sim(**options: Any) -> Sim:
    child = workflow_def([simple("inner", name="flaky")], name="child", outputParameters={"r": "${inner.output.n}"})
    flaky = iter(range(1000))

    def flaky_result(attempt: Attempt) -> Result:
        n = next(flaky)
        return fail("hiccup", runs_ms=200) if n % 3 == 1 else ok({"n": n}, runs_ms=300 + 100 * (n % 4))

    defs = [task_def("work"), task_def("flaky", retryCount=3, retryDelaySeconds=1, retryLogic="LINEAR_BACKOFF")]
    return Sim(complex_workflow(), defs, input={"x": 1}, children={"child": {"definition": child}},
               results={"gen": ok({"items": [{"p": 1}, {"p": 2}, {"p": 3}]}), "step": flaky_result,
                        "inner": flaky_result}, **options)


def test_golden_replay_of_a_complex_run() -> None:
    sim = complex_sim()
    workflow = sim.run()
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.output["loop"] == 4
    assert_golden("complex_run", workflow)


# --------------------------------------------------------------------------------------------------
# State round trips
# --------------------------------------------------------------------------------------------------


def test_every_decision_of_a_complex_run_is_the_same_from_a_json_round_trip() -> None:
    complex_sim(check_roundtrip=True).run()


def test_a_driver_that_re_reads_the_state_every_step_ends_exactly_like_one_that_keeps_it() -> None:
    kept = complex_sim().run()
    reread = complex_sim(reread=True).run()
    assert reread.model_dump(mode="json") == kept.model_dump(mode="json")


@pytest.mark.parametrize("workflow_file", [SINGLE, FORK, DYNAMIC, SUBWORKFLOW])
def test_seed_workflows_decide_the_same_from_a_json_round_trip(workflow_file: str) -> None:
    sim = seed_sim(workflow_file, DYNAMIC_INPUT if workflow_file == DYNAMIC else IMAGE_INPUT, check_roundtrip=True,
                   overrides={"upload_toS3_ref": [fail(), uploaded], "image_convert_resize_jpg_ref": [fail(), resized]})
    assert sim.run().status is WorkflowStatus.COMPLETED


def test_attempts_of_several_task_defs_are_handed_out_in_the_same_order_after_a_round_trip() -> None:
    # A rate-limited attempt waits for its window while another definition's queue empties and refills:
    # the order of the hand-outs must not depend on that history.
    fork = system("f", "FORK_JOIN", forkTasks=[[simple("l1", name="limited")], [simple("w1"), simple("w2")]])
    defs = [task_def("work"), task_def("limited", rateLimitPerFrequency=1, rateLimitFrequencyInSeconds=2)]
    sim = Sim(workflow_def([simple("l0", name="limited"), fork, system("j", "JOIN")]), defs, check_roundtrip=True,
              feed_load=True,
              results={"w1": ok(runs_ms=1000), "l0": ok(runs_ms=1000)})
    assert sim.run().status is WorkflowStatus.COMPLETED
    same_instant = [e.action.referenceTaskName for e in sim.log
                    if isinstance(e.action, StartTask) and e.at == T0 + 2000]
    assert same_instant == ["l1", "w2"]


def test_round_trip_in_the_middle_of_a_run_continues_identically() -> None:
    sim = complex_sim()
    sim.run(until=lambda s: s.steps >= 12)
    middle = sim.workflow
    restored = roundtrip(middle)
    assert restored.model_dump(mode="json") == middle.model_dump(mode="json")
    assert restored._index is None
    from kondukt.engine import decide

    for now in (sim.now, sim.now + 1500, sim.now + 60_000):
        mine, theirs = decide(sim.main.blueprint, middle, [], now), decide(sim.main.blueprint, restored, [], now)
        assert mine.model_dump(mode="json") == theirs.model_dump(mode="json")


def test_json_state_is_compact_and_parses_back() -> None:
    workflow = seed_sim(DYNAMIC, DYNAMIC_INPUT).run()
    text = workflow.model_dump_json(exclude_defaults=True)
    assert Workflow.model_validate_json(text).model_dump(mode="json") == workflow.model_dump(mode="json")
    assert len(text) < len(workflow.model_dump_json())
    assert "workflowTask" not in text  # plain dynamic tasks do not carry their definition


def test_the_examples_folder_is_where_the_scenarios_expect_it() -> None:
    for name in [SINGLE, FORK, DYNAMIC, SUBWORKFLOW, *TASK_DEF_FILES]:
        assert (EXAMPLES / name).is_file(), EXAMPLES / name
    assert example(SUBWORKFLOW)["tasks"][0]["forkTasks"][0][0]["type"] == "SUB_WORKFLOW"
