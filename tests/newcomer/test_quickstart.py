"""The README's quick start, run as it is written, against the platform the Procfile starts.

The platform line of the README (``make run`` with loopback callbacks allowed) is run as
the Procfile under honcho on this run's database, which ``make run`` would also migrate;
the steps block is extracted from README.md and run by bash with only ``API`` and
``RECEIVER_PORT`` pointed at free ports.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.newcomer.test_start import _free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS = re.compile(r"<!-- quickstart:steps[^>]*-->\n```sh\n(.*?)```", re.S)


def quickstart_steps() -> str:
    found = STEPS.search((REPO_ROOT / "README.md").read_text())
    assert found, "README.md lost its quick start block"
    return found.group(1)


@pytest.fixture
def platform(database, redis_namespace):
    """web + worker + scheduler from the Procfile, under honcho, on this run's database."""
    port = _free_port()
    venv_bin = Path(sys.executable).parent
    env = os.environ | {
        "PORT": str(port),
        # honcho gives each process PORT + 100 times its place, so the stream would listen on
        # PORT + 300, which nothing reserved: another test's socket may hold it.
        "STREAM_PORT": str(_free_port()),
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_SSRF_ALLOWLIST": "127.0.0.1/32",
        "WEB_CONCURRENCY": "1",
        "WORKER_PROCESSES": "1",
        "WORKER_THREADS": "2",
    }
    proc = subprocess.Popen(
        [str(venv_bin / "honcho"), "start", "-f", "Procfile"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(api, proc)
        yield api
    finally:
        # honcho may have stopped already (a process of it failed); its group is then gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def _wait_until_up(api: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"{api}/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the platform never became healthy"
        time.sleep(0.25)


#: Run after the steps: wait (bounded) until the reply is sent, so its callback line is
#: printed, then stop the receiver the steps started in the background.
EPILOGUE = """
for _ in $(seq 150); do
  json "$API/api/conversations/$CONVERSATION/messages" -H "$AUTH" |
    jq -e '.items[] | select(.direction == "outbound" and .status == "sent")' >/dev/null && break
  sleep 0.1
done
kill %1
wait || true
"""


@pytest.mark.skipif(not shutil.which("jq"), reason="the quick start needs jq (.ci/run installs it)")
def test_the_readme_quick_start_works_as_written(platform):
    env = os.environ | {"API": platform, "RECEIVER_PORT": str(_free_port())}
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", quickstart_steps() + EPILOGUE],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"

    # Step 4: the customer's message went in.
    assert '"direction": "inbound"' in stdout
    # Step 6: the reply reached the callback, signed with the account's secret...
    [callback] = [line for line in stdout.splitlines() if line.startswith("POST /omnistream")]
    assert "signature=valid" in callback and "the refund is on its way" in callback
    # ...and both messages are listed.
    assert "inbound\treceived\tHi! Can I get a refund for order 1234?" in stdout
    assert re.search(r"outbound\t\w+\tOf course, Carla", stdout)
    # Step 7: the dry run matched both conditions and would tag.
    assert '"matched": true' in stdout and '"seen": "I want a refund"' in stdout
    assert '"add_tags"' in stdout
