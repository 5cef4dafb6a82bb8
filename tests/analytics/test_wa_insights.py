"""WhatsApp insights: Meta's analytics through the Graph client, cached, failures answered 502."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest

from shared.analytics import wa_insights
from shared.channels import accounts
from shared.context import Ctx
from shared.db import session_scope
from tests.analytics.conftest import set_timezone
from tests.peers.environment import environment
from tests.peers.fixtures import fake_graph, fake_graph_server  # noqa: F401
from tests.peers.graph import WabaAnalytics

TOKEN = "waba-token-" + uuid.uuid4().hex[:8]
DAY = 86_400


@pytest.fixture(scope="module", autouse=True)
def graph_settings(fake_graph_server):  # noqa: F811
    """Point the Graph client at the fake for this module, as it was afterwards."""
    with environment(META_GRAPH_BASE_URL=fake_graph_server.base_url, META_GRAPH_VERSION="v21.0"):
        yield


def _unix(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp())


def whatsapp_account(ws, waba_id: str, *, default: bool = True) -> str:
    with session_scope() as session:
        account = accounts.create_account(
            session,
            Ctx.system(uuid.UUID(ws.tenant["id"])),
            channel="whatsapp",
            name="WhatsApp",
            external_id=str(uuid.uuid4().int)[:15],
            settings={"waba_id": waba_id},
            credentials={"access_token": TOKEN, "app_secret": "s", "verify_token": "v"},
            is_default=default,
        )
        return str(account.id)


@pytest.fixture
def waba(fake_graph, ws):  # noqa: F811
    waba_id = str(uuid.uuid4().int)[:15]
    whatsapp_account(ws, waba_id)
    day1, day2, day3 = _unix("2026-11-01"), _unix("2026-11-02"), _unix("2026-11-03")
    fake_graph.waba[waba_id] = WabaAnalytics(
        messages=[
            {"start": day1, "end": day2, "sent": 10, "delivered": 9},
            {"start": day2, "end": day3, "sent": 4, "delivered": 4, "read": 3, "failed": 1},
            {"start": day3, "end": day3 + DAY, "sent": 99, "delivered": 99},
        ],
        conversations=[
            {
                "start": day1,
                "end": day2,
                "conversation": 3,
                "conversation_type": "REGULAR",
                "conversation_direction": "USER_INITIATED",
            },
            {
                "start": day1,
                "end": day2,
                "conversation": 2,
                "conversation_type": "REGULAR",
                "conversation_direction": "BUSINESS_INITIATED",
            },
        ],
        templates=[{"id": str(1000 + n), "name": f"promo_{n:02d}"} for n in range(12)],
        template_points=[
            {
                "template_id": "1000",
                "start": day1,
                "end": day2,
                "sent": 5,
                "delivered": 5,
                "read": 2,
                "clicked": [{"type": "quick_reply_button", "button_content": "Yes", "count": 2}],
            },
            {
                "template_id": "1011",
                "start": day2,
                "end": day3,
                "sent": 1,
                "delivered": 1,
                "read": 1,
                "clicked": [],
            },
        ],
    )
    return fake_graph, waba_id


RANGE = {"start": "2026-11-01", "end": "2026-11-02"}


def test_messages_and_conversations_come_from_meta_with_the_account_token(ws, waba):
    graph, waba_id = waba
    resp = ws.call("GET", "/api/wa-insights/messages", params=RANGE)
    assert resp.status_code == 200, resp.text
    assert resp.json == {
        "data": [
            {"date": "2026-11-01", "sent": 10, "delivered": 9, "read": 0, "failed": 0},
            {"date": "2026-11-02", "sent": 4, "delivered": 4, "read": 3, "failed": 1},
        ]
    }
    assert all(r.token == TOKEN for r in graph.gets(f"/v21.0/{waba_id}"))
    conversations = ws.call("GET", "/api/wa-insights/conversations", params=RANGE).json["data"]
    assert conversations == [
        {
            "date": "2026-11-01",
            "conversation_type": "REGULAR",
            "direction": "BUSINESS_INITIATED",
            "count": 2,
        },
        {
            "date": "2026-11-01",
            "conversation_type": "REGULAR",
            "direction": "USER_INITIATED",
            "count": 3,
        },
    ]


def test_templates_are_asked_ten_ids_at_a_time_and_summed(ws, waba):
    graph, waba_id = waba
    data = ws.call("GET", "/api/wa-insights/templates", params=RANGE).json["data"]
    assert len(data) == 12
    assert data[0] == {
        "template_id": "1000",
        "template_name": "promo_00",
        "sent": 5,
        "delivered": 5,
        "read": 2,
        "clicked": 2,
    }
    assert data[11]["template_id"] == "1011" and data[11]["sent"] == 1
    assert len(graph.gets(f"/v21.0/{waba_id}/template_analytics")) == 2


def test_templates_follow_metas_paging_past_the_first_hundred(ws, waba):
    graph, waba_id = waba
    graph.waba[waba_id].templates = [
        {"id": str(1000 + n), "name": f"promo_{n:03d}"} for n in range(250)
    ]
    resp = ws.call("GET", "/api/wa-insights/templates", params=RANGE)
    assert resp.status_code == 200, resp.text
    data = resp.json["data"]
    assert [t["template_id"] for t in data] == [str(1000 + n) for n in range(250)]
    assert data[0]["sent"] == 5 and data[11]["sent"] == 1
    listed = graph.gets(f"/v21.0/{waba_id}/message_templates")
    # Each next page asked on our own base URL with Meta's cursor, never at ``paging.next``.
    assert [("after=" in r.path) for r in listed] == [False, True, True]
    assert "after=c100" in listed[1].path and "after=c200" in listed[2].path
    assert len(graph.gets(f"/v21.0/{waba_id}/template_analytics")) == 25


def test_templates_past_the_page_bound_answer_409_naming_it(ws, waba, monkeypatch):
    graph, waba_id = waba
    monkeypatch.setattr(wa_insights, "MAX_TEMPLATE_PAGES", 2)
    templates = [{"id": str(1000 + n), "name": f"promo_{n:03d}"} for n in range(201)]
    graph.waba[waba_id].templates = templates
    resp = ws.call("GET", "/api/wa-insights/templates", params=RANGE)
    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["code"] == "too_many_pages"
    assert "more than 200 templates" in resp.json["error"]["message"]
    assert len(graph.gets(f"/v21.0/{waba_id}/message_templates")) == 2
    assert graph.gets(f"/v21.0/{waba_id}/template_analytics") == []
    # Exactly the bound is answered whole, and the refusal was not cached.
    graph.waba[waba_id].templates = templates[:200]
    resp = ws.call("GET", "/api/wa-insights/templates", params=RANGE)
    assert resp.status_code == 200, resp.text
    assert len(resp.json["data"]) == 200


def test_a_template_cursor_that_never_moves_is_metas_failure(ws, waba):
    graph, waba_id = waba
    graph.waba[waba_id].template_paging = {
        "cursors": {"before": "c0", "after": "c0"},
        "next": f"https://graph.facebook.com/v21.0/{waba_id}/message_templates?after=c0",
    }
    resp = ws.call("GET", "/api/wa-insights/templates", params=RANGE)
    assert resp.status_code == 502, resp.text
    assert resp.json["error"]["code"] == "meta_api_error"
    assert "paging" in resp.json["error"]["message"]
    assert len(graph.gets(f"/v21.0/{waba_id}/message_templates")) == 2


def test_answers_are_cached_per_account_and_range(ws, waba):
    graph, waba_id = waba
    for _ in range(3):
        assert ws.call("GET", "/api/wa-insights/messages", params=RANGE).status_code == 200
    assert len(graph.gets(f"/v21.0/{waba_id}")) == 1
    other = {"start": "2026-11-01", "end": "2026-11-03"}
    assert len(ws.call("GET", "/api/wa-insights/messages", params=other).json["data"]) == 3
    assert len(graph.gets(f"/v21.0/{waba_id}")) == 2


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        ("500", 502, "meta_api_error"),
        (("raw", 502, b"<html>bad gateway"), 502, "meta_api_error"),
        ("130429", 429, "meta_rate_limited"),
        ("190", 409, "meta_token_invalid"),
    ],
)
def test_a_meta_failure_answers_naming_meta(ws, waba, failure, status, code):
    graph, _ = waba
    graph.script_analytics(failure)
    resp = ws.call("GET", "/api/wa-insights/conversations", params=RANGE)
    assert resp.status_code == status, resp.text
    assert resp.json["error"]["code"] == code
    assert "Meta" in resp.json["error"]["message"]
    graph.script_analytics("ok")  # nothing was cached: the next call asks again
    assert ws.call("GET", "/api/wa-insights/conversations", params=RANGE).status_code == 200


def test_a_rejected_token_marks_the_account_error(ws, waba):
    graph, _ = waba
    graph.script_analytics("190")
    resp = ws.call("GET", "/api/wa-insights/messages", params=RANGE)
    assert resp.status_code == 409 and "status 'error'" in resp.json["error"]["message"]
    accounts = ws.call("GET", "/api/integration-accounts").json
    items = accounts["items"] if isinstance(accounts, dict) else accounts
    assert [a["status"] for a in items if a["channel"] == "whatsapp"] == ["error"]


def test_no_whatsapp_account_is_404_and_bad_ranges_are_422(ws, other_workspace, fake_graph):  # noqa: F811
    resp = ws.call("GET", "/api/wa-insights/messages", params=RANGE)
    assert resp.status_code == 404 and resp.json["error"]["code"] == "integration_not_found"
    whatsapp_account(ws, "123")
    theirs = whatsapp_account(other_workspace, "456")
    resp = ws.call(
        "GET", "/api/wa-insights/messages", params=RANGE | {"integration_account_id": theirs}
    )
    assert resp.status_code == 404 and resp.json["error"]["code"] == "integration_not_found"
    for bad in (
        {"start": "2026-11-05", "end": "2026-11-01"},
        {"start": "2024-01-01", "end": "2026-01-01"},
        {"start": "yesterday", "end": "2026-11-01"},
        {"start": "2026-02-30", "end": "2026-03-01"},
        {"start": "9999-12-31", "end": "9999-12-31"},  # the day after it is no date
    ):
        resp = ws.call("GET", "/api/wa-insights/templates", params=bad)
        assert resp.status_code == 422, (bad, resp.text)
    assert fake_graph.requests == []
    _, agent_token = ws.create_agent("agent")
    assert (
        ws.call("GET", "/api/wa-insights/messages", params=RANGE, token=agent_token).status_code
        == 403
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"start": "20261101", "end": "2026-11-02"},  # ISO basic format
        {"start": "2026-W44-7", "end": "2026-11-02"},  # ISO week date: 2026-11-01
        {"start": "2026-11-01", "end": "20261102"},
    ],
)
def test_dates_are_only_yyyy_mm_dd_and_other_iso_forms_never_reach_meta(ws, waba, bad):
    """API.md: ``start``/``end`` are ``YYYY-MM-DD``. Python's ``date.fromisoformat`` also
    reads ``20261101`` and ``2026-W44-7``; such a value was taken for a day
    the caller may not have meant, answered with Meta's figures and cached, while the 422
    for a bad value says "a date like 2024-08-25"."""
    graph, _ = waba
    resp = ws.call("GET", "/api/wa-insights/messages", params=bad)
    assert resp.status_code == 422, resp.text
    field = "start" if bad["start"] != "2026-11-01" else "end"
    assert resp.json["error"]["details"][0]["field"] == field
    assert graph.requests == []


@pytest.mark.parametrize(
    ("kind", "points", "bad"),
    [
        ("messages", "messages", {"sent": "lots"}),
        ("messages", "messages", {"read": [3]}),
        ("conversations", "conversations", {"conversation": {"n": 1}}),
        # a day no date can hold: the platform's time_t refuses it (OSError, not ValueError)
        ("messages", "messages", {"start": 10**18}),
        ("conversations", "conversations", {"start": 10**18}),
        ("templates", "template_points", {"clicked": [{"count": "two"}]}),
        ("templates", "template_points", {"clicked": "two"}),
    ],
)
def test_figures_in_a_shape_meta_does_not_document_are_502_not_500(ws, waba, kind, points, bad):
    graph, waba_id = waba
    first = getattr(graph.waba[waba_id], points)[0]
    first.update(bad)
    resp = ws.call("GET", f"/api/wa-insights/{kind}", params=RANGE)
    assert resp.status_code == 502, resp.text
    assert resp.json["error"]["code"] == "meta_api_error"
    assert "not in the documented shape" in resp.json["error"]["message"]


def _patch_status(ws, account_id: str, status: str) -> None:
    resp = ws.call("PATCH", f"/api/integration-accounts/{account_id}", json={"status": status})
    assert resp.status_code == 200, resp.text


def test_a_disabled_account_named_or_default_is_409_naming_it_and_meta_is_not_asked(ws, waba):
    """A disabled account's token was still sent to Meta: an admin who disabled a number
    had its insights read with it, and a disabled default was read as if it worked. The
    account named, or the default, is refused with 409 naming it; never another account."""
    graph, _ = waba
    default_id = ws.call("GET", "/api/integration-accounts").json["items"][0]["id"]
    other_waba = str(uuid.uuid4().int)[:15]
    graph.waba[other_waba] = WabaAnalytics()
    other_id = whatsapp_account(ws, other_waba, default=False)
    _patch_status(ws, default_id, "disabled")
    graph.requests.clear()

    for params in (RANGE, RANGE | {"integration_account_id": default_id}):
        resp = ws.call("GET", "/api/wa-insights/messages", params=params)
        assert resp.status_code == 409, resp.text
        error = resp.json["error"]
        assert error["code"] == "account_disabled", error
        assert default_id in error["message"] and "disabled" in error["message"]
        assert error["details"] == [{"integration_account_id": default_id}]
    assert graph.requests == []

    # The other account, named, still answers.
    resp = ws.call(
        "GET", "/api/wa-insights/messages", params=RANGE | {"integration_account_id": other_id}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json == {"data": []}
    # Enabled again, the default answers again.
    _patch_status(ws, default_id, "active")
    assert ws.call("GET", "/api/wa-insights/messages", params=RANGE).status_code == 200


def test_a_switched_off_channel_is_409_channel_disabled(ws, waba):
    graph, _ = waba
    resp = ws.call("PUT", "/api/integrations/whatsapp", json={"enabled": False})
    assert resp.status_code == 200, resp.text
    graph.requests.clear()
    resp = ws.call("GET", "/api/wa-insights/templates", params=RANGE)
    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["code"] == "channel_disabled"
    assert "switched off" in resp.json["error"]["message"]
    assert graph.requests == []
    ws.call("PUT", "/api/integrations/whatsapp", json={"enabled": True})
    assert ws.call("GET", "/api/wa-insights/templates", params=RANGE).status_code == 200


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        # Entirely in the future: Meta was asked, and the empty answer cached.
        ({"start": "2999-01-01", "end": "2999-01-02"}, "tomorrow in the tenant's timezone"),
        # Before 1970: sent to Meta as negative Unix timestamps.
        ({"start": "1969-12-31", "end": "1970-01-01"}, "2015-01-01"),
        ({"start": "1900-01-01", "end": "1900-12-31"}, "2015-01-01"),
        ({"start": "2014-12-31", "end": "2015-01-01"}, "2015-01-01"),
    ],
)
def test_a_range_meta_cannot_have_figures_for_is_422_and_never_reaches_meta(ws, waba, bad, says):
    """A range entirely in the future, or before WhatsApp Business had figures (down to
    before 1970, sent as negative Unix timestamps), was asked of Meta with the tenant's
    token and its answer cached. Now ``start`` must fall between 2015-01-01 and tomorrow
    in the tenant's timezone: 422 naming it, and Meta is not asked."""
    graph, _ = waba
    resp = ws.call("GET", "/api/wa-insights/messages", params=bad)
    assert resp.status_code == 422, resp.text
    (detail,) = resp.json["error"]["details"]
    assert detail["field"] == "start" and says in detail["message"], detail
    assert graph.requests == []


def test_a_range_may_start_tomorrow_in_the_tenants_timezone_but_not_later(ws, waba):
    """Meta's days are UTC days, and a tenant's today may already be tomorrow's UTC day
    (or the UTC day may be the tenant's tomorrow): a range up to the tenant's tomorrow is
    asked; one starting later holds no day Meta can have counted."""
    graph, _ = waba
    set_timezone(ws, "Pacific/Kiritimati")  # UTC+14: its today is often UTC's tomorrow
    today = dt.datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    params = {"start": (today - dt.timedelta(days=6)).isoformat(), "end": tomorrow}
    assert ws.call("GET", "/api/wa-insights/messages", params=params).status_code == 200
    resp = ws.call("GET", "/api/wa-insights/messages", params={"start": tomorrow, "end": tomorrow})
    assert resp.status_code == 200, resp.text
    graph.requests.clear()
    later = (today + dt.timedelta(days=2)).isoformat()
    resp = ws.call("GET", "/api/wa-insights/messages", params={"start": later, "end": later})
    assert resp.status_code == 422, resp.text
    (detail,) = resp.json["error"]["details"]
    assert detail["field"] == "start" and tomorrow in detail["message"], detail
    assert graph.requests == []
