"""Set-password links an admin made pointless (by setting the password) are never used."""

from __future__ import annotations

import re
import socket
import uuid
from urllib.parse import unquote

from sqlalchemy import select

from shared.config import get_settings
from shared.db import session_scope
from shared.identity import invitation_emails
from shared.identity.invitations import hash_token
from shared.models import AgentInvitation
from tests.admin.test_tenants import relay  # noqa: F401
from tests.peers.fixtures import smtp_peers, smtp_servers, smtp_tls_files  # noqa: F401
from tests.waiting import wait_until

ADMINS_CHOICE = "the admin's choice"


def _invitation(agent_id: str) -> AgentInvitation:
    with session_scope() as session:
        return session.scalars(
            select(AgentInvitation).where(AgentInvitation.user_id == uuid.UUID(agent_id))
        ).one()


def _link_saved(token: str) -> bool:
    """Whether the worker committed ``token``'s link (the relay has the email before)."""
    with session_scope() as session:
        saved = select(AgentInvitation.id).where(AgentInvitation.token_hash == hash_token(token))
        return session.scalar(saved) is not None


def _links_to(relay, address: str) -> list[str]:  # noqa: F811
    texts = [
        m.message.get_body(("plain",)).get_content()
        for m in relay.received
        if address in m.rcpt_tos
    ]
    return [
        unquote(re.search(r"accept-invitation\?token=([A-Za-z0-9_\-%]+)", t).group(1))
        for t in texts
    ]


def test_a_link_revoked_before_its_email_went_out_is_never_sent(
    workspace,
    worker,
    relay,  # noqa: F811
    monkeypatch,
):
    """The admin set the password while the invitation email waited for a retry: the
    retry sent a working link anyway, which replaced the admin's password."""
    with socket.socket() as sock:  # a port nobody listens on: the first attempt fails
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    monkeypatch.setenv("PLATFORM_SMTP_PORT", str(closed_port))
    get_settings.cache_clear()
    try:
        email = f"late-{uuid.uuid4().hex[:8]}@example.com"
        body = {"email": email, "full_name": "Lee Late", "role": "agent"}
        agent = workspace.call("POST", "/api/agents", json=body).json
        wait_until(lambda: _invitation(agent["id"]).attempts >= 1, "a failed first attempt")
        chosen = {"password": ADMINS_CHOICE}
        assert workspace.call("PATCH", f"/api/agents/{agent['id']}", json=chosen).status_code == 200
    finally:
        monkeypatch.undo()  # the relay is reachable again
        get_settings.cache_clear()

    invitation_emails.deliver(_invitation(agent["id"]).id, last_attempt=False)  # the retry

    for token in _links_to(relay, email):
        accepted = workspace.client.simulate_post(
            "/api/auth/accept-invitation", json={"token": token, "password": "a stranger's one"}
        )
        assert accepted.status_code == 410, accepted.text
    assert _invitation(agent["id"]).status != "sent"
    login = workspace.client.simulate_post(
        "/api/auth/login", json={"email": email, "password": ADMINS_CHOICE}
    )
    assert login.status_code == 200


def test_an_invited_agent_whose_address_is_corrected_gets_a_link_there(
    workspace,
    worker,
    relay,  # noqa: F811
):
    """Correcting a mistyped address expired the link mailed there and sent none to the
    corrected one: the agent, who has no password, was left with no way to log in."""
    mistyped = f"typo-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": mistyped, "full_name": "Tia Typo", "role": "agent"}
    agent = workspace.call("POST", "/api/agents", json=body).json
    wait_until(lambda: _links_to(relay, mistyped), "the first invitation email")
    corrected = f"fixed-{uuid.uuid4().hex[:8]}@example.com"

    resp = workspace.call("PATCH", f"/api/agents/{agent['id']}", json={"email": corrected})

    assert resp.status_code == 200, resp.text
    [token] = wait_until(lambda: _links_to(relay, corrected), "an invitation to the new address")
    wait_until(lambda: _link_saved(token), "the link saved")
    accepted = workspace.client.simulate_post(
        "/api/auth/accept-invitation", json={"token": token, "password": "my own passphrase"}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json["user"]["id"] == agent["id"]


def test_a_corrected_address_of_an_agent_with_a_password_sends_nothing(
    workspace,
    worker,
    relay,  # noqa: F811
):
    agent, _ = workspace.create_agent()
    corrected = f"moved-{uuid.uuid4().hex[:8]}@example.com"
    resp = workspace.call("PATCH", f"/api/agents/{agent['id']}", json={"email": corrected})
    assert resp.status_code == 200, resp.text
    with session_scope() as session:
        links = select(AgentInvitation.id).where(AgentInvitation.user_id == uuid.UUID(agent["id"]))
        assert session.scalars(links).all() == []
