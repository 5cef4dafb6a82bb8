"""The api channel end to end over HTTP: account, inbound message, inbox, reply, signed callback."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select, update

from shared.channels import outbound_engine
from shared.config import get_settings
from shared.context import Ctx
from shared.db import session_scope
from shared.inbox.messages import create_outbound_message
from shared.models import Conversation, Message
from shared.models.outbound import OutboundSend
from shared.web_threads import third_party_wait_slots
from shared.webhooks import signing
from tests.channels_api.conftest import ApiChannel, message_row, messages_of, wait_for_status
from tests.waiting import wait_until


def _instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_inbound_message_reply_and_signed_callback(ws, api, receiver, path):
    assert api.secret.startswith("whsec_")
    assert api.account["external_id"].startswith("api_")
    assert api.account["credential_keys"] == ["signing_secret"]
    shown = ws.call("GET", f"/api/integration-accounts/{api.id}")
    assert shown.status_code == 200
    assert "signing_secret" not in shown.json and shown.json["settings"] == {
        "callback_url": receiver.url(path)
    }

    inbound = api.inbound("Where is my order?", source_id="cust-42", external_message_id="m-1")
    assert inbound["direction"] == "inbound" and inbound["channel"] == "api"
    assert inbound["status"] == "received" and inbound["body"] == "Where is my order?"

    listed = ws.call("GET", "/api/conversations", params={"channel": "api"})
    assert listed.status_code == 200, listed.text
    [conversation] = listed.json["items"]
    assert conversation["id"] == inbound["conversation_id"]
    assert conversation["contact"]["name"] == "Carla Customer"
    assert conversation["integration_account_id"] == api.id

    receiver.plan(path, ("status", 200, {}, b'{"id": "crm-77"}'))
    reply = api.reply(conversation["id"], "It ships today.")
    sent = wait_for_status(ws, conversation["id"], reply["id"], "sent")
    assert sent["provider_message_id"] == f"api:{api.id}:out:crm-77"

    [callback] = receiver.at(path)
    assert signing.verify(api.secret, callback.headers, callback.body)
    headers = {k.lower(): v for k, v in callback.headers.items()}
    assert headers["webhook-id"] == reply["id"]
    assert headers["content-type"] == "application/json"
    envelope = json.loads(callback.body)
    assert envelope["type"] == "message.created"
    assert envelope["actor"] == {"type": "user", "id": ws.admin["id"]}
    data = envelope["data"]
    assert data["id"] == reply["id"]
    assert data["account_id"] == api.id
    assert data["conversation_id"] == conversation["id"]
    assert data["contact"]["source_id"] == "cust-42"
    assert data["contact"]["name"] == "Carla Customer"
    assert data["content"] == "It ships today." and data["attachments"] == []
    assert _instant(data["created_at"]) == _instant(reply["created_at"])
    # API.md: timestamps are RFC 3339 in UTC with Z, in the data as in the envelope.
    assert data["created_at"] == reply["created_at"] and data["created_at"].endswith("Z")

    # A tampered body does not verify with the account's secret.
    assert not signing.verify(api.secret, callback.headers, callback.body + b" ")


def test_a_retried_post_returns_the_stored_message_and_creates_nothing(ws, api):
    body = {
        "contact": {"source_id": "cust-1"},
        "content": "Hi",
        "external_message_id": "evt-9",
    }
    first = api.post(body)
    assert first.status_code == 201, first.text
    again = api.post(body)
    assert again.status_code == 200, again.text
    assert again.json["id"] == first.json["id"]
    assert [m["id"] for m in messages_of(ws, first.json["conversation_id"])] == [first.json["id"]]
    conversation = ws.call("GET", f"/api/conversations/{first.json['conversation_id']}")
    assert conversation.json["message_count"] == 1

    # The same id on another api account of the tenant is another message.
    other = ApiChannel(ws, api.account["settings"]["callback_url"], name="Second backend")
    elsewhere = other.post(body)
    assert elsewhere.status_code == 201 and elsewhere.json["id"] != first.json["id"]


def test_messages_join_the_open_conversation_and_a_named_resolved_one_reopens(ws, api):
    first = api.inbound("one")
    second = api.inbound("two")
    assert second["conversation_id"] == first["conversation_id"]
    conversation_id = first["conversation_id"]

    resolved = ws.call(
        "PATCH", f"/api/conversations/{conversation_id}/status", json={"status": "resolved"}
    )
    assert resolved.status_code == 200, resolved.text
    fresh = api.inbound("three")
    assert fresh["conversation_id"] != conversation_id  # a resolved one is never joined...

    named = api.post({"conversation_id": conversation_id, "content": "about my old order"})
    assert named.status_code == 201, named.text  # ...unless named: then it reopens
    assert named.json["conversation_id"] == conversation_id
    assert ws.call("GET", f"/api/conversations/{conversation_id}").json["status"] == "open"


def test_the_caller_sends_contact_fields_that_replace_stored_ones(ws, api):
    api.inbound("hi", source_id="c-7")
    updated = api.post(
        {
            "contact": {"source_id": "c-7", "name": "Carla Q. Customer", "email": "c@example.com"},
            "content": "again",
        }
    )
    assert updated.status_code == 201, updated.text
    contacts = ws.call("GET", "/api/contacts", params={"channel": "api"}).json["items"]
    [contact] = contacts
    assert contact["name"] == "Carla Q. Customer" and contact["email"] == "c@example.com"
    assert contact["external_id"] == "c-7"


def test_explicit_contact_and_conversation_creation(ws, api):
    created = ws.call(
        "POST",
        f"{api.base}/contacts",
        json={"source_id": "u-1", "name": "Dana", "phone": "+14155550123"},
    )
    assert created.status_code == 201, created.text
    assert created.json["phone"] == "+14155550123" and created.json["channel"] == "api"
    again = ws.call("POST", f"{api.base}/contacts", json={"source_id": "u-1", "name": "Dana B"})
    assert again.status_code == 200 and again.json["id"] == created.json["id"]
    assert again.json["name"] == "Dana B"

    opened = ws.call(
        "POST",
        f"{api.base}/conversations",
        json={"contact": {"source_id": "u-1"}, "subject": "Invoice"},
    )
    assert opened.status_code == 201, opened.text
    assert opened.json["subject"] == "Invoice" and opened.json["status"] == "open"
    posted = api.post({"conversation_id": opened.json["id"], "content": "see attached"})
    assert posted.status_code == 201 and posted.json["conversation_id"] == opened.json["id"]
    assert message_row(posted.json["id"])["conversation_id"] == opened.json["id"]


def test_concurrent_retries_of_one_message_store_it_once(ws, api):
    body = {
        "contact": {"source_id": "race-1", "name": "Rita"},
        "content": "sent twice at once",
        "external_message_id": "race-msg",
    }
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: api.post(body), range(6)))

    assert sorted(a.status_code for a in answers) == [200] * 5 + [201]
    assert len({a.json["id"] for a in answers}) == 1
    conversation_id = answers[0].json["conversation_id"]
    assert len(messages_of(ws, conversation_id)) == 1
    contacts = ws.call("GET", "/api/contacts", params={"channel": "api"}).json["items"]
    assert [c["external_id"] for c in contacts] == ["race-1"]


def test_a_test_callback_shows_what_the_receiver_got_and_answered(
    ws, other_workspace, api, receiver, path
):
    tested = ws.call("POST", f"{api.base}/test-callback")
    assert tested.status_code == 200, tested.text
    assert tested.json["status"] == "succeeded"
    assert tested.json["attempt"]["response_status"] == 200
    [ping] = receiver.at(path)
    assert signing.verify(api.secret, ping.headers, ping.body)
    assert ping.json["type"] == "webhook.test" and ping.json["data"]["account_id"] == api.id
    assert ping.json["id"] == tested.json["event_id"]

    receiver.plan(path, ("status", 500, {}, b"boom"))
    broken = ws.call("POST", f"{api.base}/test-callback")
    assert broken.status_code == 200 and broken.json["status"] == "failed"
    assert broken.json["attempt"]["response_status"] == 500
    assert broken.json["attempt"]["response_body"] == "boom"
    assert len(receiver.at(path)) == 2  # one attempt each: a test is never retried

    assert other_workspace.call("POST", f"{api.base}/test-callback").status_code == 404


def test_test_callbacks_and_webhook_tests_share_the_waiting_slots(ws, api, receiver, path):
    """Test sends of every kind wait for their receiver in a web thread: past the process's
    waiting slots, an api test callback or a webhook test answers 429 and sends nothing."""
    slots = third_party_wait_slots(get_settings())
    receiver.plan(path, *[("sleep", 1.0)] * slots, 200)
    hook = ws.call(
        "POST",
        "/api/outgoing-webhooks",
        json={"url": receiver.url(path + "/hook"), "event_types": ["campaign.completed"]},
    ).json
    with ThreadPoolExecutor(slots) as pool:
        waiting = [pool.submit(ws.call, "POST", f"{api.base}/test-callback") for _ in range(slots)]
        wait_until(lambda: receiver.active.get(path) == slots, "every slot's test callback")

        refused = [
            ws.call("POST", f"{api.base}/test-callback"),
            ws.call("POST", f"/api/outgoing-webhooks/{hook['id']}/test"),
        ]

        assert [r.status_code for r in refused] == [429, 429], [r.text for r in refused]
        assert [f.result().json["status"] for f in waiting] == ["succeeded"] * slots
    assert len(receiver.at(path)) == slots and receiver.at(path + "/hook") == []
    assert ws.call("POST", f"{api.base}/test-callback").status_code == 200


def test_a_receiver_id_with_a_nul_is_ignored_and_the_reply_is_sent_once(ws, api, receiver, path):
    # PostgreSQL cannot store a NUL: the receiver accepted the POST, so its unusable id
    # must not turn the send into retries (each one POSTing the message again).
    conversation_id = api.inbound("hello")["conversation_id"]
    receiver.plan(path, ("status", 200, {}, b'{"id": "crm\\u0000-1"}'))

    reply = api.reply(conversation_id, "on it")

    done = wait_for_status(ws, conversation_id, reply["id"], "sent", "failed")
    assert (done["status"], done["provider_message_id"]) == (
        "sent",
        f"api:{api.id}:out:{reply['id']}",
    )
    assert len(receiver.at(path)) == 1


def test_an_account_without_callback_hands_replies_over_at_once(ws, receiver, path):
    """No callback_url: replies are `sent` without a call; the system reads them elsewhere."""
    quiet = ApiChannel(ws, None, name="Reads replies from webhooks")
    assert quiet.account["settings"] == {}
    inbound = quiet.inbound("Hello?", source_id="cust-q")
    reply = quiet.reply(inbound["conversation_id"], "Hi there")
    sent = wait_for_status(ws, inbound["conversation_id"], reply["id"], "sent")
    assert sent["provider_message_id"] == f"api:{quiet.id}:out:{reply['id']}"
    assert receiver.at(path) == []

    tested = ws.call("POST", f"/api/integration-accounts/{quiet.id}/api/test-callback")
    assert tested.status_code == 409, tested.text
    assert tested.json["error"]["details"] == [
        {"field": "settings.callback_url", "message": "not set"}
    ]


def test_two_replies_answered_with_one_constant_id_are_each_posted_once(ws, api, receiver, path):
    """A receiver answering {"id": "ok"} to every reply: two replies of one send batch both
    took that id before either was recorded, the unique index refused the record, and the
    delivered reply stayed queued and was POSTed again once its claim ran out."""
    conversation_id = uuid.UUID(api.inbound("hello")["conversation_id"])
    receiver.plan(path, ("status", 200, {}, b'{"id": "ok"}'))
    with session_scope() as session:  # two replies committed together: one send batch
        conversation = session.get(Conversation, conversation_id)
        ctx = Ctx.system(conversation.tenant_id)
        ids = [
            create_outbound_message(session, ctx, conversation, body=f"reply {n}").id
            for n in range(2)
        ]

    def statuses():
        with session_scope() as session:
            return sorted(session.scalars(select(Message.status).where(Message.id.in_(ids))))

    wait_until(lambda: statuses() == ["sent", "sent"], "both replies recorded as sent")
    with session_scope() as session:  # time moves past any claim
        session.execute(
            update(OutboundSend)
            .where(OutboundSend.message_id.in_(ids), OutboundSend.status == "pending")
            .values(next_attempt_at=OutboundSend.created_at)
        )
    outbound_engine.send_batch(ids)
    assert len(receiver.at(path)) == 2


def test_each_write_of_the_tenants_system_is_in_the_activity_log(ws, api):
    """API.md: every state-changing tenant request writes an activity log row."""
    posted = api.inbound("hi", source_id="log-1")
    contact = ws.call("POST", f"{api.base}/contacts", json={"source_id": "log-2"}).json
    opened = ws.call("POST", f"{api.base}/conversations", json={"contact": {"source_id": "log-3"}})
    reply = api.reply(posted["conversation_id"], "on it")
    assert api.report(reply["id"], "read").status_code == 200

    def logged(entity_id: str) -> list[str]:
        resp = ws.call("GET", "/api/activity-logs", params={"entity_id": entity_id})
        assert resp.status_code == 200, resp.text
        return [row["action"] for row in resp.json["items"]]

    assert logged(posted["id"]) == ["message.created"]
    assert logged(contact["id"]) == ["contact.created"]
    assert logged(opened.json["id"]) == ["conversation.created"]
    assert logged(reply["id"]) == ["message.status_updated", "message.created"]


def test_a_429_asking_to_wait_past_any_clock_puts_the_reply_back_for_a_day(ws, api, receiver, path):
    receiver.plan(path, ("status", 429, {"Retry-After": "9" * 400}, b"slow down"))
    inbound = api.inbound("Hello", source_id="cust-slow")
    reply = api.reply(inbound["conversation_id"], "Soon.")

    def put_back():
        with session_scope() as session:
            claim = session.get(OutboundSend, uuid.UUID(reply["id"]))
            due = claim is not None and claim.last_error_code == "http_429"
            return claim.next_attempt_at if due and claim.status == "pending" else None

    later = wait_until(put_back, "the reply put back after its 429")
    assert later > dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)
    assert message_row(reply["id"])["status"] == "queued"
    assert len(receiver.at(path)) == 1
