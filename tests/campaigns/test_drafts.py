"""Campaign drafts over HTTP: content checks, recipients, tenancy, and no edits once sent."""

from __future__ import annotations

import datetime as dt
import uuid

from tests.campaigns.conftest import Shop


def test_a_whatsapp_draft_needs_an_approved_template_with_its_parameters(shop: Shop):
    shop.approve("pending_one", status="PENDING")
    cases = [
        ({"template": shop.template(name="pending_one")}, "template.status"),
        ({"template": shop.template(name="nope")}, "template.name"),
        ({"template": shop.template("only one")}, None),
        ({"template": None, "body": "Hello"}, "template"),
        ({"template": shop.template("{{nickname}}", "x")}, "template"),
    ]
    for fields, field in cases:
        resp = shop.ws.call(
            "POST",
            "/api/campaigns",
            json={
                "name": "x",
                "channel": "whatsapp",
                "integration_account_id": str(shop.wa["id"]),
                "template": shop.template(),
            }
            | fields,
        )
        assert resp.status_code == 422, (fields, resp.text)
        if field:
            assert field in [d.get("field") for d in resp.json["error"]["details"]], resp.text
    resp = shop.ws.call("GET", "/api/campaigns")
    assert resp.json["items"] == []

    created = shop.create()
    assert created["status"] == "draft"
    assert created["counts"]["total"] == 0
    assert created["template"]["name"] == "order_update"


def test_crud_of_a_draft_and_another_tenants_ids(shop: Shop, other):
    campaign = shop.create()
    resp = shop.ws.call("PATCH", f"/api/campaigns/{campaign['id']}", json={"name": "Summer"})
    assert resp.status_code == 200 and resp.json["name"] == "Summer"
    resp = shop.ws.call("PATCH", f"/api/campaigns/{campaign['id']}", json={"name": None})
    assert resp.status_code == 422
    listed = shop.ws.call("GET", "/api/campaigns?status=draft").json["items"]
    assert [c["id"] for c in listed] == [campaign["id"]]

    for method, path in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("GET", "/recipients"),
        ("POST", "/send"),
        ("POST", "/cancel"),
    ]:
        resp = other.call(
            method,
            f"/api/campaigns/{campaign['id']}{path}",
            json={} if method in ("PATCH", "POST") else None,
        )
        assert resp.status_code == 404, (method, path, resp.text)
    assert other.call("GET", "/api/campaigns").json["items"] == []

    _, agent_token = shop.ws.create_agent("agent")
    assert shop.ws.call("GET", "/api/campaigns", token=agent_token).status_code == 403

    assert shop.ws.call("DELETE", f"/api/campaigns/{campaign['id']}").status_code == 204
    assert shop.ws.call("GET", f"/api/campaigns/{campaign['id']}").status_code == 404


def test_recipients_by_ids_and_filter_deduplicated_never_another_tenants(shop: Shop, other):
    campaign = shop.create()
    first = shop.contacts(3)
    assert shop.add(campaign, first + first[:1]) == {"added": 3, "total": 3}
    assert shop.add(campaign, first[:2]) == {"added": 0, "total": 3}

    foreign = Shop(other).contacts(1)
    email_contact = shop.contacts(1, channel="email")
    for bad in (foreign, email_contact, [uuid.uuid4()]):
        resp = shop.ws.call(
            "POST",
            f"/api/campaigns/{campaign['id']}/recipients",
            json={"contact_ids": [str(i) for i in shop.contacts(1) + bad]},
        )
        assert resp.status_code == 422, resp.text
        assert str(bad[0]) in resp.json["error"]["details"][0]["message"]
    assert shop.get(campaign)["counts"]["total"] == 3  # none of those requests added any

    now = dt.datetime.now(dt.UTC)
    vip = shop.contacts(2, tags=["vip"], custom_attributes={"plan": "gold"}, last_inbound_at=now)
    shop.contacts(1, tags=["vip"], custom_attributes={"plan": "free"}, last_inbound_at=now)
    shop.contacts(1, tags=["vip"], custom_attributes={"plan": "gold"})  # never wrote in
    Shop(other).contacts(2, tags=["vip"], custom_attributes={"plan": "gold"}, last_inbound_at=now)
    resp = shop.ws.call(
        "POST",
        f"/api/campaigns/{campaign['id']}/recipients",
        json={
            "filter": {
                "tags": ["vip"],
                "channel": "whatsapp",
                "custom_attributes": {"plan": "gold"},
                "last_inbound_after": (now - dt.timedelta(days=1)).isoformat(),
            }
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.json == {"added": 2, "total": 5}
    listed = shop.ws.call("GET", f"/api/campaigns/{campaign['id']}/recipients?limit=3").json
    page2 = shop.ws.call(
        "GET", f"/api/campaigns/{campaign['id']}/recipients?cursor={listed['next_cursor']}"
    ).json
    ids = [r["contact_id"] for r in listed["items"] + page2["items"]]
    assert ids[:3] == [str(i) for i in first] and set(ids[3:]) == {str(i) for i in vip}
    # A cursor that is not one of this list's is the client's mistake, as on every list.
    # 2**63: one past the largest id (bigint), which reached the database before.
    for bad in ("abc", "\u00b2", "1" * 20, "9223372036854775808"):
        resp = shop.ws.call(
            "GET", f"/api/campaigns/{campaign['id']}/recipients", params={"cursor": bad}
        )
        assert resp.status_code == 400, resp.text
        assert resp.json["error"]["details"][0]["field"] == "cursor"

    bad_filter = shop.ws.call(
        "POST",
        f"/api/campaigns/{campaign['id']}/recipients",
        json={"filter": {"channel": "email"}},
    )
    assert bad_filter.status_code == 422
    both = shop.ws.call(
        "POST",
        f"/api/campaigns/{campaign['id']}/recipients",
        json={"contact_ids": [str(first[0])], "filter": {"tags": ["vip"]}},
    )
    assert both.status_code == 422
    # An empty list inserted a row of NULLs: the database refused it (a 422 naming nothing).
    for empty in ({"contact_ids": []}, {"recipients": []}):
        resp = shop.ws.call("POST", f"/api/campaigns/{campaign['id']}/recipients", json=empty)
        assert resp.status_code == 422, resp.text
        assert resp.json["error"]["details"][0]["field"] == next(iter(empty))

    assert shop.ws.call("DELETE", f"/api/campaigns/{campaign['id']}/recipients").status_code == 204
    assert shop.get(campaign)["counts"]["total"] == 0


def test_sending_needs_recipients_and_a_future_time_then_nothing_can_be_edited(shop: Shop, batches):
    campaign = shop.create()
    assert shop.send(campaign, status=422)["error"]["details"][0]["field"] == "recipients"
    shop.add(campaign, shop.contacts(2))
    past = shop.send(campaign, status=422, scheduled_at="2020-01-01T09:00:00")
    assert past["error"]["details"][0]["field"] == "scheduled_at"
    assert shop.get(campaign)["status"] == "draft"

    day = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).date()
    at = f"{day.isoformat()}T09:00:00"
    scheduled = shop.send(campaign, scheduled_at=at, timezone="Asia/Jakarta")
    assert scheduled["status"] == "scheduled"
    assert scheduled["scheduled_at"].startswith(f"{day.isoformat()}T02:00:00")  # 09:00 at UTC+7
    base = f"/api/campaigns/{campaign['id']}"
    for method, path, body in [
        ("PATCH", "", {"name": "late"}),
        ("DELETE", "", None),
        ("POST", "/recipients", {"contact_ids": [str(shop.contacts(1)[0])]}),
        ("DELETE", "/recipients", None),
        ("POST", "/send", {}),
    ]:
        resp = shop.ws.call(method, base + path, json=body)
        assert resp.status_code == 409, (method, path, resp.text)
        assert resp.json["error"]["code"] == "campaign_not_draft"
    assert shop.get(campaign)["counts"]["total"] == 2
    assert batches.items == []  # scheduled: nothing queued before its time


def test_a_template_that_lost_its_approval_is_refused_at_send(shop: Shop):
    campaign = shop.create()
    shop.add(campaign, shop.contacts(1))
    from sqlalchemy import update

    from shared.db import session_scope
    from shared.models import WaTemplate

    with session_scope() as session:
        session.execute(
            update(WaTemplate)
            .where(WaTemplate.integration_account_id == shop.wa["id"])
            .values(status="PAUSED")
        )
    refused = shop.send(campaign, status=422)
    assert refused["error"]["details"][0]["field"] == "template.status"
    assert shop.get(campaign)["status"] == "draft"


def test_a_contact_opts_out_and_back_in_through_the_contacts_api(shop: Shop):
    [contact] = shop.contacts(1)
    out = shop.ws.call("PATCH", f"/api/contacts/{contact}", json={"opted_out": True})
    assert out.status_code == 200 and out.json["opted_out_at"], out.text
    again = shop.ws.call("PATCH", f"/api/contacts/{contact}", json={"opted_out": True})
    assert again.json["opted_out_at"] == out.json["opted_out_at"]  # stamped once
    back = shop.ws.call("PATCH", f"/api/contacts/{contact}", json={"opted_out": False})
    assert back.status_code == 200 and back.json["opted_out_at"] is None
    assert (
        shop.ws.call("PATCH", f"/api/contacts/{contact}", json={"opted_out": None}).status_code
        == 422
    )


def test_template_parameters_that_are_not_objects_are_refused_before_anything_is_sent(
    shop: Shop,
):
    """Meta takes each parameter as an object with its ``type`` (``{"type": "text", "text":
    ...}``) and refuses every message given bare values: the campaign is refused now, not
    each of its recipients' messages later."""
    bare = {
        "name": "order_update",
        "language": "en_US",
        "components": [{"type": "body", "parameters": ["{{name}}", "{{var.order}}"]}],
    }
    untyped = bare | {
        "components": [{"type": "body", "parameters": [{"text": "{{name}}"}, {"type": 1}]}]
    }
    for template in (bare, untyped):
        resp = shop.ws.call(
            "POST",
            "/api/campaigns",
            json={"name": "x", "channel": "whatsapp", "template": template},
        )
        assert resp.status_code == 422, resp.text
        assert "template.body" in [d["field"] for d in resp.json["error"]["details"]], resp.text
    assert shop.ws.call("GET", "/api/campaigns").json["items"] == []


def test_a_filters_time_without_an_offset_is_the_tenants_wall_clock_time(shop: Shop):
    """As ``scheduled_at``: a naive time is read in the workspace's timezone, not in the
    database server's (a Jakarta shop choosing "wrote after 09:00" means 09:00 in Jakarta)."""
    resp = shop.ws.call("PUT", "/api/working-hours/timezone", json={"timezone": "Asia/Jakarta"})
    assert resp.status_code == 200, resp.text
    ten_in_jakarta = dt.datetime(2026, 1, 1, 3, 0, tzinfo=dt.UTC)  # 10:00 at UTC+7
    (wrote_at_ten,) = shop.contacts(1, last_inbound_at=ten_in_jakarta)
    campaign = shop.create()
    resp = shop.ws.call(
        "POST",
        f"/api/campaigns/{campaign['id']}/recipients",
        json={"filter": {"last_inbound_after": "2026-01-01T09:00:00"}},
    )
    assert resp.status_code == 200, resp.text
    assert [r.contact_id for r in shop.recipients(campaign)] == [wrote_at_ten]
    resp = shop.ws.call(
        "POST",
        f"/api/campaigns/{campaign['id']}/recipients",
        json={"filter": {"last_inbound_before": "2026-01-01T09:59:00"}},
    )
    assert resp.status_code == 200 and resp.json["added"] == 0, resp.text


def test_a_repeated_send_with_its_idempotency_key_returns_the_first_answer(shop: Shop, batches):
    """API.md: POSTs that send messages accept Idempotency-Key; a client retrying a send
    whose answer it lost (a timeout) gets the first answer, not a 409 it cannot tell from
    another caller having sent the campaign."""
    campaign = shop.create()
    shop.add(campaign, shop.contacts(2))
    path = f"/api/campaigns/{campaign['id']}/send"
    key = {"Idempotency-Key": "send-spring-sale"}
    first = shop.ws.call("POST", path, json={}, headers=key)
    assert first.status_code == 200, first.text
    assert first.json["status"] == "running"
    again = shop.ws.call("POST", path, json={}, headers=key)
    assert again.status_code == 200, again.text
    assert again.json == first.json
    assert len(batches.items) == 1  # queued once
    assert len(shop.event_data("campaign.started")) == 1

    other = shop.create()
    shop.add(other, shop.contacts(1))
    reused = shop.ws.call("POST", f"/api/campaigns/{other['id']}/send", json={}, headers=key)
    assert reused.status_code == 422, reused.text
    assert reused.json["error"]["details"][0]["field"] == "Idempotency-Key"
    unkeyed = shop.ws.call("POST", path, json={})
    assert unkeyed.status_code == 409 and unkeyed.json["error"]["code"] == "campaign_not_draft"


def test_unknown_ids_in_recipients_are_named_by_the_field_the_client_sent(shop: Shop, other):
    """A 422 names the field of the body: ``recipients``, not a ``contact_ids`` never sent."""
    campaign = shop.create()
    foreign = Shop(other).contacts(1)[0]
    resp = shop.ws.call(
        "POST",
        f"/api/campaigns/{campaign['id']}/recipients",
        json={"recipients": [{"contact_id": str(foreign), "variables": {"order": "1"}}]},
    )
    assert resp.status_code == 422, resp.text
    assert {d["field"] for d in resp.json["error"]["details"]} == {"recipients"}
    assert shop.get(campaign)["counts"]["total"] == 0


def test_a_timezone_without_a_time_is_refused_rather_than_sending_now(shop: Shop, batches):
    """``timezone`` only says how to read ``scheduled_at``: given alone (the time left out,
    or a zone misspelt) the client meant a schedule, and a send now cannot be taken back."""
    campaign = shop.create()
    shop.add(campaign, shop.contacts(2))
    for zone in ("Asia/Jakarta", "Mars/Phobos"):
        refused = shop.send(campaign, status=422, timezone=zone)
        assert refused["error"]["details"][0]["field"] == "timezone", refused
    assert shop.get(campaign)["status"] == "draft"
    assert batches.items == [] and shop.event_data("campaign.started") == []


def test_a_send_with_no_account_of_its_channel_is_refused_and_stays_a_draft(shop: Shop, batches):
    """A draft may be written before its channel is connected, but not sent: started, it
    failed at its first batch (``no_account``) with its whole audience, and a failed
    campaign can never be sent again (as WhatsApp's send already answered 422)."""
    campaign = shop.create(
        channel="messenger", integration_account_id=None, template=None, body="Hi"
    )
    shop.add(campaign, shop.contacts(2, channel="messenger"))
    refused = shop.send(campaign, status=422)
    assert refused["error"]["details"][0]["field"] == "integration_account_id", refused
    view = shop.get(campaign)
    assert (view["status"], view["counts"]["pending"]) == ("draft", 2)
    assert batches.items == [] and shop.event_data("campaign.started") == []
