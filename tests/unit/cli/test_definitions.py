"""The ``kondukt`` command core: ``import conductor``, ``validate``, exit codes and messages, the registry."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from kondukt.cli import app as cli
from kondukt.cli import definitions as cli_definitions
from kondukt.errors import KonduktError, ManifestError

EXAMPLES = Path(__file__).resolve().parents[4] / "shared" / "conductor-examples"
REPO = Path(__file__).resolve().parents[3]
KONDUKT = REPO / ".venv" / "bin" / "kondukt"
INVALID = ["workflow__image_convert_resize_multipleformat.json", "workflow__image_effects_pipeline.json"]
VALID = [p for p in sorted(EXAMPLES.glob("*.json")) if p.name not in INVALID]
TASK_FILES = [str(p) for p in sorted(EXAMPLES.glob("task__*.json"))]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


# --------------------------------------------------------------------------------------------------
# import conductor
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_import_each_corpus_file(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    code, out, err = run(capsys, "import", "conductor", str(path))
    assert (code, err) == (0, "")
    (manifest,) = list(yaml.safe_load_all(out))
    assert manifest["apiVersion"] == "kondukt.io/v1alpha1"
    assert manifest["kind"] in ("TaskDef", "WorkflowDef")


@pytest.mark.parametrize("name", INVALID)
def test_import_invalid_json_exits_2_with_line_and_column(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    code, out, err = run(capsys, "import", "conductor", str(EXAMPLES / name))
    assert (code, out) == (2, "")
    assert err.startswith(f"{EXAMPLES / name}: line ")
    assert ", column " in err and "invalid JSON" in err


def test_one_invalid_file_means_nothing_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "import", "conductor", *TASK_FILES, str(EXAMPLES / INVALID[1]))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "line 30, column 7" in err


def test_import_with_image_and_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "import",
        "conductor",
        str(EXAMPLES / "workflow__image_convert_resize.json"),
        str(EXAMPLES / "task__image_convert_resize.json"),
        str(EXAMPLES / "task__upload_toS3.json"),
        "--image",
        "ghcr.io/x/workers:0.1.0",
        "--command",
        "kondukt-worker --verbose",
        "--namespace",
        "images",
    )
    assert code == 0
    documents = list(yaml.safe_load_all(out))
    assert [(d["kind"], d["metadata"]["name"], d["metadata"]["namespace"]) for d in documents] == [
        ("WorkflowDef", "image-convert-resize-v1", "images"),
        ("TaskDef", "image-convert-resize", "images"),
        ("TaskDef", "upload-tos3", "images"),
    ]
    assert documents[2]["spec"]["template"] == {
        "image": "ghcr.io/x/workers:0.1.0",
        "command": ["kondukt-worker", "--verbose", "upload_toS3"],
    }


def test_image_alone_implies_the_builtin_worker_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "import", "conductor", str(EXAMPLES / "task__upload_toS3.json"), "--image", "w:1"
    )
    assert code == 0
    assert yaml.safe_load(out)["spec"]["template"] == {
        "image": "w:1",
        "command": ["kondukt-worker", "upload_toS3"],
    }


def test_import_reads_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('{"name": "from_pipe"}'))
    code, out, _ = run(capsys, "import", "conductor", "-")
    assert code == 0 and yaml.safe_load(out)["metadata"]["name"] == "from-pipe"


IMPORT_ERRORS = [
    pytest.param(
        ["--command", "'unclosed"], '--command "\'unclosed": No closing quotation', id="bad-command-quoting"
    ),
    pytest.param(["--command", ""], "--command is empty", id="empty-command"),
]


@pytest.mark.parametrize(("flags", "message"), IMPORT_ERRORS)
def test_import_flag_errors(capsys: pytest.CaptureFixture[str], flags: list[str], message: str) -> None:
    code, out, err = run(capsys, "import", "conductor", str(EXAMPLES / "task__upload_toS3.json"), *flags)
    assert (code, out, err.strip()) == (2, "", message)


def test_import_rejects_a_kondukt_manifest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("apiVersion: kondukt.io/v1alpha1\nkind: TaskDef\nmetadata: {name: t}\n")
    code, out, err = run(capsys, "import", "conductor", str(path))
    assert (code, out) == (2, "")
    assert err.strip() == f"{path}: document 1: already a Kondukt manifest (kind TaskDef): nothing to import"


def test_import_reports_definition_problems_with_the_task_reference(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "wf.json"
    path.write_text('{"name": "wf", "tasks": [{"name": "j", "taskReferenceName": "j_ref", "type": "JOIN"}]}')
    code, out, err = run(capsys, "import", "conductor", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"{path}: WorkflowDef 'wf': task 'j_ref' (tasks[0]): type is JOIN but")


# --------------------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------------------


def test_validate_ok_counts_definitions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "validate", str(EXAMPLES / "workflow__image_convert_resize.json"), *TASK_FILES
    )
    assert (code, err) == (0, "")
    assert out == "ok: 16 task definitions, 1 workflow definition, 0 workflows\n"


def test_validate_reports_missing_task_defs_unless_external(capsys: pytest.CaptureFixture[str]) -> None:
    workflow_file = str(EXAMPLES / "workflow__image_convert_resize.json")
    code, out, err = run(capsys, "validate", workflow_file)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"{workflow_file} (WorkflowDef image_convert_resize): task 'image_convert_resize_ref' (tasks[0]): "
        "name 'image_convert_resize' has no TaskDef (define a TaskDef named 'image_convert_resize', "
        "or give the task an inline taskDefinition)",
        f"{workflow_file} (WorkflowDef image_convert_resize): task 'upload_toS3_ref' (tasks[1]): "
        "name 'upload_toS3' has no TaskDef (define a TaskDef named 'upload_toS3', "
        "or give the task an inline taskDefinition)",
    ]
    code, out, _ = run(capsys, "validate", "--allow-external-refs", workflow_file)
    assert (code, out) == (0, "ok: 0 task definitions, 1 workflow definition, 0 workflows\n")


def test_validate_reports_every_bad_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest = tmp_path / "x.yaml"
    manifest.write_text(
        "apiVersion: kondukt.io/v1alpha1\nkind: WorkflowDef\nmetadata: {name: w}\n"
        "spec: {name: w, tasks: [{name: a, taskReferenceName: a_ref, type: SIMPL}]}\n"
    )
    code, out, err = run(
        capsys, "validate", str(manifest), *(str(EXAMPLES / n) for n in INVALID), str(tmp_path / "gone.yaml")
    )
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert lines[0].startswith(
        f"{manifest}: document 1 (WorkflowDef w): task 'a_ref' (spec.tasks[0]): type 'SIMPL' is not a task type (known: "
    )
    assert "line 85, column 2: invalid JSON: Extra data" in lines[1]
    assert "line 30, column 7: invalid JSON: Expecting value" in lines[2]
    assert lines[3] == f"{tmp_path / 'gone.yaml'}: no such file"


def test_validate_reads_a_gitops_repository_with_its_cron_workflow(capsys: pytest.CaptureFixture[str]) -> None:
    gitops = REPO / "examples" / "gitops"
    code, out, err = run(
        capsys, "validate", *(str(gitops / d) for d in ("taskdefs", "workflowdefs", "cronworkflows"))
    )
    assert (code, err) == (0, "")
    assert out == "ok: 2 task definitions, 1 workflow definition, 0 workflows, 1 cron workflow\n"


CRON = "apiVersion: kondukt.io/v1alpha1\nkind: CronWorkflow\nmetadata: {{name: {name}}}\nspec: {spec}\n"


def test_validate_checks_a_cron_workflows_schedule_and_its_workflow_spec(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The schedule by the operator's own parser, the workflowSpec like a Workflow's spec: each mistake
    once, with its document, name and field, all of them at once."""
    manifest = tmp_path / "cron.yaml"
    manifest.write_text("---\n".join([
        CRON.format(name="six", spec="{schedule: '30 2 * * * *', workflowSpec: {workflowDefRef: {name: w}}}"),
        CRON.format(name="mars", spec="{schedule: '@daily', timezone: Mars/Olympus, workflowSpec: {}}"),
        CRON.format(name="policy", spec="{schedule: '@daily', concurrencyPolicy: Sometimes, "
                    "workflowSpec: {definition: {name: x, tasks: [{name: t, taskReferenceName: t, type: WAT}]}}}"),
        CRON.format(name="bare", spec="{workflowSpec: 3}"),
        CRON.format(name="unknown", spec="{schedule: '@daily', workflowSpec: {workflowDefRef: {name: gone}}}"),
    ]))
    code, out, err = run(capsys, "validate", str(manifest))
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert lines[:4] == [
        f"{manifest}: document 1 (CronWorkflow six): spec.schedule: '30 2 * * * *': expected 5 fields "
        "(minute hour day-of-month month day-of-week), found 6",
        f"{manifest}: document 2 (CronWorkflow mars): spec.timezone: 'Mars/Olympus' is not a known time zone "
        "(an IANA name such as Europe/Berlin or America/New_York)",
        f"{manifest}: document 2 (CronWorkflow mars): spec.workflowSpec.workflowDefRef is missing "
        "(name a WorkflowDef, or give an inline spec.workflowSpec.definition)",
        f"{manifest}: document 3 (CronWorkflow policy): spec.concurrencyPolicy: Input should be 'Allow', "
        "'Forbid' or 'Replace'",
    ]
    assert lines[4].startswith(
        f"{manifest}: document 3 (CronWorkflow policy): task 't' (spec.workflowSpec.definition.tasks[0]): "
        "type 'WAT' is not a task type"
    )
    assert lines[5:] == [
        f"{manifest}: document 4 (CronWorkflow bare): spec.schedule: set spec.schedule or spec.schedules "
        "(a cron expression)",
        f"{manifest}: document 4 (CronWorkflow bare): spec.workflowSpec must be an object, not an int "
        "(the spec of each run: workflowDefRef or definition, input)",
    ]
    # Once every file reads, the set is checked: the WorkflowDef a cron's runs name must be in the files.
    manifest.write_text(CRON.format(name="unknown", spec="{schedule: '@daily', workflowSpec: "
                                                         "{workflowDefRef: {name: gone}}}"))
    code, out, err = run(capsys, "validate", str(manifest))
    assert (code, out) == (2, "")
    assert err.startswith(f"{manifest}: document 1 (CronWorkflow unknown): spec.workflowSpec.workflowDefRef ")
    code, out, err = run(capsys, "validate", "--allow-external-refs", str(manifest))
    assert (code, out, err) == (0, "ok: 0 task definitions, 0 workflow definitions, 0 workflows, 1 cron workflow\n", "")


# --------------------------------------------------------------------------------------------------
# The command core: version, usage, exit codes, the registry
# --------------------------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("kondukt ")


USAGE_ERRORS = [
    pytest.param([], "commands:", id="no-command"),
    pytest.param(["frobnicate"], "invalid choice: 'frobnicate'", id="unknown-command"),
    pytest.param(["import"], "name a source", id="import-without-source"),
    pytest.param(
        ["import", "conductor"], "the following arguments are required: FILE", id="import-without-files"
    ),
]


@pytest.mark.parametrize(("argv", "phrase"), USAGE_ERRORS)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], phrase: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2 and phrase in err


def test_help_documents_the_worker_mapping_and_the_all_or_nothing_rule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "import", "conductor", "--help")
    assert code == 0
    assert "template: {image: IMG, command: [CMD..., <task name>]}" in out
    assert "nothing is printed" in out and "exit code is 2" in out


def _command_module(func: cli.CommandFunc) -> types.ModuleType:
    module = types.ModuleType("kondukt_test_commands")

    def configure(name: str, parser: argparse.ArgumentParser) -> None:
        parser.set_defaults(func=func)

    module.configure = configure  # type: ignore[attr-defined]
    return module


def _raise(error: BaseException) -> cli.CommandFunc:
    def func(_args: argparse.Namespace) -> int:
        raise error

    return func


REGISTERED = [
    pytest.param(lambda _args: 7, 7, "", id="returns-its-code"),
    pytest.param(_raise(ManifestError("f.yaml: bad")), 2, "f.yaml: bad", id="manifest-error"),
    pytest.param(_raise(KonduktError("cluster unreachable")), 1, "cluster unreachable", id="kondukt-error"),
    pytest.param(_raise(KeyboardInterrupt()), 130, "interrupted", id="ctrl-c"),
    pytest.param(_raise(RuntimeError("oops")), 70, "internal error: RuntimeError: oops", id="bug"),
]


@pytest.mark.parametrize(("func", "code", "message"), REGISTERED)
def test_registered_commands_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    func: cli.CommandFunc,
    code: int,
    message: str,
) -> None:
    monkeypatch.setitem(sys.modules, "kondukt_test_commands", _command_module(func))
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, cli.Command("boom", "kondukt_test_commands", "fails")))
    monkeypatch.delenv("KONDUKT_DEBUG", raising=False)
    got, _, err = run(capsys, "boom")
    assert got == code
    assert message in err


def test_the_table_names_this_module_for_import_and_validate() -> None:
    modules = {command.name: command.module for command in cli.COMMANDS}
    assert modules["import"] == modules["validate"] == "kondukt.cli.definitions"
    assert cli_definitions.configure is not None


def test_real_console_script() -> None:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    bad = subprocess.run(
        [str(KONDUKT), "import", "conductor", str(EXAMPLES / INVALID[0])],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert (bad.returncode, bad.stdout) == (2, "")
    assert "line 85, column 2: invalid JSON" in bad.stderr and "Traceback" not in bad.stderr
    good = subprocess.run(
        [str(KONDUKT), "validate", str(EXAMPLES / "workflow__video_recipes.json"), *TASK_FILES],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert (good.returncode, good.stderr) == (0, "")
    assert good.stdout.startswith("ok: 16 task definitions, 1 workflow definition")
