"""The ``kondukt`` command: one top-level parser, and a table of commands imported only when chosen.

Like Prefect's CLI (``src/prefect/cli/_app.py``), the top level knows every command by name and help line
only; the module behind a command is imported when that command runs (or asks for its ``--help``). So
``kondukt --help``, ``kondukt validate`` or ``kondukt run`` never import the Kubernetes clients, and
adding a command is one row in :data:`COMMANDS` plus a module exporting
``configure(name: str, parser: argparse.ArgumentParser) -> None``, which adds the command's arguments and
gives it a ``func=callable(args) -> int`` default (``parser.set_defaults(func=...)``); ``main`` calls it
and exits with the number it returns.

The cluster flags (``-n/--namespace``, ``--kubeconfig``, ``--context``) are accepted before the command
too, as kubectl users type them (``kondukt -n demo describe NAME``); given on both sides, the one after
the command wins. A command that does not take one refuses it with a clear message.

Exit codes: what the command returns (0 = success); 2 = invalid input (a ``KonduktUserError``, e.g. a
manifest mistake, or a bad flag); 1 = another ``KonduktError`` (e.g. the cluster refused); 130 = Ctrl-C;
70 = a bug in Kondukt (set ``KONDUKT_DEBUG=1`` to see its traceback). Messages go to stderr, never with a
traceback for anything a user can fix.

This module must stay small and import nothing heavy: it parses and dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata

from kondukt.errors import KonduktError

EXIT_INTERRUPTED = 130
EXIT_INTERNAL_ERROR = 70

CommandFunc = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """One ``kondukt`` command: its name, the module that configures and runs it, its help line."""

    name: str
    module: str
    help: str


_OPERATIONS = "kondukt.cli.operations"

#: Every command, in the order ``kondukt --help`` lists them. Modules are imported only when chosen.
COMMANDS: tuple[Command, ...] = (
    Command("import", "kondukt.cli.definitions", "convert definitions from other systems into Kondukt manifests"),
    Command("validate", "kondukt.cli.definitions", "check manifests and Conductor JSON without running anything"),
    Command("get", "kondukt.cli.inspect", "list workflows, or show one (like kubectl get)"),
    Command("describe", "kondukt.cli.inspect", "show one workflow in detail: attempts, conditions, events"),
    Command("watch", "kondukt.cli.inspect", "follow a workflow until it ends (exit 0 COMPLETED, 1 otherwise)"),
    Command("graph", "kondukt.cli.graph", "draw a workflow's graph (Mermaid, DOT, PNG, SVG)"),
    Command("retry", _OPERATIONS, "retry a FAILED / TIMED_OUT / TERMINATED workflow from its failed tasks"),
    Command("restart", _OPERATIONS, "start the workflow over (optionally with a new --input)"),
    Command("rerun", _OPERATIONS,
            "rerun the workflow from a task (--task REF), optionally with new --task-input / --input"),
    Command("skip", _OPERATIONS, "skip a task (--task REF) of a running workflow"),
    Command("complete", _OPERATIONS,
            "complete (or fail) a waiting task, e.g. HUMAN or WAIT (--task REF --status --output)"),
    Command("suspend", _OPERATIONS,
            "pause the workflow (spec.suspend=true): running attempts finish, nothing new starts"),
    Command("resume", _OPERATIONS, "resume a paused workflow (spec.suspend=false)"),
    Command("terminate", _OPERATIONS, "end the workflow TERMINATED (spec.terminate); running attempts are stopped"),
    Command("ui", "kondukt.cli.ui", "serve the web UI on this machine, with your kubeconfig's credentials"),
    Command("cron", "kondukt.cli.cron",
            "CronWorkflows: list them with their schedules (cron list), or start a run now (cron trigger NAME)"),
    Command("operator", "kondukt.cli.operator", "run the Kubernetes operator (workflows as Jobs)"),
    Command("run", "kondukt.cli.run", "run a workflow on this machine, without a cluster"),
)


def command_help(name: str) -> str:
    """The help line of a command (its module uses it for its description too)."""
    for command in COMMANDS:
        if command.name == name:
            return command.help
    raise KeyError(name)


# ============================================================================================ cluster flags
@dataclass(frozen=True)
class ClusterFlag:
    flags: tuple[str, ...]
    dest: str
    metavar: str

    @property
    def label(self) -> str:
        return "/".join(self.flags)


#: The flags kubectl users put before the command; each command that talks to a cluster takes them too.
CLUSTER_FLAGS: tuple[ClusterFlag, ...] = (
    ClusterFlag(("-n", "--namespace"), "namespace", "NS"),
    ClusterFlag(("--kubeconfig",), "kubeconfig", "FILE"),
    ClusterFlag(("--context",), "context", "NAME"),
)
_GLOBAL_DEST = "global_{}"


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """``--kubeconfig``, ``--context`` and ``-n/--namespace`` on a command that reads or changes Workflows."""
    group = parser.add_argument_group("cluster (also accepted before the command)")
    group.add_argument(
        "--kubeconfig", metavar="FILE", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)"
    )
    group.add_argument("--context", metavar="NAME", help="kubeconfig context to use (default: the current one)")
    group.add_argument("-n", "--namespace", metavar="NS", help="namespace (default: the context's, else 'default')")


def _add_global_cluster_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster (before the command, as with kubectl)")
    for flag in CLUSTER_FLAGS:
        group.add_argument(
            *flag.flags,
            dest=_GLOBAL_DEST.format(flag.dest),
            metavar=flag.metavar,
            default=argparse.SUPPRESS,
            help=f"same as {flag.label} after a command that talks to a cluster",
        )


def _apply_global_cluster_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Hand the flags given before the command to the command (its own, after it, win)."""
    command = _command_parser(parser, args.command_name) if args.command_name else None
    for flag in CLUSTER_FLAGS:
        given = vars(args).pop(_GLOBAL_DEST.format(flag.dest), None)
        if given is None:
            continue
        action = _action_for(command, flag.flags[-1]) if command is not None else None
        if action is None:
            where = f"`kondukt {args.command_name}`" if args.command_name else "kondukt without a command"
            parser.error(f"{flag.label} before the command: {where} does not take it")
        current = getattr(args, action.dest, None)
        if isinstance(current, list):  # a repeatable flag (`kondukt operator -n a -n b`)
            setattr(args, action.dest, [given, *current])
        elif current is None:
            setattr(args, action.dest, given)


def _command_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser | None = action.choices.get(name)
            return found
    return None


def _action_for(parser: argparse.ArgumentParser, option: str) -> argparse.Action | None:
    """The action of ``option`` in a command's parser, or in its own subcommands' (``import conductor``)."""
    for action in parser._actions:
        if option in action.option_strings:
            return action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found = _action_for(sub, option)
                if found is not None:
                    return found
    return None


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command named in ``argv``: its first word that is neither a global flag nor a flag's value."""
    takes_value = {f for flag in CLUSTER_FLAGS for f in flag.flags}
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--":
            return None
        elif word.startswith("-"):
            skip = word in takes_value
        else:
            return word
    return None


# ============================================================================================ the parser
def _version() -> str:
    try:
        return metadata.version("kondukt")
    except metadata.PackageNotFoundError:  # running from a source tree without an install
        return "unknown"


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``kondukt`` parser; with ``argv``, only the command it names is imported and configured
    (the others are listed by name and help line); without, every command is (for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="kondukt",
        description=(
            "Netflix-Conductor-style workflows on Kubernetes: import Conductor JSON, validate definitions, "
            "run workflows locally or watch them in a cluster."
        ),
        allow_abbrev=False,  # the command is found by scanning argv: global flags must be spelled out
    )
    parser.add_argument("--version", action="version", version=f"kondukt {_version()}")
    _add_global_cluster_options(parser)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command_name")
    chosen = None if argv is None else chosen_command(argv)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=_sentence(command.help))
        if argv is None or command.name == chosen:
            importlib.import_module(command.module).configure(command.name, sub)
    return parser


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line's arguments, the cluster flags given before the command handed to it.

    Raises SystemExit as argparse does (``--help``, ``--version``, usage errors)."""
    parser = build_parser(argv)
    args = parser.parse_args(list(argv))
    _apply_global_cluster_options(args, parser)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        raise SystemExit(2)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``kondukt`` command line; returns the exit code (the console script exits with it)."""
    try:
        args = parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_request:  # --help, --version, or a usage error (argparse printed it)
        return _exit_code(exit_request.code)
    func: CommandFunc = args.func
    try:
        return func(args)
    except KonduktError as err:
        print(err.message, file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (`kondukt ... | head`): not an error worth a message
        _silence_stdout()
        return 0
    except SystemExit as exit_request:
        return _exit_code(exit_request.code)
    except Exception as err:
        if os.environ.get("KONDUKT_DEBUG"):
            raise
        print(
            f"kondukt: internal error: {type(err).__name__}: {err} (set KONDUKT_DEBUG=1 to see the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (e.g. captured in tests)
        pass
