"""One account's failed logins are bounded across networks: password spraying from
ever-new addresses runs into an account-wide limit, next to the per-network one."""

from __future__ import annotations

from shared.config import get_settings
from shared.identity import auth
from tests.workspaces import PASSWORD, register


def _login(client, email: str, ip: str, password: str = "not the password"):  # noqa: S107
    body = {"email": email, "password": password}
    return client.simulate_post("/api/auth/login", json=body, remote_addr=ip)


def _spray(client, email: str, guesses: int) -> list:
    """One wrong guess from each of ``guesses`` networks (never the per-network limit)."""
    return [_login(client, email, f"198.51.{n // 250}.{n % 250 + 1}") for n in range(guesses)]


def test_guesses_rotating_networks_hit_the_account_wide_limit(client):
    ws = register(client)
    limit = get_settings().login_account_failures_limit
    answers = _spray(client, ws.admin["email"], limit + 2)
    assert [a.status_code for a in answers[:limit]] == [401] * limit
    refused = answers[-1]
    assert refused.status_code == 429, refused.text
    assert refused.json["error"]["code"] == "rate_limited"
    assert 0 < int(refused.headers["retry-after"]) <= auth.LOGIN_ACCOUNT_WINDOW_SECONDS
    # Even the right password waits out the (bounded) window: we cannot tell the owner.
    assert _login(client, ws.admin["email"], "192.0.2.200", PASSWORD).status_code == 429


def test_the_account_limit_is_per_email_and_forgives_successes(client):
    ws = register(client)
    other = register(client)
    limit = get_settings().login_account_failures_limit
    _spray(client, ws.admin["email"], limit + 1)
    # Another account is untouched by the first one's lockout.
    assert _login(client, other.admin["email"], "192.0.2.9", PASSWORD).status_code == 200
    # Right passwords are not failures: many logins never lock their owner out.
    for n in range(limit + 2):
        assert (
            _login(client, other.admin["email"], f"192.0.2.{n + 10}", PASSWORD).status_code == 200
        )


def test_the_lockout_window_is_bounded(client):
    assert auth.LOGIN_ACCOUNT_WINDOW_SECONDS <= 15 * 60
    assert get_settings().login_account_failures_limit > get_settings().login_rate_limit_per_minute
