"""The delivery engine end to end: a real worker, a real receiver, time moved instead of slept."""

from __future__ import annotations

import datetime as dt
import socket
import uuid

import pytest
from sqlalchemy import update

from shared.db import session_scope
from shared.models import OutboxEvent, WebhookDelivery, WebhookEndpoint
from shared.webhooks import schedule, signing, sweeper
from tests.waiting import wait_until
from tests.webhooks.conftest import deliveries, move_time, outbox, settled
from tests.webhooks.test_api import BASE, create

#: Also run on RabbitMQ by `make test`'s second pass (BROKER_URL=amqp://...).
pytestmark = pytest.mark.broker


def new_agent(ws) -> dict:
    body = {"email": f"a-{uuid.uuid4().hex[:8]}@example.com", "full_name": "Hook", "role": "agent"}
    resp = ws.call("POST", "/api/agents", json=body)
    assert resp.status_code == 201
    return resp.json


def test_an_event_is_delivered_signed_once_per_subscribed_endpoint(ws, receiver, path):
    hook = create(ws, receiver.url(path))
    create(ws, receiver.url(path + "-roles"), event_types=["role.created"])
    create(ws, receiver.url(path + "-off"), is_active=False)
    agent = new_agent(ws)
    [got] = wait_until(lambda: receiver.at(path), "the delivery")
    event = outbox(ws.tenant["id"], "agent.created")[-1]
    assert got.headers["webhook-id"] == str(event.id)
    assert signing.verify(hook["secret"], got.headers, got.body)
    body = got.json
    assert body["type"] == "agent.created" and body["data"]["id"] == agent["id"]
    assert body["timestamp"].endswith("Z") and body["tenant_id"] == ws.tenant["id"]
    # API.md's envelope names the time occurred_at; Standard Webhooks, timestamp: both.
    assert body["occurred_at"] == body["timestamp"]
    assert set(body) == {"id", "type", "tenant_id", "occurred_at", "timestamp", "actor", "data"}
    [delivery] = settled(hook["id"])
    assert delivery.status == "succeeded" and delivery.attempt_count == 1
    assert receiver.at(path + "-roles") == [] and receiver.at(path + "-off") == []
    listed = ws.call("GET", f"{BASE}/{hook['id']}/deliveries").json["items"]
    [attempt] = listed[0]["attempts"]
    assert attempt["response_status"] == 200 and attempt["error_kind"] is None
    assert attempt["request_headers"]["webhook-id"] == str(event.id)
    assert attempt["response_body"] == '{"ok":true}'
    with session_scope() as session:
        endpoint = session.get(WebhookEndpoint, uuid.UUID(hook["id"]))
        assert endpoint.last_success_at is not None


def test_a_2xx_whose_body_holds_a_nul_is_recorded_as_succeeded(ws, receiver, path):
    # PostgreSQL cannot store a NUL: recording the attempt must not fail, or the delivery
    # stays claimed and is sent again each time the sweeper takes it back.
    hook = create(ws, receiver.url(path))
    receiver.plan(path, ("status", 200, {"Content-Type": "text/plain"}, b"ok\x00"))
    new_agent(ws)
    [delivery] = settled(hook["id"])
    assert (delivery.status, delivery.attempt_count) == ("succeeded", 1)
    assert len(receiver.at(path)) == 1
    listed = ws.call("GET", f"{BASE}/{hook['id']}/deliveries").json["items"]
    [attempt] = listed[0]["attempts"]
    assert attempt["response_body"] == "ok\ufffd"


def test_a_500_is_retried_on_schedule_with_the_same_webhook_id(ws, receiver, path):
    hook = create(ws, receiver.url(path))
    receiver.plan(path, 500, 500, 200)
    new_agent(ws)
    # Attempt 1 fails; attempt 2 is due "immediately" after it... per the schedule, 5 s.
    [first] = settled(hook["id"])
    assert first.status == "pending" and first.attempt_count == 1
    wait = (first.next_attempt_at - first.last_attempt_at).total_seconds()
    assert 3.9 <= wait <= 6.1
    assert move_time(hook["id"]) == 1
    wait_until(lambda: len(receiver.at(path)) == 2, "attempt 2")
    [second] = wait_until(
        lambda: [
            d for d in deliveries(hook["id"]) if d.attempt_count == 2 and d.status == "pending"
        ],
        "attempt 2 recorded",
    )
    assert 240 <= (second.next_attempt_at - second.last_attempt_at).total_seconds() <= 360
    move_time(hook["id"])
    wait_until(lambda: deliveries(hook["id"])[0].status == "succeeded", "attempt 3 succeeds")
    ids = {r.headers["webhook-id"] for r in receiver.at(path)}
    assert len(receiver.at(path)) == 3 and len(ids) == 1
    listed = ws.call("GET", f"{BASE}/{hook['id']}/deliveries").json["items"][0]
    assert [a["response_status"] for a in listed["attempts"]] == [500, 500, 200]
    with session_scope() as session:
        assert session.get(WebhookEndpoint, uuid.UUID(hook["id"])).first_failure_at is None


def test_redirects_timeouts_refusals_and_cut_responses_are_failures(ws, receiver, path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    cases = {
        "redirect": (create(ws, receiver.url(path + "-r")), path + "-r", ("redirect",)),
        "timeout": (
            create(ws, receiver.url(path + "-t"), timeout_seconds=0.3),
            path + "-t",
            ("sleep", 1.0),
        ),
        "cut": (create(ws, receiver.url(path + "-c")), path + "-c", ("close",)),
        "refused": (create(ws, f"http://127.0.0.1:{dead_port}/x"), None, None),
    }
    for _, hook_path, behaviour in cases.values():
        if hook_path:
            receiver.plan(hook_path, behaviour)
    new_agent(ws)
    expected = {"redirect": "redirect", "timeout": "timeout", "cut": "connection"}
    expected["refused"] = "connection"
    for name, (hook, _, _) in cases.items():
        [d] = settled(hook["id"])
        assert d.status == "pending" and d.last_error_kind == expected[name], name
        wait = (d.next_attempt_at - d.last_attempt_at).total_seconds()
        assert wait >= (60 if name == "timeout" else 3.9), (name, wait)
    assert receiver.at("/elsewhere") == []  # the redirect was not followed


def test_429_honours_retry_after_and_410_disables_the_endpoint(ws, receiver, path):
    slow = create(ws, receiver.url(path + "-429"))
    gone = create(ws, receiver.url(path + "-410"))
    receiver.plan(path + "-429", ("status", 429, {"Retry-After": "120"}))
    receiver.plan(path + "-410", 410)
    new_agent(ws)
    [throttled] = settled(slow["id"])
    assert 119 <= (throttled.next_attempt_at - throttled.last_attempt_at).total_seconds() <= 150
    [ended] = settled(gone["id"])
    assert ended.status == "disabled"
    endpoint = ws.call("GET", f"{BASE}/{gone['id']}").json
    assert endpoint["is_active"] is False and "410" in endpoint["disabled_reason"]
    wait_until(lambda: outbox(ws.tenant["id"], "webhook.endpoint_disabled"), "disabled event")
    # New events are no longer delivered to it.
    new_agent(ws)
    wait_until(lambda: len(deliveries(slow["id"])) == 2, "second delivery to the other")
    assert len(deliveries(gone["id"])) == 1


def test_after_the_schedule_the_delivery_fails_and_says_so(ws, receiver, path):
    hook = create(ws, receiver.url(path))
    watcher = create(ws, receiver.url(path + "-ops"), event_types=["webhook.delivery_exhausted"])
    receiver.plan(path, 500)
    new_agent(ws)
    settled(hook["id"])
    with session_scope() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == uuid.UUID(hook["id"]))
            .values(attempt_count=7)
        )
    move_time(hook["id"])
    [failed] = wait_until(
        lambda: [d for d in deliveries(hook["id"]) if d.status == "failed"], "failed for good"
    )
    assert failed.attempt_count == 8 and failed.finished_at is not None
    [event] = wait_until(
        lambda: outbox(ws.tenant["id"], "webhook.delivery_exhausted"), "exhausted event"
    )
    assert event.data["delivery_id"] == str(failed.id)
    [told] = wait_until(lambda: receiver.at(path + "-ops"), "the watcher told")
    assert told.json["data"]["endpoint_id"] == hook["id"]
    assert deliveries(watcher["id"])[0].status in ("succeeded", "in_flight")
    assert ws.call("GET", f"{BASE}/{hook['id']}/deliveries", params={"status": "failed"}).json[
        "items"
    ][0]["id"] == str(failed.id)


def test_resend_and_recover(ws, receiver, path):
    hook = create(ws, receiver.url(path))
    receiver.plan(path, 500)
    new_agent(ws)
    new_agent(ws)
    rows = settled(hook["id"], 2)
    with session_scope() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == uuid.UUID(hook["id"]))
            .values(status="failed", finished_at=dt.datetime.now(dt.UTC))
        )
    receiver.plan(path, 200)
    resent = ws.call("POST", f"{BASE}/{hook['id']}/deliveries/{rows[0].id}/resend")
    assert resent.status_code == 202, resent.text
    [resent_id] = resent.json["delivery_ids"]
    wait_until(
        lambda: any(
            str(d.id) == resent_id and d.status == "succeeded" for d in deliveries(hook["id"])
        ),
        "the resend delivered",
    )
    assert receiver.at(path)[-1].headers["webhook-id"] == str(rows[0].event_id)

    window = _recover_window()
    recovered = ws.call("POST", f"{BASE}/{hook['id']}/recover", json=window)
    assert recovered.status_code == 202, recovered.text
    # The one already resent is not sent again.
    [recovered_id] = recovered.json["delivery_ids"]
    wait_until(
        lambda: any(
            str(d.id) == recovered_id and d.status == "succeeded" for d in deliveries(hook["id"])
        ),
        "the recovered delivery",
    )
    again = ws.call("POST", f"{BASE}/{hook['id']}/recover", json=window).json
    assert again["delivery_ids"] == []
    unknown = ws.call("POST", f"{BASE}/{hook['id']}/deliveries/{uuid.uuid4()}/resend")
    assert unknown.status_code == 404


def _recover_window() -> dict[str, str]:
    """The last hour, and a minute ahead: every delivery these tests made."""
    now = dt.datetime.now(dt.UTC)
    return {
        "since": (now - dt.timedelta(hours=1)).isoformat(),
        "until": (now + dt.timedelta(minutes=1)).isoformat(),
    }


def _fail_all(hook_id: str) -> None:
    with session_scope() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == uuid.UUID(hook_id))
            .values(status="failed", finished_at=dt.datetime.now(dt.UTC))
        )


def _failed_delivery(ws, hook_id: str) -> uuid.UUID:
    with session_scope() as session:
        row = WebhookDelivery(
            tenant_id=uuid.UUID(ws.tenant["id"]),
            endpoint_id=uuid.UUID(hook_id),
            event_id=uuid.uuid4(),
            event_type="agent.created",
            payload={"type": "agent.created", "data": {}},
            status="failed",
            attempt_count=8,
            finished_at=dt.datetime.now(dt.UTC),
        )
        session.add(row)
        session.flush()
        return row.id


def test_a_repeated_resend_is_refused_while_the_first_is_unfinished(ws, receiver, path):
    """A client retrying a resend (its first call timed out) must not queue a second copy."""
    hook = create(ws, receiver.url(path))
    receiver.plan(path, 500)  # the resend fails its first attempt: it waits to retry
    original = _failed_delivery(ws, hook["id"])
    resend = f"{BASE}/{hook['id']}/deliveries/{original}/resend"
    first = ws.call("POST", resend)
    assert first.status_code == 202, first.text
    [first_id] = first.json["delivery_ids"]

    again = ws.call("POST", resend)
    assert again.status_code == 409, again.text
    error = again.json["error"]
    assert error["code"] == "resend_pending" and first_id in error["message"]
    assert error["details"] == [{"delivery_id": first_id, "status": error["details"][0]["status"]}]
    assert error["details"][0]["status"] in ("pending", "in_flight")
    # Resending the resend is the same event again: refused too.
    via_copy = ws.call("POST", f"{BASE}/{hook['id']}/deliveries/{first_id}/resend")
    assert via_copy.status_code == 409, via_copy.text
    assert [str(d.id) for d in deliveries(hook["id"]) if d.resend_of] == [first_id]

    # Once the resend is over, the event may be sent again (the receiver lost it, say).
    settled(hook["id"], 2)
    _fail_all(hook["id"])
    receiver.plan(path, 200)
    later = ws.call("POST", resend)
    assert later.status_code == 202, later.text


def test_resends_at_once_queue_one_copy(ws, receiver, path):
    """A double click: both requests arrive together, one resend is queued."""
    from concurrent.futures import ThreadPoolExecutor

    hook = create(ws, receiver.url(path))
    receiver.plan(path, 500)
    original = _failed_delivery(ws, hook["id"])
    resend = f"{BASE}/{hook['id']}/deliveries/{original}/resend"
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: ws.call("POST", resend), range(4)))
    assert sorted(a.status_code for a in answers) == [202, 409, 409, 409], [a.text for a in answers]
    assert len([d for d in deliveries(hook["id"]) if d.resend_of]) == 1


def test_a_test_ping_is_not_resent(ws, receiver, path):
    """webhook.test is no business event: resending it would reach the receiver as one."""
    hook = create(ws, receiver.url(path))
    ping = ws.call("POST", f"{BASE}/{hook['id']}/test")
    assert ping.status_code == 200, ping.text
    resent = ws.call("POST", f"{BASE}/{hook['id']}/deliveries/{ping.json['delivery_id']}/resend")
    assert resent.status_code == 422, resent.text
    error = resent.json["error"]
    assert error["code"] == "validation_error" and "webhook.test" in error["message"]
    assert error["details"][0]["field"] == "delivery_id"
    assert len(deliveries(hook["id"])) == 1 and len(receiver.at(path)) == 1


def test_recover_sends_an_event_once_when_its_resend_failed_too(ws, receiver, path):
    hook = create(ws, receiver.url(path))
    receiver.plan(path, 500)
    new_agent(ws)
    [original] = settled(hook["id"], 1)
    _fail_all(hook["id"])
    resent = ws.call("POST", f"{BASE}/{hook['id']}/deliveries/{original.id}/resend")
    assert resent.status_code == 202, resent.text
    [resent_id] = resent.json["delivery_ids"]
    wait_until(
        lambda: any(str(d.id) == resent_id and d.attempt_count > 0 for d in deliveries(hook["id"])),
        "the resend attempted",
    )
    settled(hook["id"], 2)
    _fail_all(hook["id"])  # the resend failed too

    receiver.plan(path, 200)
    window = _recover_window()
    recovered = ws.call("POST", f"{BASE}/{hook['id']}/recover", json=window)
    assert recovered.status_code == 202, recovered.text
    # Two failed copies of one event: it is sent once, from the newest copy.
    [recovered_id] = recovered.json["delivery_ids"]
    [row] = [d for d in deliveries(hook["id"]) if str(d.id) == recovered_id]
    assert row.event_id == original.event_id and str(row.resend_of) == resent_id
    again = ws.call("POST", f"{BASE}/{hook['id']}/recover", json=window)
    assert again.json["delivery_ids"] == []


def test_a_worker_lost_mid_attempt_is_taken_back_and_redelivered(ws, receiver, path):
    """What a SIGKILL leaves behind: a claim that expires; the sweeper re-drives it."""
    hook = create(ws, receiver.url(path))
    with session_scope() as session:
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(hook["id"]))
            .values(enabled=False)
        )
    new_agent(ws)
    wait_until(lambda: outbox(ws.tenant["id"], "agent.created")[-1].status == "processed", "fan")
    # Disabled endpoints get no delivery; put a claimed-then-abandoned one in place by hand.
    with session_scope() as session:
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(hook["id"]))
            .values(enabled=True)
        )
        event = session.get(OutboxEvent, outbox(ws.tenant["id"], "agent.created")[-1].id)
        session.add(
            WebhookDelivery(
                tenant_id=event.tenant_id,
                endpoint_id=uuid.UUID(hook["id"]),
                event_id=event.id,
                event_type=event.type,
                payload={"type": event.type, "timestamp": "x", "data": event.data},
                status="in_flight",
                attempt_count=1,
                locked_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
                last_attempt_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60),
            )
        )
    with session_scope() as session:
        sweeper.sweep(session)
    [waiting] = deliveries(hook["id"])
    # The lost attempt counts like a failed one: the schedule's next delay applies.
    assert waiting.status == "pending" and waiting.last_error_kind == "worker_lost"
    assert move_time(hook["id"]) >= 1
    [d] = wait_until(
        lambda: [d for d in deliveries(hook["id"]) if d.status == "succeeded"], "redelivered"
    )
    assert d.attempt_count == 2
    kinds = [
        a["error_kind"]
        for a in ws.call("GET", f"{BASE}/{hook['id']}/deliveries").json["items"][0]["attempts"]
    ]
    assert kinds == ["worker_lost", None]


def test_endpoints_failing_for_five_days_are_disabled_and_can_be_re_enabled(ws, receiver):
    hook = create(ws, receiver.url())
    healthy = create(ws, receiver.url())
    with session_scope() as session:
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(hook["id"]))
            .values(first_failure_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=5, minutes=1))
        )
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(healthy["id"]))
            .values(first_failure_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=4))
        )
    with session_scope() as session:
        assert sweeper.disable_failing(session) >= 1
    view = ws.call("GET", f"{BASE}/{hook['id']}").json
    assert view["is_active"] is False and "5 days" in view["disabled_reason"]
    assert ws.call("GET", f"{BASE}/{healthy['id']}").json["is_active"] is True
    again = ws.call("PATCH", f"{BASE}/{hook['id']}", json={"is_active": True}).json
    assert again["is_active"] is True and again["first_failure_at"] is None


def test_an_endpoint_that_succeeds_while_the_sweep_runs_is_not_disabled(ws, receiver, monkeypatch):
    """The sweep lists the failing endpoints, then disables each under its lock: a delivery
    that succeeded in between (its streak ended) still had its endpoint disabled, and the
    deliveries waiting on it ended for good."""
    hook = create(ws, receiver.url())
    with session_scope() as session:
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(hook["id"]))
            .values(first_failure_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=5, minutes=1))
        )
    listed = sweeper._failing

    def succeeded_meanwhile(session, hours):
        found = listed(session, hours)
        with session_scope() as other:  # a delivery's success, committed after the list
            other.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == uuid.UUID(hook["id"]))
                .values(first_failure_at=None, last_success_at=dt.datetime.now(dt.UTC))
            )
        return found

    monkeypatch.setattr(sweeper, "_failing", succeeded_meanwhile)
    with session_scope() as session:
        sweeper.disable_failing(session)

    view = ws.call("GET", f"{BASE}/{hook['id']}").json
    assert view["is_active"] is True and view["disabled_reason"] is None


def test_addresses_are_vetted_again_at_send_time(ws, receiver, path):
    """A URL whose host now points somewhere internal (DNS rebinding) is never connected to."""
    hook = create(ws, receiver.url(path))
    with session_scope() as session:
        # As if the name had been re-pointed: 127.0.0.2 is loopback, not allowlisted.
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(hook["id"]))
            .values(url=f"http://127.0.0.2:{receiver.port}{path}")
        )
    new_agent(ws)
    [d] = settled(hook["id"])
    assert d.status == "pending" and d.last_error_kind == "blocked"
    assert receiver.at(path) == []
    [attempt] = ws.call("GET", f"{BASE}/{hook['id']}/deliveries").json["items"][0]["attempts"]
    assert attempt["response_status"] is None and "127.0.0.2" in attempt["error"]


def test_a_delivery_that_loses_its_worker_on_every_attempt_ends_failed(ws, receiver, path):
    """A poison delivery (it kills its worker each time) runs out of schedule, announced."""
    hook = create(ws, receiver.url(path))
    event_id = uuid.uuid4()
    with session_scope() as session:
        session.add(
            WebhookDelivery(
                tenant_id=uuid.UUID(ws.tenant["id"]),
                endpoint_id=uuid.UUID(hook["id"]),
                event_id=event_id,
                event_type="agent.created",
                payload={"type": "agent.created", "timestamp": "x", "data": {}},
                status="in_flight",
                attempt_count=schedule.MAX_ATTEMPTS,
                locked_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
                last_attempt_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60),
            )
        )
    with session_scope() as session:
        sweeper.sweep(session)
    [failed] = deliveries(hook["id"])
    assert failed.status == "failed" and failed.finished_at is not None
    assert failed.last_error_kind == "worker_lost"
    exhausted = outbox(ws.tenant["id"], "webhook.delivery_exhausted")
    assert [e.data["event_id"] for e in exhausted] == [str(event_id)]
    assert receiver.at(path) == []


@pytest.fixture
def loopback_two():
    """A receiver on 127.0.0.2: loopback, reachable, and not allowlisted for this run."""
    import threading

    from tests.peers.http_server import PeerServer
    from tests.webhooks.conftest import Receiver, _handler

    state = Receiver()
    server = PeerServer(("127.0.0.2", 0), _handler(state))
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


def test_an_ip_address_written_in_unicode_digits_is_vetted(ws, receiver, path, loopback_two):
    """127.0.0.2 in fullwidth digits is an IP address to the HTTP client, not a name."""
    host = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in "127.0.0.2")
    disguised = f"http://{host}:{loopback_two.port}{path}"
    refused = ws.call("POST", BASE, json={"url": disguised, "event_types": ["agent.created"]})
    assert refused.status_code == 422, refused.text
    hook = create(ws, receiver.url(path))
    with session_scope() as session:
        # As if saved before the save-time check knew the form.
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(hook["id"]))
            .values(url=disguised)
        )
    new_agent(ws)
    [d] = settled(hook["id"])
    assert loopback_two.at(path) == []
    assert d.status == "pending" and d.last_error_kind == "blocked"


#: A Retry-After date whose offset no datetime can hold: parsing it raised OverflowError.
HUGE_OFFSET_DATE = "Mon, 01 Jan 2024 00:00:00 +99999999999999999999"


def test_a_retry_after_no_datetime_can_hold_is_ignored(ws, receiver, path):
    """A receiver's odd header is a failed attempt like another, never a crashed one."""
    odd = create(ws, receiver.url(path))
    receiver.plan(path, ("status", 503, {"Retry-After": HUGE_OFFSET_DATE}))
    new_agent(ws)
    [d] = settled(odd["id"])
    assert d.status == "pending" and d.last_status_code == 503
    assert 3.9 <= (d.next_attempt_at - d.last_attempt_at).total_seconds() <= 7

    tested = ws.call("POST", f"{BASE}/{odd['id']}/test")
    assert tested.status_code == 200, tested.text
    assert tested.json["status"] == "failed"
    assert tested.json["attempt"]["response_status"] == 503


def test_a_2xx_with_a_header_that_is_not_utf8_is_recorded_as_succeeded(ws, receiver, path):
    # A Latin-1 header byte reaches us as a lone surrogate, which PostgreSQL cannot store:
    # recording the 2xx must not fail, or the delivery is sent again and again.
    hook = create(ws, receiver.url(path))
    receiver.plan(path, ("status", 200, {"X-Note": "caf\xe9"}))
    new_agent(ws)
    [d] = settled(hook["id"])
    assert d.status == "succeeded" and d.attempt_count == 1
    [attempt] = ws.call("GET", f"{BASE}/{hook['id']}/deliveries").json["items"][0]["attempts"]
    assert attempt["response_headers"]["x-note"] == "caf\ufffd"


def test_a_suspended_tenants_endpoints_are_not_disabled_for_failing(ws, receiver, client):
    """A suspension holds the deliveries: no success is possible, so the clock must not run."""
    from tests.admin.conftest import create_super_admin, login

    hook = create(ws, receiver.url())
    with session_scope() as session:
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(hook["id"]))
            .values(first_failure_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=5, minutes=1))
        )
    root = login(client, create_super_admin())
    tenant = f"/api/admin/tenants/{ws.tenant['id']}"
    assert root.call("DELETE", tenant).status_code == 204
    with session_scope() as session:
        sweeper.disable_failing(session)
    back = root.call("PATCH", tenant, json={"status": "active"})
    assert back.status_code == 200, back.text
    view = ws.call("GET", f"{BASE}/{hook['id']}").json
    assert view["is_active"] is True and view["disabled_reason"] is None


def test_recovers_at_once_send_each_event_once(ws, receiver, path):
    """Recover clicked twice: the second call must see the first one's resends."""
    from concurrent.futures import ThreadPoolExecutor

    hook = create(ws, receiver.url(path))
    with session_scope() as session:
        session.add_all(
            WebhookDelivery(
                tenant_id=uuid.UUID(ws.tenant["id"]),
                endpoint_id=uuid.UUID(hook["id"]),
                event_id=uuid.uuid4(),
                event_type="agent.created",
                payload={"type": "agent.created", "data": {}},
                status="failed",
                attempt_count=8,
                finished_at=dt.datetime.now(dt.UTC),
            )
            for _ in range(300)
        )
    window = _recover_window()
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(
            pool.map(
                lambda _: ws.call("POST", f"{BASE}/{hook['id']}/recover", json=window), range(4)
            )
        )
    assert [a.status_code for a in answers] == [202] * 4
    assert sum(len(a.json["delivery_ids"]) for a in answers) == 300
