"""Outbound files: uploaded media sent on WhatsApp, Messenger and email; bad references."""

from __future__ import annotations

import json
import time

from tests.channels_outbound.conftest import wait_for_status
from tests.channels_outbound.test_media import PDF, PNG, upload


def _media(workspace, content=PNG, **kwargs) -> str:
    resp = upload(workspace, content, **kwargs)
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


def _post(workspace, conversation, **body):
    return workspace.call("POST", f"/api/conversations/{conversation['id']}/messages", json=body)


def _conversation(channels, channel, **contact):
    account_id = channels.account(channel, credentials={"access_token": f"{channel}-token"})
    contact = channels.contact(channel=channel, **contact)
    return channels.conversation(contact, integration_account_id=account_id)


def test_whatsapp_image_is_uploaded_then_sent_with_its_caption(workspace, channels, fake_graph):
    conversation = _conversation(channels, "whatsapp", external_id="15550001111")
    media_id = _media(workspace)

    resp = _post(workspace, conversation, body="Your receipt", attachments=[{"media_id": media_id}])

    assert resp.status_code == 201, resp.text
    assert resp.json["content_type"] == "image"
    assert resp.json["attachments"][0]["media_id"] == media_id
    wait_for_status(workspace, conversation["id"], resp.json["id"], "sent")
    [uploaded] = fake_graph.sent("/media")
    form = uploaded.form
    assert form["messaging_product"][2] == b"whatsapp"
    assert form["type"][2] == b"image/png"
    assert form["file"][2] == PNG
    assert uploaded.token == "whatsapp-token"
    [sent] = fake_graph.sent()
    assert sent.json["type"] == "image"
    assert sent.json["to"] == "15550001111"
    assert sent.json["image"]["caption"] == "Your receipt"
    assert sent.json["image"]["id"].isdigit()


def test_messenger_file_rides_along_as_filedata(workspace, channels, fake_graph):
    conversation = _conversation(channels, "messenger", external_id="6003000111")
    media_id = _media(workspace, PDF, filename="terms.pdf", content_type="application/pdf")

    resp = _post(workspace, conversation, attachments=[{"media_id": media_id}])

    assert resp.status_code == 201, resp.text
    wait_for_status(workspace, conversation["id"], resp.json["id"], "sent")
    [sent] = fake_graph.sent()
    form = sent.form
    assert json.loads(form["recipient"][2]) == {"id": "6003000111"}
    assert json.loads(form["message"][2]) == {
        "attachment": {"type": "file", "payload": {"is_reusable": True}}
    }
    assert form["filedata"][0] == "terms.pdf"
    assert form["filedata"][2] == PDF


def _email_with_two_files(workspace, channels, peer) -> tuple[dict, str, str]:
    """An email conversation sending through ``peer``, and two uploads (a PNG, a PDF)."""
    account_id = channels.account(
        "email",
        settings={"smtp_host": "127.0.0.1", "smtp_port": peer.port, "smtp_security": "none"},
    )
    contact = channels.contact(channel="email", external_id="eve@customer.example")
    conversation = channels.conversation(contact, integration_account_id=account_id)
    png = _media(workspace, filename="chart.png")
    pdf = _media(workspace, PDF, filename="terms.pdf", content_type="application/pdf")
    return conversation, png, pdf


def test_email_carries_every_attachment(workspace, channels, smtp_peers):
    peer = smtp_peers["none"]
    conversation, png, pdf = _email_with_two_files(workspace, channels, peer)

    resp = _post(
        workspace,
        conversation,
        body="Both files attached.",
        attachments=[{"media_id": png}, {"media_id": pdf}],
    )

    assert resp.status_code == 201, resp.text
    wait_for_status(workspace, conversation["id"], resp.json["id"], "sent")
    [mail] = peer.received
    files = {
        part.get_filename(): (part.get_content_type(), part.get_content())
        for part in mail.message.iter_attachments()
    }
    assert files == {"chart.png": ("image/png", PNG), "terms.pdf": ("application/pdf", PDF)}


def test_bad_attachment_references_are_422(workspace, other_workspace, channels, fake_graph):
    whatsapp = _conversation(channels, "whatsapp")
    messenger = _conversation(channels, "messenger")
    mine, theirs = _media(workspace), _media(other_workspace)
    template = {"name": "hello", "language": "en"}
    cases = [
        (whatsapp, {"attachments": [{"media_id": theirs}]}, "attachments[0].media_id"),
        (whatsapp, {"attachments": [{"media_id": mine}, {"media_id": mine}]}, "attachments"),
        (messenger, {"body": "hi", "attachments": [{"media_id": mine}]}, "attachments"),
        (whatsapp, {"template": template, "attachments": [{"media_id": mine}]}, "body"),
        (whatsapp, {"attachments": [{"media_id": "not-a-uuid"}]}, "attachments[0].media_id"),
    ]
    for conversation, body, field in cases:
        resp = _post(workspace, conversation, **body)
        assert resp.status_code == 422, (body, resp.text)
        assert field in {d["field"] for d in resp.json["error"]["details"]}, resp.json
    assert fake_graph.sent() == []


def test_a_file_stored_in_s3_is_sent_too(workspace, channels, fake_graph):
    conversation = _conversation(channels, "whatsapp")
    resp = upload(
        workspace, PDF, path="/api/media/s3", filename="a.pdf", content_type="application/pdf"
    )
    assert resp.status_code == 201, resp.text

    sent = _post(workspace, conversation, attachments=[{"media_id": resp.json["id"]}])

    assert sent.status_code == 201, sent.text
    wait_for_status(workspace, conversation["id"], sent.json["id"], "sent")
    [uploaded] = fake_graph.sent("/media")
    assert uploaded.form["file"][2] == PDF
    [message] = fake_graph.sent()
    assert message.json["type"] == "document"
    assert message.json["document"]["filename"] == "a.pdf"


def test_an_email_attachment_named_across_lines_is_sent_under_one_line(
    workspace, channels, smtp_peers
):
    from sqlalchemy import update

    from shared.db import session_scope
    from shared.models import MediaFile

    peer = smtp_peers["none"]
    account_id = channels.account(
        "email",
        settings={"smtp_host": "127.0.0.1", "smtp_port": peer.port, "smtp_security": "none"},
    )
    contact = channels.contact(channel="email", external_id="eve@customer.example")
    conversation = channels.conversation(contact, integration_account_id=account_id)
    png = _media(workspace, filename="chart.png")
    with session_scope() as session:  # a name stored before uploads were checked, say
        session.execute(
            update(MediaFile).where(MediaFile.id == png).values(filename="q3\nchart.png")
        )

    resp = _post(workspace, conversation, body="Attached.", attachments=[{"media_id": png}])

    assert resp.status_code == 201, resp.text
    sent = wait_for_status(workspace, conversation["id"], resp.json["id"], "sent", "failed")
    assert sent["status"] == "sent", sent["error_message"]
    [mail] = peer.received
    assert [part.get_filename() for part in mail.message.iter_attachments()] == ["q3 chart.png"]


def test_a_whatsapp_upload_slower_than_its_share_of_the_send_fails_as_a_timeout(
    workspace, channels, fake_graph
):
    """Each read of the upload's answer is quick (GRAPH_TIMEOUT_SECONDS=1 never fires), the
    whole answer about 7 s: the upload is cut off within the send's bound (it leaves the
    send its own timeout), a transient timeout, and no message goes out without its file."""
    conversation = _conversation(channels, "whatsapp", external_id="15550002222")
    media_id = _media(workspace)
    fake_graph.upload_drip = 0.3
    started = time.monotonic()

    resp = _post(workspace, conversation, body="Late file", attachments=[{"media_id": media_id}])

    assert resp.status_code == 201, resp.text
    done = wait_for_status(
        workspace, conversation["id"], resp.json["id"], "failed", "sent", timeout=30
    )
    assert done["status"] == "failed"
    assert done["error_code"] == "timeout"
    assert "upload" in done["error_message"]
    assert fake_graph.sent() == []
    assert len(fake_graph.sent("/media")) == 3  # the first attempt and OUTBOUND_MAX_RETRIES=2
    assert time.monotonic() - started < 6.0  # three uploads of ~1 s, not one of 7


def test_an_email_naming_one_file_twice_is_422_and_nothing_is_sent(workspace, channels, smtp_peers):
    """An email naming the same media id twice went out with the file attached twice.
    As on WhatsApp (one file a message: a second copy is refused), a file named twice is
    the client's mistake to hear about, not to have sent or silently changed."""
    peer = smtp_peers["none"]
    conversation, png, pdf = _email_with_two_files(workspace, channels, peer)

    resp = _post(
        workspace,
        conversation,
        body="Attached.",
        attachments=[{"media_id": png}, {"media_id": pdf}, {"media_id": png}],
    )

    assert resp.status_code == 422, resp.text
    [detail] = resp.json["error"]["details"]
    assert detail["field"] == "attachments[2].media_id"
    assert "attachments[0]" in detail["message"]
    listed = workspace.call("GET", f"/api/conversations/{conversation['id']}/messages")
    assert listed.status_code == 200 and listed.json["items"] == []
    sent = _post(workspace, conversation, body="Attached.", attachments=[{"media_id": png}])
    assert sent.status_code == 201, sent.text
    wait_for_status(workspace, conversation["id"], sent.json["id"], "sent")
    [mail] = peer.received
    assert [part.get_filename() for part in mail.message.iter_attachments()] == ["chart.png"]
