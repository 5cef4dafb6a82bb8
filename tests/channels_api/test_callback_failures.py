"""Callback failures: retried with backoff then failed visibly, refused at once, blocked."""

from __future__ import annotations

import socket
import uuid

from sqlalchemy import select, update

from shared.db import session_scope
from shared.models import DeadLetter, IntegrationAccount
from tests.channels_api.conftest import ApiChannel, wait_for_status
from tests.waiting import wait_until


def _dead_letter(message_id: str):
    with session_scope() as session:
        return session.scalars(
            select(DeadLetter).where(
                DeadLetter.actor_name == "send_outbound", DeadLetter.args.contains([message_id])
            )
        ).one_or_none()


def _conversation(api: ApiChannel) -> str:
    return api.inbound("hello")["conversation_id"]


def test_a_failing_receiver_is_retried_then_the_message_fails_and_is_dead_lettered(
    ws, api, receiver, path
):
    receiver.plan(path, ("status", 503, {}, b"maintenance"))
    conversation_id = _conversation(api)

    reply = api.reply(conversation_id, "are you there?")

    failed = wait_for_status(ws, conversation_id, reply["id"], "failed", timeout=30)
    assert failed["error_code"] == "http_503"
    assert "HTTP 503" in failed["error_message"] and "maintenance" in failed["error_message"]
    attempts = receiver.at(path)
    assert len(attempts) == 3  # the first attempt and OUTBOUND_MAX_RETRIES=2
    assert {a.headers["webhook-id"] for a in attempts} == {reply["id"]}  # one id: dedupable
    letter = wait_until(lambda: _dead_letter(reply["id"]), "the dead letter")
    assert "http_503" in letter.error


def test_a_receiver_recovering_within_the_retries_gets_the_message_sent(ws, api, receiver, path):
    receiver.plan(path, 500, ("status", 429, {"Retry-After": "0"}), 200)
    conversation_id = _conversation(api)

    reply = api.reply(conversation_id)

    sent = wait_for_status(ws, conversation_id, reply["id"], "sent", timeout=30)
    assert sent["provider_message_id"] == f"api:{api.id}:out:{reply['id']}"  # no id answered
    assert len(receiver.at(path)) == 3


def test_a_receiver_that_is_down_fails_the_message_after_the_retries(ws):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = ApiChannel(ws, f"http://127.0.0.1:{port}/callback")
    conversation_id = _conversation(api)

    reply = api.reply(conversation_id)

    failed = wait_for_status(ws, conversation_id, reply["id"], "failed", timeout=30)
    assert failed["error_code"] == "connection_error"
    assert "connect" in failed["error_message"].lower()
    assert wait_until(lambda: _dead_letter(reply["id"]), "the dead letter")


def test_a_slow_receiver_times_out(ws, receiver, path):
    api = ApiChannel(
        ws, receiver.url(path), settings={"callback_url": receiver.url(path), "timeout_seconds": 1}
    )
    receiver.plan(path, ("sleep", 1.5))
    conversation_id = _conversation(api)

    reply = api.reply(conversation_id)

    failed = wait_for_status(ws, conversation_id, reply["id"], "failed", timeout=30)
    assert failed["error_code"] == "timeout"
    assert len(receiver.at(path)) == 3


def test_a_4xx_answer_fails_the_message_at_once(ws, api, receiver, path):
    receiver.plan(path, ("status", 422, {}, b'{"error": "unknown customer"}'))
    conversation_id = _conversation(api)

    reply = api.reply(conversation_id)

    failed = wait_for_status(ws, conversation_id, reply["id"], "failed")
    assert failed["error_code"] == "http_422"
    assert "unknown customer" in failed["error_message"]
    assert len(receiver.at(path)) == 1
    assert _dead_letter(reply["id"]) is None  # a refusal is final, not a job failure


def test_a_redirect_is_not_followed_and_fails_the_message(ws, api, receiver, path):
    receiver.plan(path, ("redirect",))
    conversation_id = _conversation(api)

    reply = api.reply(conversation_id)

    failed = wait_for_status(ws, conversation_id, reply["id"], "failed")
    assert failed["error_code"] == "redirect"
    assert receiver.at("/elsewhere") == []


def test_the_ssrf_guard_blocks_a_callback_address_at_delivery(ws, api, receiver, path):
    conversation_id = _conversation(api)
    # A URL stored before the address became unsafe (or by an older rule): 127.0.0.2 is
    # loopback and outside this run's allowlist (127.0.0.1/32).
    with session_scope() as session:
        session.execute(
            update(IntegrationAccount)
            .where(IntegrationAccount.id == uuid.UUID(api.id))
            .values(settings={"callback_url": f"http://127.0.0.2:{receiver.port}{path}"})
        )

    reply = api.reply(conversation_id)

    failed = wait_for_status(ws, conversation_id, reply["id"], "failed")
    assert failed["error_code"] == "blocked"
    assert "127.0.0.2" in failed["error_message"]
    assert receiver.at(path) == []


def test_a_disabled_account_fails_replies_and_refuses_posts(ws, api, receiver, path):
    conversation_id = _conversation(api)
    disabled = ws.call("PATCH", f"/api/integration-accounts/{api.id}", json={"status": "disabled"})
    assert disabled.status_code == 200, disabled.text

    refused = api.post({"contact": {"source_id": "cust-1"}, "content": "hi"})
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "account_disabled"

    reply = api.reply(conversation_id)
    failed = wait_for_status(ws, conversation_id, reply["id"], "failed")
    assert failed["error_code"] == "account_disabled"
    assert receiver.at(path) == []


def test_a_conversation_of_a_deleted_account_is_not_sent_to_another_accounts_callback(
    ws, api, receiver, path
):
    conversation_id = _conversation(api)
    other = ApiChannel(ws, receiver.url("/other-system"), name="Other system")
    assert ws.call("DELETE", f"/api/integration-accounts/{api.id}").status_code == 204

    reply = ws.call("POST", f"/api/conversations/{conversation_id}/messages", json={"body": "?"})

    assert reply.status_code == 409, reply.text
    assert reply.json["error"]["code"] == "account_deleted"
    assert receiver.at("/other-system") == [] and receiver.at(path) == []
    # The other account is the channel's default now, and still was not used.
    assert ws.call("GET", f"/api/integration-accounts/{other.id}").json["is_default"] is True
