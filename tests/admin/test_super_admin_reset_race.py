"""A super admin's old password logs in to no session that outlives its reset."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.admin import super_admins
from shared.admin.context import AdminCtx
from shared.db import get_sessionmaker
from shared.identity.security import issue_super_admin_token
from shared.models import SuperAdmin as SuperAdminRow
from tests.admin.conftest import PASSWORD, create_super_admin, login
from tests.lock_races import race


def _admin_id(email: str) -> uuid.UUID:
    with get_sessionmaker()() as session:
        return session.scalar(select(SuperAdminRow.id).where(SuperAdminRow.email == email))


def test_a_login_during_the_reset_makes_no_token_that_outlives_it(client, root):
    """The login read the old hash before the reset committed (it took no lock) and issued
    its token after the reset's tokens_valid_after (its transaction's start): the old
    password's session kept working after the reset meant to lock its holder out."""
    email = create_super_admin()
    holder = get_sessionmaker()()
    caller = AdminCtx(super_admin_id=uuid.UUID(root.id), email=root.email)
    super_admins.reset_password(holder, caller, _admin_id(email))

    resp = race(
        holder,
        lambda: client.simulate_post(
            "/api/admin/auth/login", json={"email": email, "password": PASSWORD}
        ),
    )

    if resp.status_code == 200:
        token = resp.json["access_token"]
        listing = root.call("GET", "/api/admin/super-admins", token=token)
        assert listing.status_code == 401, "the old password's session outlived the reset"
    else:
        assert resp.status_code == 401, resp.text


def test_a_login_that_held_the_row_first_makes_no_token_that_outlives_the_reset(client, root):
    """The reset's transaction began, then waited for the login's lock on the account; the
    login issued its token meanwhile. tokens_valid_after was the reset's transaction start
    (now()), before that token: the old password's session outlived the reset."""
    other = login(client, create_super_admin())
    holder = get_sessionmaker()()
    holder.execute(  # what a login holds while it checks the password
        select(SuperAdminRow.id)
        .where(SuperAdminRow.id == uuid.UUID(other.id))
        .with_for_update(key_share=True)
    )
    issued: list = []

    reset = race(
        holder,
        lambda: root.call("POST", f"/api/admin/super-admins/{other.id}/reset-password"),
        then=lambda: issued.append(issue_super_admin_token(uuid.UUID(other.id))),
    )

    assert reset.status_code == 200, reset.text
    listing = root.call("GET", "/api/admin/super-admins", token=issued[0].token)
    assert listing.status_code == 401, "a token issued before the reset committed outlived it"
