"""A web process's threads by default: fewer where PostgreSQL shares the machine's cores."""

from __future__ import annotations

import pytest

from shared import db_budget
from shared.config import Settings
from shared.web_threads import ai_test_slots, database_is_local, web_threads

NO_ENV: dict[str, str] = {}


def _settings(url: str, **values) -> Settings:
    return Settings(database_url=url, **values)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/omnistream",
        "postgresql://postgres@localhost/omnistream",
        "postgresql://postgres@[::1]:5432/omnistream",
        "postgresql://postgres@127.0.0.2/omnistream",
        "postgresql:///omnistream",  # libpq's default: the Unix socket
        "postgresql://postgres@/omnistream?host=/var/run/postgresql",
    ],
)
def test_a_database_on_this_machine_gets_two_threads(url):
    settings = _settings(url)
    assert database_is_local(settings, NO_ENV)
    assert web_threads(settings, NO_ENV) == 2
    # An agent test waiting for a slow model leaves the other thread to the inbox.
    assert ai_test_slots(settings, NO_ENV) == 1


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:secret@db.internal:5432/omnistream",
        "postgresql://app@10.0.3.7/omnistream",
        "postgresql://app@/omnistream?host=127.0.0.1,db-replica.internal",
    ],
)
def test_a_database_elsewhere_gets_four_threads(url):
    settings = _settings(url)
    assert not database_is_local(settings, NO_ENV)
    assert web_threads(settings, NO_ENV) == 4
    assert ai_test_slots(settings, NO_ENV) == 2


def test_pgbouncer_on_this_machine_counts_as_a_database_elsewhere():
    settings = _settings("postgresql://app@127.0.0.1:6432/omnistream", database_pgbouncer=True)
    assert web_threads(settings, NO_ENV) == 4


def test_pghost_names_the_host_a_url_without_one_reaches():
    settings = _settings("postgresql:///omnistream")
    assert web_threads(settings, {"PGHOST": "db.internal"}) == 4


def test_web_threads_and_the_ai_test_limit_win_when_set():
    local = _settings("postgresql://postgres@127.0.0.1/omnistream")
    assert web_threads(local, {"WEB_THREADS": "6"}) == 6
    assert ai_test_slots(local, {"WEB_THREADS": "6"}) == 2
    assert ai_test_slots(_settings(local.database_url, ai_max_concurrent_tests=3), NO_ENV) == 3


def test_the_connection_budget_counts_the_threads_gunicorn_will_run():
    local = _settings("postgresql://postgres@127.0.0.1/omnistream", fleet_web_processes=3)
    remote = _settings("postgresql://app@db.internal/omnistream", fleet_web_processes=3)
    web = {
        name: next(r for r in db_budget.fleet_roles(s, NO_ENV) if r.name == "web")
        for name, s in (("local", local), ("remote", remote))
    }
    assert (web["local"].peak, web["remote"].peak) == (3 * 2, 3 * 4)
