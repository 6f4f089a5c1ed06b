"""A real, private PostgreSQL server for tests: initdb in a temp folder, on a free port,
trust authentication on 127.0.0.1 only, stopped and removed afterwards.

As root, PostgreSQL refuses to run; it runs as the `postgres` user the distribution's
package creates (scripts/test installs the package)."""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.server import free_port


def _binary(name: str) -> str | None:
    """`initdb` and `pg_ctl` are not on PATH in Debian's package."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class PostgresServer:
    def __init__(self, folder: Path, port: int, initdb: str, pg_ctl: str) -> None:
        self.folder = folder
        self.port = port
        self._pg_ctl = pg_ctl
        self._counter = itertools.count()
        self._run(
            initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"
        )

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        if os.geteuid() == 0:
            command = ("runuser", "-u", "postgres", "--", *command)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        self._run(
            self._pg_ctl,
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200",
            "start",
        )

    def stop(self) -> None:
        """Stop now (fast shutdown: clients are disconnected), as a lost database."""
        self._run(self._pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def new_database(self) -> str:
        """A fresh, empty database on this server; its URL."""
        import psycopg

        name = f"test_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url(name)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A running server; skips the test when PostgreSQL is not installed (scripts/test
    installs it) or, as root, there is no `postgres` user to run it as."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    try:
        owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    except KeyError:
        pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
    # Not under pytest's temp folders: those are private to this user, and the server
    # runs as another.
    folder = Path(tempfile.mkdtemp(prefix="modelhost-pg-"))
    if owner is not None:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    server = PostgresServer(folder, free_port(), initdb, pg_ctl)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(RuntimeError):  # a test may have stopped it
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
