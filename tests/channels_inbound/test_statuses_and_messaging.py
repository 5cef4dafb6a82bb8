"""Delivery statuses over webhooks, and Messenger / Instagram messaging events."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update

from shared.config import get_settings
from shared.context import Ctx
from shared.db import session_scope
from shared.inbox.messages import send_message
from shared.models import Message
from tests.channels_inbound.conftest import load


def _sent_reply(channels, account, provider_id: str) -> uuid.UUID:
    """An agent's reply in the contact's conversation, as send_outbound leaves it: sent."""
    if account["channel"] == "whatsapp":
        channels.whatsapp(account, "wa_text.json")
    else:
        channels.messaging(account, f"{account['channel']}_text.json", USER_PSID="USER_PSID")
    channels.settle()
    (conversation,) = channels.conversations()
    # NOTE: written sent in the reply's own transaction, so the worker's send job finds it
    # sent and calls no provider. Marked after the API's commit, a send claimed in between
    # wrote its own outcome over the test's (its provider id, where a Graph API answered).
    with session_scope() as session:
        reply = send_message(
            session, Ctx.system(channels.tenant_id), conversation.id, body="On its way"
        )
        message_id = uuid.UUID(str(reply["id"]))
        session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(status="sent", provider_message_id=provider_id)
        )
    return message_id


def _status(channels, account, provider_id: str, status: str):
    payload = load("wa_status.json", PHONE_NUMBER_ID=account["external_id"])
    payload = load(
        "wa_status.json",
        PHONE_NUMBER_ID=account["external_id"],
        WAMID_OUTBOUND=provider_id,
        STATUS=status,
    )
    resp = channels.post_meta("meta", payload, secret=account["credentials"]["app_secret"])
    assert resp.status_code == 200
    channels.settle()


def test_whatsapp_statuses_only_move_forward(channels):
    account = channels.account("whatsapp")
    _sent_reply(channels, account, "wamid.OUT1")

    for status in ("delivered", "read", "delivered", "sent"):
        _status(channels, account, "wamid.OUT1", status)

    assert channels.message("wamid.OUT1").status == "read"
    updates = channels.events("message.status_updated")
    assert [(e.data["previous_status"], e.data["status"]) for e in updates] == [
        ("sent", "delivered"),
        ("delivered", "read"),
    ]


def test_a_failed_status_keeps_metas_error(channels):
    account = channels.account("whatsapp")
    _sent_reply(channels, account, "wamid.OUT2")
    payload = load(
        "wa_status_failed.json", PHONE_NUMBER_ID=account["external_id"], WAMID_OUTBOUND="wamid.OUT2"
    )
    channels.post_meta("meta", payload, secret=account["credentials"]["app_secret"])
    channels.settle()

    message = channels.message("wamid.OUT2")
    assert (message.status, message.error_code) == ("failed", "131047")
    assert message.error_message.startswith("Re-engagement message")
    (event,) = channels.events("message.status_updated")
    assert event.data["error_code"] == "131047"
    # Visible through the API as well.
    resp = channels.ws.call("GET", f"/api/conversations/{message.conversation_id}/messages")
    mine = next(m for m in resp.json["items"] if m["id"] == str(message.id))
    assert (mine["status"], mine["error_code"]) == ("failed", "131047")


def test_a_status_of_an_unknown_message_changes_nothing_and_waits_for_its_send(channels):
    account = channels.account("whatsapp")
    _status(channels, account, "wamid.NOT_OURS", "delivered")
    (row,) = channels.inbound_events()
    assert row.status == "processed"
    # Kept in early_statuses (tests/channels_gaps/test_early_statuses.py), not applied.
    assert row.result["counts"] == {"status_deferred": 1}


def test_messenger_text_attachment_and_postback(channels):
    account = channels.account("messenger")
    for name in ("messenger_text.json", "messenger_attachment.json", "messenger_postback.json"):
        resp = channels.messaging(account, name)
        assert resp.json == {"stored": 1, "duplicates": 0, "dropped": 0}, name
    channels.settle()

    text = channels.message("m_MESSENGER_TEXT1")
    assert (text.content_type, text.body, text.channel) == ("text", "hello, world!", "messenger")
    image = channels.message("m_MESSENGER_IMG1")
    assert image.content_type == "image"
    (attachment,) = image.attachments
    assert attachment["type"] == "image"
    postback = channels.message("m_POSTBACK1")
    assert (postback.content_type, postback.body) == ("postback", "Get Started")
    assert postback.metadata_["postback"]["payload"] == "GET_STARTED_PAYLOAD"
    (contact,) = channels.contacts()
    assert (contact.channel, contact.external_id) == ("messenger", "USER_PSID")
    (conversation,) = channels.conversations()
    assert conversation.inbound_count == 3


def test_messenger_read_watermark_marks_earlier_replies_read(channels):
    account = channels.account("messenger")
    _sent_reply(channels, account, "m_OUT_REPLY")
    resp = channels.messaging(account, "messenger_read.json")
    assert resp.status_code == 200
    channels.settle()
    assert channels.message("m_OUT_REPLY").status == "read"


def test_instagram_text_attachment_postback(channels):
    account = channels.account("instagram")
    for name in ("instagram_text.json", "instagram_attachment.json", "instagram_postback.json"):
        resp = channels.messaging(account, name)
        assert resp.status_code == 200, resp.text
    channels.settle()

    by_type = {m.content_type: m for m in channels.messages()}
    assert by_type["text"].body == "Hi from Instagram"
    assert by_type["video"].attachments[0]["type"] == "video"
    assert by_type["postback"].metadata_["postback"]["payload"] == "TRACK_ORDER"
    (contact,) = channels.contacts()
    assert contact.external_id == "IGSID"
    (conversation,) = channels.conversations()
    assert (conversation.message_count, conversation.inbound_count) == (3, 3)


@pytest.mark.parametrize(
    ("our_app_id", "stored"), [(None, False), ("1517776481860111", False), ("42", True)]
)
def test_echoes_are_stored_only_when_sent_by_another_app(channels, monkeypatch, our_app_id, stored):
    if our_app_id:
        monkeypatch.setenv("META_APP_ID", our_app_id)
    get_settings.cache_clear()
    try:
        account = channels.account("instagram")
        channels.messaging(account, "instagram_text.json")
        channels.messaging(account, "instagram_echo.json")
        channels.settle()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    echoes = channels.messages(direction="outbound")
    if stored:
        (echo,) = echoes
        assert (echo.status, echo.metadata_["echo"], echo.body) == (
            "sent",
            True,
            "Sent from the Instagram app",
        )
    else:
        assert echoes == []
    assert all(r.status == "processed" for r in channels.inbound_events())


def test_instagram_on_the_meta_route_works_too(channels):
    account = channels.account("instagram")
    payload = load("instagram_text.json", IG_ACCOUNT_ID=account["external_id"])
    resp = channels.post_meta("meta", payload, secret=account["credentials"]["app_secret"])
    assert resp.json["stored"] == 1
    channels.settle()
    assert channels.messages()[0].channel == "instagram"


def test_an_unknown_messaging_event_is_stored_as_unsupported(channels):
    account = channels.account("messenger")
    payload = load("messenger_text.json", PAGE_ID=account["external_id"])
    event = payload["entry"][0]["messaging"][0]
    del event["message"]
    event["optin"] = {"type": "notification_messages", "payload": "ADDITIONAL-INFORMATION"}
    channels.post_meta("messenger", payload, secret=account["credentials"]["app_secret"])
    channels.settle()
    (message,) = channels.messages()
    assert message.content_type == "unsupported"
    assert message.metadata_["raw"]["optin"]["payload"] == "ADDITIONAL-INFORMATION"
