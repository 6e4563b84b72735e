"""Run every ``bench/bench_*.py`` module and write the figures with the machine and the command.

Each module exposes ``run(quick: bool = False) -> dict[str, object]``; a module whose ``run`` also takes
``minutes``, ``rate``, ``replicas`` or ``shards`` (the soak) gets them from the options of the same names. Results go to
``bench/results/<UTC timestamp>.json`` (and ``latest.md``, a readable table). Figures are measured side by
side in one run so that ratios compare like with like on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _machine() -> dict[str, object]:
    memory = ""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            memory = handle.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory": memory,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["peers"]:  # its own options (--json, --systems): see bench/bench_peers.py
        from bench import bench_peers

        return bench_peers.main(arguments[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (e.g. engine image); default: all")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--minutes", type=float, help="soak: how long the load lasts (default 15)")
    parser.add_argument("--rate", type=float, help="soak: workflows created a minute (default 1000)")
    parser.add_argument("--replicas", type=int, help="soak: operator replicas (default 2)")
    parser.add_argument("--shards", type=int, help="soak: shards (default 4)")
    args = parser.parse_args(argv)
    available = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    names = args.names or available
    unknown = sorted(set(names) - set(available))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}")
    report: dict[str, object] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench", *(argv if argv is not None else sys.argv[1:])]),
        "machine": _machine(),
        "results": {},
    }
    results: dict[str, object] = {}
    failed = False
    for name in names:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.bench_{name}")
            accepted = inspect.signature(module.run).parameters
            options = {key: value for key in ("minutes", "rate", "replicas", "shards")
                       if key in accepted and (value := getattr(args, key)) is not None}
            figures = module.run(quick=args.quick, **options)
        except Exception as error:  # a failed benchmark is reported, and the run fails at the end
            traceback.print_exc()
            figures = {"error": f"{type(error).__name__}: {error}"}
            failed = True
        figures["wall_seconds"] = round(time.perf_counter() - started, 2)
        results[name] = figures
        for key, value in figures.items():
            print(f"   {key}: {value}", flush=True)
    report["results"] = results
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (out_dir / f"{stamp}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    lines = [f"# Benchmarks {report['when']}", "", f"Command: `{report['command']}`", "",
             "Machine: " + ", ".join(f"{k}={v}" for k, v in report["machine"].items()), ""]  # type: ignore[union-attr]
    for name, figures in results.items():
        lines += [f"## {name}", "", "| figure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in figures.items()]  # type: ignore[union-attr]
        lines.append("")
    (out_dir / "latest.md").write_text("\n".join(lines))
    print(f"results written to {out_dir / (stamp + '.json')} and {out_dir / 'latest.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
