"""A campaign naming an integration account while that account is being disconnected.

The draft's save read the account unlocked: a disconnection not committed yet let it
through to the write, whose foreign key check waited for the disconnection and failed,
the error net's bare 409 "conflicts with existing data". The save now share-locks an
account it newly names: it waits for the disconnection and answers the 422 naming
``integration_account_id``.
"""

from __future__ import annotations

import uuid

from shared.channels import accounts
from shared.context import Ctx
from shared.db import get_sessionmaker
from tests.lock_races import race

BASE = "/api/campaigns"


def _api_account(ws) -> str:
    body = {"channel": "api", "name": f"Backend {uuid.uuid4().hex[:6]}"}
    resp = ws.call("POST", "/api/integration-accounts", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


def _while_disconnecting(ws, account_id: str, call):
    deleting = get_sessionmaker()()
    accounts.delete_account(deleting, Ctx.system(uuid.UUID(ws.tenant["id"])), uuid.UUID(account_id))
    return race(deleting, call)


def _refused_naming_account(resp) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "integration_account_id"


def test_a_campaign_created_on_an_account_being_disconnected_is_refused(workspace):
    ws = workspace
    doomed = _api_account(ws)
    body = {"name": "Spring", "channel": "api", "integration_account_id": doomed, "body": "Hi"}

    resp = _while_disconnecting(ws, doomed, lambda: ws.call("POST", BASE, json=body))

    _refused_naming_account(resp)
    assert ws.call("GET", BASE).json["items"] == []


def test_a_draft_moved_to_an_account_being_disconnected_is_refused(workspace):
    ws = workspace
    kept = _api_account(ws)
    body = {"name": "Spring", "channel": "api", "integration_account_id": kept, "body": "Hi"}
    created = ws.call("POST", BASE, json=body)
    assert created.status_code == 201, created.text
    doomed = _api_account(ws)
    path = f"{BASE}/{created.json['id']}"

    resp = _while_disconnecting(
        ws, doomed, lambda: ws.call("PATCH", path, json={"integration_account_id": doomed})
    )

    _refused_naming_account(resp)
    assert ws.call("GET", path).json["integration_account_id"] == kept
