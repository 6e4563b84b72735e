"""The ``kondukt`` top level: the lazy table of commands and the cluster flags given before a command."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kondukt.cli import app, inspect

REPO = Path(__file__).resolve().parents[3]
CLUSTER_COMMAND_MODULES = ("kondukt.cli.inspect", "kondukt.cli.operations", "kondukt.cli.graph", "kondukt.cli.cluster")
HEAVY = ("kubernetes", "kubernetes_asyncio", "kopf", "aiohttp", "kondukt.kube.operator", "kondukt.local.runner")


# ---------------------------------------------------------------------------------------------- cluster flags
@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "demo", "describe", "wf"],
        ["--namespace", "demo", "describe", "wf"],
        ["--namespace=demo", "describe", "wf"],
        ["-ndemo", "describe", "wf"],
        ["describe", "wf", "-n", "demo"],
    ],
)
def test_the_namespace_may_come_before_the_command_as_with_kubectl(argv: list[str]) -> None:
    args = app.parse_args(argv)
    assert (args.func, args.name, args.namespace) == (inspect.cmd_describe, "wf", "demo")


def test_every_cluster_flag_may_come_before_the_command() -> None:
    args = app.parse_args(["--kubeconfig", "/k", "--context", "c", "-n", "ns", "get", "-A"])
    assert (args.kubeconfig, args.context, args.namespace, args.all_namespaces) == ("/k", "c", "ns", True)
    assert not any(key.startswith("global_") for key in vars(args))


def test_the_flag_after_the_command_wins() -> None:
    args = app.parse_args(["-n", "before", "--context", "c1", "retry", "wf", "-n", "after"])
    assert (args.namespace, args.context, args.operation) == ("after", "c1", "retry")


def test_the_operator_watches_the_namespaces_given_on_both_sides() -> None:
    assert app.parse_args(["-n", "a", "operator", "-n", "b", "--standalone"]).namespaces == ["a", "b"]


def test_import_takes_the_namespace_before_the_command_too() -> None:
    assert app.parse_args(["-n", "images", "import", "conductor", "f.json"]).namespace == "images"


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["-n", "demo", "validate", "f.yaml"], "-n/--namespace before the command: `kondukt validate` does not take it"),
        (["--context", "c", "run", "f.yaml"], "--context before the command: `kondukt run` does not take it"),
        (["--kubeconfig", "k", "import", "conductor", "f.json"],
         "--kubeconfig before the command: `kondukt import` does not take it"),
    ],
)
def test_a_command_that_does_not_take_a_cluster_flag_refuses_it(
    argv: list[str], phrase: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.main(argv) == 2
    err = capsys.readouterr().err
    assert phrase in err and "usage: kondukt" in err and "Traceback" not in err


def test_a_flag_value_is_not_taken_for_the_command() -> None:
    assert app.chosen_command(["-n", "get", "describe", "wf"]) == "describe"
    assert app.chosen_command(["--kubeconfig", "run", "get"]) == "get"
    assert app.chosen_command(["--version"]) is None
    assert app.chosen_command(["--", "get"]) is None


def test_global_flags_are_spelled_out() -> None:
    with pytest.raises(SystemExit):
        app.parse_args(["--kube", "k", "get"])  # no abbreviations: the command is found by scanning argv


# ---------------------------------------------------------------------------------------------- lazy commands
def _imported_after(code: str) -> dict[str, bool]:
    """Which modules a fresh interpreter has imported after running ``code`` (stdout silenced)."""
    watched = [*CLUSTER_COMMAND_MODULES, *HEAVY, "kondukt.cli.definitions", "kondukt.cli.run"]
    script = (
        "import contextlib, io, json, sys\n"
        "from kondukt.cli import app\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        f"    {code}\n"
        f"print(json.dumps({{m: m in sys.modules for m in {watched!r}}}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    imported: dict[str, bool] = json.loads(done.stdout.splitlines()[-1])
    return imported


def test_help_imports_no_command_module() -> None:
    imported = _imported_after("app.main(['--help'])")
    assert [m for m, yes in imported.items() if yes] == []


def test_only_the_chosen_command_is_imported() -> None:
    imported = _imported_after("app.main(['validate', '--help'])")
    assert [m for m, yes in imported.items() if yes] == ["kondukt.cli.definitions"]


def test_help_lists_every_command_in_table_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert app.main(["--help"]) == 0
    out = capsys.readouterr().out
    positions = [out.index(f"    {command.name} ") for command in app.COMMANDS]
    assert positions == sorted(positions)
    assert "retry a FAILED / TIMED_OUT / TERMINATED workflow from its failed tasks" in " ".join(out.split())
    assert "-n NS, --namespace NS" in out


def test_every_command_module_configures_the_commands_the_table_gives_it() -> None:
    parser = app.build_parser()  # imports and configures every command
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(commands.choices) == [command.name for command in app.COMMANDS]
    for name, sub in commands.choices.items():
        assert callable(sub.get_default("func")), name


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["operator", "--shards", "4"], "--shards needs --lease NAME"),
        (["operator", "--lease", "k", "--lease-namespace", "ops", "--shards", "0"], "--shards must be at least 1, got 0"),
    ],
)
def test_bad_shard_flags_are_named(argv: list[str], phrase: str) -> None:
    from kondukt.cli import operator
    from kondukt.errors import KonduktUserError

    with pytest.raises(KonduktUserError, match=phrase):
        operator.run(app.parse_args(argv))
