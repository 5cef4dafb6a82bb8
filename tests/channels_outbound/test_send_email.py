"""Email sends over SMTP against a real aiosmtpd relay: MIME, threading, AUTH and TLS, failures."""

from __future__ import annotations

import uuid

from sqlalchemy import update

from shared.db import session_scope
from shared.models import Conversation
from tests.channels_outbound.conftest import SMTP_PASSWORD, SMTP_USER, wait_for_status
from tests.waiting import wait_until


def _mailbox(channels, peer, **settings):
    address = f"support-{uuid.uuid4().hex[:8]}@shop.example"
    account_id = channels.account(
        "email",
        external_id=address,
        settings={
            "smtp_host": "127.0.0.1",
            "smtp_port": peer.port,
            "smtp_security": peer.security,
            "from_name": "Shop Support",
        }
        | ({"smtp_username": SMTP_USER} if peer.username else {})
        | settings,
        credentials={"smtp_password": SMTP_PASSWORD} if peer.username else {},
    )
    contact = channels.contact(
        channel="email", external_id="ada@customer.example", email="ada@customer.example"
    )
    conversation = channels.conversation(
        contact, integration_account_id=account_id, subject="Where is my order?"
    )
    return conversation | {"address": address}


def _send(workspace, conversation, body):
    resp = workspace.call(
        "POST", f"/api/conversations/{conversation['id']}/messages", json={"body": body}
    )
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


def test_reply_is_threaded_and_sent_with_starttls_and_auth(workspace, channels, smtp_peers):
    peer = smtp_peers["starttls"]
    conversation = _mailbox(channels, peer)
    channels.message(
        conversation,
        "first customer mail",
        provider_message_id="<first@customer.example>",
    )
    channels.message(
        conversation,
        "second customer mail",
        provider_message_id="<second@customer.example>",
    )

    message_id = _send(workspace, conversation, "It ships tomorrow.")

    sent = wait_for_status(workspace, conversation["id"], message_id, "sent")
    [mail] = peer.received
    assert mail.login == SMTP_USER
    assert mail.rcpt_tos == ["ada@customer.example"]
    msg = mail.message
    assert msg["From"] == f"Shop Support <{conversation['address']}>"
    assert msg["To"] == "ada@customer.example"
    assert msg["Subject"] == "Re: Where is my order?"
    assert msg["In-Reply-To"] == "<second@customer.example>"
    assert msg["References"].split() == ["<first@customer.example>", "<second@customer.example>"]
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().strip() == "It ships tomorrow."
    assert sent["provider_message_id"] == msg["Message-ID"]
    assert msg["Message-ID"].endswith("@shop.example>")


def test_implicit_tls_relay(workspace, channels, smtp_peers):
    peer = smtp_peers["ssl"]
    conversation = _mailbox(channels, peer)

    message_id = _send(workspace, conversation, "Over implicit TLS.")

    wait_for_status(workspace, conversation["id"], message_id, "sent")
    [mail] = peer.received
    assert mail.login == SMTP_USER
    assert mail.message["Subject"] == "Where is my order?"  # nothing earlier: not a reply


def test_rejected_recipient_fails_the_message_with_the_smtp_code(workspace, channels, smtp_peers):
    peer = smtp_peers["none"]
    peer.mode = "reject"
    conversation = _mailbox(channels, peer)

    message_id = _send(workspace, conversation, "Nobody home.")

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed")
    assert failed["error_code"] == "550"
    assert "User unknown" in failed["error_message"]


def test_transient_451_is_retried_until_accepted(workspace, channels, smtp_peers):
    peer = smtp_peers["none"]
    peer.mode = "transient"
    conversation = _mailbox(channels, peer)

    message_id = _send(workspace, conversation, "Try again.")

    from shared.db import session_scope
    from shared.models.outbound import OutboundSend

    def retried():
        with session_scope() as session:
            claim = session.get(OutboundSend, message_id)
            return claim is not None and claim.last_error_code == "451"

    wait_until(retried, "a 451 recorded")
    peer.mode = "ok"
    wait_for_status(workspace, conversation["id"], message_id, "sent")
    assert len(peer.received) == 1


def test_wrong_password_is_a_permanent_failure(workspace, channels, smtp_peers):
    peer = smtp_peers["starttls"]
    account_id = channels.account(
        "email",
        settings={
            "smtp_host": "127.0.0.1",
            "smtp_port": peer.port,
            "smtp_security": "starttls",
            "smtp_username": SMTP_USER,
        },
        credentials={"smtp_password": "not-the-password"},
    )
    contact = channels.contact(channel="email", external_id="bob@customer.example")
    conversation = channels.conversation(contact, integration_account_id=account_id)

    message_id = _send(workspace, conversation, "Locked out.")

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed")
    assert failed["error_code"] == "535"
    assert peer.received == []


def test_a_refused_quit_after_the_relay_took_the_mail_does_not_send_it_again(
    workspace, channels, smtp_peers
):
    peer = smtp_peers["none"]
    peer.mode = "quit_fails"
    conversation = _mailbox(channels, peer)

    message_id = _send(workspace, conversation, "Accepted, then a 421 to QUIT.")

    sent = wait_for_status(workspace, conversation["id"], message_id, "sent", "failed")
    assert sent["status"] == "sent"
    [mail] = peer.received
    assert sent["provider_message_id"] == mail.message["Message-ID"]


def test_line_breaks_in_the_subject_and_sender_name_are_sent_as_spaces(
    workspace, channels, smtp_peers
):
    peer = smtp_peers["none"]
    conversation = _mailbox(channels, peer, from_name="Shop\r\nBcc: name@evil.example")
    with session_scope() as session:
        session.execute(
            update(Conversation)
            .where(Conversation.id == conversation["id"])
            .values(subject="Order 42\r\nBcc: subject@evil.example")
        )

    message_id = _send(workspace, conversation, "Folded, not injected.")

    sent = wait_for_status(workspace, conversation["id"], message_id, "sent", "failed")
    assert sent["status"] == "sent", sent["error_message"]
    [mail] = peer.received
    assert mail.rcpt_tos == ["ada@customer.example"]
    assert mail.message["Subject"] == "Order 42 Bcc: subject@evil.example"
    assert mail.message["Bcc"] is None
    assert mail.message["From"].addresses[0].display_name == "Shop Bcc: name@evil.example"


def test_an_address_that_cannot_be_a_header_fails_at_once_without_retries(
    workspace, channels, smtp_peers
):
    from shared.models import Contact
    from shared.models.outbound import OutboundSend

    peer = smtp_peers["none"]
    conversation = _mailbox(channels, peer)
    with session_scope() as session:
        session.execute(
            update(Contact)
            .where(Contact.id == conversation["contact_id"])
            .values(email="ada@customer.example\r\nBcc: evil@evil.example")
        )

    message_id = _send(workspace, conversation, "Nowhere to go.")

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed")
    assert failed["error_code"] == "invalid_email"
    assert peer.received == []
    with session_scope() as session:
        assert session.get(OutboundSend, uuid.UUID(message_id)).attempts == 1


def _slow_relay(delay: float):
    """A relay that answers every SMTP step, each ``delay`` seconds late; (port, stop)."""
    import socket
    import threading
    import time

    server = socket.create_server(("127.0.0.1", 0))
    stopped = threading.Event()

    def answer(conn, line: bytes) -> None:
        time.sleep(delay)
        conn.sendall(line + b"\r\n")

    def serve() -> None:
        server.settimeout(0.2)
        while not stopped.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn, conn.makefile("rb") as lines:
                try:
                    answer(conn, b"220 slow.example ESMTP")
                    for line in lines:
                        verb = line[:4].upper()
                        if verb == b"DATA":
                            answer(conn, b"354 go ahead")
                            for body in lines:
                                if body == b".\r\n":
                                    break
                            answer(conn, b"250 queued")
                        elif verb == b"QUIT":
                            answer(conn, b"221 bye")
                            break
                        else:
                            answer(conn, b"250 ok")
                except OSError:
                    pass  # the client hung up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def stop() -> None:
        stopped.set()
        thread.join(5)
        server.close()

    return server.getsockname()[1], stop


def test_a_relay_slow_at_every_step_is_cut_off_at_the_sessions_bound():
    """Each step answers within SMTP_TIMEOUT_SECONDS, but a session has more steps than the
    send's bound counts on: the session is ended at its bound, not at the relay's pace."""
    import time

    import pytest

    from shared.channels import smtp
    from shared.channels.send_errors import SendFailed

    port, stop = _slow_relay(delay=0.4)  # seven answers: 2.8 s in all
    relay = smtp.SmtpAccount("127.0.0.1", port, "none", None, None, "shop@shop.example")
    email = smtp.build_email(relay, to="ada@customer.example", subject="Hi", text="Hello")
    try:
        started = time.monotonic()
        with pytest.raises(SendFailed) as failed:
            smtp.send_email(relay, email, timeout=0.5, deadline=2.0)  # 4 steps of 0.5 s
        took = time.monotonic() - started
    finally:
        stop()
    assert failed.value.code == "timeout" and failed.value.transient
    assert "2 s" in failed.value.message
    assert 1.9 <= took < 2.4


def _slow_name(monkeypatch, name: str, delay: float) -> None:
    """A resolver that answers ``name`` (as 127.0.0.1) ``delay`` seconds late, as a dead DNS
    server tried again per search domain does; every other name as before."""
    import socket
    import time

    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == name:
            time.sleep(delay)
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_a_relay_name_slow_to_resolve_is_cut_off_at_the_sessions_bound(monkeypatch):
    """The relay's name is looked up within the session's bound too, not before it."""
    import time

    import pytest

    from shared.channels import smtp
    from shared.channels.send_errors import SendFailed

    port, stop = _slow_relay(delay=0.0)
    _slow_name(monkeypatch, "relay.slow-dns.test", delay=4.0)
    relay = smtp.SmtpAccount("relay.slow-dns.test", port, "none", None, None, "shop@shop.example")
    email = smtp.build_email(relay, to="ada@customer.example", subject="Hi", text="Hello")
    try:
        started = time.monotonic()
        with pytest.raises(SendFailed) as failed:
            smtp.send_email(relay, email, timeout=0.5, deadline=1.0)
        took = time.monotonic() - started
    finally:
        stop()
    assert failed.value.code == "timeout" and failed.value.transient
    assert took < 1.5


def test_a_relay_named_by_host_name_is_resolved_and_its_certificate_checked_by_name(
    workspace, channels, smtp_peers
):
    peer = smtp_peers["ssl"]  # its certificate names localhost and 127.0.0.1
    conversation = _mailbox(channels, peer, smtp_host="localhost")

    message_id = _send(workspace, conversation, "Resolved by name.")

    wait_for_status(workspace, conversation["id"], message_id, "sent")
    assert [m.message.get_content().strip() for m in peer.received] == ["Resolved by name."]
