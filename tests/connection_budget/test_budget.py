"""The fleet's PostgreSQL connection budget: the sums, and the preflight that refuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared import db_budget
from shared.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def _settings(**values) -> Settings:
    base = {"db_pool_size": 5, "db_max_overflow": 5, "fleet_stream_processes": 0}
    return Settings(**(base | values))


def test_the_budget_adds_every_process_kind_up():
    settings = _settings(fleet_web_processes=4, fleet_worker_processes=3, fleet_schedulers=2)
    env = {"WEB_THREADS": "4", "WORKER_THREADS": "8"}
    budget = db_budget.budget(settings, max_connections=100, superuser_reserved=3, env=env)
    roles = {role.name: role for role in budget.roles}
    # web: 4 processes x min(pool 10, 4 threads); workers: 3 x min(10, 2 x 8 threads);
    # schedulers: 2 x (min(10, 10 job threads) + the lock connection).
    assert (roles["web"].ceiling, roles["web"].peak) == (40, 16)
    assert (roles["worker"].ceiling, roles["worker"].peak) == (30, 30)
    assert (roles["scheduler"].ceiling, roles["scheduler"].peak) == (22, 22)
    assert (budget.ceiling, budget.peak) == (92, 68)
    assert budget.available == 100 - 3 - 5
    assert not budget.refused
    assert "ok: at most 92 of 92" in budget.report()


def test_a_fleet_whose_peak_exceeds_the_server_is_refused_and_one_whose_pools_could_is_not():
    env = {"WEB_THREADS": "8", "WORKER_THREADS": "8"}
    fits = db_budget.budget(_settings(fleet_web_processes=7), 100, 3, env=env)
    assert fits.ceiling > fits.available >= fits.peak  # 101 > 92 >= 56 + 20 + 11
    assert not fits.refused and "threads bound their use to" in fits.report()

    grown = db_budget.budget(_settings(fleet_web_processes=12), 100, 3, env=env)
    assert grown.peak == 12 * 8 + 2 * 10 + 11 > grown.available
    assert grown.refused and "OVER BUDGET" in grown.report()


def test_through_pgbouncer_only_the_direct_connections_count():
    settings = _settings(fleet_web_processes=12, database_pgbouncer=True, fleet_schedulers=2)
    budget = db_budget.budget(settings, 100, 3, env={"WEB_THREADS": "8"})
    assert (budget.peak, budget.ceiling) == (2, 2)  # the schedulers' lock connections
    assert budget.pooled_peak == 12 * 8 + 2 * 10 + 2 * 10
    assert not budget.refused and "through PgBouncer" in budget.report()


def _preflight(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shared.preflight"],
        cwd=REPO_ROOT,
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_budget_reads_the_real_servers_limits():
    from shared.preflight import connection_budget

    budget = connection_budget(_settings(fleet_web_processes=1, fleet_worker_processes=1))
    assert budget is not None and budget.max_connections >= 10
    assert budget.superuser_reserved >= 0 and not budget.refused


def test_preflight_prints_the_budget_and_refuses_too_many_in_production():
    refused = _preflight(
        FLEET_WEB_PROCESSES="100",
        WEB_THREADS="8",
        ENV="production",
        SECRET_KEY="s" * 64,
        PUBLIC_BASE_URL="https://inbox.example.com",
    )
    assert refused.returncode == 1, refused.stderr
    assert "PostgreSQL connection budget" in refused.stderr and "OVER BUDGET" in refused.stderr
    assert "more PostgreSQL connections than the server allows" in refused.stderr


def test_preflight_only_warns_outside_production():
    """A developer's 32-core laptop runs 32 web processes against a stock server."""
    warned = _preflight(FLEET_WEB_PROCESSES="100", WEB_THREADS="8", ENV="development")
    assert warned.returncode == 0, warned.stderr
    assert "OVER BUDGET" in warned.stderr and "starting anyway" in warned.stderr
