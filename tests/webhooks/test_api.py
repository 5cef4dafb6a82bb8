"""Outgoing webhooks through HTTP: CRUD, secrets, validation, permissions, tenancy, test sends."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from shared.config import get_settings
from shared.db import session_scope
from shared.models import ActivityLog, WebhookEndpoint
from shared.web_threads import third_party_wait_slots
from shared.webhooks import signing
from tests.waiting import wait_until

BASE = "/api/outgoing-webhooks"


def create(ws, url, **fields):
    body = {"url": url, "event_types": ["agent.created"]} | fields
    resp = ws.call("POST", BASE, json=body)
    assert resp.status_code == 201, resp.text
    return resp.json


def test_create_list_get_update_delete(workspace, receiver):
    ws = workspace
    created = create(ws, receiver.url(), description="CRM sync", event_types=["agent.created"])
    assert created["secret"].startswith("whsec_")
    assert len(signing._key(created["secret"])) >= 24
    assert created["is_active"] is True and created["timeout_seconds"] == 15
    with session_scope() as session:
        row = session.get(WebhookEndpoint, uuid.UUID(created["id"]))
        # The secret is encrypted at rest.
        assert created["secret"] not in row.secret_encrypted
    listed = ws.call("GET", BASE).json
    assert [w["id"] for w in listed["items"]] == [created["id"]]
    assert "secret" not in listed["items"][0]
    fetched = ws.call("GET", f"{BASE}/{created['id']}").json
    assert fetched["description"] == "CRM sync" and "secret" not in fetched

    patched = ws.call(
        "PATCH",
        f"{BASE}/{created['id']}",
        json={"event_types": ["role.created", "agent.created"], "description": "x"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json["event_types"] == ["agent.created", "role.created"]
    assert patched.json["secret"] is None

    off = ws.call("PATCH", f"{BASE}/{created['id']}", json={"is_active": False}).json
    assert off["is_active"] is False and off["disabled_reason"] == "disabled by its owner"
    on = ws.call("PATCH", f"{BASE}/{created['id']}", json={"is_active": True}).json
    assert on["is_active"] is True and on["disabled_reason"] is None

    assert ws.call("DELETE", f"{BASE}/{created['id']}").status_code == 204
    assert ws.call("GET", f"{BASE}/{created['id']}").status_code == 404
    with session_scope() as session:
        actions = set(
            session.scalars(
                select(ActivityLog.action).where(ActivityLog.entity_id == uuid.UUID(created["id"]))
            )
        )
    assert {"webhook.created", "webhook.updated", "webhook.disabled", "webhook.deleted"} <= actions


def test_bad_input_is_refused(workspace, receiver):
    ws = workspace
    for url in (
        "ftp://example.com/hook",
        "not a url",
        "https://user:pw@example.com/hook",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:10.0.0.1]/hook",
        "http://100.64.1.1/hook",
        "http://localhost/hook",
        "https://metadata.google.internal/",
        "https://intranet/hook",
        "http://127.0.0.1:0/hook",
    ):
        resp = ws.call("POST", BASE, json={"url": url, "event_types": ["agent.created"]})
        assert resp.status_code == 422, (url, resp.text)
        assert resp.json["error"]["details"][0]["field"] == "url", url
    for body, field in (
        ({"url": receiver.url(), "event_types": ["nope.nothing"]}, "event_types[0]"),
        ({"url": receiver.url(), "event_types": ["webhook.test"]}, "event_types[0]"),
        ({"url": receiver.url(), "event_types": []}, "event_types"),
        ({"url": receiver.url()}, "event_types"),
        ({"url": receiver.url(), "event_types": ["agent.created"], "x": 1}, "x"),
        ({"url": receiver.url(), "event_types": ["agent.created"], "max_concurrency": 0}, None),
    ):
        resp = ws.call("POST", BASE, json=body)
        assert resp.status_code == 422, (body, resp.text)
        if field:
            assert resp.json["error"]["details"][0]["field"] == field
    hook = create(ws, receiver.url())
    bad_patch = ws.call("PATCH", f"{BASE}/{hook['id']}", json={"url": "http://192.168.1.1/"})
    assert bad_patch.status_code == 422
    for field in ("url", "event_types", "is_active", "description"):
        null = ws.call("PATCH", f"{BASE}/{hook['id']}", json={field: None})
        assert null.status_code == 422, (field, null.text)
    assert (
        ws.call("GET", f"{BASE}/{hook['id']}/deliveries", params={"status": "x"}).status_code == 400
    )
    recover = ws.call(
        "POST",
        f"{BASE}/{hook['id']}/recover",
        json={"since": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"},
    )
    assert recover.status_code == 422
    naive = ws.call(
        "POST",
        f"{BASE}/{hook['id']}/recover",
        json={"since": "2030-01-01T00:00:00", "until": "2030-01-02T00:00:00Z"},
    )
    assert naive.status_code == 422
    assert (
        ws.call("POST", BASE, body="{", headers={"Content-Type": "application/json"}).status_code
        == 400
    )


def test_event_types_lists_the_catalogue_with_samples(workspace):
    types = workspace.call("GET", f"{BASE}/event-types").json
    names = {t["type"] for t in types}
    assert {"message.created", "conversation.assigned", "webhook.delivery_exhausted"} <= names
    assert "webhook.test" not in names
    sample = next(t for t in types if t["type"] == "message.created")["sample"]
    assert sample["type"] == "message.created" and set(sample) >= {"type", "timestamp", "data"}


def test_agents_without_webhooks_manage_are_refused(workspace, receiver):
    ws = workspace
    hook = create(ws, receiver.url())
    _, token = ws.create_agent(role="supervisor")
    some = uuid.uuid4()
    for method, path, body in (
        ("GET", BASE, None),
        ("POST", BASE, {"url": receiver.url(), "event_types": ["agent.created"]}),
        ("GET", f"{BASE}/event-types", None),
        ("GET", f"{BASE}/{hook['id']}", None),
        ("PATCH", f"{BASE}/{hook['id']}", {"description": "x"}),
        ("DELETE", f"{BASE}/{hook['id']}", None),
        ("GET", f"{BASE}/{hook['id']}/deliveries", None),
        ("POST", f"{BASE}/{hook['id']}/test", None),
        ("POST", f"{BASE}/{hook['id']}/deliveries/{some}/resend", None),
        (
            "POST",
            f"{BASE}/{hook['id']}/recover",
            {"since": "2030-01-01T00:00:00Z", "until": "2030-01-02T00:00:00Z"},
        ),
    ):
        resp = ws.call(method, path, token=token, json=body)
        assert resp.status_code == 403, (method, path, resp.text)
    assert ws.call("GET", f"{BASE}/{hook['id']}").json["description"] == ""


def test_other_tenants_webhooks_answer_404(workspace, other_workspace, receiver, path):
    theirs = create(other_workspace, receiver.url(path))
    # A delivery of theirs, to try through our routes too.
    other_workspace.call("POST", f"{BASE}/{theirs['id']}/test")
    their_delivery = other_workspace.call("GET", f"{BASE}/{theirs['id']}/deliveries").json["items"][
        0
    ]["id"]
    mine = create(workspace, receiver.url(path))
    for method, path_, body in (
        ("GET", f"{BASE}/{theirs['id']}", None),
        ("PATCH", f"{BASE}/{theirs['id']}", {"description": "pwned"}),
        ("DELETE", f"{BASE}/{theirs['id']}", None),
        ("GET", f"{BASE}/{theirs['id']}/deliveries", None),
        ("POST", f"{BASE}/{theirs['id']}/test", None),
        ("POST", f"{BASE}/{theirs['id']}/deliveries/{their_delivery}/resend", None),
        ("POST", f"{BASE}/{mine['id']}/deliveries/{their_delivery}/resend", None),
        (
            "POST",
            f"{BASE}/{theirs['id']}/recover",
            {"since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"},
        ),
        ("GET", f"{BASE}/{uuid.uuid4()}", None),
        ("GET", f"{BASE}/not-a-uuid", None),
    ):
        resp = workspace.call(method, path_, json=body)
        assert resp.status_code == 404, (method, path_, resp.text)
    assert theirs["id"] not in {w["id"] for w in workspace.call("GET", BASE).json["items"]}
    assert other_workspace.call("GET", f"{BASE}/{theirs['id']}").json["description"] == ""


def test_test_endpoint_sends_a_signed_event_and_answers_the_result(workspace, receiver, path):
    ws = workspace
    # NOTE: subscribed to an event this test never causes: the workspace's own
    # agent.created may still be in flight and would reach the receiver too.
    hook = create(ws, receiver.url(path), event_types=["campaign.completed"])
    resp = ws.call("POST", f"{BASE}/{hook['id']}/test")
    assert resp.status_code == 200, resp.text
    result = resp.json
    assert result["status"] == "succeeded"
    assert result["attempt"]["response_status"] == 200
    [got] = receiver.at(path)
    assert got.json["type"] == "webhook.test"
    assert got.headers["webhook-id"] == result["event_id"]
    assert signing.verify(hook["secret"], got.headers, got.body)

    receiver.plan(path, 500)
    failed = ws.call("POST", f"{BASE}/{hook['id']}/test").json
    assert failed["status"] == "failed" and failed["attempt"]["error_kind"] == "status"
    listed = ws.call("GET", f"{BASE}/{hook['id']}/deliveries", params={"status": "failed"}).json
    assert [d["id"] for d in listed["items"]] == [failed["delivery_id"]]
    # A test does not count towards the endpoint's health.
    assert ws.call("GET", f"{BASE}/{hook['id']}").json["first_failure_at"] is None


def test_test_sends_waiting_on_a_receiver_leave_a_thread_to_the_inbox(workspace, receiver, path):
    """A test send waits for the receiver in a web thread: past the process's waiting
    slots the next one answers 429, before anything is written or sent."""
    ws = workspace
    hook = create(ws, receiver.url(path), event_types=["campaign.completed"])
    slots = third_party_wait_slots(get_settings())
    receiver.plan(path, *[("sleep", 1.0)] * slots, 200)
    with ThreadPoolExecutor(slots) as pool:
        waiting = [pool.submit(ws.call, "POST", f"{BASE}/{hook['id']}/test") for _ in range(slots)]
        wait_until(lambda: receiver.active.get(path) == slots, "every slot's test send")

        refused = ws.call("POST", f"{BASE}/{hook['id']}/test")

        assert refused.status_code == 429, refused.text
        assert refused.json["error"]["code"] == "rate_limited"
        assert refused.headers["Retry-After"] == "5"
        assert [f.result().json["status"] for f in waiting] == ["succeeded"] * slots
    assert len(receiver.at(path)) == slots  # the refused test reached no receiver
    assert len(ws.call("GET", f"{BASE}/{hook['id']}/deliveries").json["items"]) == slots

    again = ws.call("POST", f"{BASE}/{hook['id']}/test")
    assert again.status_code == 200, again.text


def test_rotating_the_secret_signs_with_both_for_a_day(workspace, receiver, path):
    ws = workspace
    hook = create(ws, receiver.url(path), event_types=["campaign.completed"])
    rotated = ws.call("PATCH", f"{BASE}/{hook['id']}", json={"rotate_secret": True}).json
    new_secret = rotated["secret"]
    assert new_secret.startswith("whsec_") and new_secret != hook["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    assert ws.call("POST", f"{BASE}/{hook['id']}/test").json["status"] == "succeeded"
    got = receiver.at(path)[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert signing.verify(new_secret, got.headers, got.body)
    assert signing.verify(hook["secret"], got.headers, got.body)
    assert not signing.verify(signing.generate_secret(), got.headers, got.body)


def test_a_rotation_over_its_day_is_shown_as_over(workspace, receiver, path):
    """previous_secret_expires_at names a rotation in progress, else it is null."""
    import datetime as dt

    from sqlalchemy import update

    ws = workspace
    hook = create(ws, receiver.url(path), event_types=["campaign.completed"])
    ws.call("PATCH", f"{BASE}/{hook['id']}", json={"rotate_secret": True})
    with session_scope() as session:  # a day has passed
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(hook["id"]))
            .values(previous_secret_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    view = ws.call("GET", f"{BASE}/{hook['id']}").json
    assert view["previous_secret_expires_at"] is None
    assert ws.call("POST", f"{BASE}/{hook['id']}/test").json["status"] == "succeeded"
    assert len(receiver.at(path)[-1].headers["webhook-signature"].split(" ")) == 1


@pytest.fixture
def dripping_receiver():
    """A receiver that answers a status line, then one header byte every 0.2 s for 20 s."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(100):
                    if stop.wait(0.2):
                        break
                    try:
                        conn.sendall(b"a")
                    except OSError:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stop.set()
    thread.join(5)
    server.close()


def test_a_test_send_is_bounded_by_the_timeout_as_a_whole(workspace, dripping_receiver):
    """A receiver dripping its headers cannot hold the request past the webhook's timeout."""
    hook = create(workspace, dripping_receiver, event_types=["campaign.completed"])
    workspace.call("PATCH", f"{BASE}/{hook['id']}", json={"timeout_seconds": 1})
    started = time.monotonic()
    resp = workspace.call("POST", f"{BASE}/{hook['id']}/test")
    elapsed = time.monotonic() - started
    assert resp.status_code == 200, resp.text
    assert resp.json["status"] == "failed" and resp.json["attempt"]["error_kind"] == "timeout"
    assert elapsed < 5, elapsed


def test_a_workspace_has_at_most_max_endpoints(workspace, other_workspace, receiver):
    """Every event goes to each subscribed endpoint: their number is bounded per workspace."""
    from shared.webhooks.endpoints import MAX_ENDPOINTS

    made = [create(workspace, receiver.url(f"/n{n}")) for n in range(MAX_ENDPOINTS)]
    body = {"url": receiver.url("/one-more"), "event_types": ["agent.created"]}
    refused = workspace.call("POST", BASE, json=body)
    assert refused.status_code == 409, refused.text
    assert refused.json["error"]["code"] == "endpoint_limit"
    create(other_workspace, receiver.url("/theirs"))  # another workspace's own count
    assert workspace.call("DELETE", f"{BASE}/{made[0]['id']}").status_code == 204
    create(workspace, receiver.url("/one-more"))


@pytest.mark.parametrize("answer", ["succeeded", "failed"])
def test_a_test_send_whose_webhook_is_deleted_meanwhile_answers_its_result(
    workspace, receiver, path, answer
):
    """The receiver was called: the test answers what it did, not a 409 or a "gone" status."""
    ws = workspace
    hook = create(ws, receiver.url(path), event_types=["campaign.completed"])
    receiver.plan(path, ("sleep", 1.5))
    if answer == "failed":  # the receiver outlasts the timeout
        ws.call("PATCH", f"{BASE}/{hook['id']}", json={"timeout_seconds": 1})
    with ThreadPoolExecutor(1) as pool:
        sending = pool.submit(ws.call, "POST", f"{BASE}/{hook['id']}/test")
        wait_until(lambda: receiver.active.get(path) == 1, "the test send at the receiver")
        assert ws.call("DELETE", f"{BASE}/{hook['id']}").status_code == 204
        resp = sending.result()
    assert resp.status_code == 200, resp.text
    assert resp.json["status"] == answer
    assert ws.call("GET", f"{BASE}/{hook['id']}").status_code == 404
