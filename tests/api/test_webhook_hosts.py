"""Webhook hosts with more than one reading (octal, hex, short or decimal IPv4) are refused.

They were accepted at creation; the test send then answered 500 and left the
delivery ``in_flight`` until the sweeper called it ``worker_lost``.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, update

from shared.db import session_scope
from shared.models import WebhookDelivery, WebhookEndpoint
from shared.webhooks.ssrf import Policy, UnsafeUrl, check_url, resolve

BASE = "/api/outgoing-webhooks"
ODD_HOSTS = ["0177.0.0.1", "127.1", "0x7f.1", "2130706433", "0x7f000001", "127.0.0.01"]
#: The suite's own policy: loopback is allowlisted, so only the host's form is at stake.
POLICY = Policy(allow_http=True, networks=Policy.from_settings().networks)


@pytest.mark.parametrize("host", ODD_HOSTS)
def test_save_and_send_refuse_the_same_hosts(host):
    with pytest.raises(UnsafeUrl, match=r"write it as 127\.0\.0\.1"):
        check_url(f"http://{host}:9/hook", POLICY)
    with pytest.raises(UnsafeUrl):
        resolve(host, 9, POLICY)


@pytest.mark.parametrize("host", ["127.0.0.1", "example.com", "münchen.example"])
def test_ordinary_hosts_pass(host):
    assert check_url(f"http://{host}:9/hook", POLICY)


@pytest.mark.parametrize("url", ["http://a..b/", "http://xn--/", "http://exa mple.com/"])
def test_malformed_names_are_refused(url):
    with pytest.raises(UnsafeUrl, match="not a valid host name"):
        check_url(url, POLICY)


@pytest.mark.parametrize("host", ODD_HOSTS)
def test_creating_or_moving_a_webhook_to_an_odd_host_is_422(workspace, host):
    body = {"url": f"http://{host}:9/hook", "event_types": ["agent.created"]}
    resp = workspace.call("POST", BASE, json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "url"
    good = workspace.call("POST", BASE, json=body | {"url": "http://127.0.0.1:9/hook"})
    assert good.status_code == 201, good.text
    moved = workspace.call(
        "PATCH", f"{BASE}/{good.json['id']}", json={"url": f"http://{host}:9/hook"}
    )
    assert moved.status_code == 422, moved.text


@pytest.mark.parametrize(("host", "kind"), [("0177.0.0.1", "invalid_url"), ("127.1", "blocked")])
def test_a_saved_odd_host_fails_the_test_send_cleanly(workspace, host, kind):
    """A URL saved before this rule existed: the test send reports it and finishes the row."""
    hook = workspace.call(
        "POST", BASE, json={"url": "http://127.0.0.1:9/hook", "event_types": ["agent.created"]}
    ).json
    with session_scope() as session:
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(hook["id"]))
            .values(url=f"http://{host}:9/hook")
        )
    resp = workspace.call("POST", f"{BASE}/{hook['id']}/test")
    assert resp.status_code == 200, resp.text
    assert resp.json["status"] == "failed"
    assert resp.json["attempt"]["error_kind"] == kind
    with session_scope() as session:
        status = session.scalar(
            select(WebhookDelivery.status).where(
                WebhookDelivery.id == uuid.UUID(resp.json["delivery_id"])
            )
        )
    assert status != "in_flight"
