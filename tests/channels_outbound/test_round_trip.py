"""Both halves of the channels together: a signed inbound WhatsApp image, its media fetched
through the proxy, a reply sent through the fake Graph API, then Meta's delivery status."""

from __future__ import annotations

import os

from tests.channels_inbound.conftest import Channels as InboundChannels
from tests.channels_outbound.conftest import messages_of, wait_for_status
from tests.waiting import wait_until


def test_inbound_image_proxy_reply_and_delivery_status(workspace, broker, worker, fake_graph):
    inbound = InboundChannels(workspace, broker)
    account = inbound.account("whatsapp")
    jpeg = b"\xff\xd8\xff\xe0" + os.urandom(2048)
    fake_graph.add_media("1003383421387256", jpeg, "image/jpeg")

    assert inbound.whatsapp(account, "wa_image.json").status_code == 200
    inbound.settle()

    [conversation] = inbound.conversations()
    [received] = wait_until(lambda: messages_of(workspace, conversation.id), "the inbound message")
    [attachment] = received["attachments"]
    media = workspace.call("GET", f"/api/media/{attachment['media_id']}")
    assert media.status_code == 200
    assert media.content == jpeg
    assert {r.token for r in fake_graph.gets()} == {account["credentials"]["access_token"]}

    reply = workspace.call(
        "POST", f"/api/conversations/{conversation.id}/messages", json={"body": "Nice photo!"}
    )
    assert reply.status_code == 201, reply.text
    sent = wait_for_status(workspace, conversation.id, reply.json["id"], "sent")
    [request] = fake_graph.sent()
    assert request.path == f"/v21.0/{account['external_id']}/messages"
    assert request.json["to"] == "16315551181"

    status = inbound.whatsapp(
        account, "wa_status.json", WAMID_OUTBOUND=sent["provider_message_id"], STATUS="delivered"
    )
    assert status.status_code == 200
    inbound.settle()
    wait_for_status(workspace, conversation.id, reply.json["id"], "delivered")
