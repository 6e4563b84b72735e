"""``kondukt-worker NAME``: run the worker registered as NAME once, under the worker protocol.

This is the command a TaskDef's ``template.command`` names (``[kondukt-worker, image_convert_resize]``).
Your own workers run the same way once their module is imported: ``kondukt-worker --import mypkg.workers
greet`` (or list modules in ``KONDUKT_WORKER_MODULES``, comma-separated).

Exit codes: 0 when a result was written to ``KONDUKT_OUTPUT_FILE`` (success or failure is inside it),
1 when no result could be written, 2 for a command-line usage error. Keep this module's imports light:
it starts once per task attempt.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from kondukt_workers.registry import get_worker, registered_names
from kondukt_workers.results import TerminalError
from kondukt_workers.runner import run_attempt


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kondukt-worker",
        description="Run one Kondukt task attempt: input from KONDUKT_INPUT, result to KONDUKT_OUTPUT_FILE.",
    )
    parser.add_argument("name", nargs="?", help="the task definition name the worker is registered under")
    parser.add_argument(
        "--import",
        dest="modules",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (it registers workers with @worker_task); repeatable",
    )
    parser.add_argument("--list", action="store_true", help="list the registered workers and exit")
    return parser


def _worker_modules(from_arguments: Sequence[str]) -> list[str]:
    from_environment = os.environ.get("KONDUKT_WORKER_MODULES", "")
    return [m.strip() for m in [*from_environment.split(","), *from_arguments] if m.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    problem: str | None = None
    for module in _worker_modules(arguments.modules):
        try:
            importlib.import_module(module)
        except Exception as exc:
            problem = f"cannot import the worker module {module!r}: {type(exc).__name__}: {exc}"
            break
    if arguments.list:
        if problem:
            print(f"kondukt-worker: {problem}", file=sys.stderr)
            return 2
        print("\n".join(registered_names()))
        return 0
    if not arguments.name:
        _parser().print_usage(sys.stderr)
        print("kondukt-worker: a worker NAME is required (see --list)", file=sys.stderr)
        return 2
    name: str = arguments.name
    if problem is None:
        try:
            get_worker(name)
        except LookupError as exc:
            problem = str(exc)
    if problem is not None:
        # Still a protocol result: the task fails terminally with a reason instead of a bare exit code.
        reason = problem

        def report_problem(_: dict[str, object]) -> None:
            raise TerminalError(reason)

        report_problem.__name__ = name
        return run_attempt(report_problem)
    return run_attempt(name)


if __name__ == "__main__":
    sys.exit(main())
