"""LOG_FORMAT=json: the API (gunicorn), a worker, the scheduler and the stream log JSON lines.

Each runs as a real subprocess with LOG_FORMAT=json; every line it writes, on
stdout or stderr, must parse as one JSON object with the documented keys.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from dramatiq.message import Message

from bench.common import free_ports, http_request
from shared import logs
from shared.config import get_settings
from tests.logs import app as test_app
from tests.logs import log_actors
from workers.broker import build_broker

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYS = {"time", "level", "logger", "process", "thread", "request_id", "tenant_id", "message"}


class Process:
    """A subprocess with LOG_FORMAT=json, its stdout and stderr in files of their own."""

    def __init__(self, argv: list[str], tmp_path: Path, **env: str) -> None:
        self.out_path, self.err_path = tmp_path / "stdout", tmp_path / "stderr"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env={**os.environ, "LOG_FORMAT": "json", **env},
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def records(self) -> list[dict]:
        """Every line written so far, each parsed as JSON (a line that is not fails the test)."""
        records = []
        for path in (self.out_path, self.err_path):
            for line in path.read_text(errors="replace").splitlines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    pytest.fail(f"{path.name}: not a JSON line: {line!r}\n{self.dump()}")
                assert isinstance(record, dict) and set(record) >= KEYS, line
                records.append(record)
        return records

    def dump(self) -> str:
        return self.out_path.read_text(errors="replace") + self.err_path.read_text(errors="replace")

    def wait_for(self, predicate, what: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in self.records() if predicate(r)]
            if found:
                return found[0]
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"no record {what} (exit {self.proc.poll()})\n{self.dump()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture
def spawn(tmp_path):
    started: list[Process] = []

    def start(name: str, argv: list[str], **env: str) -> Process:
        directory = tmp_path / name
        directory.mkdir()
        started.append(Process(argv, directory, **env))
        return started[-1]

    yield start
    for process in started:
        process.stop()


def test_the_api_logs_json_lines_with_request_id_tenant_and_exception(spawn, database):
    [port] = free_ports()
    web = spawn(
        "web",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:api.gunicorn_conf",
            f"{test_app.__name__}:create_app()",
        ],
        PORT=str(port),
        WEB_CONCURRENCY="1",
        WEB_THREADS="2",
        WEB_ACCESS_LOG="-",
    )
    web.wait_for(lambda r: r["logger"] == "gunicorn.error" and "Booting" in r["message"], "boot")
    # Ready once it answers at all; then one registration, given time on a loaded machine
    # (a timed-out attempt retried would register twice).
    deadline = time.monotonic() + 30
    while True:
        try:
            http_request(port, "GET", "/api/health", timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    status, body = http_request(
        port,
        "POST",
        "/api/auth/register",
        body={
            "organization_name": f"Json logs {uuid.uuid4().hex[:6]}",
            "full_name": "Grace Admin",
            "email": f"json-{uuid.uuid4().hex[:10]}@example.com",
            "password": "correct horse battery staple",
        },
        timeout=60,
    )
    assert status == 201, body
    tenant_id, token = body["tenant"]["id"], body["access_token"]

    status, _ = http_request(
        port,
        "GET",
        test_app.ROUTE,
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "json-log-test-1"},
    )
    assert status == 500

    failure = web.wait_for(lambda r: "exception" in r, "with an exception")
    assert failure["level"] == "ERROR" and failure["logger"] == "api.errors"
    assert "RuntimeError: boom for tenant" in failure["exception"]
    assert (failure["request_id"], failure["tenant_id"]) == ("json-log-test-1", tenant_id)
    before = web.wait_for(lambda r: r["message"] == "about to fail for this tenant", "of the app")
    assert (before["request_id"], before["tenant_id"]) == ("json-log-test-1", tenant_id)
    # The access log line is written in the request's own context: it carries both too.
    access = web.wait_for(
        lambda r: r["logger"] == "gunicorn.access" and test_app.ROUTE in r["message"],
        "of the access log",
    )
    assert (access["request_id"], access["tenant_id"]) == ("json-log-test-1", tenant_id)
    web.stop()
    web.records()  # every line, the shutdown's too, is JSON


def test_a_worker_logs_json_lines_with_the_message_tenant_and_exception(spawn, database):
    namespace = f"{get_settings().redis_namespace}-json-logs"
    worker = spawn(
        "worker",
        [
            sys.executable,
            "-m",
            "workers",
            log_actors.__name__,
            "--processes",
            "1",
            "--threads",
            "1",
        ],
        REDIS_NAMESPACE=namespace,
    )
    worker.wait_for(lambda r: "booting up" in r["message"], "of Dramatiq's own boot")
    tenant_id = str(uuid.uuid4())
    # NOTE: a broker of this test's own, on a namespace of its own: the suite's in-process
    # worker also consumes the actor's queue (this module declares it), so on the suite's
    # namespace it could take the message first.
    build_broker(get_settings().model_copy(update={"redis_namespace": namespace})).enqueue(
        Message(
            queue_name=log_actors.QUEUE,
            actor_name=log_actors.ACTOR,
            args=(),
            kwargs={},
            options={"tenant_id": tenant_id},
        )
    )
    working = worker.wait_for(lambda r: r["message"] == "working, then failing", "of the actor")
    assert working["tenant_id"] == tenant_id and working["request_id"] is None
    failure = worker.wait_for(lambda r: "exception" in r, "with an exception")
    assert (
        failure["level"] == "ERROR" and "RuntimeError: boom from the worker" in failure["exception"]
    )
    assert failure["tenant_id"] == tenant_id
    worker.stop()
    records = worker.records()
    assert len({r["process"] for r in records}) >= 2  # the parent and its worker process


def test_the_scheduler_logs_json_lines(spawn, database):
    scheduler = spawn("scheduler", [sys.executable, "-m", "scheduler"])
    scheduler.wait_for(lambda r: r["logger"].startswith("scheduler"), "of the scheduler")
    scheduler.stop()
    assert scheduler.records()[-1]["message"] == "scheduler stopped"


def test_the_stream_process_logs_json_lines(spawn, database):
    """The Procfile's stream process: uvicorn's own lines (start, shutdown) are JSON too."""
    [port] = free_ports()
    stream = spawn(
        "stream",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "api.stream_app:create_stream_app",
            "--http",
            "h11",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
    )
    stream.wait_for(lambda r: "startup complete" in r["message"], "of uvicorn's start")
    stream.stop()
    records = stream.records()
    assert any(r["logger"].startswith("uvicorn") for r in records)
    assert "Finished server process" in records[-1]["message"]


def test_plain_text_stays_the_default_and_a_bad_format_is_refused(monkeypatch):
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    assert logs.log_format() == "text" and logs.gunicorn_logconfig() == {}
    monkeypatch.setenv("LOG_FORMAT", "yaml")
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logs.formatter()
