"""The web process's gunicorn worker: connections that have sent nothing hold no thread,
and kept-alive connections go back to the poller from the thread that answered them.

gunicorn's own gthread worker (24+) gave each new connection to a thread that waited up
to 5 s for its request, so a few idle connections stopped a process answering anyone
for 5 s. These tests start the Procfile's ``web`` settings for real (one process, two
threads) and talk to it over TCP.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.common import free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
THREADS = 2


@contextlib.contextmanager
def _web(port: int, config: str = "api.gunicorn_conf"):
    """gunicorn with ``config`` serving the bare app: 1 process x 2 threads."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            f"python:{config}",
            "bench.bare_app:create_app()",
        ],
        cwd=REPO_ROOT,
        env=os.environ | {"PORT": str(port), "WEB_CONCURRENCY": "1", "WEB_THREADS": str(THREADS)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(port, timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def web_port():
    [port] = free_ports()
    with _web(port):
        yield port


def _get(port: int, timeout: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(REQUEST)
        return _response(sock)


def _response(sock: socket.socket) -> bytes:
    data = b""
    while b'{"status":"ok"}' not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _pipelined(sock: socket.socket, count: int) -> bytes:
    """Send ``count`` requests at once, before any answer; their answers' bytes."""
    sock.sendall(REQUEST * count)
    data = b""
    while data.count(b'{"status":"ok"}') < count:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return data


def test_idle_connections_do_not_stop_the_process_answering(web_port):
    idle = [socket.create_connection(("127.0.0.1", web_port)) for _ in range(THREADS * 2)]
    try:
        time.sleep(0.3)  # every idle connection accepted
        started = time.monotonic()
        answer = _get(web_port, timeout=10)
        took = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 200"), answer
        # gunicorn's gthread answered after ~5 s here: both threads waited on idle sockets.
        assert took < 2.0, f"answered after {took:.2f} s behind {len(idle)} idle connections"
    finally:
        for sock in idle:
            sock.close()


def test_a_connection_that_sends_late_is_answered_and_kept_alive(web_port):
    with socket.create_connection(("127.0.0.1", web_port), timeout=10) as sock:
        time.sleep(0.5)
        for _ in range(2):  # its first request, then a second on the kept-alive connection
            sock.sendall(REQUEST)
            assert _response(sock).startswith(b"HTTP/1.1 200")


def test_a_connection_closed_before_its_request_frees_its_place(web_port):
    for _ in range(THREADS * 4):
        socket.create_connection(("127.0.0.1", web_port)).close()
    assert _get(web_port, timeout=5).startswith(b"HTTP/1.1 200")


def test_kept_alive_connections_are_each_answered_in_turn(web_port):
    """Many connections, many requests each: every hand-back to the poller is seen."""
    connections, requests = THREADS * 8, 40

    def client(_: int) -> int:
        answered = 0
        with socket.create_connection(("127.0.0.1", web_port), timeout=10) as sock:
            for _ in range(requests):
                sock.sendall(REQUEST)
                answered += _response(sock).startswith(b"HTTP/1.1 200")
        return answered

    with ThreadPoolExecutor(connections) as pool:
        assert sum(pool.map(client, range(connections))) == connections * requests


def test_pipelined_requests_are_each_answered_in_order(web_port):
    """Requests sent before their answers: the next one's bytes already read by the parser
    go through gthread's own path (the socket is not readable again), and are answered."""
    with socket.create_connection(("127.0.0.1", web_port), timeout=10) as sock:
        data = _pipelined(sock, 3)
        assert data.count(b"HTTP/1.1 200 OK") == 3
        sock.sendall(REQUEST)  # and the connection is still kept alive after them
        assert _response(sock).startswith(b"HTTP/1.1 200")


def test_pipelined_requests_are_answered_when_each_finishes_before_its_callback():
    """A request read ahead is answered before the main thread attaches its callback, so
    the callback runs in the main thread, inside its hand-back: it must not wait there on
    a lock that thread already holds (the whole process stopped answering)."""
    [port] = free_ports()
    with _web(port, "tests.api.gunicorn_conf_late_callbacks"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            _pipelined(sock, 3)
        assert _get(port, timeout=5).startswith(b"HTTP/1.1 200")


def test_a_kept_alive_connection_is_closed_after_the_keep_alive_timeout(web_port):
    with socket.create_connection(("127.0.0.1", web_port), timeout=20) as sock:
        sock.sendall(REQUEST)
        assert _response(sock).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server
        # api.gunicorn_conf's keepalive is 5 s; the poller looks once a second.
        assert 3.0 < time.monotonic() - started < 12.0


def test_a_stopping_worker_answers_a_kept_alive_connection_and_closes_it():
    """SIGTERM: a request on a kept-alive connection is answered with ``Connection: close``,
    and the worker exits in gunicorn's short linger, not its 20 s graceful timeout."""
    [port] = free_ports()
    with _web(port) as process:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(REQUEST)
            assert _response(sock).startswith(b"HTTP/1.1 200")
            time.sleep(0.2)  # back in the poller
            stopping = time.monotonic()
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            sock.sendall(REQUEST)
            answer = _response(sock)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            assert b"connection: close" in answer.lower()
            assert sock.recv(1) == b""
        process.wait(timeout=15)
        assert time.monotonic() - stopping < 10.0


def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], dict]:
    """Send ``request`` as is; the answer's status, headers and JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-N%d: 1\r\n" % n for n in range(120))
            + b"\r\n",
            431,
            "headers_too_large",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
            431,
            "headers_too_large",
        ),
        (b"HELLO\r\n\r\n", 400, "bad_request"),
    ],
)
def test_what_gunicorn_refuses_is_answered_in_the_api_error_shape(
    web_port, request_bytes, status, code
):
    """Refused before the app sees it: the same JSON error every endpoint answers."""
    got, headers, body = _raw(web_port, request_bytes)
    assert got == status, body
    assert headers["content-type"] == "application/json"
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
