"""Messages through HTTP: the list, sends, the WhatsApp window, idempotency, tenancy."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pytest
from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import ActivityLog, Conversation, Message
from tests.inbox_messages.conftest import whatsapp_account
from tests.wa_templates.seed import approved_template
from tests.waiting import wait_until


def _path(conversation) -> str:
    return f"/api/conversations/{conversation['id']}/messages"


def _count_messages(conversation) -> int:
    with session_scope() as session:
        return session.scalar(
            select(func.count()).where(Message.conversation_id == conversation["id"])
        )


def test_list_pages_newest_first(workspace, inbox):
    conversation = inbox.conversation()
    ids = [inbox.message(conversation, f"hello {i}") for i in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = workspace.call("GET", _path(conversation), params=params)
        assert page.status_code == 200, page.text
        seen += page.json["items"]
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
    assert {m["id"] for m in seen} == {str(i) for i in ids} and len(seen) == 5
    keys = [(m["created_at"], m["id"]) for m in seen]
    assert keys == sorted(keys, reverse=True)
    assert seen[0]["direction"] == "inbound" and seen[0]["attachments"] == []
    bad = workspace.call("GET", _path(conversation), params={"limit": 0})
    assert bad.status_code == 400


def test_send_stores_queued_message_updates_counters_and_dispatches(worker, workspace, inbox):
    conversation = inbox.conversation()
    resp = workspace.call("POST", _path(conversation), json={"body": "  Hi there!  "})
    assert resp.status_code == 201, resp.text
    message = resp.json
    assert message["body"] == "Hi there!" and message["status"] == "queued"
    assert message["direction"] == "outbound" and message["sender_type"] == "user"
    assert message["sender_id"] == workspace.admin["id"]
    row = inbox.row(Conversation, conversation["id"])
    assert row.message_count == 1 and row.last_message_preview == "Hi there!"
    assert row.first_response_at is not None and row.last_message_at is not None
    first_response = row.first_response_at
    long_body = "x" * 4096
    assert workspace.call("POST", _path(conversation), json={"body": long_body}).status_code == 201
    row = inbox.row(Conversation, conversation["id"])
    assert row.message_count == 2 and row.last_message_preview == "x" * 200
    assert row.first_response_at == first_response
    listed = workspace.call("GET", _path(conversation)).json["items"]
    # NOTE: the worker may already have tried to send it (no account here: failed).
    moving = {"status", "error_code", "error_message", "provider_message_id", "updated_at"}

    def still(item):
        return {k: v for k, v in item.items() if k not in moving}

    assert still(listed[1]) == still(message)

    def dispatched():
        events = inbox.events("message.created")
        return len(events) == 2 and all(e.status == "processed" for e in events) and events

    events = wait_until(dispatched, "message.created processed")
    assert {e.data["id"] for e in events} >= {message["id"]}
    assert all(e.data["direction"] == "outbound" for e in events)
    with session_scope() as session:
        logged = session.scalar(
            select(func.count()).where(
                ActivityLog.action == "message.created",
                ActivityLog.entity_id == uuid.UUID(message["id"]),
            )
        )
    assert logged == 1


def test_api_key_sends_as_its_user(workspace, inbox):
    key = workspace.call("POST", "/api/api-keys", json={"name": "bot"}).json["key"]
    conversation = inbox.conversation()
    resp = workspace.client.simulate_post(
        _path(conversation), headers={"X-API-Key": key}, json={"body": "from the key"}
    )
    assert resp.status_code == 201, resp.text
    assert resp.json["sender_type"] == "user" and resp.json["sender_id"] == workspace.admin["id"]


def test_resolved_conversation_refuses_sends(workspace, inbox):
    conversation = inbox.conversation(status="resolved")
    resp = workspace.call("POST", _path(conversation), json={"body": "hello?"})
    assert resp.status_code == 409 and resp.json["error"]["code"] == "conflict"
    assert _count_messages(conversation) == 0


def test_whatsapp_window(workspace, inbox):
    stale = inbox.contact(last_inbound_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=25))
    account = whatsapp_account(inbox)
    closed = inbox.conversation(stale, integration_account_id=account)
    resp = workspace.call("POST", _path(closed), json={"body": "hello?"})
    assert resp.status_code == 409 and resp.json["error"]["code"] == "window_closed"
    never = inbox.conversation(inbox.contact(last_inbound_at=None))
    assert workspace.call("POST", _path(never), json={"body": "x"}).json["error"]["code"] == (
        "window_closed"
    )
    # A template (approved for the conversation's account) is the way to write again.
    approved_template(inbox.tenant_id, account, "order_update", body="Your order shipped.")
    template = {"name": "order_update", "language": "en_US", "components": []}
    sent = workspace.call("POST", _path(closed), json={"template": template})
    assert sent.status_code == 201, sent.text
    assert sent.json["content_type"] == "template" and sent.json["template"]["name"] == (
        "order_update"
    )
    assert inbox.row(Conversation, closed["id"]).last_message_preview == "Template: order_update"
    # Other channels have no window.
    email = inbox.conversation(inbox.contact(channel="email", last_inbound_at=None))
    assert workspace.call("POST", _path(email), json={"body": "Dear"}).status_code == 201


def test_bad_bodies_are_422_and_write_nothing(workspace, inbox):
    conversation = inbox.conversation()
    template = {"name": "t", "language": "en"}
    for body in (
        {},
        {"body": ""},
        {"body": "   \n "},
        {"body": "x" * 4097},
        {"body": None},
        {"body": "hi", "template": template},
        {"template": {"name": "t"}},
        {"template": {"name": "t", "language": "not a language"}},
        {"body": "hi", "status": "sent"},
        {"body": 42},
    ):
        resp = workspace.call("POST", _path(conversation), json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json["error"]["code"] == "validation_error"
    not_json = workspace.call(
        "POST", _path(conversation), body="{", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    long_key = workspace.call(
        "POST", _path(conversation), json={"body": "hi"}, headers={"Idempotency-Key": "k" * 256}
    )
    assert long_key.status_code == 422
    assert _count_messages(conversation) == 0


def test_idempotency_key_replays_the_first_message(workspace, inbox):
    conversation = inbox.conversation()
    headers = {"Idempotency-Key": f"key-{uuid.uuid4()}"}
    first = workspace.call("POST", _path(conversation), json={"body": "once"}, headers=headers)
    again = workspace.call("POST", _path(conversation), json={"body": "once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json["id"] == first.json["id"]
    other = workspace.call(
        "POST", _path(conversation), json={"body": "twice"}, headers={"Idempotency-Key": "other"}
    )
    assert other.status_code == 201 and other.json["id"] != first.json["id"]
    assert _count_messages(conversation) == 2
    assert inbox.row(Conversation, conversation["id"]).message_count == 2
    assert len(inbox.events("message.created")) == 2
    # The same key on another conversation is a different request: refused.
    elsewhere = workspace.call(
        "POST", _path(inbox.conversation()), json={"body": "once"}, headers=headers
    )
    assert elsewhere.status_code == 422


def test_idempotency_key_is_released_when_the_send_fails(workspace, inbox):
    conversation = inbox.conversation(status="resolved")
    headers = {"Idempotency-Key": f"key-{uuid.uuid4()}"}
    assert (
        workspace.call("POST", _path(conversation), json={"body": "x"}, headers=headers).status_code
        == 409
    )
    with session_scope() as session:
        session.get_one(Conversation, conversation["id"]).status = "open"
    retried = workspace.call("POST", _path(conversation), json={"body": "x"}, headers=headers)
    assert retried.status_code == 201, retried.text


def test_idempotency_key_with_another_request_is_refused(workspace, inbox):
    conversation = inbox.conversation()
    headers = {"Idempotency-Key": f"key-{uuid.uuid4()}"}
    first = workspace.call(
        "POST", _path(conversation), json={"body": "refund 10 EUR"}, headers=headers
    )
    assert first.status_code == 201, first.text
    # Replaying the first message would report "refund 900 EUR" as sent when it never was.
    other = workspace.call(
        "POST", _path(conversation), json={"body": "refund 900 EUR"}, headers=headers
    )
    assert other.status_code == 422, other.text
    assert other.json["error"]["details"] == [
        {"field": "Idempotency-Key", "message": "already used for a different request"}
    ]
    assert _count_messages(conversation) == 1


def test_odd_idempotency_keys_answer_4xx_json(workspace, inbox):
    conversation = inbox.conversation()
    for key in ("   ", "", "k" * 256, "\u00e9\u00e8"):
        resp = workspace.call(
            "POST", _path(conversation), json={"body": "x"}, headers={"Idempotency-Key": key}
        )
        assert resp.status_code < 500, (key, resp.status_code, resp.text)
        if resp.status_code >= 400:
            assert set(resp.json["error"]) >= {"code", "message", "details"}, resp.json


def test_idempotency_key_is_scoped_to_its_caller(workspace, inbox):
    """Two integrations of one workspace that both number their requests 1, 2, 3... must
    not swallow each other's sends."""
    conversation = inbox.conversation()
    _sup_a, token_a = workspace.create_agent("supervisor")
    _sup_b, token_b = workspace.create_agent("supervisor")
    headers = {"Idempotency-Key": "1"}
    first = workspace.call(
        "POST", _path(conversation), json={"body": "hello"}, headers=headers, token=token_a
    )
    second = workspace.call(
        "POST", _path(conversation), json={"body": "hello"}, headers=headers, token=token_b
    )
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert second.json["id"] != first.json["id"], "caller B got caller A's message replayed"
    again = workspace.call(
        "POST", _path(conversation), json={"body": "hello"}, headers=headers, token=token_a
    )
    assert again.json["id"] == first.json["id"]
    assert _count_messages(conversation) == 2


def test_concurrent_requests_with_one_key_create_one_message(workspace, inbox, app):
    import falcon.testing

    conversation = inbox.conversation()
    headers = workspace.headers | {"Idempotency-Key": f"race-{uuid.uuid4()}"}
    barrier = threading.Barrier(6)
    results = []

    def send():
        client = falcon.testing.TestClient(app)
        barrier.wait()
        resp = client.simulate_post(_path(conversation), json={"body": "race"}, headers=headers)
        results.append((resp.status_code, resp.json.get("id")))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert [status for status, _ in results] == [201] * 6, results
    assert len({message_id for _, message_id in results}) == 1
    assert _count_messages(conversation) == 1


def test_a_repeat_waiting_on_a_refused_send_is_refused_for_its_own_reason(workspace, inbox, app):
    """The first request rolls back and frees its key: the repeat waiting on it claims the
    key itself, not wait out the wait and answer "still in progress" for nothing."""
    import falcon.testing

    conversation = inbox.conversation()
    headers = workspace.headers | {"Idempotency-Key": f"race-{uuid.uuid4()}"}
    results = {}

    def send(name):
        client = falcon.testing.TestClient(app)
        resp = client.simulate_post(_path(conversation), json={"body": "x"}, headers=headers)
        results[name] = (resp.status_code, resp.json["error"]["code"])

    threads = {name: threading.Thread(target=send, args=(name,)) for name in ("first", "repeat")}
    with session_scope() as session:
        # A resolution in flight: the first send waits on its row lock, then is refused.
        session.get_one(Conversation, conversation["id"]).status = "resolved"
        session.flush()
        threads["first"].start()
        time.sleep(0.5)
        threads["repeat"].start()
        time.sleep(0.5)
    for thread in threads.values():
        thread.join(20)
    assert results == {"first": (409, "conflict"), "repeat": (409, "conflict")}, results
    assert _count_messages(conversation) == 0


def test_agents_see_only_their_conversations_messages(workspace, inbox):
    agent, token = workspace.create_agent()
    _, peer_token = workspace.create_agent()
    mine = inbox.conversation(assignee_id=agent["id"])
    inbox.message(mine, "hello agent")
    assert workspace.call("GET", _path(mine), token=token).status_code == 200
    assert workspace.call("POST", _path(mine), token=token, json={"body": "ok"}).status_code == 201
    for method, body in (("GET", None), ("POST", {"body": "intrude"})):
        resp = workspace.call(method, _path(mine), token=peer_token, json=body)
        assert resp.status_code == 404, resp.text


def test_other_tenants_conversations_are_404(workspace, other_inbox):
    theirs = other_inbox.conversation()
    other_inbox.message(theirs, "secret")
    for method, body in (("GET", None), ("POST", {"body": "hi"})):
        resp = workspace.call(method, _path(theirs), json=body)
        assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"
    assert workspace.call("GET", f"/api/conversations/{uuid.uuid4()}/messages").status_code == 404
    assert _count_messages(theirs) == 1


def test_unauthenticated_is_401(client, inbox):
    conversation = inbox.conversation()
    assert client.simulate_get(_path(conversation)).status_code == 401


def test_system_messages_through_the_shared_function(workspace, inbox):
    """The expiry job's call: create_outbound_message(session, Ctx.system(...), conv, body=...)."""
    from shared.context import Ctx
    from shared.inbox.messages import WindowClosed, create_outbound_message

    ctx = Ctx.system(inbox.tenant_id)
    resolved = inbox.conversation(inbox.contact(channel="email"), status="resolved")
    with session_scope() as session:
        conversation = session.get_one(Conversation, resolved["id"])
        message = create_outbound_message(session, ctx, conversation, body="Closing this chat")
        assert message.sender_type == "system" and message.sender_id is None
        assert message.status == "queued" and message.direction == "outbound"
    row = inbox.row(Conversation, resolved["id"])
    assert row.message_count == 1 and row.first_response_at is None
    assert inbox.events("message.created")[-1].actor_type == "system"

    stale = inbox.contact(last_inbound_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    closed = inbox.conversation(stale)
    with session_scope() as session:
        conversation = session.get_one(Conversation, closed["id"])
        with pytest.raises(WindowClosed):
            create_outbound_message(session, ctx, conversation, body="Closing")
    assert _count_messages(closed) == 0
