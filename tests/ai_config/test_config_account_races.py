"""An AI assignment saved naming an integration account while it is being disconnected.

As with a division (test_config_division_races.py): the save read the account unlocked,
so a deletion not yet committed let it through to the insert, whose foreign key check
waited for the deletion and failed with the anonymous 409 "conflicts with existing data".
The save now share-locks the account it names: it waits for the deletion and answers the
422 naming ``integration_account_id``.
"""

from __future__ import annotations

import uuid

from shared.channels import accounts
from shared.context import Ctx
from shared.db import get_sessionmaker
from tests.ai_config.conftest import create_agent, tid
from tests.ai_config.test_rules_api import ASSIGNMENTS, account
from tests.lock_races import race


def _while_disconnecting(ws, account_id: str, call):
    """``call()``'s value, made while the account's deletion is done but not committed."""
    deleting = get_sessionmaker()()
    accounts.delete_account(deleting, Ctx.system(tid(ws)), uuid.UUID(account_id))
    return race(deleting, call)


def _refused_naming_account(resp) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "integration_account_id"


def test_an_assignment_naming_an_account_being_disconnected_is_refused(workspace):
    ws = workspace
    body = {"ai_agent_id": create_agent(ws)["id"], "integration_account_id": account(ws)}

    resp = _while_disconnecting(
        ws, body["integration_account_id"], lambda: ws.call("POST", ASSIGNMENTS, json=body)
    )

    _refused_naming_account(resp)
    assert ws.call("GET", ASSIGNMENTS).json["items"] == []


def test_an_assignment_moved_to_an_account_being_disconnected_is_refused(workspace):
    ws = workspace
    agent_id = create_agent(ws)["id"]
    first = {"ai_agent_id": agent_id, "integration_account_id": account(ws)}
    created = ws.call("POST", ASSIGNMENTS, json=first)
    assert created.status_code == 201, created.text
    doomed = account(ws, "instagram")
    moved = first | {"integration_account_id": doomed}
    path = f"{ASSIGNMENTS}/{created.json['id']}"

    resp = _while_disconnecting(ws, doomed, lambda: ws.call("PUT", path, json=moved))

    _refused_naming_account(resp)
    kept = ws.call("GET", ASSIGNMENTS).json["items"]
    assert [a["integration_account_id"] for a in kept] == [first["integration_account_id"]]
