"""send_outbound over the Graph API, end to end: HTTP send -> worker -> fake Meta -> status."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from sqlalchemy import select

from shared.context import Ctx
from shared.db import session_scope
from shared.inbox.messages import create_outbound_message
from shared.models import Conversation
from shared.models.outbound import OutboundSend
from tests.channels_outbound.conftest import messages_of, wait_for_status
from tests.wa_templates.seed import approved_template
from tests.waiting import wait_until

TOKEN = "EAAG-whatsapp-token-1"


def _whatsapp(channels, **contact):
    account_id = channels.account("whatsapp", credentials={"access_token": TOKEN})
    phone_number_id = channels.account_row(account_id).external_id
    contact = channels.contact(channel="whatsapp", external_id="15551234567", **contact)
    conversation = channels.conversation(contact, integration_account_id=account_id)
    return phone_number_id, conversation


def _send(workspace, conversation, **body):
    resp = workspace.call("POST", f"/api/conversations/{conversation['id']}/messages", json=body)
    assert resp.status_code == 201, resp.text
    assert resp.json["status"] == "queued"
    return resp.json["id"]


def test_whatsapp_text_is_sent_with_the_decrypted_token(workspace, channels, fake_graph):
    phone_number_id, conversation = _whatsapp(channels)

    message_id = _send(workspace, conversation, body="Hello from support")

    sent = wait_for_status(workspace, conversation["id"], message_id, "sent")
    [request] = fake_graph.sent()
    assert request.path == f"/v21.0/{phone_number_id}/messages"
    assert request.token == TOKEN
    assert request.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "15551234567",
        "type": "text",
        "text": {"preview_url": False, "body": "Hello from support"},
    }
    assert sent["provider_message_id"].startswith("wamid.")
    [event] = [e for e in channels.events("message.status_updated") if e.data["id"] == message_id]
    assert event.data["status"] == "sent"
    assert event.data["previous_status"] == "queued"


def test_whatsapp_template_is_sent_outside_the_window(workspace, channels, fake_graph):
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    _, conversation = _whatsapp(channels, last_inbound_at=stale)
    approved_template(
        channels.tenant_id, conversation["integration_account_id"], "order_update", body="{{1}}"
    )
    template = {
        "name": "order_update",
        "language": "en_US",
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-17"}]}],
    }

    message_id = _send(workspace, conversation, template=template)

    wait_for_status(workspace, conversation["id"], message_id, "sent")
    [request] = fake_graph.sent()
    assert request.json["type"] == "template"
    assert request.json["template"] == {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": template["components"],
    }


def test_free_form_outside_the_window_is_refused_and_nothing_is_sent(
    workspace, channels, fake_graph
):
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
    _, conversation = _whatsapp(channels, last_inbound_at=stale)

    resp = workspace.call(
        "POST", f"/api/conversations/{conversation['id']}/messages", json={"body": "late"}
    )

    assert resp.status_code == 409
    assert resp.json["error"]["code"] == "window_closed"
    assert messages_of(workspace, conversation["id"]) == []
    assert fake_graph.sent() == []


def test_the_window_is_per_number_a_contact_wrote_to(workspace, channels, fake_graph):
    """Meta's 24-hour window is per business number: writing to A does not open B's."""
    number_a = channels.account("whatsapp", credentials={"access_token": TOKEN})
    number_b = channels.account("whatsapp", credentials={"access_token": TOKEN})
    contact = channels.contact(channel="whatsapp", external_id="15551234567")  # wrote now
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
    on_b = channels.conversation(contact, integration_account_id=number_b, last_inbound_at=stale)
    on_a = channels.conversation(contact, integration_account_id=number_a)  # to A, now

    resp = workspace.call("POST", f"/api/conversations/{on_b['id']}/messages", json={"body": "hi"})

    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["code"] == "window_closed"
    assert "this number" in resp.json["error"]["message"]
    assert messages_of(workspace, on_b["id"]) == []
    message_id = _send(workspace, on_a, body="hi")
    wait_for_status(workspace, on_a["id"], message_id, "sent")
    [request] = fake_graph.sent()
    assert request.path.endswith(f"/{channels.account_row(number_a).external_id}/messages")


def test_messenger_and_instagram_send_through_me_messages(workspace, channels, fake_graph):
    for channel in ("messenger", "instagram"):
        account_id = channels.account(channel, credentials={"access_token": f"page-{channel}"})
        contact = channels.contact(channel=channel, external_id=f"psid-{channel}")
        conversation = channels.conversation(contact, integration_account_id=account_id)

        message_id = _send(workspace, conversation, body=f"Hi on {channel}")

        sent = wait_for_status(workspace, conversation["id"], message_id, "sent")
        request = fake_graph.sent()[-1]
        assert request.path == "/v21.0/me/messages"
        assert request.token == f"page-{channel}"
        assert request.json == {
            "recipient": {"id": f"psid-{channel}"},
            "messaging_type": "RESPONSE",
            "message": {"text": f"Hi on {channel}"},
        }
        assert sent["provider_message_id"].startswith("m_")


def test_default_account_is_used_when_the_conversation_names_none(workspace, channels, fake_graph):
    account_id = channels.account("whatsapp", credentials={"access_token": "default-token"})
    conversation = channels.conversation(channels.contact(channel="whatsapp"))

    message_id = _send(workspace, conversation, body="via default")

    wait_for_status(workspace, conversation["id"], message_id, "sent")
    [request] = fake_graph.sent()
    assert request.token == "default-token"
    assert channels.account_row(account_id).external_id in request.path


def _conversation_of_a_deleted_number(workspace, channels):
    """A WhatsApp conversation on number B, deleted since; number A (the default) remains."""
    channels.account("whatsapp", credentials={"access_token": "number-a-token"})
    number_b = channels.account("whatsapp", credentials={"access_token": "number-b-token"})
    contact = channels.contact(channel="whatsapp", external_id="15551234567")
    conversation = channels.conversation(contact, integration_account_id=number_b)
    deleted = workspace.call("DELETE", f"/api/integration-accounts/{number_b}")
    assert deleted.status_code == 204, deleted.text
    return conversation


def test_a_queued_message_of_a_deleted_account_fails_rather_than_going_from_the_default(
    workspace, channels, fake_graph
):
    """The customer wrote to number B: the default number A is another business identity."""
    conversation = _conversation_of_a_deleted_number(workspace, channels)
    with session_scope() as session:  # queued by a system job (automation, CSAT, AI)
        row = session.get_one(Conversation, conversation["id"])
        message_id = create_outbound_message(
            session, Ctx.system(channels.tenant_id), row, body="from which number?"
        ).id

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed")

    assert failed["error_code"] == "account_deleted"
    assert "deleted" in failed["error_message"]
    assert fake_graph.sent() == []
    with session_scope() as session:
        assert session.get_one(OutboundSend, message_id).attempts == 1  # never retried


def test_a_reply_on_a_conversation_whose_account_was_deleted_is_refused_at_once(
    workspace, channels, fake_graph
):
    conversation = _conversation_of_a_deleted_number(workspace, channels)

    resp = workspace.call(
        "POST", f"/api/conversations/{conversation['id']}/messages", json={"body": "hello?"}
    )

    assert resp.status_code == 409, resp.text
    error = resp.json["error"]
    assert error["code"] == "account_deleted"
    assert "deleted" in error["message"]
    assert messages_of(workspace, conversation["id"]) == []
    assert fake_graph.sent() == []


def test_transient_5xx_and_429_are_retried_until_sent(workspace, channels, fake_graph):
    _, conversation = _whatsapp(channels)
    fake_graph.script("503", "130429", "ok")

    message_id = _send(workspace, conversation, body="eventually")

    sent = wait_for_status(workspace, conversation["id"], message_id, "sent")
    assert len(fake_graph.sent()) == 3
    assert sent["error_code"] is None
    with session_scope() as session:
        claim = session.get_one(OutboundSend, message_id)
        assert (claim.status, claim.attempts, claim.last_error_code) == ("sent", 3, "130429")


def test_window_closed_at_meta_fails_the_message_with_its_code(workspace, channels, fake_graph):
    _, conversation = _whatsapp(channels)
    fake_graph.script("131047")

    message_id = _send(workspace, conversation, body="too late for Meta")

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed")
    assert failed["error_code"] == "131047"
    assert "Re-engagement message" in failed["error_message"]
    assert "24 hours" in failed["error_message"]
    assert len(fake_graph.sent()) == 1  # permanent: never retried
    [event] = [e for e in channels.events("message.status_updated") if e.data["id"] == message_id]
    assert event.data["status"] == "failed"
    assert event.data["error_code"] == "131047"


def test_bad_token_190_fails_without_retry(workspace, channels, fake_graph):
    _, conversation = _whatsapp(channels)
    fake_graph.accepted_tokens = {"some-other-token"}

    message_id = _send(workspace, conversation, body="with an expired token")

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed")
    assert failed["error_code"] == "190"
    assert "access token" in failed["error_message"]
    assert len(fake_graph.sent()) == 1


def test_a_190_on_send_marks_the_account_error(workspace, channels, fake_graph):
    _, conversation = _whatsapp(channels)
    account_id = conversation["integration_account_id"]
    fake_graph.script("190")

    message_id = _send(workspace, conversation, body="with an expired token")

    wait_for_status(workspace, conversation["id"], message_id, "failed")
    account = workspace.call("GET", f"/api/integration-accounts/{account_id}").json
    assert account["status"] == "error"


def test_a_190_to_a_send_out_while_the_admin_reconnected_leaves_the_new_token_alone(
    workspace, channels, fake_graph
):
    """WHY: the send used the old token; Meta refusing it says nothing of the new one, and
    marking the freshly reconnected account ``error`` undid the admin's fix."""
    _, conversation = _whatsapp(channels)
    account_id = conversation["integration_account_id"]
    release = threading.Event()
    fake_graph.script(("hold", release, "190"))

    message_id = _send(workspace, conversation, body="sent with the old token")
    wait_until(lambda: fake_graph.sent(), "the send reached Meta")
    reconnected = workspace.call(
        "PATCH",
        f"/api/integration-accounts/{account_id}",
        json={"credentials": {"access_token": "EAAG-reconnected"}},
    )
    assert reconnected.status_code == 200, reconnected.text
    release.set()

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed")
    assert failed["error_code"] == "190"
    account = workspace.call("GET", f"/api/integration-accounts/{account_id}").json
    assert account["status"] == "active"
    logs = workspace.call("GET", "/api/activity-logs?action=integration_account.token_invalid")
    assert logs.json["items"] == []


def test_timeouts_are_retried_then_the_message_fails_and_is_dead_lettered(
    workspace, channels, fake_graph
):
    from shared.models import DeadLetter

    _, conversation = _whatsapp(channels)
    fake_graph.script(("sleep", 1.5))  # every attempt outlasts GRAPH_TIMEOUT_SECONDS=1

    message_id = _send(workspace, conversation, body="into the void")

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed", timeout=30)
    assert failed["error_code"] == "timeout"
    assert len(fake_graph.sent()) == 3  # the first attempt and OUTBOUND_MAX_RETRIES=2

    def dead_letter():
        with session_scope() as session:
            return session.scalars(
                select(DeadLetter).where(
                    DeadLetter.actor_name == "send_outbound",
                    DeadLetter.args.contains([message_id]),
                )
            ).one_or_none()

    letter = wait_until(dead_letter, "the dead letter")
    assert "timeout" in letter.error


def test_the_same_send_twice_reaches_meta_once(workspace, channels, fake_graph):
    from workers.actors.channels_outbound import send_outbound

    _, conversation = _whatsapp(channels)
    fake_graph.script(("sleep", 0.3), "ok")
    message_id = _send(workspace, conversation, body="only once")
    send_outbound.send(message_id)
    send_outbound.send(message_id)

    wait_for_status(workspace, conversation["id"], message_id, "sent")
    wait_until(lambda: len(fake_graph.sent()) >= 1, "a request")
    time.sleep(1.0)  # let the duplicate jobs run
    assert len(fake_graph.sent()) == 1


def test_no_connected_account_fails_the_message_at_once(workspace, channels, fake_graph):
    conversation = channels.conversation(channels.contact(channel="instagram"))

    message_id = _send(workspace, conversation, body="nobody to send it")

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed")
    assert failed["error_code"] == "no_account"
    assert fake_graph.sent() == []


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("131026", "Message Undeliverable"),
        ("100", "Invalid parameter"),
        ("132001", "does not exist"),
    ],
)
def test_permanent_meta_errors_fail_once_with_their_code(
    workspace, channels, fake_graph, code, words
):
    _, conversation = _whatsapp(channels)
    fake_graph.script(code)

    message_id = _send(workspace, conversation, body="refused")

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed")
    assert failed["error_code"] == code
    assert words in failed["error_message"]
    assert len(fake_graph.sent()) == 1


def test_messenger_rate_limit_80007_is_retried(workspace, channels, fake_graph):
    account_id = channels.account("messenger", credentials={"access_token": "page"})
    conversation = channels.conversation(
        channels.contact(channel="messenger"), integration_account_id=account_id
    )
    fake_graph.script("80007", "ok")

    message_id = _send(workspace, conversation, body="after the throttle")

    wait_for_status(workspace, conversation["id"], message_id, "sent")
    assert len(fake_graph.sent()) == 2


@pytest.mark.parametrize(
    "answer",
    [
        {"messaging_product": "whatsapp"},  # no messages
        {"messages": "wamid.1"},  # a string, not a list
        b"<html>ok</html>",  # not JSON at all
        {"messages": [{"id": None}]},  # no id: stored as "None"
        {"messages": [{"id": ""}]},
        {"messages": [{"id": {"wamid": "1"}}]},
    ],
)
def test_an_accepted_send_whose_answer_cannot_be_read_is_never_sent_twice(
    workspace, channels, fake_graph, answer
):
    """A 2xx means Meta took the message: another attempt would reach the customer again."""
    _, conversation = _whatsapp(channels)
    fake_graph.script(("raw", 200, answer))

    message_id = _send(workspace, conversation, body="accepted, answered oddly")

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed")
    assert failed["error_code"] == "bad_response"
    assert "Meta accepted the message" in failed["error_message"]
    assert "not sent again" in failed["error_message"]
    assert len(fake_graph.sent()) == 1


@pytest.mark.parametrize(
    "answer",
    [{"recipient_id": "123"}, {"recipient_id": "123", "message_id": ["m_1"]}],
)
def test_a_messenger_send_answered_without_its_id_is_never_sent_twice(
    workspace, channels, fake_graph, answer
):
    account_id = channels.account("messenger", credentials={"access_token": "page"})
    conversation = channels.conversation(
        channels.contact(channel="messenger"), integration_account_id=account_id
    )
    fake_graph.script(("raw", 200, answer))

    message_id = _send(workspace, conversation, body="accepted, no id")

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed")
    assert failed["error_code"] == "bad_response"
    assert len(fake_graph.sent()) == 1


@pytest.mark.parametrize(
    ("status", "body", "code", "sends"),
    [
        (400, {"error": "not an object"}, "http_400", 1),
        (400, {"error": {"code": 100, "message": "bad", "error_data": "text"}}, "100", 1),
        # error_data.details not a string: Meta's code, still one send
        (400, {"error": {"code": 100, "error_data": {"details": {"param": "to"}}}}, "100", 1),
        (400, {"error": {"code": 131026, "error_data": {"details": 7}}}, "131026", 1),
        (400, [1, 2], "http_400", 1),
        (400, {"error": {"code": 100, "is_transient": "false"}}, "100", 1),  # a string
        (500, b"[" * 5000, "http_500", 3),  # deeper than any JSON we read: transient still
    ],
)
def test_an_error_answer_of_another_shape_is_still_classified(
    workspace, channels, fake_graph, status, body, code, sends
):
    """Meta's error body read defensively: a refusal, never a worker crash."""
    _, conversation = _whatsapp(channels)
    fake_graph.script(("raw", status, body))

    message_id = _send(workspace, conversation, body="refused oddly")

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed", timeout=30)
    assert failed["error_code"] == code
    assert len(fake_graph.sent()) == sends


def test_a_csat_survey_offers_its_ratings_as_quick_replies(workspace, channels, fake_graph):
    for channel in ("messenger", "instagram"):
        account_id = channels.account(channel, credentials={"access_token": f"page-{channel}"})
        contact = channels.contact(channel=channel, external_id=f"psid-{channel}")
        conversation = channels.conversation(contact, integration_account_id=account_id)

        resp = workspace.call("POST", f"/api/conversations/{conversation['id']}/csat")
        assert resp.status_code == 201, resp.text
        survey = resp.json
        wait_for_status(workspace, conversation["id"], survey["message_id"], "sent")

        message = fake_graph.sent()[-1].json["message"]
        assert survey["id"] in message["text"]  # the link stays: email-like clients use it
        assert message["quick_replies"] == [
            {"content_type": "text", "title": "★" * n, "payload": f"csat:{survey['id']}:{n}"}
            for n in range(1, 6)
        ]


def _page(channels, channel: str) -> dict:
    account_id = channels.account(channel, credentials={"access_token": f"page-{channel}"})
    contact = channels.contact(channel=channel, external_id=f"psid-{channel}")
    return channels.conversation(contact, integration_account_id=account_id)


@pytest.mark.parametrize("channel", ["whatsapp", "messenger"])
def test_a_send_whose_answer_trickles_in_is_cut_off_at_its_bound_and_retried(
    workspace, channels, fake_graph, channel
):
    """Each read of Meta's answer is quick (GRAPH_TIMEOUT_SECONDS=1 never fires), the whole
    answer takes a minute, its status line last: the call is cut off within the send's
    bound of 2 s, a transient timeout (Meta had not said it took the message)."""
    conversation = _whatsapp(channels)[1] if channel == "whatsapp" else _page(channels, channel)
    fake_graph.message_drip = 0.3
    started = time.monotonic()

    message_id = _send(workspace, conversation, body="slowly")

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed", timeout=30)
    assert failed["error_code"] == "timeout"
    assert "longer than 2 s" in failed["error_message"]
    assert len(fake_graph.sent()) == 3  # the first attempt and OUTBOUND_MAX_RETRIES=2
    assert time.monotonic() - started < 12.0  # three calls of ~2 s, not one of a minute


def test_a_send_meta_took_whose_answer_trickles_in_fails_once_and_is_not_sent_again(
    workspace, channels, fake_graph
):
    """A 200 came at once, its body a byte at a time: Meta took the message, so the call cut
    off at its bound is not retried (the customer would get it twice)."""
    _, conversation = _whatsapp(channels)
    fake_graph.message_body_drip = 0.3
    started = time.monotonic()

    message_id = _send(workspace, conversation, body="taken, slowly")

    failed = wait_for_status(workspace, conversation["id"], message_id, "failed", timeout=30)
    assert failed["error_code"] == "bad_response"
    assert "accepted" in failed["error_message"]
    assert len(fake_graph.sent()) == 1
    assert time.monotonic() - started < 6.0
