"""An operator's requeue of a ``process_inbound`` dead letter: the payload its retries-exhausted
handler failed is processed again, and its message lands in its conversation."""

from __future__ import annotations

import os
import uuid

import pytest

from shared.channels import processing
from shared.db import session_scope
from shared.models import InboundEvent
from tests.waiting import wait_until
from workers.actors.channels_inbound import process_inbound

OPERATOR = {"Authorization": f"Bearer {os.environ['METRICS_TOKEN']}"}


@pytest.fixture
def database_down(monkeypatch):
    """``process_inbound`` fails at once, without retries, until ``down.clear()``."""
    down = {"on"}
    claim = processing._claim

    def failing_claim(session, inbound_event_id):
        if down:
            raise RuntimeError("the database is down")
        return claim(session, inbound_event_id)

    monkeypatch.setattr(processing, "_claim", failing_claim)
    monkeypatch.setitem(process_inbound.options, "max_retries", 0)
    return down


def _status(inbound_event_id: uuid.UUID) -> str:
    with session_scope() as session:
        return session.get(InboundEvent, inbound_event_id).status


def _dead_letter_of(client, inbound_event_id: uuid.UUID) -> str:
    def found():
        listed = client.simulate_get("/api/ops/dead-letters", headers=OPERATOR).json["items"]
        for item in listed:
            full = client.simulate_get(f"/api/ops/dead-letters/{item['id']}", headers=OPERATOR)
            if full.json["actor"] == "process_inbound" and full.json["args"] == [
                str(inbound_event_id)
            ]:
                return item["id"]
        return None

    return wait_until(found, "the payload's dead letter")


def _dead_payload(channels, database_down):
    """A WhatsApp text whose processing ran out of retries: (its account, payload id, letter)."""
    account = channels.account("whatsapp")
    resp = channels.whatsapp(account, "wa_text.json")
    assert resp.status_code == 200, resp.text
    [row] = channels.inbound_events(account)
    wait_until(lambda: _status(row.id) == "failed", "the payload failed by its handler")
    letter = _dead_letter_of(channels.client, row.id)
    database_down.clear()
    return account, row.id, letter


def test_requeuing_a_dead_payload_processes_it_into_its_conversation(channels, database_down):
    _, inbound_event_id, letter = _dead_payload(channels, database_down)
    assert channels.messages(provider_message_id="wamid.TEXT1") == []

    resp = channels.client.simulate_post(
        f"/api/ops/dead-letters/{letter}/requeue", headers=OPERATOR
    )

    assert resp.status_code == 200, resp.text
    message = wait_until(
        lambda: channels.messages(provider_message_id="wamid.TEXT1"), "the inbound message"
    )[0]
    assert message.body == "this is a text message"
    assert message.conversation_id in {c.id for c in channels.conversations()}
    assert wait_until(lambda: _status(inbound_event_id) == "processed", "processed")
    again = channels.client.simulate_post(
        f"/api/ops/dead-letters/{letter}/requeue", headers=OPERATOR
    )
    assert again.status_code == 409


def test_a_dead_payload_processed_meanwhile_is_not_requeued_and_says_why(channels, database_down):
    _, inbound_event_id, letter = _dead_payload(channels, database_down)
    with session_scope() as session:
        session.get(InboundEvent, inbound_event_id).status = "dropped"

    resp = channels.client.simulate_post(
        f"/api/ops/dead-letters/{letter}/requeue", headers=OPERATOR
    )

    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["code"] == "not_requeueable"
    assert "dropped" in resp.json["error"]["message"]
    view = channels.client.simulate_get(f"/api/ops/dead-letters/{letter}", headers=OPERATOR)
    assert view.json["requeued_at"] is None
