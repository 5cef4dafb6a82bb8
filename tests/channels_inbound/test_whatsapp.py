"""WhatsApp Cloud API webhooks end to end: signed POST -> stored payload -> worker -> inbox rows."""

from __future__ import annotations

import pytest

from tests.channels_inbound.conftest import load

#: payload file -> (provider id, content type, body, what else to check on the message)
MESSAGE_TYPES = {
    "wa_text.json": ("wamid.TEXT1", "text", "this is a text message", {}),
    "wa_image.json": ("wamid.IMAGE1", "image", "CAPTION", {"attachment": "image"}),
    "wa_audio.json": ("wamid.AUDIO1", "audio", None, {"attachment": "audio"}),
    "wa_video.json": ("wamid.VIDEO1", "video", None, {"attachment": "video"}),
    "wa_document.json": ("wamid.DOC1", "document", "Invoice", {"attachment": "document"}),
    "wa_sticker.json": ("wamid.STICKER1", "sticker", None, {"attachment": "sticker"}),
    "wa_location.json": (
        "wamid.LOC1",
        "location",
        "Meta HQ, 1 Hacker Way, Menlo Park, CA 94025",
        {"metadata": ("location", {"latitude": 37.4837, "longitude": -122.1485})},
    ),
    "wa_contacts.json": ("wamid.CONTACTS1", "contacts", "Ada Lovelace", {}),
    "wa_button_reply.json": (
        "wamid.BTN1",
        "interactive_reply",
        "Yes, please",
        {
            "metadata": (
                "interactive",
                {"type": "button_reply", "id": "unique-button-identifier-here"},
            )
        },
    ),
    "wa_list_reply.json": (
        "wamid.LIST1",
        "interactive_reply",
        "Express shipping",
        {"metadata": ("interactive", {"type": "list_reply", "id": "list_reply_id"})},
    ),
    "wa_button.json": (
        "wamid.QUICK1",
        "button_reply",
        "No",
        {"metadata": ("button", {"payload": "No-Button-Payload"})},
    ),
    "wa_reaction.json": (
        "wamid.REACT1",
        "reaction",
        "\U0001f600",
        {"metadata": ("reaction", {"message_id": "wamid.OUTBOUND_ASK"})},
    ),
    "wa_unsupported.json": ("wamid.UNSUP1", "unsupported", None, {"raw": True}),
}


@pytest.mark.parametrize("name", sorted(MESSAGE_TYPES))
def test_every_message_type_is_stored(channels, name):
    provider_id, content_type, body, checks = MESSAGE_TYPES[name]
    account = channels.account("whatsapp")

    resp = channels.whatsapp(account, name)
    assert resp.status_code == 200, resp.text
    assert resp.json == {"stored": 1, "duplicates": 0, "dropped": 0}
    channels.settle()

    message = channels.message(provider_id)
    assert (message.direction, message.status, message.sender_type) == (
        "inbound",
        "received",
        "contact",
    )
    assert (message.content_type, message.body) == (content_type, body)
    if kind := checks.get("attachment"):
        (attachment,) = message.attachments
        assert attachment["type"] == kind
        assert attachment["media_id"]
    else:
        assert message.attachments == []
    if "metadata" in checks:
        key, expected = checks["metadata"]
        assert expected.items() <= message.metadata_[key].items()
    if checks.get("raw"):
        assert message.metadata_["raw"]["errors"][0]["code"] == 131051
    (row,) = channels.inbound_events(account)
    assert row.status == "processed", row.error


def test_a_first_message_creates_contact_and_conversation_and_emits(channels):
    account = channels.account("whatsapp")
    channels.whatsapp(account, "wa_text.json")
    channels.settle()

    (contact,) = channels.contacts()
    assert (contact.channel, contact.external_id, contact.name, contact.phone) == (
        "whatsapp",
        "16315551181",
        "Kerry Fisher",
        "+16315551181",
    )
    assert contact.last_inbound_at is not None
    (conversation,) = channels.conversations()
    assert str(conversation.integration_account_id) == account["id"]
    assert (conversation.status, conversation.message_count, conversation.inbound_count) == (
        "open",
        1,
        1,
    )
    assert conversation.last_message_preview == "this is a text message"
    assert [e.data["external_id"] for e in channels.events("contact.created")] == ["16315551181"]
    assert [e.data["id"] for e in channels.events("conversation.created")] == [str(conversation.id)]
    (created,) = channels.events("message.created")
    assert created.data["direction"] == "inbound"
    assert created.actor_type == "contact"


def test_a_second_message_joins_the_open_conversation(channels):
    account = channels.account("whatsapp")
    channels.whatsapp(account, "wa_text.json")
    channels.whatsapp(account, "wa_image.json")
    channels.settle()

    assert len(channels.contacts()) == 1
    (conversation,) = channels.conversations()
    assert (conversation.message_count, conversation.inbound_count) == (2, 2)
    assert len(channels.events("contact.created")) == 1
    assert len(channels.events("conversation.created")) == 1


def test_a_message_to_a_resolved_conversation_opens_a_new_one(channels):
    account = channels.account("whatsapp")
    channels.whatsapp(account, "wa_text.json")
    channels.settle()
    (first,) = channels.conversations()
    resp = channels.ws.call(
        "PATCH", f"/api/conversations/{first.id}/status", json={"status": "resolved"}
    )
    assert resp.status_code == 200, resp.text

    channels.whatsapp(account, "wa_image.json")
    channels.settle()

    conversations = channels.conversations()
    assert [c.status for c in conversations] == ["resolved", "open"]
    assert channels.message("wamid.IMAGE1").conversation_id == conversations[1].id


def test_an_old_message_delivered_late_does_not_open_the_whatsapp_window(channels):
    """The window opens at the provider's time: a day-old message re-driven now is stale."""
    account = channels.account("whatsapp")
    payload = load("wa_text.json", keep_time=True, PHONE_NUMBER_ID=account["external_id"])
    channels.post_meta("meta", payload, secret=account["credentials"]["app_secret"])
    channels.settle()
    (conversation,) = channels.conversations()
    resp = channels.ws.call(
        "POST", f"/api/conversations/{conversation.id}/messages", json={"body": "Hello?"}
    )
    assert resp.status_code == 409
    assert resp.json["error"]["code"] == "window_closed"

    channels.whatsapp(account, "wa_image.json")  # a fresh message opens it
    channels.settle()
    resp = channels.ws.call(
        "POST", f"/api/conversations/{conversation.id}/messages", json={"body": "Hello!"}
    )
    assert resp.status_code == 201, resp.text
