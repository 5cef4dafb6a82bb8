"""A super admin's password reset emails its own message, not the invitation's."""

from __future__ import annotations

import re
import uuid
from urllib.parse import unquote

from shared.config import get_settings
from shared.db import session_scope
from shared.models import AgentInvitation
from tests.admin.test_tenants import relay  # noqa: F401
from tests.peers.fixtures import smtp_peers, smtp_servers, smtp_tls_files  # noqa: F401
from tests.waiting import wait_until

NEW_PASSWORD = "a brand new passphrase"


def _mail_to(relay, address: str):  # noqa: F811
    return wait_until(lambda: [m for m in relay.received if address in m.rcpt_tos], "reset email")[
        0
    ]


def _status(invitation_id: str) -> str:
    with session_scope() as session:
        return session.get(AgentInvitation, uuid.UUID(invitation_id)).status


def test_a_password_reset_sends_a_reset_link_that_sets_a_new_password(
    root,
    workspace,
    worker,
    relay,  # noqa: F811
):
    agent, _ = workspace.create_agent()
    base = f"/api/admin/tenants/{workspace.tenant['id']}/users"
    reset = root.call("POST", f"{base}/{agent['id']}/reset-password")
    assert reset.status_code == 200, reset.text

    mail = _mail_to(relay, agent["email"]).message
    assert mail["Subject"] == f"Reset your {workspace.tenant['name']} password on OmniStream"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    for body in (text, html):
        assert "invited" not in body and "have been added" not in body
        assert "was reset by a platform administrator" in body
        assert "If you did not ask for this" in body
    hours = get_settings().invitation_ttl_hours
    assert f"expires in {hours:g} hour" in text
    token = unquote(re.search(r"accept-invitation\?token=([A-Za-z0-9_\-%]+)", text).group(1))
    wait_until(lambda: _status(reset.json["invitation_id"]) == "sent", "reset link marked sent")

    # The link sets the new password, once.
    accepted = workspace.client.simulate_post(
        "/api/auth/accept-invitation", json={"token": token, "password": NEW_PASSWORD}
    )
    assert accepted.status_code == 200, accepted.text
    login = workspace.client.simulate_post(
        "/api/auth/login", json={"email": agent["email"], "password": NEW_PASSWORD}
    )
    assert login.status_code == 200
    again = workspace.client.simulate_post(
        "/api/auth/accept-invitation", json={"token": token, "password": "yet another one!"}
    )
    assert again.status_code == 410


def test_a_new_agent_still_gets_the_invitation_text(workspace, worker, relay):  # noqa: F811
    email = f"newcomer-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "full_name": "New Comer", "role": "agent"}
    assert workspace.call("POST", "/api/agents", json=body).status_code == 201
    mail = _mail_to(relay, body["email"]).message
    assert mail["Subject"].startswith("You are invited to")
    assert "Reset your" not in mail.get_body(("plain",)).get_content()


def _links_to(relay, address: str, count: int) -> list[str]:  # noqa: F811
    """The tokens of the first ``count`` links emailed to ``address``, oldest first."""
    mails = wait_until(
        lambda: (
            (found := [m for m in relay.received if address in m.rcpt_tos])[count - 1 :] and found
        ),
        f"{count} emails to {address}",
    )
    texts = [m.message.get_body(("plain",)).get_content() for m in mails[:count]]
    return [
        unquote(re.search(r"accept-invitation\?token=([A-Za-z0-9_\-%]+)", t).group(1))
        for t in texts
    ]


def _accept(workspace, token: str, password: str):
    return workspace.client.simulate_post(
        "/api/auth/accept-invitation", json={"token": token, "password": password}
    )


def test_a_used_link_ends_the_agents_other_links(root, workspace, worker, relay):  # noqa: F811
    """Two resets mailed two links; once one set the password, the other must not replace it."""
    agent, _ = workspace.create_agent()
    base = f"/api/admin/tenants/{workspace.tenant['id']}/users/{agent['id']}"
    first = root.call("POST", f"{base}/reset-password")
    second = root.call("POST", f"{base}/reset-password")
    assert first.status_code == second.status_code == 200
    old_link, new_link = _links_to(relay, agent["email"], 2)
    for reset in (first, second):
        invitation_id = reset.json["invitation_id"]
        wait_until(lambda i=invitation_id: _status(i) == "sent", "reset link marked sent")

    assert _accept(workspace, new_link, NEW_PASSWORD).status_code == 200
    stale = _accept(workspace, old_link, "the old link's password")

    assert stale.status_code == 410, stale.text
    assert stale.json["error"]["code"] == "invitation_gone"
    login = workspace.client.simulate_post(
        "/api/auth/login", json={"email": agent["email"], "password": NEW_PASSWORD}
    )
    assert login.status_code == 200


def test_a_suspended_agent_cannot_use_a_link(root, workspace, worker, relay):  # noqa: F811
    """Suspension refuses login: a reset link must not log a suspended agent in either."""
    agent, _ = workspace.create_agent()
    base = f"/api/admin/tenants/{workspace.tenant['id']}/users/{agent['id']}"
    reset = root.call("POST", f"{base}/reset-password")
    assert reset.status_code == 200
    [link] = _links_to(relay, agent["email"], 1)
    wait_until(lambda: _status(reset.json["invitation_id"]) == "sent", "reset link marked sent")
    assert root.call("POST", f"{base}/suspend").status_code == 200

    refused = _accept(workspace, link, NEW_PASSWORD)

    assert refused.status_code == 403, refused.text
    assert refused.json["error"]["code"] == "user_suspended"
    assert _status(reset.json["invitation_id"]) == "sent"  # still usable once reactivated
