"""A ``source_id`` is the id of a person in one api account's system: a tenant's two
systems may both have a customer "42", and they are two contacts, not one."""

from __future__ import annotations

from tests.channels_api.conftest import ApiChannel


def _post(api: ApiChannel, source_id: str, name: str, content: str = "hi") -> dict:
    resp = api.post({"contact": {"source_id": source_id, "name": name}, "content": content})
    assert resp.status_code == 201, resp.text
    return resp.json


def _contact_of(ws, message: dict) -> dict:
    conversation = ws.call("GET", f"/api/conversations/{message['conversation_id']}")
    assert conversation.status_code == 200, conversation.text
    return conversation.json["contact"]


def test_the_same_source_id_on_two_accounts_is_two_contacts(ws):
    shop = ApiChannel(ws, None, name="Shop backend")
    crm = ApiChannel(ws, None, name="CRM")
    from_shop = _post(shop, "42", "Sam Shopper")
    from_crm = _post(crm, "42", "Chris Client")
    assert from_shop["sender_id"] != from_crm["sender_id"]
    assert from_shop["conversation_id"] != from_crm["conversation_id"]
    assert _contact_of(ws, from_shop)["name"] == "Sam Shopper"
    assert _contact_of(ws, from_crm)["name"] == "Chris Client"

    # Each account's next message joins its own contact's conversation.
    again = _post(crm, "42", "Chris Client", "still me")
    assert again["sender_id"] == from_crm["sender_id"]
    assert again["conversation_id"] == from_crm["conversation_id"]

    listed = ws.call("GET", "/api/contacts", params={"channel": "api"}).json["items"]
    assert sorted(c["name"] for c in listed if c["external_id"] == "42") == [
        "Chris Client",
        "Sam Shopper",
    ]


def test_an_accounts_contact_calls_reach_only_its_own_contact(ws):
    shop = ApiChannel(ws, None, name="Shop backend")
    crm = ApiChannel(ws, None, name="CRM")
    first = ws.call("POST", f"{shop.base}/contacts", json={"source_id": "7", "name": "Shop 7"})
    assert first.status_code == 201, first.text
    # The CRM's "7" is somebody else: created, and the shop's contact keeps its name.
    other = ws.call("POST", f"{crm.base}/contacts", json={"source_id": "7", "name": "CRM 7"})
    assert other.status_code == 201, other.text
    assert other.json["id"] != first.json["id"]
    same = ws.call("POST", f"{shop.base}/contacts", json={"source_id": "7"})
    assert same.status_code == 200 and same.json["id"] == first.json["id"]
    assert ws.call("GET", f"/api/contacts/{first.json['id']}").json["name"] == "Shop 7"

    conversation = ws.call(
        "POST", f"{crm.base}/conversations", json={"contact": {"source_id": "7"}}
    )
    assert conversation.status_code == 201, conversation.text
    assert conversation.json["contact_id"] == other.json["id"]
