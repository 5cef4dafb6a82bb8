"""A sender deleted and connected again by the same tenant carries on its conversations.

Conversations name their account by id (no foreign key) and refuse replies once it is
deleted (409 ``account_deleted``): nothing answers a customer from another number. The
same number connected again is not another number: it takes the deleted account's id
back, so its old conversations answer again, through it. Only the tenant that deleted it
gets the id back; another external id, or another tenant, gets a new one.
"""

from __future__ import annotations

import uuid

from shared.channels import accounts
from shared.context import Ctx
from shared.db import get_sessionmaker
from tests.channels_outbound.conftest import messages_of, wait_for_status
from tests.lock_races import race

OLD_TOKEN = "EAAG-before-deletion"
NEW_TOKEN = "EAAG-after-reconnection"


def _number() -> str:
    return str(uuid.uuid4().int)[:15]


def _connect(ws, external_id: str, channel: str = "whatsapp", token: str = NEW_TOKEN):
    body = {"channel": channel, "name": "Support", "external_id": external_id}
    if channel != "email":
        body["credentials"] = {"access_token": token}
    return ws.call("POST", "/api/integration-accounts", json=body)


def _delete(ws, account_id) -> None:
    resp = ws.call("DELETE", f"/api/integration-accounts/{account_id}")
    assert resp.status_code == 204, resp.text


def _reply(ws, conversation, body: str = "we are back"):
    return ws.call("POST", f"/api/conversations/{conversation['id']}/messages", json={"body": body})


def _deleted_number(workspace, channels):
    """A WhatsApp conversation on a number deleted since, the number and its old id."""
    external_id = _number()
    account_id = channels.account(
        "whatsapp", external_id=external_id, credentials={"access_token": OLD_TOKEN}
    )
    contact = channels.contact(channel="whatsapp", external_id="15551234567")
    conversation = channels.conversation(contact, integration_account_id=account_id)
    _delete(workspace, account_id)
    return conversation, external_id, account_id


def test_the_same_number_connected_again_answers_its_old_conversations(
    workspace, channels, fake_graph
):
    conversation, external_id, old_id = _deleted_number(workspace, channels)
    assert _reply(workspace, conversation).status_code == 409

    connected = _connect(workspace, f" {external_id} ")  # as typed: normalised first

    assert connected.status_code == 201, connected.text
    assert connected.json["id"] == str(old_id)
    assert connected.json["external_id"] == external_id
    assert connected.json["credential_keys"] == ["access_token"]
    resp = _reply(workspace, conversation)
    assert resp.status_code == 201, resp.text
    wait_for_status(workspace, conversation["id"], resp.json["id"], "sent")
    [request] = fake_graph.sent()
    assert request.path == f"/v21.0/{external_id}/messages"
    assert request.token == NEW_TOKEN  # the new connection's credentials, not the old ones


def test_deleted_and_connected_again_twice_keeps_the_id(workspace, channels, fake_graph):
    _, external_id, old_id = _deleted_number(workspace, channels)
    first = _connect(workspace, external_id)
    assert first.json["id"] == str(old_id)
    _delete(workspace, old_id)

    again = _connect(workspace, external_id)

    assert again.status_code == 201, again.text
    assert again.json["id"] == str(old_id)


def test_the_number_connected_by_another_tenant_gets_a_new_id(
    workspace, other_workspace, channels, fake_graph
):
    conversation, external_id, old_id = _deleted_number(workspace, channels)

    theirs = _connect(other_workspace, external_id)

    assert theirs.status_code == 201, theirs.text
    assert theirs.json["id"] != str(old_id)
    resp = _reply(workspace, conversation)
    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["code"] == "account_deleted"
    # Once they let it go, the tenant that had it still gets its own id back.
    _delete(other_workspace, theirs.json["id"])
    ours = _connect(workspace, external_id)
    assert ours.status_code == 201, ours.text
    assert ours.json["id"] == str(old_id)
    assert fake_graph.sent() == []


def test_another_number_gets_a_new_id_and_the_old_conversations_stay_refused(
    workspace, channels, fake_graph
):
    conversation, _, old_id = _deleted_number(workspace, channels)

    other = _connect(workspace, _number())

    assert other.status_code == 201, other.text
    assert other.json["id"] != str(old_id)
    resp = _reply(workspace, conversation)
    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["code"] == "account_deleted"
    assert messages_of(workspace, conversation["id"]) == []
    assert fake_graph.sent() == []


def test_another_channel_with_the_same_id_gets_a_new_id(workspace, channels, fake_graph):
    _, external_id, old_id = _deleted_number(workspace, channels)

    page = _connect(workspace, external_id, channel="messenger")

    assert page.status_code == 201, page.text
    assert page.json["id"] != str(old_id)


def test_an_email_address_connected_again_in_other_case_takes_its_id_back(workspace):
    address = f"help-{uuid.uuid4().hex[:6]}@shop.example"
    created = _connect(workspace, address, channel="email")
    assert created.status_code == 201, created.text
    _delete(workspace, created.json["id"])

    again = _connect(workspace, address.upper(), channel="email")

    assert again.status_code == 201, again.text
    assert again.json["id"] == created.json["id"]


def test_a_number_whose_whole_integration_was_deleted_takes_its_id_back(
    workspace, channels, fake_graph
):
    external_id = _number()
    account_id = channels.account("whatsapp", external_id=external_id)
    deleted = workspace.call("DELETE", "/api/integrations/whatsapp")
    assert deleted.status_code == 204, deleted.text

    again = _connect(workspace, external_id)

    assert again.status_code == 201, again.text
    assert again.json["id"] == str(account_id)


def test_two_connections_at_once_one_wins_the_id_the_other_answers_409(
    workspace, channels, fake_graph
):
    _, external_id, old_id = _deleted_number(workspace, channels)
    connecting = get_sessionmaker()()
    ctx = Ctx.system(channels.tenant_id)
    won = accounts.create_account(
        connecting, ctx, channel="whatsapp", name="First", external_id=external_id
    )
    assert won.id == old_id

    answered = race(connecting, lambda: _connect(workspace, external_id))

    assert answered.status_code == 409, answered.text
    assert answered.json["error"]["code"] == "conflict"


def test_a_connection_racing_the_deletion_takes_the_id_back(workspace, channels, fake_graph):
    """The deletion commits while the connection waits: it sees the tombstone (it does not
    read before the deletion and then insert a new id behind it)."""
    external_id = _number()
    account_id = channels.account("whatsapp", external_id=external_id)
    deleting = get_sessionmaker()()
    accounts.delete_account(deleting, Ctx.system(channels.tenant_id), account_id)

    answered = race(deleting, lambda: _connect(workspace, external_id))

    assert answered.status_code == 201, answered.text
    assert answered.json["id"] == str(account_id)
