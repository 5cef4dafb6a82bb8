"""``python -m workers.top``: the same figures as the API, in a terminal."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

from tests.ops.conftest import OPERATOR

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _top(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workers.top", *args],
        cwd=ROOT,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_once_prints_the_apis_figures(client, worker):
    done = _top("--once", "--minutes", "15")
    assert done.returncode == 0, done.stderr
    view = client.simulate_get("/api/ops/overview", headers=OPERATOR, params={"minutes": 15}).json
    text = done.stdout
    assert "\x1b[" not in text  # --once is plain text
    summary = view["summary"]
    assert f"dead letters {summary['dead_letters']}" in text
    assert f"ready {summary['ready']}" in text
    for queue in view["queues"]:
        line = next(line for line in text.splitlines() if line.startswith(queue["queue"] + " "))
        ready, _running, delayed, dead = line.split()[1:5]
        assert (int(ready), int(delayed), int(dead)) == (
            queue["ready"],
            queue["delayed"],
            queue["dead"],
        )
    for job in view["scheduler"]["jobs"]:
        if job["last_run"]:
            assert re.search(rf"^{job['job']}\s.*{job['last_run']['outcome']}", text, re.M)


def test_once_fails_with_2_naming_redis_when_it_is_down():
    env = dict(os.environ, REDIS_URL="redis://127.0.0.1:1/0")
    done = _top("--once", env=env)
    assert done.returncode == 2 and "Redis" in done.stderr


def test_live_mode_redraws_in_place(worker):
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.top", "--interval", "0.2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out = b""
    deadline = time.monotonic() + 30
    try:
        while out.count(b"\x1b[H\x1b[2J") < 2 and time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 1.0)
            if ready:
                out += os.read(process.stdout.fileno(), 65536)
    finally:
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=10)
    assert out.count(b"\x1b[H\x1b[2J") >= 2 and b"QUEUES" in out, err
    assert process.returncode == 0 and (out + rest).endswith(b"\x1b[?25h")
