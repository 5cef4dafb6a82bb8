"""A rating that arrives as a channel button reply (API.md: "handled by inbound processing
with the same logic" as the link).

The survey message offers the five ratings as the channel's reply buttons; the contact's
tap joins the surveyed conversation without reopening it and rates the survey once. Only
the surveyed contact's tap, through the account the survey went out on, rates anything.
"""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Conversation
from tests.channels_api.conftest import ApiChannel
from tests.channels_gaps.conftest import Gaps, gaps_settings  # noqa: F401
from tests.channels_outbound.conftest import wait_for_status
from tests.csat.conftest import enable, events, link_of, set_status, survey_messages
from tests.peers.fixtures import fake_graph, fake_graph_server, smtp_servers, smtp_tls_files  # noqa: F401
from tests.waiting import wait_until
from tests.webhooks.conftest import path, receiver  # noqa: F401

STARS = ["★", "★★", "★★★", "★★★★", "★★★★★"]


def _survey(ws, conversation_id: str) -> dict:
    resp = ws.call("GET", f"/api/conversations/{conversation_id}/csat")
    assert resp.status_code == 200, resp.text
    return resp.json


def _conversation(ws, conversation_id: str) -> dict:
    resp = ws.call("GET", f"/api/conversations/{conversation_id}")
    assert resp.status_code == 200, resp.text
    return resp.json


def _conversations_of(tenant_id: str) -> int:
    with session_scope() as session:
        return session.scalar(
            select(func.count())
            .select_from(Conversation)
            .where(Conversation.tenant_id == tenant_id)
        )


@pytest.fixture
def surveyed(ws, receiver, path):  # noqa: F811
    """An api-channel conversation resolved with CSAT on: (channel, conversation id,
    the survey's callback as the tenant's system received it)."""
    enable(ws, ["api"])
    api = ApiChannel(ws, receiver.url(path))
    conversation_id = api.inbound("Where is my parcel?")["conversation_id"]
    set_status(ws, conversation_id, "resolved")
    (message,) = survey_messages(ws, conversation_id)
    wait_for_status(ws, conversation_id, message["id"], "sent")
    [callback] = wait_until(lambda: receiver.at(path), "the survey callback")
    return api, conversation_id, json.loads(callback.body)["data"]


def test_the_survey_offers_the_ratings_and_a_tap_rates_it_without_reopening(ws, surveyed):
    api, conversation_id, sent = surveyed
    survey = _survey(ws, conversation_id)
    assert [c["title"] for c in sent["choices"]] == STARS
    assert [c["id"] for c in sent["choices"]] == [f"csat:{survey['id']}:{n}" for n in range(1, 6)]
    conversations = _conversations_of(ws.tenant["id"])

    tapped = api.inbound("★★★★", choice=sent["choices"][3]["id"])

    assert tapped["conversation_id"] == conversation_id
    assert _conversation(ws, conversation_id)["status"] == "resolved"
    assert _conversations_of(ws.tenant["id"]) == conversations
    rated = _survey(ws, conversation_id)
    assert (rated["rating"], rated["comment"]) == (4, None) and rated["rated_at"] is not None
    assert [e["rating"] for e in events(ws, "csat.submitted")] == [4]

    # A second tap is kept as a message; the first rating stands, as through the link.
    again = api.inbound("★", choice=sent["choices"][0]["id"])
    assert again["conversation_id"] == conversation_id
    assert _survey(ws, conversation_id)["rating"] == 4
    assert len(events(ws, "csat.submitted")) == 1


def test_a_tap_after_the_link_rating_changes_nothing(ws, surveyed, client):
    api, conversation_id, sent = surveyed
    (message,) = survey_messages(ws, conversation_id)
    survey_id, token = link_of(message)
    resp = client.simulate_patch(
        f"/api/public/csat-surveys/{survey_id}", json={"token": token, "rating": 2}
    )
    assert resp.status_code == 200, resp.text

    api.inbound("★★★★★", choice=sent["choices"][4]["id"])
    assert _survey(ws, conversation_id)["rating"] == 2


def test_another_contacts_tap_on_the_same_id_rates_nothing(ws, surveyed):
    api, conversation_id, sent = surveyed
    forged = api.inbound("★★★★★", source_id="someone-else", choice=sent["choices"][4]["id"])
    assert forged["conversation_id"] != conversation_id  # an ordinary message: its own
    assert _survey(ws, conversation_id)["rating"] is None
    assert events(ws, "csat.submitted") == []


def test_another_tenants_contact_cannot_rate_the_survey(ws, other, surveyed, receiver, path):  # noqa: F811
    _api, conversation_id, sent = surveyed
    theirs = ApiChannel(other, receiver.url(path))
    theirs.inbound("★★★★★", choice=sent["choices"][4]["id"])
    assert _survey(ws, conversation_id)["rating"] is None


@pytest.mark.parametrize("choice", ["csat:not-a-uuid:4", "csat:{survey}:9", "x" * 200])
def test_a_malformed_choice_is_an_ordinary_message(ws, surveyed, choice):
    api, conversation_id, _sent = surveyed
    survey = _survey(ws, conversation_id)
    posted = api.inbound("hello", choice=choice.format(survey=survey["id"]))
    assert posted["conversation_id"] != conversation_id
    assert _survey(ws, conversation_id)["rating"] is None


def test_a_choice_longer_than_any_channel_allows_is_refused(ws, surveyed):
    api, _conversation_id, _sent = surveyed
    body = {"contact": {"source_id": "cust-1"}, "content": "hi", "choice": "x" * 201}
    resp = api.post(body)
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "choice"


def test_whatsapp_offers_the_ratings_as_a_list_and_its_list_reply_rates(ws, worker, fake_graph):  # noqa: F811
    gaps = Gaps(ws)
    account = gaps.meta_account("whatsapp")
    enable(ws, ["whatsapp"])
    customer = "15557654321"
    gaps.inbound_text(account, "wamid.Q1", customer, "Is my order on its way?")
    conversation_id = str(gaps.conversation_of("wamid.Q1"))
    set_status(ws, conversation_id, "resolved")

    def survey_sent():
        return [r.json for r in fake_graph.sent() if r.json.get("type") == "interactive"]

    [sent] = wait_until(survey_sent, "the survey at the Graph API")
    survey = _survey(ws, conversation_id)
    assert sent["to"] == customer and sent["interactive"]["type"] == "list"
    assert link_of({"body": sent["interactive"]["body"]["text"]})[0] == survey["id"]
    rows = sent["interactive"]["action"]["sections"][0]["rows"]
    assert [r["title"] for r in rows] == STARS

    gaps.post_whatsapp(
        account,
        {
            "contacts": [{"profile": {"name": "Kerry"}, "wa_id": customer}],
            "messages": [
                {
                    "from": customer,
                    "id": "wamid.TAP",
                    "timestamp": str(int(time.time())),
                    "type": "interactive",
                    "interactive": {"type": "list_reply", "list_reply": rows[4]},
                }
            ],
        },
    )
    assert str(gaps.conversation_of("wamid.TAP")) == conversation_id
    wait_until(lambda: _survey(ws, conversation_id)["rating"] == 5, "the survey rated 5")
    assert _conversation(ws, conversation_id)["status"] == "resolved"
