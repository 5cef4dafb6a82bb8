"""The survey sent on resolve: per channel, once, and not again within the resend window."""

from __future__ import annotations

from sqlalchemy import text

from shared.db import session_scope
from tests.analytics.conftest import ApiChannel
from tests.csat.conftest import (
    backdate_surveys,
    conversation,
    enable,
    events,
    link_of,
    set_status,
    survey_messages,
)
from tests.waiting import wait_until


def skipped(ws, conv: str) -> list[str]:
    """The reasons of the conversation's ``csat.survey_skipped`` activity rows, oldest first."""
    resp = ws.call("GET", f"/api/activity-logs?action=csat.survey_skipped&entity_id={conv}")
    assert resp.status_code == 200, resp.text
    rows = resp.json["items"]
    assert all(row["entity_type"] == "conversation" and row["after"]["message"] for row in rows)
    return [row["after"]["reason"] for row in reversed(rows)]


def test_no_survey_on_resolve_unless_the_channel_is_enabled(ws):
    conv = conversation(ws)
    set_status(ws, conv, "resolved")
    assert survey_messages(ws, conv) == []
    enable(ws, ["whatsapp"])
    set_status(ws, conv, "open")
    set_status(ws, conv, "resolved")
    assert survey_messages(ws, conv) == []
    assert ws.call("GET", f"/api/conversations/{conv}/csat").status_code == 404
    # Configuration, not a skip: nothing to explain in the activity log.
    assert skipped(ws, conv) == []


def test_resolving_sends_the_tenants_survey_once_per_window(ws):
    settings = enable(
        ws,
        ["api"],
        message_template="Thanks for writing! Tell us how we did: {link}",
        resend_window_hours=24,
    )
    assert settings == {
        "enabled_channels": ["api"],
        "message_template": "Thanks for writing! Tell us how we did: {link}",
        "resend_window_hours": 24,
    }
    conv = conversation(ws)
    set_status(ws, conv, "resolved")
    (message,) = survey_messages(ws, conv)
    assert message["body"].startswith("Thanks for writing! Tell us how we did: http://")
    survey = ws.call("GET", f"/api/conversations/{conv}/csat").json
    assert survey["trigger"] == "resolve" and link_of(message)[0] == survey["id"]
    assert survey["message_id"] == message["id"]

    # Reopened and resolved again within the window: no second survey.
    set_status(ws, conv, "open")
    set_status(ws, conv, "resolved")
    assert len(survey_messages(ws, conv)) == 1
    assert len(events(ws, "csat.survey_sent")) == 1
    assert skipped(ws, conv) == ["survey_exists"]

    # Time moves past the window: the next resolve asks again.
    backdate_surveys(conv, hours=25)
    set_status(ws, conv, "open")
    set_status(ws, conv, "resolved")
    assert len(survey_messages(ws, conv)) == 2
    latest = ws.call("GET", f"/api/conversations/{conv}/csat").json
    assert latest["id"] != survey["id"]
    assert len(events(ws, "csat.survey_sent")) == 2
    assert skipped(ws, conv) == ["survey_exists"]


def test_a_manual_survey_counts_for_the_window_and_bulk_resolve_surveys_each(ws):
    enable(ws, ["api"])
    surveyed, fresh = conversation(ws, "cust-s"), conversation(ws, "cust-f")
    assert ws.call("POST", f"/api/conversations/{surveyed}/csat").status_code == 201
    resp = ws.call(
        "POST",
        "/api/conversations/bulk",
        json={"ids": [surveyed, fresh], "action": "set_status", "status": "resolved"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json["counts"]["updated"] == 2
    assert len(survey_messages(ws, surveyed)) == 1
    assert len(survey_messages(ws, fresh)) == 1


def test_a_survey_that_cannot_be_sent_never_blocks_the_resolve(ws):
    """A survey the channel refuses (WhatsApp, 24-hour window closed) is skipped in a savepoint."""
    enable(ws, ["api"])
    conv = conversation(ws)
    with session_scope() as session:
        session.execute(
            text("UPDATE conversations SET channel = 'whatsapp' WHERE id = :c"), {"c": conv}
        )
        session.execute(
            text("UPDATE csat_settings SET enabled_channels = '{whatsapp}' WHERE tenant_id = :t"),
            {"t": ws.tenant["id"]},
        )
        # The contact wrote here more than 24 hours ago: WhatsApp refuses a free-form message.
        session.execute(
            text(
                "UPDATE conversations SET last_inbound_at = now() - interval '2 days' WHERE id = :c"
            ),
            {"c": conv},
        )
    set_status(ws, conv, "resolved")
    shown = ws.call("GET", f"/api/conversations/{conv}")
    assert shown.json["status"] == "resolved"
    assert ws.call("GET", f"/api/conversations/{conv}/csat").status_code == 404
    assert events(ws, "csat.survey_sent") == []


def test_settings_are_validated_and_admin_only(ws):
    bad = [
        {"enabled_channels": ["fax"], "resend_window_hours": 24},
        {"enabled_channels": ["api"], "resend_window_hours": 24, "message_template": "no link"},
        {"enabled_channels": ["api"]},
        {"enabled_channels": ["api"], "resend_window_hours": -1},
        {"enabled_channels": ["api"], "resend_window_hours": 24 * 366},
        {"enabled_channels": "api"},
    ]
    for body in bad:
        resp = ws.call("PUT", "/api/csat-surveys/settings", json=body)
        assert resp.status_code in (400, 422), (body, resp.text)
    assert ws.call("GET", "/api/csat-surveys/settings").json == {
        "enabled_channels": [],
        "message_template": "How did we do? Please rate this conversation from 1 to 5: {link}",
        "resend_window_hours": 168,
    }
    _, supervisor = ws.create_agent("supervisor")
    resp = ws.call("PUT", "/api/csat-surveys/settings", token=supervisor, json={})
    assert resp.status_code == 403


def test_an_expired_conversation_gets_no_survey(ws):
    """Expiry closes an abandoned conversation: nobody decided to close it, so no one is asked."""
    enable(ws, ["api"])
    conv = conversation(ws)
    assert (
        ws.call("PUT", "/api/chat-expiration-rules/api", json={"inactive_minutes": 60}).status_code
        == 200
    )
    with session_scope() as session:  # move time: the conversation is idle for two hours
        session.execute(
            text(
                "UPDATE conversations SET last_activity_at = now() - interval '2 hours'"
                " WHERE id = :c"
            ),
            {"c": conv},
        )
    resp = ws.call("POST", "/api/conversations/expire")
    assert resp.status_code == 200 and resp.json["expired"] == 1, resp.text
    assert ws.call("GET", f"/api/conversations/{conv}").json["resolution_reason"] == "expired"
    assert survey_messages(ws, conv) == []
    assert events(ws, "csat.survey_sent") == []
    # Not resolved by anyone: no survey was due (the resolution reason says why).
    assert skipped(ws, conv) == []


def test_a_contact_who_opted_out_gets_no_survey_on_resolve(ws):
    """Opting out means no unsolicited message: the resolve still happens, silently."""
    enable(ws, ["api"])
    conv = conversation(ws)
    contact_id = ws.call("GET", f"/api/conversations/{conv}").json["contact"]["id"]
    resp = ws.call("PATCH", f"/api/contacts/{contact_id}", json={"opted_out": True})
    assert resp.status_code == 200, resp.text
    set_status(ws, conv, "resolved")
    assert ws.call("GET", f"/api/conversations/{conv}").json["status"] == "resolved"
    assert survey_messages(ws, conv) == []
    assert events(ws, "csat.survey_sent") == []
    # Not sent, but not silently: the activity log says why, against the conversation.
    assert skipped(ws, conv) == ["opted_out"]

    # Opted back in: the next resolve asks again.
    resp = ws.call("PATCH", f"/api/contacts/{contact_id}", json={"opted_out": False})
    assert resp.status_code == 200, resp.text
    set_status(ws, conv, "open")
    set_status(ws, conv, "resolved")
    assert len(survey_messages(ws, conv)) == 1
    assert skipped(ws, conv) == ["opted_out"]


def test_a_conversation_the_customer_never_wrote_in_gets_no_survey(ws):
    """A campaign opens a conversation per recipient; resolving those (a bulk clean-up)
    must not ask customers to rate a conversation they never took part in."""
    account = ApiChannel(ws)
    first = account.inbound("cust-c")["conversation_id"]
    contact_id = ws.call("GET", f"/api/conversations/{first}").json["contact"]["id"]
    set_status(ws, first, "resolved")  # no survey yet: none enabled
    campaign = ws.call(
        "POST",
        "/api/campaigns",
        json={
            "name": "News",
            "channel": "api",
            "integration_account_id": account.id,
            "body": "Our news, {{name}}",
        },
    ).json
    added = ws.call(
        "POST", f"/api/campaigns/{campaign['id']}/recipients", json={"contact_ids": [contact_id]}
    )
    assert added.status_code == 200, added.text
    assert ws.call("POST", f"/api/campaigns/{campaign['id']}/send", json={}).status_code == 200

    def opened():
        listed = ws.call("GET", "/api/conversations?status=open").json["items"]
        return [c["id"] for c in listed if c["id"] != first] or None

    (campaign_conversation,) = wait_until(opened, "the campaign's conversation")
    enable(ws, ["api"])
    set_status(ws, campaign_conversation, "resolved")
    assert survey_messages(ws, campaign_conversation) == []
    assert events(ws, "csat.survey_sent") == []
    assert skipped(ws, campaign_conversation) == ["no_customer_message"]
    assert skipped(ws, first) == []  # resolved while no channel was enabled


def test_a_survey_the_channel_refused_on_resolve_is_logged_with_its_reason(ws):
    """Skipped, but not silently: an operator asking why a customer got no survey finds the
    refusal in the activity log, against the conversation."""
    enable(ws, ["whatsapp"])
    conv = conversation(ws)
    with session_scope() as session:
        session.execute(
            text(
                "UPDATE conversations SET channel = 'whatsapp',"
                " last_inbound_at = now() - interval '2 days' WHERE id = :c"
            ),
            {"c": conv},
        )
    set_status(ws, conv, "resolved")
    assert ws.call("GET", f"/api/conversations/{conv}/csat").status_code == 404
    logged = ws.call("GET", f"/api/activity-logs?action=csat.survey_skipped&entity_id={conv}").json[
        "items"
    ]
    assert [(row["entity_type"], row["after"]["reason"]) for row in logged] == [
        ("conversation", "window_closed")
    ], logged
