"""Production starts the Procfile's processes without ``make run``'s preflight: each of
them checks the fleet's connection budget itself, and refuses to start over it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import free_ports
from shared.preflight import EXIT_OVER_BUDGET

REPO_ROOT = Path(__file__).resolve().parents[2]

#: 100 web processes x 8 threads: a peak far past a stock server's 100 connections.
OVER_BUDGET = {"FLEET_WEB_PROCESSES": "100", "WEB_THREADS": "8"}
PRODUCTION = {
    "ENV": "production",
    "SECRET_KEY": "s" * 64,
    "ENCRYPTION_KEY": "e" * 64,
    "PUBLIC_BASE_URL": "https://inbox.example.com",
}


def _commands() -> dict[str, list[str]]:
    [port] = free_ports()
    return {
        "web": [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:api.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "api.app:create_app()",
        ],
        "worker": [sys.executable, "-m", "workers", "--processes", "1", "--threads", "1"],
        "scheduler": [sys.executable, "-m", "scheduler"],
    }


@pytest.mark.parametrize("process", ["web", "worker", "scheduler"])
def test_each_process_refuses_a_fleet_over_budget_in_production(process):
    started = subprocess.run(
        _commands()[process],
        cwd=REPO_ROOT,
        env=os.environ | OVER_BUDGET | PRODUCTION | {"WEB_CONCURRENCY": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = started.stdout + started.stderr
    assert "OVER BUDGET" in output and "refuses to start" in output, output
    assert started.returncode == EXIT_OVER_BUDGET


def test_outside_production_a_process_warns_and_starts():
    """A developer's many-core laptop must still start (the preflight warns the same way)."""
    worker = subprocess.Popen(
        _commands()["worker"],
        cwd=REPO_ROOT,
        env=os.environ | OVER_BUDGET | {"ENV": "development"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen = []
        for line in worker.stdout:
            seen.append(line)
            if "ready for action" in line:
                break
        output = "".join(seen)
        assert "starting anyway" in output and "ready for action" in output, output
    finally:
        worker.terminate()
        worker.wait(timeout=30)
