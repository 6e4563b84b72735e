"""``kondukt ui``: the web UI, served on this machine with the user's own kubeconfig.

The command finds the cluster exactly as every other cluster command does (``--kubeconfig``,
``--context``, ``-n``; :mod:`kondukt.cli.cluster`) and serves, on 127.0.0.1 unless ``--address`` says
otherwise, the pages built from ``ui/`` (shipped inside this package under ``static/``) and the JSON API of
:mod:`kondukt.cli.ui.server`. It adds no credentials: every read and every operation is a request of the
user's own to the API server, which authorizes it. ``--read-only`` is the chart's in-cluster mode (see
``docs/operations.md``).

The page modules are imported when the command runs, never by ``kondukt --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys

from kondukt.archive import DSN_ENV
from kondukt.cli.app import add_cluster_options
from kondukt.errors import KonduktUserError

DEFAULT_PORT = 8642


def cmd_ui(args: argparse.Namespace) -> int:
    from aiohttp import web

    from kondukt.cli import cluster
    from kondukt.cli.ui.server import UiServer, UiSettings, check_static_files

    check_static_files()
    if not 0 <= args.port <= 65535:
        raise KonduktUserError(f"--port {args.port}: expected 0-65535")
    if args.max_branches < 1:
        raise KonduktUserError("--max-branches must be at least 1")
    if not args.read_only and not _loopback(args.address):
        sys.stderr.write(
            f"warning: --address {args.address}: whoever reaches this port and names an allowed host acts on "
            "the cluster with YOUR credentials; use --read-only to serve others\n"
        )
    api = cluster.connect(cluster.connection_from_args(args))
    settings = UiSettings(
        namespace=api.namespace,
        all_namespaces=args.all_namespaces,
        read_only=args.read_only,
        allowed_hosts=frozenset(args.allowed_host or ()),
        max_branches=args.max_branches,
        archive_dsn=args.archive_dsn or os.environ.get(DSN_ENV, ""),
    )
    app = UiServer(api.client, settings).app()

    async def serve() -> None:
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.address, args.port)
        await site.start()
        port = args.port
        for address in runner.addresses:  # the port chosen when --port 0
            port = int(address[1])
        host = f"[{args.address}]" if ":" in args.address else args.address
        mode = " (read-only)" if args.read_only else ""
        sys.stdout.write(f"kondukt ui{mode}: http://{host}:{port}/ (cluster {api.host}, namespace "
                         f"{'all' if args.all_namespaces else api.namespace}); Ctrl-C stops it\n")
        sys.stdout.flush()
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(serve())
    except OSError as exc:
        raise KonduktUserError(f"cannot listen on {args.address}:{args.port}: {exc.strerror or exc}") from exc
    return 0


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Configure ``kondukt ui``."""
    parser.description = (
        "Serve the web UI on this machine: the workflows list, each workflow live with its graph, attempts "
        "and their logs, definitions, and the operations. Every request is made with your kubeconfig's "
        "credentials, so the cluster's RBAC decides what you may see and do."
    )
    add_cluster_options(parser)
    parser.add_argument("--address", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: only this machine)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)")
    parser.add_argument("-A", "--all-namespaces", action="store_true",
                        help="list the workflows of every namespace (needs cluster-wide list permission)")
    parser.add_argument("--read-only", action="store_true",
                        help="read with these credentials, but send an operation only with the bearer token "
                             "its user gives on the page (the chart's in-cluster mode)")
    parser.add_argument("--allowed-host", action="append", metavar="NAME",
                        help="another host name the browser may use for this server (a Service or Ingress "
                             "name); 127.0.0.1 and localhost always are. Repeatable")
    parser.add_argument("--max-branches", type=int, default=20, metavar="N",
                        help="dynamic-fork branches drawn before the rest collapse into one node (default 20)")
    parser.add_argument("--archive-dsn", metavar="DSN",
                        help=f"the workflow archive's libpq connection string (default ${DSN_ENV}): adds the "
                             "Archive page; keep the password in ~/.pgpass or $PGPASSWORD")
    parser.set_defaults(func=cmd_ui)
