"""A channel's first connections made at once: the tenant's integration of the channel
(one per channel, ``uq_integrations_tenant_channel``) is created by whichever comes first.

The later one inserted its own integration too, failed on the unique index and answered
409 "The api integration was created concurrently; retry": an onboarding script
connecting two accounts at once, or an admin's double-clicked PUT, lost one of them.
Each test holds the first connection (done, not committed) while the second runs.
"""

from __future__ import annotations

import uuid

from shared.channels import accounts
from shared.context import Ctx
from shared.db import get_sessionmaker
from tests.lock_races import race

ACCOUNTS = "/api/integration-accounts"


def _ctx(ws) -> Ctx:
    return Ctx.system(uuid.UUID(ws.tenant["id"]))


def test_two_first_accounts_of_a_channel_at_once_are_both_connected(workspace):
    ws = workspace
    holder = get_sessionmaker()()
    accounts.create_account(holder, _ctx(ws), channel="api", name="First", external_id=None)

    body = {"channel": "api", "name": "Second"}
    resp = race(holder, lambda: ws.call("POST", ACCOUNTS, json=body))

    assert resp.status_code == 201, resp.text
    assert resp.json["is_default"] is False  # the first one is the channel's default
    connected = ws.call("GET", ACCOUNTS).json["items"]
    assert sorted(a["name"] for a in connected) == ["First", "Second"]


def test_two_first_puts_of_an_integration_at_once_both_apply(workspace):
    ws = workspace
    holder = get_sessionmaker()()
    accounts.upsert_integration(holder, _ctx(ws), "email", enabled=True)

    resp = race(holder, lambda: ws.call("PUT", "/api/integrations/email", json={"enabled": False}))

    assert resp.status_code == 200, resp.text
    assert resp.json["enabled"] is False
    assert ws.call("GET", "/api/integrations/email").json["enabled"] is False
