"""``kondukt run FILE...``: run one workflow on this machine, without a cluster.

What runs, with which input, is worked out and checked by :mod:`kondukt.cli.runplan` (the files, the
workflow chosen, ``file:`` inputs resolved). SIMPLE tasks run as local processes (the TaskDef's
``template.command`` + ``args``; the image is ignored), under the worker protocol; the progress view
(:mod:`kondukt.cli.progress`) shows the run, or ``-o json`` prints the final execution.

Exit codes: 0 = COMPLETED, 1 = FAILED / TIMED_OUT / TERMINATED (Ctrl-C included), 2 = the input is
invalid (a message on stderr names the file, field or task reference; never a traceback).

This module turns command-line input into a run and a run into output; it must never make an
engine-level decision (that is ``decide``'s) nor know how a process is started (that is the runner's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from kondukt.cli.progress import ProgressView, result_locations
from kondukt.cli.runplan import RunPlan, RunUsageError, needs_object_storage, plan_run
from kondukt.engine import Workflow, WorkflowStatus
from kondukt.errors import KonduktError
from kondukt.limits import (
    DEFAULT_MAX_SUB_WORKFLOW_DEPTH,
    MAX_SUB_WORKFLOW_DEPTH_ENV,
    max_sub_workflow_depth_from_env,
)
from kondukt.local.objectstore import ObjectStoreError, TaskStorage, open_task_storage
from kondukt.local.runner import LocalRunner, RunEvent, RunResult
from kondukt.scriptpool import (
    DEFAULT_MEMORY_LIMIT_BYTES,
    DEFAULT_TIME_LIMIT_SECONDS,
    MIB,
    ScriptLimits,
    ScriptLimitsError,
)
from kondukt_workers.egress import EgressPolicy, split_list

DEFAULT_DATA_DIR = Path(".kondukt")
_TICK_SECONDS = 0.25

#: Execution-state fields that are Kondukt's bookkeeping, not part of Conductor's execution JSON.
_INTERNAL_WORKFLOW_FIELDS = frozenset(
    {"nextSeq", "appliedOperations", "failureWorkflowStarted", "timeoutAlerted"}
)
_INTERNAL_TASK_FIELDS = frozenset({"dispatched", "heartbeat", "loopTaskRef", "parentTaskRef", "workflowTask"})


# --------------------------------------------------------------------------------------------------
# Execution JSON
# --------------------------------------------------------------------------------------------------


def execution_json(workflow: Workflow) -> dict[str, Any]:
    """The final execution in Conductor's execution JSON shape (Kondukt's bookkeeping left out)."""
    exclude: dict[str, Any] = {name: True for name in _INTERNAL_WORKFLOW_FIELDS}
    exclude["tasks"] = {"__all__": set(_INTERNAL_TASK_FIELDS)}
    document: dict[str, Any] = workflow.model_dump(mode="json", exclude=exclude)
    document.setdefault("workflowType", workflow.workflowName)
    return document


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------


async def _run_with_signals(runner: LocalRunner, view: ProgressView | None) -> RunResult:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if threading.current_thread() is threading.main_thread():
        for signum, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
            loop.add_signal_handler(signum, runner.terminate, f"interrupted ({name})")
            installed.append(signum)
    ticker: asyncio.Task[None] | None = None
    if view is not None and view.live:

        async def tick() -> None:
            while True:
                await asyncio.sleep(_TICK_SECONDS)
                view.tick()

        ticker = loop.create_task(tick())
    try:
        return await runner.run()
    finally:
        if ticker is not None:
            ticker.cancel()
        for signum in installed:
            loop.remove_signal_handler(signum)


def located_results(result: RunResult, storage: TaskStorage) -> list[tuple[str, str | None]]:
    """The URIs in the main workflow's output, each with the local file behind it when there is one."""
    located: list[tuple[str, str | None]] = []
    for uri in result_locations(result.workflow.output):
        local = storage.local_path(uri)
        located.append((uri, str(local) if local is not None else None))
    return located


def execute(
    plan: RunPlan,
    *,
    data_dir: Path,
    parallelism: int | None,
    local_s3: str,
    output_format: str | None,
    stdout: TextIO,
    stderr: TextIO,
    script_limits: ScriptLimits | None = None,
    max_sub_workflow_depth: int = DEFAULT_MAX_SUB_WORKFLOW_DEPTH,
    egress: EgressPolicy | None = None,
) -> int:
    """Run the plan; print progress or the execution JSON; return the exit code."""
    if output_format == "json":
        view = ProgressView(stderr) if stderr.isatty() else None
    else:
        view = ProgressView(stdout)
    want_s3 = local_s3 == "always" or (
        local_s3 == "auto" and needs_object_storage(plan.bundle, plan.blueprint)
    )
    data_dir = data_dir.resolve()
    workflow_id = str(uuid.uuid4())
    try:
        # The embedded S3's objects reach the data directory when the storage closes: results are
        # located after that.
        with open_task_storage(
            data_dir,
            want_s3=want_s3,
            workflow_input=plan.workflow_input,
            warn=lambda text: stderr.write(f"kondukt run: {text}\n"),
        ) as storage:
            runner = LocalRunner(
                plan.bundle,
                plan.blueprint,
                plan.workflow_input,
                attempt_dir=data_dir / "runs",
                correlation_id=plan.correlation_id,
                workflow_id=workflow_id,
                parallelism=parallelism,
                base_environment=storage.task_environment(os.environ),
                store_input=storage.store_payload,
                fetch_payload=storage.fetch_json,
                on_event=_safe_sink(view),
                script_limits=script_limits,
                max_sub_workflow_depth=max_sub_workflow_depth,
                egress=egress,
            )
            if view is not None:
                view.stream.write(f"kondukt run: {plan.label}; task files in {storage.describe()}\n")
            result = asyncio.run(_run_with_signals(runner, view))
        locations = located_results(result, storage)
    except ObjectStoreError as e:
        raise KonduktError(str(e)) from None
    finally:
        if view is not None:
            view.close()
    if view is not None:
        note = None
        if storage.local_s3_root is not None and any(local for _, local in locations):
            note = (
                f"the embedded S3 endpoint stopped with the run; its objects were copied to {storage.local_s3_root}"
            )
        view.summary(result, locations, note)
    if output_format == "json":
        json.dump(execution_json(result.workflow), stdout, indent=2)
        stdout.write("\n")
        stdout.flush()
    return 0 if result.workflow.status == WorkflowStatus.COMPLETED else 1


def _safe_sink(view: ProgressView | None) -> Any:
    if view is None:
        return None

    def sink(event: RunEvent) -> None:
        with contextlib.suppress(BrokenPipeError):
            view(event)

    return sink


def run_command(args: argparse.Namespace) -> int:
    stdout: TextIO = sys.stdout
    stderr: TextIO = sys.stderr
    try:
        script_limits = _script_limits(args)
        max_depth = args.max_sub_workflow_depth
        if max_depth is None:
            max_depth = max_sub_workflow_depth_from_env()
        plan = plan_run(args.files, selector=args.workflow, input_argument=args.input, cwd=Path.cwd())
        egress = egress_policy(args.egress, args.egress_allow, args.egress_deny)
        return execute(
            plan,
            data_dir=Path(args.data_dir),
            parallelism=args.parallelism,
            local_s3=args.local_s3,
            output_format=args.output,
            stdout=stdout,
            stderr=stderr,
            script_limits=script_limits,
            max_sub_workflow_depth=max_depth,
            egress=egress,
        )
    except KonduktError as e:
        print(f"kondukt run: {e}", file=stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("kondukt run: interrupted", file=stderr)
        return 1


def _script_limits(args: argparse.Namespace) -> ScriptLimits:
    """The jq evaluation limits: the flags, else KONDUKT_SCRIPT_* variables, else the defaults (as the operator's)."""
    try:
        limits = ScriptLimits.from_environ()
        overrides: dict[str, Any] = {}
        if args.script_time_limit is not None:
            overrides["time_limit_seconds"] = args.script_time_limit
        if args.script_memory_limit is not None:
            overrides["memory_limit_bytes"] = args.script_memory_limit * MIB
        return dataclasses.replace(limits, **overrides) if overrides else limits
    except ScriptLimitsError as e:
        raise RunUsageError(str(e)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def egress_policy(mode: str, allow: Sequence[str], deny: Sequence[str]) -> EgressPolicy:
    """The policy of ``--egress`` / ``--egress-allow`` / ``--egress-deny`` (each list flag repeatable and
    comma-separated). ``local`` (the default) allows loopback and private networks: calling a service
    on localhost is the common case on a laptop; ``cluster`` applies the operator's default rules."""
    allowed = [part for value in allow for part in split_list(value)]
    denied = [part for value in deny for part in split_list(value)]
    try:
        if mode == "cluster":
            return EgressPolicy.cluster(allow=allowed, deny=denied)
        return EgressPolicy.local(allow=allowed, deny=denied)
    except ValueError as err:
        raise RunUsageError(str(err)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Configure ``kondukt run``."""
    parser.description = (
        "Run one workflow locally: SIMPLE tasks as processes (TaskDef template.command + args) under the "
        "worker protocol, with the same engine as the operator. FILE: manifests (YAML: TaskDef, WorkflowDef, "
        "Workflow) or Conductor JSON. Exit code 0 = COMPLETED, 1 = FAILED/TIMED_OUT/TERMINATED, 2 = invalid input."
    )
    parser.epilog = (
        "Input strings 'file:<relative path>' are resolved against the manifest's directory (or the current "
        "directory for --input). With no S3 endpoint configured (KONDUKT_S3_ENDPOINT / AWS_ENDPOINT_URL) and "
        "built-in workers in use, an embedded S3 endpoint (moto) runs on 127.0.0.1; its objects are copied to "
        "<data-dir>/s3/<bucket>/<key> when the run ends."
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="manifests or Conductor JSON files")
    parser.add_argument(
        "-i",
        "--input",
        metavar="JSON|@FILE",
        help="workflow input (its top-level keys override the Workflow's)",
    )
    parser.add_argument(
        "-o", "--output", choices=["json"], help="print the final execution as Conductor JSON"
    )
    parser.add_argument("-w", "--workflow", metavar="NAME[:VERSION]", help="which workflow to run")
    parser.add_argument(
        "--parallelism", type=_positive_int, metavar="N", help="task processes at once (default: 2 x CPUs)"
    )
    parser.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA_DIR),
        metavar="DIR",
        help="where task logs, results and the embedded S3's objects go (default: ./.kondukt)",
    )
    parser.add_argument(
        "--local-s3",
        choices=["auto", "always", "never"],
        default="auto",
        help="start the embedded S3 endpoint: when built-in workers need it (auto), always, or never",
    )
    parser.add_argument(
        "--script-time-limit",
        type=_positive_float,
        metavar="SECONDS",
        help="wall-clock limit of one JSON_JQ_TRANSFORM evaluation (default: $KONDUKT_SCRIPT_TIME_LIMIT, else "
        f"{DEFAULT_TIME_LIMIT_SECONDS:g}); the task FAILS naming it",
    )
    parser.add_argument(
        "--script-memory-limit",
        type=_positive_int,
        metavar="MIB",
        help="address-space limit of each jq evaluation process (default: $KONDUKT_SCRIPT_MEMORY_LIMIT, else "
        f"{DEFAULT_MEMORY_LIMIT_BYTES // MIB})",
    )
    parser.add_argument(
        "--max-sub-workflow-depth",
        type=_non_negative_int,
        metavar="N",
        help=(
            "how deep SUB_WORKFLOW children may nest; a task that would start one deeper fails "
            f"(default: ${MAX_SUB_WORKFLOW_DEPTH_ENV}, else {DEFAULT_MAX_SUB_WORKFLOW_DEPTH})"
        ),
    )
    parser.add_argument(
        "--egress",
        choices=["local", "cluster"],
        default="local",
        help="where HTTP tasks and the workers' URI reader may connect: local (default) refuses link-local "
        "(cloud metadata), unspecified, multicast and reserved addresses; cluster also refuses loopback and "
        "private addresses and file:// URIs, as in a cluster",
    )
    parser.add_argument(
        "--egress-allow",
        action="append",
        default=[],
        metavar="HOST|CIDR",
        help="allow this host (exact, or *.suffix) or network despite the rules; repeatable, or comma-separated",
    )
    parser.add_argument(
        "--egress-deny",
        action="append",
        default=[],
        metavar="CIDR",
        help="refuse this network too; repeatable, or comma-separated",
    )
    parser.set_defaults(func=run_command)


__all__ = ["configure", "execute", "execution_json", "run_command"]
