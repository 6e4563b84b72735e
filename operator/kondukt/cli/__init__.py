"""The ``kondukt`` command line: every command, in one package, each imported only when chosen.

- ``app``: the top-level parser, the table of commands, the cluster flags, exit codes (``main``);
- ``definitions``: ``kondukt import conductor`` and ``kondukt validate`` (files only, no cluster);
- ``run``, ``runplan`` and ``progress``: ``kondukt run`` (a workflow on this machine): what runs, how, and
  what it shows;
- ``operator``: ``kondukt operator`` (the Kubernetes operator in the foreground);
- ``inspect``: ``kondukt get``, ``describe`` and ``watch``;
- ``operations``: ``kondukt retry|restart|rerun|skip|complete|suspend|resume|terminate``;
- ``graph``: ``kondukt graph NAME|FILE``;
- ``cluster`` and ``workflows``: reaching the cluster, and reading the Workflow objects it serves;
- ``text``: the formatting of durations, times and tables every command shares.

This package is the top layer: nothing else in ``kondukt`` imports it (import-linter checks it).
"""

from __future__ import annotations

from kondukt.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
