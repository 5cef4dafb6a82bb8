"""An IPv6 client cannot reset the failed-login limit by moving within its own /64."""

from __future__ import annotations

import pytest

from shared.config import get_settings
from shared.db import session_scope
from shared.errors import RateLimited, Unauthenticated
from shared.identity import auth
from tests.workspaces import register


def _attempt(email: str, ip: str) -> str:
    try:
        with session_scope() as session:
            auth.login(session, email=email, password="not the password", ip=ip)
    except Unauthenticated:
        return "checked"
    except RateLimited:
        return "limited"
    raise AssertionError("a wrong password was accepted")


def test_guesses_from_one_ipv6_network_share_one_limit(client):
    ws = register(client)
    limit = get_settings().login_rate_limit_per_minute
    # Every host of a /64 belongs to one subscriber: each guess from a fresh address.
    answers = [_attempt(ws.admin["email"], f"2001:db8:7:9::{n + 1:x}") for n in range(limit + 3)]
    assert answers.count("checked") == limit, answers
    assert answers[-1] == "limited"


@pytest.mark.parametrize("other", ["2001:db8:7:a::1", "198.51.100.7"])
def test_another_network_keeps_its_own_count(client, other):
    ws = register(client)
    limit = get_settings().login_rate_limit_per_minute
    for n in range(limit):
        assert _attempt(ws.admin["email"], f"2001:db8:7:9::{n + 1:x}") == "checked"
    assert _attempt(ws.admin["email"], other) == "checked"
