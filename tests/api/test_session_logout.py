"""Logout ends the whole session: every token refreshed from it or into it, not just one."""

from __future__ import annotations

from tests.workspaces import PASSWORD, register


def _login(client, ws) -> str:
    login = client.simulate_post(
        "/api/auth/login", json={"email": ws.admin["email"], "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    return login.json["access_token"]


def _refresh(ws, token: str) -> str:
    fresh = ws.call("GET", "/api/auth/refresh", token=token)
    assert fresh.status_code == 200, fresh.text
    return fresh.json["access_token"]


def test_logout_with_the_refreshed_token_ends_the_token_it_came_from(client):
    ws = register(client)
    first = _login(client, ws)
    second = _refresh(ws, first)
    assert ws.call("POST", "/api/auth/logout", token=second).status_code == 204

    for method, path in (("GET", "/api/auth/me"), ("GET", "/api/auth/refresh")):
        replayed = ws.call(method, path, token=first)
        assert replayed.status_code == 401, (path, replayed.text)
        assert replayed.json["error"]["code"] == "unauthenticated"
    # Another session of the same user (the registration's) stays logged in.
    assert ws.call("GET", "/api/auth/me").status_code == 200


def test_logout_with_an_older_token_ends_the_tokens_refreshed_from_it(client):
    ws = register(client)
    first = _login(client, ws)
    second = _refresh(ws, first)
    third = _refresh(ws, second)
    assert ws.call("POST", "/api/auth/logout", token=first).status_code == 204

    for token in (second, third):
        assert ws.call("GET", "/api/auth/me", token=token).status_code == 401
    assert ws.call("GET", "/api/auth/me").status_code == 200
