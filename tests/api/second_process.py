"""Another API process (its own caches, same database), to prove what other processes see.

The application runs in a subprocess under wsgiref; tests call it over HTTP.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
_SERVE = (
    "import sys; from wsgiref.simple_server import make_server, WSGIRequestHandler;"
    "from api.app import create_app;"
    "WSGIRequestHandler.log_message = lambda *a: None;"
    "make_server('127.0.0.1', int(sys.argv[1]), create_app()).serve_forever()"
)


class OtherProcess:
    """Call the API served by another process."""

    def __init__(self, port: int):
        self.port = port

    def get(self, path: str, token: str) -> tuple[int, bytes]:
        """The status and the raw body of ``GET path`` as ``token``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def status(self, path: str, token: str) -> int:
        return self.get(path, token)[0]


@contextlib.contextmanager
def serving(**env: str) -> Iterator[OtherProcess]:
    """Run the API in a subprocess (with ``env`` on top of this one's) until the block ends."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(port)], cwd=REPO_ROOT, env=os.environ | env
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "the second API process died"
                assert time.monotonic() < deadline, "the second API process did not start"
                time.sleep(0.1)
        yield OtherProcess(port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
