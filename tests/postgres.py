"""A throwaway PostgreSQL server for the tests: Debian's server binaries, a cluster in a temporary directory,
listening on 127.0.0.1 on a free port (and a unix socket in that directory), password authentication.

    server = PostgresServer().start()      # initdb + pg_ctl start
    server.dsn("somedb")                    # postgresql://kondukt:<password>@127.0.0.1:<port>/somedb
    server.stop(); server.start()           # the database down and back, same port, same data
    server.destroy()

PostgreSQL refuses to run as root: as root the cluster's directory is owned by the ``postgres`` user
(Debian's package creates it) and every server command runs as that user through ``runuser``. The binaries
come from ``$KONDUKT_PG_BIN``, else the newest ``/usr/lib/postgresql/<version>/bin`` (``.ci/install-postgres``
installs them); missing ones FAIL the tests that need them, never skip them.

A test run killed with SIGKILL never runs its teardown, and its server would live on: each server's directory
names the process that made it (``owner.pid``), and every new server first stops and removes those whose owner
is gone (:func:`reap_orphans`).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.pids import pid_alive

USER = "kondukt"
PREFIX = "kondukt-pg-"
OWNER_FILE = "owner.pid"


class PostgresError(RuntimeError):
    pass


def server_binaries() -> Path:
    explicit = os.environ.get("KONDUKT_PG_BIN")
    candidates = [Path(explicit)] if explicit else sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise PostgresError("no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or "
                        "$KONDUKT_PG_BIN: run `bash .ci/install-postgres`")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def reap_orphans(bin_dir: Path, temp_dir: Path | None = None) -> list[Path]:
    """Stop and remove the servers of test runs that died without their teardown; returns their directories.

    Only a directory with an ``owner.pid`` naming a process that no longer exists is touched."""
    reaped = []
    for root in sorted(Path(temp_dir or tempfile.gettempdir()).glob(f"{PREFIX}*")):
        try:
            owner = int((root / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if pid_alive(owner):
            continue
        data = root / "data"
        if (data / "postmaster.pid").exists():
            runner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            subprocess.run([*runner, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30",
                            "stop"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)
        reaped.append(root)
    return reaped


class PostgresServer:
    def __init__(self) -> None:
        self.bin = server_binaries()
        reap_orphans(self.bin)
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / OWNER_FILE).write_text(str(os.getpid()))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresError("running as root needs the `postgres` user to run the server "
                                    "(Debian's postgresql package creates it)") from None
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.root, 0o700 if not self._as else 0o755)
        self._initialized = False

    def _run(self, *command: str, timeout: float = 120) -> None:
        proc = subprocess.run([*self._as, *command], capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PostgresError(f"{' '.join(command[:2])} failed ({proc.returncode}): {proc.stderr.strip()}"
                                f"{proc.stdout.strip()}\n{tail}")

    def _initdb(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if self._as:
            owner = pwd.getpwnam("postgres")
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        os.chmod(pwfile, 0o600)
        try:
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
                      "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--no-sync",
                      "--no-instructions")
        finally:
            pwfile.unlink()
        self._initialized = True

    def start(self) -> PostgresServer:
        if not self._initialized:
            self._initdb()
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50 -c shared_buffers=16MB")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", "60", "start")
        return self

    def stop(self) -> None:
        """Stop the server (fast: open connections are cut), keeping its data for a later start()."""
        if self.running():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its DSN."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]  # a name we made
        return self.dsn(name)
