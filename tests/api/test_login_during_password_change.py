"""A login with the old password while the password is being changed opens no session."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.db import get_sessionmaker
from shared.identity import agents, auth
from shared.identity.security import issue_access_token
from shared.models import User
from tests.lock_races import race
from tests.workspaces import PASSWORD


def test_the_old_password_logs_in_to_no_session_that_outlives_the_change(workspace):
    """The login read the old hash before the change committed and issued its token after
    the change's tokens_valid_after (its transaction's start): the old password's session
    kept working after the password was changed (e.g. to lock a thief out)."""
    ws = workspace
    agent, _ = ws.create_agent()
    holder = get_sessionmaker()()
    ctx = auth.authenticate_token(holder, ws.token)
    agents.update_agent(holder, ctx, agent["id"], {"password": "a brand new password"})

    login = race(
        holder,
        lambda: ws.client.simulate_post(
            "/api/auth/login", json={"email": agent["email"], "password": PASSWORD}
        ),
    )

    if login.status_code == 200:
        me = ws.call("GET", "/api/auth/me", token=login.json["access_token"])
        assert me.status_code == 401, "the old password's session outlived the change"
    else:
        assert login.status_code == 401, login.text


def test_a_refresh_during_the_change_makes_no_token_that_outlives_it(workspace):
    """The refresh was authenticated before the change committed and issued its token after
    the change's tokens_valid_after: the old session went on, refreshed, after the change."""
    ws = workspace
    agent, token = ws.create_agent()
    holder = get_sessionmaker()()
    ctx = auth.authenticate_token(holder, ws.token)
    agents.update_agent(holder, ctx, agent["id"], {"password": "a brand new password"})

    fresh = race(holder, lambda: ws.call("GET", "/api/auth/refresh", token=token))

    if fresh.status_code == 200:
        me = ws.call("GET", "/api/auth/me", token=fresh.json["access_token"])
        assert me.status_code == 401, "the refreshed session outlived the change"
    else:
        assert fresh.status_code == 401, fresh.text


def test_a_login_that_held_the_row_first_makes_no_token_that_outlives_the_change(workspace):
    """The change's transaction began, then waited for the login's lock on the user; the
    login issued its token meanwhile. tokens_valid_after was the change's transaction start
    (now()), before that token: the old password's session outlived the change."""
    ws = workspace
    agent, _ = ws.create_agent()
    holder = get_sessionmaker()()
    holder.execute(  # what a login holds while it checks the password
        select(User.id).where(User.id == uuid.UUID(agent["id"])).with_for_update(key_share=True)
    )
    body = {"password": "a brand new password"}
    issued: list = []

    changed = race(
        holder,
        lambda: ws.call("PATCH", f"/api/agents/{agent['id']}", json=body),
        then=lambda: issued.append(
            issue_access_token(uuid.UUID(agent["id"]), uuid.UUID(ws.tenant["id"]))
        ),
    )

    assert changed.status_code == 200, changed.text
    me = ws.call("GET", "/api/auth/me", token=issued[0].token)
    assert me.status_code == 401, "the old password's session outlived the change"
