"""The ``kondukt`` command: one top-level parser, and subcommands registered by the modules that own them.

Adding a command group is a one-line edit: put its module in ``_COMMANDS``. Each listed module exports
``register(subparsers: argparse._SubParsersAction) -> None`` and gives every subcommand it adds a
``func=callable(args) -> int`` default (``parser.set_defaults(func=...)``); ``main`` calls it and exits with
the number it returns.

Exit codes: what the command returns (0 = success); 2 = invalid input (a ``KonduktUserError``, e.g. a
manifest mistake, or a bad flag); 1 = another ``KonduktError`` (e.g. the cluster refused); 130 = Ctrl-C;
70 = a bug in Kondukt (set ``KONDUKT_DEBUG=1`` to see its traceback). Messages go to stderr, never with a
traceback for anything a user can fix.

This module must stay small: it parses and dispatches; the commands live with the code they drive.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from kondukt.errors import KonduktError

#: Modules that add subcommands (each exports ``register(subparsers)``), in the order ``--help`` lists them.
_COMMANDS: tuple[str, ...] = ("kondukt.cli_definitions", "kondukt.kube.cli", "kondukt.kube.cli_operator", "kondukt.local.cli")

EXIT_INTERRUPTED = 130
EXIT_INTERNAL_ERROR = 70

CommandFunc = Callable[[argparse.Namespace], int]


def _version() -> str:
    try:
        return metadata.version("kondukt")
    except metadata.PackageNotFoundError:  # running from a source tree without an install
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The full ``kondukt`` parser, with every registered command."""
    parser = argparse.ArgumentParser(
        prog="kondukt",
        description=(
            "Netflix-Conductor-style workflows on Kubernetes: import Conductor JSON, validate definitions, "
            "run workflows locally or watch them in a cluster."
        ),
    )
    parser.add_argument("--version", action="version", version=f"kondukt {_version()}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module_name in _COMMANDS:
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``kondukt`` command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help, --version, or a usage error (argparse printed it)
        return _exit_code(exit_request.code)
    func: CommandFunc | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
