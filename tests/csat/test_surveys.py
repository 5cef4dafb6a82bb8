"""An agent's survey, and the customer's rating through the link's token: once, and only with it."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from shared.db import session_scope
from tests.csat.conftest import (
    assign,
    conversation,
    enable,
    events,
    link_of,
    set_status,
    survey_messages,
)
from tests.waiting import wait_until


def _survey(ws, conversation_id: str) -> tuple[dict, str]:
    resp = ws.call("POST", f"/api/conversations/{conversation_id}/csat")
    assert resp.status_code == 201, resp.text
    (message,) = survey_messages(ws, conversation_id)
    survey_id, token = link_of(message)
    assert survey_id == resp.json["id"]
    return resp.json, token


def _rate(client, survey_id: str, body: dict):
    return client.simulate_patch(f"/api/public/csat-surveys/{survey_id}", json=body)


def test_an_agent_sends_a_survey_through_the_channel_once(ws):
    agent, _ = ws.create_agent("agent")
    conv = conversation(ws)
    assign(ws, conv, agent["id"])
    assert ws.call("GET", f"/api/conversations/{conv}/csat").status_code == 404

    survey, token = _survey(ws, conv)
    assert survey["conversation_id"] == conv and survey["agent_id"] == agent["id"]
    assert survey["trigger"] == "manual" and survey["channel"] == "api"
    assert survey["rating"] is None and survey["rated_at"] is None
    assert "token" not in survey and "token_hash" not in survey
    (message,) = survey_messages(ws, conv)
    assert message["id"] == survey["message_id"] and message["sender_type"] == "system"
    assert ws.call("GET", f"/api/conversations/{conv}/csat").json == survey

    again = ws.call("POST", f"/api/conversations/{conv}/csat")
    assert again.status_code == 409 and again.json["error"]["code"] == "survey_exists"
    assert len(survey_messages(ws, conv)) == 1
    (sent,) = events(ws, "csat.survey_sent")
    assert sent["id"] == survey["id"] and sent["agent_id"] == agent["id"]
    with session_scope() as session:
        stored = session.scalar(
            text("SELECT token_hash FROM csat_surveys WHERE id = :id"), {"id": survey["id"]}
        )
    assert stored != token and len(stored) == 64  # only the hash is kept


def test_the_customer_rates_once_with_the_token(ws, client):
    conv = conversation(ws)
    survey, token = _survey(ws, conv)

    resp = _rate(client, survey["id"], {"token": token, "rating": 4, "comment": "Quick, thanks"})
    assert resp.status_code == 200, resp.text
    assert resp.json["rating"] == 4 and resp.json["comment"] == "Quick, thanks"
    assert set(resp.json) == {"id", "rating", "comment", "rated_at"}
    shown = ws.call("GET", f"/api/conversations/{conv}/csat").json
    assert shown["rating"] == 4 and shown["rated_at"] is not None

    twice = _rate(client, survey["id"], {"token": token, "rating": 1})
    assert twice.status_code == 409 and twice.json["error"]["code"] == "already_rated"
    assert ws.call("GET", f"/api/conversations/{conv}/csat").json["rating"] == 4
    (submitted,) = events(ws, "csat.submitted")
    assert submitted["rating"] == 4 and submitted["id"] == survey["id"]


def test_a_wrong_or_foreign_token_answers_404_and_changes_nothing(ws, client):
    first, first_token = _survey(ws, conversation(ws, "cust-a"))
    _, second_token = _survey(ws, conversation(ws, "cust-b"))

    for survey_id, token in (
        (first["id"], second_token),  # another survey's token
        (first["id"], "not-the-token"),
        (str(uuid.uuid4()), first_token),  # no such survey
    ):
        resp = _rate(client, survey_id, {"token": token, "rating": 5})
        assert resp.status_code == 404, resp.text
        assert resp.json["error"]["code"] == "not_found"
        assert resp.json["error"]["message"] == "CSAT survey not found"
    assert _rate(client, "not-a-uuid", {"token": first_token, "rating": 5}).status_code == 404
    assert (
        ws.call("GET", f"/api/conversations/{first['conversation_id']}/csat").json["rating"] is None
    )
    assert events(ws, "csat.submitted") == []


@pytest.mark.parametrize(
    "body",
    [
        {"rating": 0},
        {"rating": 6},
        {"rating": -1},
        {"rating": "5"},
        {"rating": 4.5},
        {"rating": True},
        {"rating": None},
        {},
        {"rating": 3, "comment": "x" * 2001},
        {"rating": 3, "extra": 1},
    ],
)
def test_bad_ratings_are_refused_and_nothing_is_stored(ws, client, body):
    survey, token = _survey(ws, conversation(ws))
    resp = _rate(client, survey["id"], {"token": token} | body)
    assert resp.status_code in (400, 422), resp.text
    assert set(resp.json["error"]) == {"code", "message", "details"}
    assert (
        ws.call("GET", f"/api/conversations/{survey['conversation_id']}/csat").json["rating"]
        is None
    )
    # The same token still works once the input is right.
    assert _rate(client, survey["id"], {"token": token, "rating": 3}).status_code == 200


def test_another_tenants_conversation_is_not_found(ws, other):
    conv = conversation(other)
    _survey(other, conv)
    assert ws.call("GET", f"/api/conversations/{conv}/csat").status_code == 404
    resp = ws.call("POST", f"/api/conversations/{conv}/csat")
    assert resp.status_code == 404
    assert len(survey_messages(other, conv)) == 1


def test_an_agent_sees_and_surveys_only_conversations_visible_to_them(ws):
    agent, agent_token = ws.create_agent("agent")
    other_agent, _ = ws.create_agent("agent")
    mine, theirs = conversation(ws, "cust-m"), conversation(ws, "cust-t")
    assign(ws, mine, agent["id"])
    assign(ws, theirs, other_agent["id"])
    assert ws.call("POST", f"/api/conversations/{mine}/csat", token=agent_token).status_code == 201
    resp = ws.call("POST", f"/api/conversations/{theirs}/csat", token=agent_token)
    assert resp.status_code == 404
    analytics = ws.call("GET", "/api/csat-surveys/analytics", token=agent_token)
    assert analytics.status_code == 403


def test_the_default_link_opens_a_rating_page_that_never_sees_the_token(ws, client):
    survey, token = _survey(ws, conversation(ws))
    (message,) = survey_messages(ws, survey["conversation_id"])
    assert f"/csat/{survey['id']}#token={token}" in message["body"]

    page = client.simulate_get(f"/csat/{survey['id']}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "/api/public/csat-surveys/" in page.text and token not in page.text
    assert client.simulate_get("/csat/not-a-survey").status_code == 404


def test_a_survey_the_channel_would_refuse_is_409_and_leaves_nothing(ws):
    conv = conversation(ws)
    with session_scope() as session:  # a WhatsApp conversation whose 24-hour window closed
        session.execute(
            text("UPDATE conversations SET channel = 'whatsapp' WHERE id = :c"), {"c": conv}
        )
        session.execute(
            text(
                "UPDATE conversations SET last_inbound_at = now() - interval '2 days' WHERE id = :c"
            ),
            {"c": conv},
        )
    resp = ws.call("POST", f"/api/conversations/{conv}/csat")
    assert resp.status_code == 409 and resp.json["error"]["code"] == "window_closed"
    assert ws.call("GET", f"/api/conversations/{conv}/csat").status_code == 404
    assert events(ws, "csat.survey_sent") == []


def test_a_survey_the_customer_never_got_does_not_block_the_next(ws):
    """The resend window spares the customer a second survey; one whose message failed
    (the callback refused it: nothing reached them) must not stop the agent's retry."""
    conv = conversation(ws)
    account_id = ws.call("GET", f"/api/conversations/{conv}").json["integration_account_id"]
    gone = f"/gone/{uuid.uuid4().hex[:12]}"
    ws.receiver.plan(gone, *[410] * 10)
    broken = {"settings": {"callback_url": ws.receiver.url(gone)}}
    accounts = f"/api/integration-accounts/{account_id}"
    assert ws.call("PATCH", accounts, json=broken).status_code == 200
    first = ws.call("POST", f"/api/conversations/{conv}/csat")
    assert first.status_code == 201, first.text

    def failed():
        shown = ws.call("GET", f"/api/conversations/{conv}/messages").json["items"]
        return [m for m in shown if m["id"] == first.json["message_id"] and m["status"] == "failed"]

    wait_until(failed, "the survey's message refused by the callback")
    fixed = {"settings": {"callback_url": ws.callback_url}}
    assert ws.call("PATCH", accounts, json=fixed).status_code == 200
    again = ws.call("POST", f"/api/conversations/{conv}/csat")
    assert again.status_code == 201, again.text
    assert len(survey_messages(ws, conv)) == 2
    # A survey that did go out keeps the window closed.
    assert ws.call("POST", f"/api/conversations/{conv}/csat").status_code == 409


def test_a_contact_who_opted_out_is_not_sent_a_survey_by_hand(ws):
    """Opting out refuses the automatic survey, so the manual one too: 409 opted_out."""
    conv = conversation(ws)
    contact_id = ws.call("GET", f"/api/conversations/{conv}").json["contact"]["id"]
    resp = ws.call("PATCH", f"/api/contacts/{contact_id}", json={"opted_out": True})
    assert resp.status_code == 200, resp.text

    refused = ws.call("POST", f"/api/conversations/{conv}/csat")
    assert refused.status_code == 409, refused.text
    error = refused.json["error"]
    assert error["code"] == "opted_out" and error["message"]
    assert error["details"] == [{"field": "contact_id", "message": "the contact opted out"}]
    assert ws.call("GET", f"/api/conversations/{conv}/csat").status_code == 404
    assert survey_messages(ws, conv) == []
    assert events(ws, "csat.survey_sent") == []

    # Opted back in: the agent may ask.
    resp = ws.call("PATCH", f"/api/contacts/{contact_id}", json={"opted_out": False})
    assert resp.status_code == 200, resp.text
    assert ws.call("POST", f"/api/conversations/{conv}/csat").status_code == 201
    assert len(survey_messages(ws, conv)) == 1


def test_a_conversation_whose_account_was_deleted_gets_no_survey(ws):
    """A reply there is refused (409 account_deleted): nothing may answer the customer from
    another account. A survey was stored and answered 201, then failed for good, counted as
    sent in the analytics; on resolve the same doomed survey went out."""
    enable(ws, ["api"])
    manual, on_resolve = conversation(ws, "cust-m"), conversation(ws, "cust-r")
    for conv in (manual, on_resolve):  # each on an api account of its own
        account_id = ws.call("GET", f"/api/conversations/{conv}").json["integration_account_id"]
        assert ws.call("DELETE", f"/api/integration-accounts/{account_id}").status_code == 204

    refused = ws.call("POST", f"/api/conversations/{manual}/csat")
    assert refused.status_code == 409, refused.text
    assert refused.json["error"]["code"] == "account_deleted"
    set_status(ws, on_resolve, "resolved")
    assert ws.call("GET", f"/api/conversations/{on_resolve}").json["status"] == "resolved"
    for conv in (manual, on_resolve):
        assert ws.call("GET", f"/api/conversations/{conv}/csat").status_code == 404
        assert survey_messages(ws, conv) == []
    assert events(ws, "csat.survey_sent") == []


def test_a_repeated_survey_post_with_its_idempotency_key_returns_the_first_answer(ws):
    """API.md: POSTs that send messages accept Idempotency-Key. A client that lost the
    answer to its survey POST (a timeout) and retries gets the survey it sent, not a 409
    it cannot tell from another agent's survey; the key on another conversation is 422."""
    conv = conversation(ws)
    key = {"Idempotency-Key": "survey-1"}
    first = ws.call("POST", f"/api/conversations/{conv}/csat", headers=key)
    assert first.status_code == 201, first.text
    again = ws.call("POST", f"/api/conversations/{conv}/csat", headers=key)
    assert again.status_code == 201, again.text
    assert again.json == first.json
    assert len(survey_messages(ws, conv)) == 1 and len(events(ws, "csat.survey_sent")) == 1

    reused = ws.call("POST", f"/api/conversations/{conversation(ws, 'cust-2')}/csat", headers=key)
    assert reused.status_code == 422, reused.text
    assert reused.json["error"]["details"][0]["field"] == "Idempotency-Key"
