"""send_email agent invitations: a single-use, expiring set-password link, over SMTP."""

from __future__ import annotations

import hashlib
import socket
import uuid

from sqlalchemy import select, update

from shared.config import get_settings
from shared.db import session_scope
from shared.models import DivisionMember
from shared.models.invitations import AgentInvitation
from tests.channels_gaps.conftest import PLATFORM_FROM, dead_letters, link_token, new_email
from tests.inbox_messages.conftest import Inbox
from tests.waiting import wait_until

NEW_PASSWORD = "a brand new passphrase"


def _invite(workspace, **fields):
    body = {"email": new_email(), "full_name": "Ivy Invitee", "role": "agent"} | fields
    resp = workspace.call("POST", "/api/agents", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json


def _invitation(agent_id) -> AgentInvitation | None:
    with session_scope() as session:
        return session.scalars(
            select(AgentInvitation).where(AgentInvitation.user_id == uuid.UUID(agent_id))
        ).one_or_none()


def _settled(agent_id, *statuses):
    return wait_until(
        lambda: (row := _invitation(agent_id)) is not None and row.status in statuses and row,
        f"invitation of {agent_id} in {statuses}",
        timeout=30,  # a few retries with backoff, on a loaded CI machine
    )


def _mail_to(relay, address):
    return wait_until(
        lambda: [m for m in relay.received if address in m.rcpt_tos], f"email to {address}"
    )


def _emailed_token(relay, agent) -> str:
    """The token of the link emailed to ``agent``, once its hash is committed too."""
    [mail] = _mail_to(relay, agent["email"])
    _settled(agent["id"], "sent")  # the relay takes the email just before the commit
    return link_token(mail.message.get_body(("plain",)).get_content())


def _login(client, email, password):
    return client.simulate_post("/api/auth/login", json={"email": email, "password": password})


def _accept(client, token, password=NEW_PASSWORD):
    return client.simulate_post(
        "/api/auth/accept-invitation", json={"token": token, "password": password}
    )


def test_an_agent_without_password_is_emailed_a_link_that_sets_it(client, workspace, worker, relay):
    division_id = Inbox(workspace.tenant["id"]).division()
    agent = _invite(workspace, division_ids=[str(division_id)])

    token = _emailed_token(relay, agent)
    [mail] = relay.received
    assert mail.mail_from == PLATFORM_FROM
    assert workspace.tenant["name"] in mail.message["Subject"]
    assert _login(client, agent["email"], NEW_PASSWORD).status_code == 401  # not yet

    resp = _accept(client, token)

    assert resp.status_code == 200, resp.text
    assert resp.json["user"]["id"] == agent["id"]
    assert resp.json["access_token"]
    assert "session=" in resp.headers.get("set-cookie", "")
    me = client.simulate_get(
        "/api/auth/me", headers={"Authorization": f"Bearer {resp.json['access_token']}"}
    )
    assert me.status_code == 200 and me.json["email"] == agent["email"]
    assert _login(client, agent["email"], NEW_PASSWORD).status_code == 200
    row = _invitation(agent["id"])
    assert row.status == "accepted" and row.accepted_at is not None
    # Only the token's hash is kept.
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str({c.key: getattr(row, c.key) for c in AgentInvitation.__mapper__.attrs})
    with session_scope() as session:
        divisions = session.scalars(
            select(DivisionMember.division_id).where(
                DivisionMember.user_id == uuid.UUID(agent["id"])
            )
        ).all()
    assert divisions == [division_id]


def test_a_used_token_is_410_and_an_unknown_one_404(client, workspace, worker, relay):
    agent = _invite(workspace)
    token = _emailed_token(relay, agent)
    assert _accept(client, token).status_code == 200

    again = _accept(client, token, password="another passphrase!")
    unknown = _accept(client, "not-a-token-we-ever-sent")

    assert again.status_code == 410
    assert again.json["error"]["code"] == "invitation_gone"
    assert _login(client, agent["email"], "another passphrase!").status_code == 401
    assert unknown.status_code == 404
    assert unknown.json["error"]["code"] == "not_found"


def test_a_link_mailed_to_a_corrected_address_no_longer_works(client, workspace, worker, relay):
    """The owner of a mistyped mailbox must not set the password of the corrected account."""
    agent = _invite(workspace)
    token = _emailed_token(relay, agent)
    corrected = new_email()
    resp = workspace.call("PATCH", f"/api/agents/{agent['id']}", json={"email": corrected})
    assert resp.status_code == 200, resp.text

    resp = _accept(client, token)

    assert resp.status_code == 410, resp.text
    assert resp.json["error"]["code"] == "invitation_gone"
    assert _login(client, corrected, NEW_PASSWORD).status_code == 401


def test_a_link_stops_working_once_an_admin_sets_the_password(client, workspace, worker, relay):
    agent = _invite(workspace)
    token = _emailed_token(relay, agent)
    chosen = {"password": "the admin's choice"}
    assert workspace.call("PATCH", f"/api/agents/{agent['id']}", json=chosen).status_code == 200

    assert _accept(client, token).status_code == 410
    assert _login(client, agent["email"], "the admin's choice").status_code == 200
    assert _login(client, agent["email"], NEW_PASSWORD).status_code == 401


def test_an_expired_token_is_410_and_sets_nothing(client, workspace, worker, relay):
    agent = _invite(workspace)
    token = _emailed_token(relay, agent)
    with session_scope() as session:  # the link's lifetime has passed
        session.execute(
            update(AgentInvitation)
            .where(AgentInvitation.user_id == uuid.UUID(agent["id"]))
            .values(expires_at=AgentInvitation.sent_at)
        )

    resp = _accept(client, token)

    assert resp.status_code == 410
    assert "expired" in resp.json["error"]["message"]
    assert _login(client, agent["email"], NEW_PASSWORD).status_code == 401
    assert _invitation(agent["id"]).status == "sent"


def test_a_short_password_is_422(client, workspace, worker, relay):
    agent = _invite(workspace)
    token = _emailed_token(relay, agent)

    resp = _accept(client, token, password="short")

    assert resp.status_code == 422
    assert resp.json["error"]["details"][0]["field"] == "password"
    assert _accept(client, token).status_code == 200  # the token was not spent


def test_an_agent_created_with_a_password_gets_no_invitation(workspace, worker, relay):
    agent = _invite(workspace, password="correct horse battery")

    assert _invitation(agent["id"]) is None
    assert relay.received == []


def test_smtp_down_is_retried_then_the_invitation_fails_visibly(
    workspace, worker, relay, monkeypatch
):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    monkeypatch.setenv("PLATFORM_SMTP_PORT", str(closed_port))
    get_settings.cache_clear()
    try:
        agent = _invite(workspace)
        row = _settled(agent["id"], "failed")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()

    assert row.attempts == 3  # the first try and OUTBOUND_MAX_RETRIES=2 retries
    assert row.last_error_code == "connection_error"
    assert row.token_hash is None  # no link ever went out
    [letter] = wait_until(lambda: dead_letters("send_email", str(row.id)), "the dead letter")
    assert letter.retries == 2


def test_another_tenants_division_is_422_and_creates_nothing(
    workspace, other_workspace, worker, relay
):
    foreign = Inbox(other_workspace.tenant["id"]).division()
    email = new_email()

    resp = workspace.call(
        "POST",
        "/api/agents",
        json={"email": email, "full_name": "Ivy", "role": "agent", "division_ids": [str(foreign)]},
    )

    assert resp.status_code == 422
    assert resp.json["error"]["details"] == [
        {"field": "division_ids[0]", "message": "no such division in this workspace"}
    ]
    listed = workspace.call("GET", "/api/agents", params={"q": email}).json["items"]
    assert listed == []
    assert relay.received == []


def test_the_link_of_a_deleted_agent_is_410(client, workspace, worker, relay):
    agent = _invite(workspace)
    token = _emailed_token(relay, agent)
    assert workspace.call("DELETE", f"/api/agents/{agent['id']}").status_code == 204

    resp = _accept(client, token)

    assert resp.status_code == 410
    assert resp.json["error"]["code"] == "invitation_gone"
    assert _login(client, agent["email"], NEW_PASSWORD).status_code == 401


def test_a_dead_invitation_email_is_not_requeued_and_says_how_to_send_a_fresh_link(
    client, workspace, worker, relay, monkeypatch
):
    """Its job's last attempt failed the invitation: a requeue that answered 200 emailed
    nothing. It must say why not, and what to do."""
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    monkeypatch.setenv("PLATFORM_SMTP_PORT", str(closed_port))
    get_settings.cache_clear()
    try:
        agent = _invite(workspace)
        row = _settled(agent["id"], "failed")
        [letter] = wait_until(lambda: dead_letters("send_email", str(row.id)), "the dead letter")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    operator = {"Authorization": f"Bearer {get_settings().metrics_token}"}

    resp = client.simulate_post(f"/api/ops/dead-letters/{letter.id}/requeue", headers=operator)

    assert resp.status_code == 409, resp.text
    error = resp.json["error"]
    assert error["code"] == "not_requeueable"
    assert f"/users/{agent['id']}/reset-password" in error["message"]
    assert _invitation(agent["id"]).status == "failed"
