"""Super-admin writes against the tenant's own work: row locks that cannot deadlock.

A tenant's row is referenced by every tenant-owned row, so each insert of the tenant's
takes a FOR KEY SHARE lock on it. A super admin's change that held FOR UPDATE on the
tenant (which conflicts with KEY SHARE) deadlocked with any transaction that had locked
a row the change touches next and then inserted a row of the tenant.
"""

from __future__ import annotations

import uuid

from sqlalchemy.exc import DBAPIError

from shared.db import get_sessionmaker
from shared.identity import auth
from shared.inbox import notes
from tests.inbox_conversations.conftest import add_conversation
from tests.lock_races import SlaCheckHolding, clocked_conversation, race


def test_a_timezone_change_does_not_deadlock_with_a_running_sla_check(root, workspace):
    conversation = clocked_conversation(workspace, business_hours_only=True)
    check = SlaCheckHolding(conversation)

    resp = race(
        check.holder,
        lambda: root.call(
            "PATCH", f"/api/admin/tenants/{workspace.tenant['id']}", json={"timezone": "Asia/Tokyo"}
        ),
        then=check.breach,
    )

    assert check.failures == []
    assert resp is not None and resp.status_code == 200, resp and resp.text


def test_a_password_reset_does_not_deadlock_with_a_request_of_the_users_api_key(root, workspace):
    """An API-key request stamps its key's ``last_used_at`` first, then writes rows naming
    its user (a note's author: FOR KEY SHARE on the user); the reset locked the user
    FOR UPDATE and then revoked the same key."""
    agent, token = workspace.create_agent(role="admin")
    key = workspace.call("POST", "/api/api-keys", json={"name": "k"}, token=token).json["key"]
    conversation = uuid.UUID(add_conversation(workspace))
    holder = get_sessionmaker()()
    ctx = auth.authenticate_api_key(holder, key)  # the request's first step: key stamped
    failures: list[str] = []

    def write_note():
        try:
            notes.create_note(holder, ctx, conversation, body="Calling the customer back")
        except DBAPIError as exc:
            failures.append(str(exc.orig))
            holder.rollback()

    base = f"/api/admin/tenants/{workspace.tenant['id']}/users/{agent['id']}"
    resp = race(holder, lambda: root.call("POST", f"{base}/reset-password"), then=write_note)

    assert failures == []
    assert resp is not None and resp.status_code == 200, resp and resp.text
