"""What a newcomer sees when the platform starts: one SECRET_KEY warning, useful hints."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
WARNING = "SECRET_KEY is the development default"
THREADS_WARNING = "AI_MAX_CONCURRENT_TESTS"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _development_env(**extra: str) -> dict[str, str]:
    env = os.environ | {"ENV": "development"} | extra
    env.pop("SECRET_KEY", None)
    return env


def test_redis_hint_names_the_port_of_redis_url():
    port = _free_port()  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "shared.preflight"],
        cwd=REPO_ROOT,
        env=os.environ | {"REDIS_URL": f"redis://127.0.0.1:{port}/0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"Redis is not reachable at redis://127.0.0.1:{port}/0" in result.stderr
    assert f"--port {port} " in result.stderr
    assert "--port 6379" not in result.stderr


def test_redis_hint_for_a_unix_socket():
    from shared.preflight import redis_start_hint

    hint = redis_start_hint("unix:///run/redis/omni.sock")
    assert "--unixsocket /run/redis/omni.sock" in hint and "--port 0" in hint


def test_web_warns_once_about_the_development_secret_key():
    """Two gunicorn workers and the master read the settings; the warning is said once."""
    port = _free_port()
    proc = subprocess.Popen(
        ["gunicorn", "--config", "python:api.gunicorn_conf", "api.app:create_app()"],
        cwd=REPO_ROOT,
        env=_development_env(PORT=str(port), WEB_CONCURRENCY="2", PATH=_venv_path()),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        booted = _wait_for_lines(proc, "Booting worker", count=2)
        # Workers build the app after boot: give them time to read the settings too.
        _wait_listening(port)
        time.sleep(2)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
    output = booted + rest
    assert output.count(WARNING) == 1, output
    assert THREADS_WARNING not in output, output  # the defaults leave the inbox threads


def test_web_warns_when_agent_tests_may_take_every_thread():
    port = _free_port()
    proc = subprocess.Popen(
        ["gunicorn", "--config", "python:api.gunicorn_conf", "api.app:create_app()"],
        cwd=REPO_ROOT,
        env=_development_env(
            PORT=str(port),
            WEB_CONCURRENCY="1",
            WEB_THREADS="2",
            AI_MAX_CONCURRENT_TESTS="2",
            PATH=_venv_path(),
        ),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        booted = _wait_for_lines(proc, "Booting worker", count=1)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
    output = booted + rest
    assert f"{THREADS_WARNING} (2) is not below WEB_THREADS (2)" in output, output


def test_production_refuses_the_development_secret_key():
    result = subprocess.run(
        [sys.executable, "-c", "from shared.config import get_settings; get_settings()"],
        cwd=REPO_ROOT,
        env=_development_env(ENV="production"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "SECRET_KEY must be set in production" in result.stderr


def test_production_refuses_links_that_would_point_at_localhost():
    """Invitation emails and CSAT survey messages go to people outside: without
    PUBLIC_BASE_URL (or their own URL settings) their links led to 127.0.0.1."""
    secrets = {"ENV": "production", "SECRET_KEY": "s" * 64, "ENCRYPTION_KEY": "e" * 64}
    check = [sys.executable, "-c", "from shared.config import get_settings; get_settings()"]

    def start(**extra: str) -> subprocess.CompletedProcess:
        env = {
            name: value
            for name, value in os.environ.items()
            if name not in ("PUBLIC_BASE_URL", "INVITATION_URL", "CSAT_SURVEY_URL")
        }
        env |= secrets | extra
        return subprocess.run(
            check, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    refused = start()
    assert refused.returncode == 1
    assert "PUBLIC_BASE_URL must be set in production" in refused.stderr
    assert "invitation emails" in refused.stderr and "CSAT survey" in refused.stderr
    only_invitations = start(INVITATION_URL="https://app.example.com/join?t={token}")
    assert only_invitations.returncode == 1
    assert "invitation emails" not in only_invitations.stderr
    assert start(PUBLIC_BASE_URL="https://inbox.example.com").returncode == 0
    assert (
        start(
            INVITATION_URL="https://app.example.com/join?t={token}",
            CSAT_SURVEY_URL="https://app.example.com/rate/{survey_id}#{token}",
        ).returncode
        == 0
    )


def _venv_path() -> str:
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def _wait_for_lines(proc: subprocess.Popen, needle: str, *, count: int) -> str:
    seen, deadline = [], time.monotonic() + 60
    while sum(needle in line for line in seen) < count:
        assert time.monotonic() < deadline, "".join(seen)
        line = proc.stderr.readline()
        assert line, f"gunicorn exited early: {''.join(seen)}"
        seen.append(line)
    return "".join(seen)


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "gunicorn never listened"
            time.sleep(0.1)


def _preflight(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shared.preflight"],
        cwd=REPO_ROOT,
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_server_that_refuses_the_login_is_not_said_to_be_down():
    """PostgreSQL answered (the role is unknown): the hint is the URL, not starting a server."""
    result = _preflight(DATABASE_URL="postgresql://no_such_role@127.0.0.1:5432/omnistream")
    assert result.returncode == 1
    assert "PostgreSQL at 127.0.0.1:5432 refused the connection" in result.stderr
    assert 'role "no_such_role" does not exist' in result.stderr
    assert "check the user, password and database in DATABASE_URL" in result.stderr
    assert "pg_ctlcluster" not in result.stderr and "Traceback" not in result.stderr


def test_a_redis_that_refuses_the_url_is_not_said_to_be_down():
    result = _preflight(REDIS_URL="redis://127.0.0.1:6379/99999")
    assert result.returncode == 1
    assert "Redis at redis://127.0.0.1:6379/99999 (REDIS_URL) refused it" in result.stderr
    assert "redis-server" not in result.stderr and "Traceback" not in result.stderr


def test_a_malformed_url_is_named_in_one_line_without_a_traceback():
    """A URL a driver cannot even parse used to end the preflight in a traceback."""
    for variable, value in [
        ("DATABASE_URL", "localhost:5432/omnistream"),
        ("DATABASE_URL", "mysql://root@127.0.0.1/omnistream"),
        ("DATABASE_DIRECT_URL", "127.0.0.1:5432"),
        ("REDIS_URL", "127.0.0.1:6379"),
        ("BROKER_URL", "rabbitmq://127.0.0.1"),
    ]:
        result = _preflight(**{variable: value})
        assert result.returncode == 1, (variable, value, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("The settings are refused:\n"), result.stderr
        assert f"  - {variable}: " in result.stderr, result.stderr


def test_the_preflight_refuses_production_settings_and_log_format_in_one_line():
    """Refusals read outside the settings' fields used to end the preflight in a traceback,
    or (LOG_FORMAT) pass it and then stop every process in one."""
    env = _development_env(ENV="production")
    env.pop("PUBLIC_BASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "shared.preflight"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr == "The settings are refused:\n  - SECRET_KEY must be set in production\n"
    result = _preflight(LOG_FORMAT="yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("The settings are refused:\n  - LOG_FORMAT must be")
