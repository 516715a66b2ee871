"""A private PostgreSQL server for tests and benchmarks: Debian's binaries, a cluster in a temporary
directory, a Unix socket in that directory only (no TCP), fsync off; stopped by pid.

    server = PostgresServer.start()      # FileNotFoundError without initdb/pg_ctl
    url = server.new_database()          # a fresh, empty database: pass it to open_store or World
    server.stop()

PostgreSQL refuses to run as root, so under root the cluster belongs to, and the server runs as, the
unprivileged ``nobody`` user.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

SERVER_OPTIONS = (
    "-c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c max_connections=200 -c shared_buffers=128MB"
)


def postgres_bin() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl`` (newest Debian version first, else on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _owner() -> dict[str, Any]:
    """subprocess arguments that run the server's tools as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


class PostgresServer:
    """One running cluster; ``new_database`` gives each caller a fresh, empty database."""

    def __init__(self, bin_dir: Path, root: Path, pid: int) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.pid = pid
        self.socket_dir = root / "sock"
        self._names = itertools.count(1)

    @classmethod
    def start(cls, bin_dir: Path | None = None) -> PostgresServer:
        """Create a cluster in a new temporary directory and start its server on a private socket."""
        bin_dir = bin_dir or postgres_bin()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found")
        root = Path(tempfile.mkdtemp(prefix="orchestrator-pg-"))
        owner = _owner()
        (root / "sock").mkdir()
        if owner:
            for path in (root, root / "sock"):
                os.chown(path, owner["user"], owner["group"])
        run: dict[str, Any] = {"cwd": root, "check": True, "capture_output": True, **owner}
        try:
            subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(root / "data"),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
                **run,
            )
            subprocess.run(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(root / "data"),
                    "-l",
                    str(root / "server.log"),
                    "-w",
                    "-o",
                    f"{SERVER_OPTIONS} -k {root / 'sock'}",
                    "start",
                ],
                **run,
            )
        except subprocess.CalledProcessError as exc:
            log = root / "server.log"
            detail = log.read_text() if log.exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr.decode()}{detail}") from None
        pid = int((root / "data" / "postmaster.pid").read_text().split()[0])
        return cls(bin_dir, root, pid)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server (through its socket)."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def new_database(self, prefix: str = "t", *, copy_of: str | None = None) -> str:
        """Create an empty database (or, with ``copy_of``, a copy of the database at that URL, which no
        connection may be using) and return its SQLAlchemy URL."""
        name = f"{prefix}{next(self._names)}"
        template = "" if copy_of is None else f' TEMPLATE "{copy_of.split("?", 1)[0].rsplit("/", 1)[1]}"'
        with psycopg.connect(
            host=str(self.socket_dir), user="postgres", dbname="postgres", autocommit=True
        ) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}"')
            c.execute(f'CREATE DATABASE "{name}"{template}')
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown by pid; an immediate shutdown through pg_ctl if it lingers. Removes the cluster."""
        try:
            os.kill(self.pid, signal.SIGINT)
            deadline = time.monotonic() + 15
            pid_file = self.root / "data" / "postmaster.pid"
            while time.monotonic() < deadline and pid_file.exists():  # removed by the server as it exits
                os.kill(self.pid, 0)
                time.sleep(0.05)
            if not pid_file.exists():
                shutil.rmtree(self.root, ignore_errors=True)
                return
            subprocess.run(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"],
                cwd=self.root,
                capture_output=True,
                **_owner(),
            )
        except ProcessLookupError:
            pass  # the server is gone
        shutil.rmtree(self.root, ignore_errors=True)
