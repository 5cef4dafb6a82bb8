"""A PgBouncer of the tests' own, in transaction mode, and this process's traffic through it.

``pgbouncer`` starts Debian's ``pgbouncer`` binary on a free port with a config file
in a temporary directory, pointing at the PostgreSQL of ``DATABASE_URL`` (the system
pgbouncer service, if any, is left alone). ``through_pgbouncer`` then points
``DATABASE_URL`` at it with ``DATABASE_PGBOUNCER=true`` (and ``DATABASE_DIRECT_URL`` at
PostgreSQL itself), rebuilds the engine, and gives the module an app built on it: the
API, the session's worker threads and the tests' own sessions all go through it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from shared.config import get_settings
from shared.db import reset_engine
from tests.webhooks.conftest import path, receiver, ws  # noqa: F401  (fixtures)

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgBouncer:
    def __init__(self, server_host: str, server_port: int) -> None:
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="omnistream-pgbouncer-"))
        self.dir.chmod(0o755)
        (self.dir / "users.txt").write_text('"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={server_host} port={server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            # NOTE: fewer server connections than the worker's threads and the API's
            # requests: transactions of different clients share server sessions.
            "default_pool_size = 4\n"
            "max_client_conn = 200\n"
            "server_reset_query =\n"
        )
        for name in ("users.txt", "pgbouncer.ini"):
            (self.dir / name).chmod(0o644)
        # PgBouncer refuses to run as root; -u switches to the database's system user.
        argv = [PGBOUNCER, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            argv[1:1] = ["-u", "postgres"]
        self.log = open(self.dir / "pgbouncer.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not start: {self.tail()}") from None
                time.sleep(0.05)

    def url(self, database_url: str) -> str:
        return (
            make_url(database_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    def tail(self) -> str:
        return (self.dir / "pgbouncer.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pgbouncer(database):
    if not os.path.exists(PGBOUNCER):
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    server = make_url(database)
    bouncer = PgBouncer(server.host or "127.0.0.1", server.port or 5432)
    yield bouncer
    bouncer.stop()


@pytest.fixture(scope="module")
def through_pgbouncer(database, pgbouncer, worker):
    """Every connection of this process (API, worker threads, tests) through PgBouncer."""
    patch = pytest.MonkeyPatch()
    patch.setenv("DATABASE_URL", pgbouncer.url(database))
    patch.setenv("DATABASE_PGBOUNCER", "true")
    patch.setenv("DATABASE_DIRECT_URL", database)
    get_settings.cache_clear()
    reset_engine()
    yield pgbouncer
    patch.undo()
    get_settings.cache_clear()
    reset_engine()


@pytest.fixture(scope="module")
def app(through_pgbouncer):
    """An app whose sessions come from the engine through PgBouncer."""
    from api.app import create_app

    return create_app()
