"""``kondukt run`` as users run it: a subprocess, real workers, the embedded S3, exit codes, signals.

The examples and the seed's Conductor JSON run with the built-in workers on the sample image; the
command-line behaviour (``-o json``, exit codes, input handling, errors, Ctrl-C) is checked with a fake
worker under ``tests/fixtures/workers``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from PIL import Image

from tests.bigvalues import incompressible_inline
from tests.unit.cli.runs import ENDPOINT_VARIABLES, kondukt_run, write
from tests.unit.local.processes import FAKE_WORKER, process_alive, wait_until

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
SAMPLE_IMAGE = EXAMPLES / "images" / "sample.jpg"
SEED = Path(os.environ.get("KONDUKT_CONDUCTOR_EXAMPLES", REPO.parent / "shared" / "conductor-examples"))


def local_file(uri: str, data_dir: Path) -> Path:
    """Where an output URI of a run lives on disk (file://, s3:// or the embedded endpoint's URL)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "s3":
        return data_dir / "s3" / parsed.netloc / unquote(parsed.path.lstrip("/"))
    assert parsed.scheme == "http" and parsed.hostname == "127.0.0.1", uri
    return data_dir / "s3" / unquote(parsed.path.lstrip("/"))


def output_images(output: Any) -> list[str]:
    """Every file location (a URI string) in a workflow output, in order."""
    found: list[str] = []
    if isinstance(output, str) and output.startswith(("s3://", "http://", "file://")):
        found.append(output)
    elif isinstance(output, dict):
        for value in output.values():
            found.extend(output_images(value))
    elif isinstance(output, list):
        for item in output:
            found.extend(output_images(item))
    return found


def assert_images_fit(execution: dict[str, Any], data_dir: Path, width: int, height: int, count: int) -> None:
    images = output_images(execution["output"])
    assert len(images) == count, execution["output"]
    for uri in images:
        path = local_file(uri, data_dir)
        assert path.is_file(), f"{uri} -> {path}"
        with Image.open(path) as image:
            assert image.width <= width and image.height <= height


def fake_manifests(tasks_yaml: str, *, input_yaml: str = "{}", **policy: int) -> str:
    """TaskDef ``fake`` (the fake worker), WorkflowDef ``fake_flow`` with ``tasks_yaml``, and a Workflow."""
    settings = {"retryCount": 0, "retryDelaySeconds": 0, "responseTimeoutSeconds": 0, **policy}
    policy_yaml = "".join(f"  {key}: {value}\n" for key, value in settings.items())
    return f"""\
apiVersion: kondukt.io/v1alpha1
kind: TaskDef
metadata: {{name: fake}}
spec:
  name: fake
{policy_yaml}  template:
    command: [{json.dumps(sys.executable)}, {json.dumps(str(FAKE_WORKER))}]
---
apiVersion: kondukt.io/v1alpha1
kind: WorkflowDef
metadata: {{name: fake-flow}}
spec:
  name: fake_flow
  version: 1
  tasks:
{tasks_yaml}
---
apiVersion: kondukt.io/v1alpha1
kind: Workflow
metadata: {{name: fake-run}}
spec:
  workflowDefRef: {{name: fake_flow}}
  input: {input_yaml}
"""


# --------------------------------------------------------------------------------------------------
# The examples and the seed, with the built-in workers
# --------------------------------------------------------------------------------------------------

EXAMPLE_EXPECTATIONS = {
    # file: (max width, max height, number of images in the output)
    "image-convert-resize.yaml": (300, 300, 1),
    "image-multiple-format.yaml": (300, 300, 2),
    "image-dynamic-fork.yaml": (300, 300, 6),
    "image-subworkflow.yaml": (300, 300, 2),
}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXAMPLE_EXPECTATIONS)


@pytest.mark.slow
@pytest.mark.parametrize("example", sorted(EXAMPLE_EXPECTATIONS))
def test_example_completes_with_real_workers_and_local_s3(example: str, tmp_path: Path) -> None:
    assert SAMPLE_IMAGE.is_file(), f"the sample image {SAMPLE_IMAGE} is missing"
    data_dir = tmp_path / "data"
    # Run from another directory: the example's file:images/sample.jpg is relative to the manifest.
    done = kondukt_run(str(EXAMPLES / example), "-o", "json", cwd=tmp_path, data_dir=data_dir)
    assert done.returncode == 0, done.stderr + done.stdout
    execution = json.loads(done.stdout)
    assert execution["status"] == "COMPLETED"
    assert all(task["status"] == "COMPLETED" for task in execution["tasks"])
    assert_images_fit(execution, data_dir, *EXAMPLE_EXPECTATIONS[example])


SEED_INPUT = {
    "fileLocation": f"file:{SAMPLE_IMAGE}",
    "recipeParameters": {"outputFormat": "png", "outputSize": {"width": 200, "height": 200}},
    "outputFormats": ["jpg", "webp"],
    "outputSizes": [{"width": 200, "height": 200}, {"width": 100, "height": 100}],
    "maintainAspectRatio": True,
}

#: The seed's image workflows (../shared/conductor-examples) run unchanged with examples/conductor/taskdefs.yaml.
#: workflow__image_convert_resize_multipleformat.json is left out: it is invalid JSON upstream (a trailing
#: comma) and is rejected with exit code 2; its valid 2022-02-02 version runs.
SEED_RUNS = {
    "image_processing (image_toS3, 2022-01-24)": (["workflow__image_processing__2022-01-24_df694a7.json"], 1),
    "image_convert_resize": (["workflow__image_convert_resize.json"], 1),
    "image_convert_resize (blog era)": (
        ["workflow__image_convert_resize__2022-01-24_f2a9a4a_blog-era.json"],
        1,
    ),
    "multipleformat FORK_JOIN": (
        ["workflow__image_convert_resize_multipleformat__2022-02-02_af15736.json"],
        2,
    ),
    "dynamic fork": (["workflow__image_multiple_convert_resize.json"], 4),
    "dynamic fork (2022-02-02)": (["workflow__image_multiple_convert_resize__2022-02-02_af15736.json"], None),
    "SUB_WORKFLOW in a fork": (
        [
            "workflow__image_convert_resize_multipleformat_subworkflow.json",
            "workflow__image_convert_resize.json",
        ],
        2,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(SEED_RUNS))
def test_seed_conductor_json_runs_unchanged(case: str, tmp_path: Path) -> None:
    files, images = SEED_RUNS[case]
    assert SAMPLE_IMAGE.is_file(), f"the sample image {SAMPLE_IMAGE} is missing"
    for name in files:
        assert (SEED / name).is_file(), (
            f"the seed corpus is missing {SEED / name} (set KONDUKT_CONDUCTOR_EXAMPLES)"
        )
    data_dir = tmp_path / "data"
    done = kondukt_run(
        str(EXAMPLES / "conductor" / "taskdefs.yaml"),
        *(str(SEED / name) for name in files),
        "--input",
        json.dumps(SEED_INPUT),
        "-o",
        "json",
        cwd=tmp_path,
        data_dir=data_dir,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    execution = json.loads(done.stdout)
    assert execution["status"] == "COMPLETED"
    if images is not None:  # the 2022-02-02 dynamic fork's outputParameters name a task that is not there
        assert_images_fit(execution, data_dir, 200, 200, images)


# --------------------------------------------------------------------------------------------------
# -o json and exit codes
# --------------------------------------------------------------------------------------------------

RETRYING_TASKS = """\
    - {name: fake, taskReferenceName: flaky, inputParameters: {failUntilRetry: 2}}
    - {name: fake, taskReferenceName: last, inputParameters: {seen: "${flaky.output.retryCount}"}}"""


def test_json_output_lists_every_attempt_in_conductors_shape(tmp_path: Path) -> None:
    manifest = write(tmp_path, "flow.yaml", fake_manifests(RETRYING_TASKS, retryCount=2, retryDelaySeconds=1))
    done = kondukt_run(str(manifest), "-o", "json", cwd=tmp_path, data_dir=tmp_path / "data")
    assert done.returncode == 0, done.stderr
    execution = json.loads(done.stdout)
    for key in ("workflowId", "status", "input", "output", "variables", "tasks", "startTime", "endTime"):
        assert key in execution
    assert execution["status"] == "COMPLETED" and execution["reasonForIncompletion"] is None
    for internal in ("nextSeq", "appliedOperations", "failureWorkflowStarted", "timeoutAlerted"):
        assert internal not in execution
    tasks = execution["tasks"]
    assert [(t["referenceTaskName"], t["retryCount"], t["status"]) for t in tasks] == [
        ("flaky", 0, "FAILED"),
        ("flaky", 1, "FAILED"),
        ("flaky", 2, "COMPLETED"),
        ("last", 0, "COMPLETED"),
    ]
    for task in tasks:
        for key in (
            "taskId",
            "taskDefName",
            "taskType",
            "inputData",
            "outputData",
            "startTime",
            "endTime",
            "iteration",
        ):
            assert key in task
        for internal in ("dispatched", "heartbeat", "loopTaskRef", "parentTaskRef", "workflowTask"):
            assert internal not in task
        assert task["taskType"] == "fake"
    assert "transient failure on attempt 0" in tasks[0]["reasonForIncompletion"]
    assert tasks[3]["inputData"] == {"seen": 2}


def test_a_failed_workflow_exits_1(tmp_path: Path) -> None:
    tasks = '    - {name: fake, taskReferenceName: broken, inputParameters: {exitCode: 4, stderr: "cannot go on"}}'
    manifest = write(tmp_path, "flow.yaml", fake_manifests(tasks))
    done = kondukt_run(str(manifest), "-o", "json", cwd=tmp_path, data_dir=tmp_path / "data")
    assert done.returncode == 1
    execution = json.loads(done.stdout)
    assert execution["status"] == "FAILED"
    assert "cannot go on" in execution["reasonForIncompletion"]


def test_a_timed_out_workflow_exits_1_and_kills_the_tree(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    tasks = (
        "    - {name: fake, taskReferenceName: slow, inputParameters: "
        f"{{spawnChild: true, pidFile: {json.dumps(str(pid_file))}, sleepSeconds: 60}}}}"
    )
    # Five seconds: the worker must have started its child before the deadline, whatever the machine's load.
    manifest = write(tmp_path, "flow.yaml", fake_manifests(tasks, timeoutSeconds=5))
    done = kondukt_run(str(manifest), "-o", "json", cwd=tmp_path, data_dir=tmp_path / "data")
    assert done.returncode == 1
    assert json.loads(done.stdout)["status"] == "TIMED_OUT"
    worker_pid, child_pid = (int(p) for p in pid_file.read_text().split())
    assert wait_until(lambda: not process_alive(worker_pid) and not process_alive(child_pid))


def test_progress_is_plain_lines_when_not_a_terminal(tmp_path: Path) -> None:
    manifest = write(
        tmp_path, "flow.yaml", fake_manifests("    - {name: fake, taskReferenceName: only_task}")
    )
    done = kondukt_run(str(manifest), cwd=tmp_path, data_dir=tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout
    lines = done.stdout.splitlines()
    assert any("IN_PROGRESS" in line and line.endswith("only_task") for line in lines)
    assert any("COMPLETED" in line and line.endswith("only_task") for line in lines)
    assert any(line.startswith("COMPLETED") and "fake_flow" in line for line in lines)


def test_input_overrides_the_workflow_and_resolves_relative_files(tmp_path: Path) -> None:
    (tmp_path / "inputs").mkdir()
    write(tmp_path / "inputs", "in.yaml", "picture: file:pics/a.jpg\nkeep: override\n")
    tasks = '    - {name: fake, taskReferenceName: echo, inputParameters: {all: "${workflow.input}"}}'
    manifest = write(
        tmp_path, "flow.yaml", fake_manifests(tasks, input_yaml="{keep: original, other: file:data/b.txt}")
    )
    done = kondukt_run(
        str(manifest), "--input", "@inputs/in.yaml", "-o", "json", cwd=tmp_path, data_dir=tmp_path / "d"
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)["tasks"][0]["outputData"]["input"]["all"]
    assert seen == {
        "keep": "override",
        "other": (tmp_path / "data" / "b.txt").as_uri(),  # relative to the manifest
        "picture": (tmp_path / "inputs" / "pics" / "a.jpg").as_uri(),  # relative to the input file
    }


def test_workflow_is_chosen_with_the_workflow_flag(tmp_path: Path) -> None:
    task_def, first_def, _ = fake_manifests("    - {name: fake, taskReferenceName: a}").split("---\n")
    second_def = first_def.replace("fake-flow", "other-flow").replace("fake_flow", "other_flow")
    manifest = write(tmp_path, "flows.yaml", "---\n".join([task_def, first_def, second_def]))
    ambiguous = kondukt_run(str(manifest), cwd=tmp_path, data_dir=tmp_path / "d")
    assert ambiguous.returncode == 2
    assert (
        "several workflows (fake_flow, other_flow)" in ambiguous.stderr and "--workflow" in ambiguous.stderr
    )
    chosen = kondukt_run(
        str(manifest), "--workflow", "other_flow:1", "-o", "json", cwd=tmp_path, data_dir=tmp_path / "d"
    )
    assert chosen.returncode == 0, chosen.stderr
    assert json.loads(chosen.stdout)["workflowName"] == "other_flow"


def test_a_cron_workflow_runs_once_with_its_workflow_spec(tmp_path: Path) -> None:
    """`kondukt run` of a CronWorkflow's file runs its workflowSpec once (as `kondukt cron trigger` starts it
    on a cluster), with its input, relative files resolved from its own file; beside a Workflow it is one of
    the choices --workflow names."""
    tasks = '    - {name: fake, taskReferenceName: echo, inputParameters: {all: "${workflow.input}"}}'
    task_def, flow_def, workflow = fake_manifests(tasks, input_yaml="{from: workflow}").split("---\n")
    (tmp_path / "crons").mkdir()
    cron = write(tmp_path / "crons", "nightly.yaml", """\
apiVersion: kondukt.io/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedule: "30 2 * * *"
  timezone: Europe/Berlin
  workflowSpec:
    workflowDefRef: {name: fake_flow}
    input: {from: cron, picture: "file:pics/a.jpg"}
""")
    defs = write(tmp_path, "defs.yaml", "---\n".join([task_def, flow_def]))
    done = kondukt_run(str(defs), str(cron), "-o", "json", cwd=tmp_path, data_dir=tmp_path / "d")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)["tasks"][0]["outputData"]["input"]["all"]
    assert seen == {"from": "cron", "picture": (tmp_path / "crons" / "pics" / "a.jpg").as_uri()}

    runs = write(tmp_path, "run.yaml", workflow)
    ambiguous = kondukt_run(str(defs), str(cron), str(runs), cwd=tmp_path, data_dir=tmp_path / "d")
    assert ambiguous.returncode == 2
    assert "2 Workflow and CronWorkflow manifests (Workflow fake-run, CronWorkflow nightly)" in ambiguous.stderr
    chosen = kondukt_run(str(defs), str(cron), str(runs), "--workflow", "fake-run", "-o", "json",
                         cwd=tmp_path, data_dir=tmp_path / "d")
    assert chosen.returncode == 0, chosen.stderr
    assert json.loads(chosen.stdout)["tasks"][0]["outputData"]["input"]["all"] == {"from": "workflow"}


# --------------------------------------------------------------------------------------------------
# Invalid input: exit 2, a message that says where, no traceback
# --------------------------------------------------------------------------------------------------

INVALID = {
    "yaml syntax": (
        "flow.yaml",
        "kind: TaskDef\nmetadata: {name: [unclosed\n",
        [],
        ["flow.yaml", "line", "invalid YAML"],
    ),
    "unknown task type": (
        "flow.yaml",
        fake_manifests("    - {name: fake, taskReferenceName: typo_ref, type: SIMPL}"),
        [],
        ["flow.yaml", "typo_ref", "type", "SIMPL"],
    ),
    "join on an unknown reference": (
        "flow.yaml",
        fake_manifests(
            "    - {name: fork, taskReferenceName: f, type: FORK_JOIN, forkTasks: [[{name: fake, taskReferenceName: x}]]}\n"
            "    - {name: join, taskReferenceName: j, type: JOIN, joinOn: [nope]}"
        ),
        [],
        ["flow.yaml", "'j'", "joinOn", "nope"],
    ),
    "env valueFrom": (
        "flow.yaml",
        fake_manifests("    - {name: fake, taskReferenceName: t}").replace(
            "  template:\n",
            "  template:\n    env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n",
        ),
        [],
        ["task 't'", "TaskDef 'fake'", "TOKEN", "valueFrom", "flow.yaml"],
    ),
    "no command": (
        "flow.yaml",
        fake_manifests("    - {name: fake, taskReferenceName: t}").replace(
            "  template:\n    command:", "  template:\n    args:"
        ),
        [],
        ["task 't'", "template.command"],
    ),
    "input not an object": (
        "flow.yaml",
        fake_manifests("    - {name: fake, taskReferenceName: t}"),
        ["--input", "[1]"],
        ["--input", "JSON object"],
    ),
    "input not JSON": (
        "flow.yaml",
        fake_manifests("    - {name: fake, taskReferenceName: t}"),
        ["--input", "{oops"],
        ["--input", "not valid JSON"],
    ),
    "bad parallelism": (
        "flow.yaml",
        fake_manifests("    - {name: fake, taskReferenceName: t}"),
        ["--parallelism", "0"],
        ["--parallelism"],
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_input_exits_2_with_a_located_message(case: str, tmp_path: Path) -> None:
    name, text, extra, fragments = INVALID[case]
    manifest = write(tmp_path, name, text)
    done = kondukt_run(str(manifest), *extra, cwd=tmp_path, data_dir=tmp_path / "d")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, f"{fragment!r} not in {done.stderr!r}"


def test_conductor_json_without_task_defs_says_how_to_run_it(tmp_path: Path) -> None:
    done = kondukt_run(
        str(SEED / "workflow__image_convert_resize.json"), cwd=tmp_path, data_dir=tmp_path / "d"
    )
    assert done.returncode == 2
    assert "image_convert_resize_ref" in done.stderr and "has no TaskDef" in done.stderr
    assert "examples/conductor/taskdefs.yaml" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    done = kondukt_run(str(tmp_path / "nope.yaml"), cwd=tmp_path, data_dir=tmp_path / "d")
    assert done.returncode == 2 and "nope.yaml" in done.stderr and "Traceback" not in done.stderr


# --------------------------------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_terminates_the_run_and_leaves_no_process(signum: signal.Signals, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    tasks = (
        "    - {name: fake, taskReferenceName: long_task, inputParameters: "
        f"{{spawnChild: true, pidFile: {json.dumps(str(pid_file))}, sleepSeconds: 120}}}}"
    )
    manifest = write(tmp_path, "flow.yaml", fake_manifests(tasks))
    env = {k: v for k, v in os.environ.items() if k not in ENDPOINT_VARIABLES}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kondukt.cli",
            "run",
            "--data-dir",
            str(tmp_path / "d"),
            str(manifest),
            "-o",
            "json",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(pid_file.exists)
        time.sleep(0.2)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1, stderr
    execution = json.loads(stdout)
    assert execution["status"] == "TERMINATED"
    assert execution["tasks"][0]["status"] == "CANCELED"
    worker_pid, child_pid = (int(p) for p in pid_file.read_text().split())
    assert wait_until(lambda: not process_alive(worker_pid) and not process_alive(child_pid))


# --------------------------------------------------------------------------------------------------
# jq that never ends (issue 16): evaluated in a pool process, never in the run's own process
# --------------------------------------------------------------------------------------------------

FOREVER_JQ = {"name": "forever", "version": 1, "tasks": [
    {"name": "spin", "taskReferenceName": "spin", "type": "JSON_JQ_TRANSFORM",
     "inputParameters": {"queryExpression": "def f: f; f", "x": 1}},
    {"name": "after", "taskReferenceName": "after", "type": "NOOP"},
]}


def evaluation_processes(parent: int) -> list[int]:
    """The jq evaluation processes whose parent is ``parent`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if int(fields[1]) == parent and b"kondukt.scriptpool" in command and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def test_a_jq_program_that_never_ends_fails_naming_the_time_limit(tmp_path: Path) -> None:
    flow = write(tmp_path, "forever.json", json.dumps(FOREVER_JQ))
    done = kondukt_run(str(flow), "-o", "json", "--script-time-limit", "1", cwd=tmp_path, data_dir=tmp_path / "d")
    assert done.returncode == 1, done.stderr
    execution = json.loads(done.stdout)
    reason = "task 'spin': jq: the evaluation exceeded its time limit of 1 s"
    spin = execution["tasks"][0]
    assert (execution["status"], execution["reasonForIncompletion"]) == (
        "FAILED", f"Task {spin['taskId']} failed with status: FAILED and reason: '{reason}'")
    assert [(t["referenceTaskName"], t["status"]) for t in execution["tasks"]] == [("spin", "FAILED")]
    assert execution["tasks"][0]["outputData"] == {"error": "jq: the evaluation exceeded its time limit of 1 s"}


def test_the_script_limit_flags_are_checked(tmp_path: Path) -> None:
    flow = write(tmp_path, "forever.json", json.dumps(FOREVER_JQ))
    done = kondukt_run(str(flow), "--script-memory-limit", "10", cwd=tmp_path, data_dir=tmp_path / "d")
    assert done.returncode == 2
    assert "memory limit must be at least 192 MiB" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_run_while_jq_is_evaluated(signum: signal.Signals, tmp_path: Path) -> None:
    flow = write(tmp_path, "forever.json", json.dumps(FOREVER_JQ))
    env = {k: v for k, v in os.environ.items() if k not in ENDPOINT_VARIABLES}
    process = subprocess.Popen(
        [sys.executable, "-m", "kondukt.cli", "run", "--data-dir", str(tmp_path / "d"), str(flow), "-o", "json",
         "--script-time-limit", "600"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert wait_until(lambda: bool(evaluation_processes(process.pid)))
        evaluators = evaluation_processes(process.pid)
        time.sleep(0.3)  # the evaluation is under way (spinning) when the signal comes
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1, stderr
    execution = json.loads(stdout)
    assert execution["status"] == "TERMINATED"
    assert execution["reasonForIncompletion"] == f"interrupted ({signum.name})"
    assert execution["tasks"][0]["status"] == "CANCELED"
    assert wait_until(lambda: not any(process_alive(pid) for pid in evaluators))


# --------------------------------------------------------------------------------------------------
# Values too large for a Workflow's status (issue 16): the same limit as a cluster without payload storage
# --------------------------------------------------------------------------------------------------

def test_a_result_too_large_for_a_cluster_fails_locally_too(tmp_path: Path) -> None:
    flow = write(tmp_path, "big.json", json.dumps({"name": "big", "version": 1, "tasks": [
        incompressible_inline("big", 2_500_000),
        {"name": "after", "taskReferenceName": "after", "type": "NOOP"},
    ]}))
    done = kondukt_run(str(flow), "-o", "json", cwd=tmp_path, data_dir=tmp_path / "d")
    assert done.returncode == 1, done.stderr
    execution = json.loads(done.stdout)
    assert execution["status"] == "FAILED"
    assert [(t["referenceTaskName"], t["status"]) for t in execution["tasks"]] == [
        ("big", "FAILED_WITH_TERMINAL_ERROR")]
    big = execution["tasks"][0]
    assert execution["reasonForIncompletion"] == (
        f"Task {big['taskId']} failed with status: FAILED_WITH_TERMINAL_ERROR and reason: "
        "'task 'big': its output is 2.4 MiB (2527462 bytes), more than the 256 KiB a value may take in the workflow's "
        "state; the limit of a Workflow's status in a cluster without external payload storage'")
