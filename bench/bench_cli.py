"""How long ``kondukt --help`` (and a command's ``--help``) takes in a fresh interpreter.

The ``kondukt`` top level imports a command's module only when that command is chosen
(``kondukt.cli.app``), so ``--help`` should cost little more than the interpreter and argparse. Each
figure is the median wall time of N fresh ``python -c "... main([...])"`` processes (stdout discarded),
with the interpreter's own start-up (``python -c pass``) measured the same way alongside for reference,
and the number of modules ``-X importtime`` reports for the run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

_SCRIPT = "import sys; from kondukt.cli import main; sys.exit(main({argv!r}))"


def _median_ms(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=120)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def _modules_imported(argv: list[str]) -> int:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _SCRIPT.format(argv=argv)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False, timeout=120,
    )
    return sum(1 for line in done.stderr.splitlines() if line.startswith("import time:") and "|" in line) - 1


def run(quick: bool = False) -> dict[str, Any]:
    runs = 5 if quick else 21
    figures: dict[str, Any] = {"runs_each": runs}
    figures["python_startup_ms_p50"] = _median_ms([sys.executable, "-c", "pass"], runs)
    for label, argv in (("help", ["--help"]), ("validate_help", ["validate", "--help"]),
                        ("get_help", ["get", "--help"])):
        figures[f"kondukt_{label}_ms_p50"] = _median_ms([sys.executable, "-c", _SCRIPT.format(argv=argv)], runs)
        figures[f"kondukt_{label}_modules"] = _modules_imported(argv)
    return figures
