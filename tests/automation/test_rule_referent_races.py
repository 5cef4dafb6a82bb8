"""A rule saved naming a quick reply or webhook endpoint while it is being deleted.

The deletion locks the row, takes it off the rules naming it (``forget_referent``) and
deletes it. A rule saved meanwhile, its referent read unlocked, found the row (the
deletion was not committed yet), and kept its dead id: failing at every run, refused by
every later edit. The save share-locks every referent its actions add, as it does agents
and divisions (``test_rule_agent_races``): it waits for the deletion and answers 422.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from shared.db import get_sessionmaker
from shared.inbox import quick_replies
from shared.webhooks import endpoints
from tests.automation.conftest import RULES, admin_ctx, create_rule, rule_body
from tests.automation.test_dead_referents import REFERENTS
from tests.lock_races import race
from tests.webhooks.conftest import receiver  # noqa: F401  (fixture)
from tests.workspaces import Workspace

TAG = {"type": "add_tags", "params": {"tags": ["refund"]}}

#: How each kind's deletion runs in a session of the test's own.
DELETIONS: dict[str, Callable[..., None]] = {
    "quick_replies": quick_replies.delete_quick_reply,
    "webhook_endpoints": endpoints.delete_endpoint,
}


#: Each deletion's first step: the row locked.
LOCK_FIRST: dict[str, Callable[..., object]] = {
    "quick_replies": quick_replies._get_writable,
    "webhook_endpoints": functools.partial(endpoints.get_endpoint, for_update=True),
}


def _flushed_deletion(ws: Workspace, kind: str, ref_id: str) -> Session:
    """A session holding the deletion written but uncommitted (for ``race()``)."""
    deleting = get_sessionmaker()()
    DELETIONS[kind](deleting, admin_ctx(ws), uuid.UUID(ref_id))
    deleting.flush()
    return deleting


def _actions(ws: Workspace) -> list[list[dict]]:
    items = ws.call("GET", RULES, params={"limit": 100}).json["items"]
    return [rule["actions"] for rule in items]


@pytest.mark.parametrize("kind", sorted(DELETIONS))
def test_a_rule_created_naming_a_referent_being_deleted_is_refused(
    workspace,
    receiver,  # noqa: F811
    kind,
):
    ws, ref = workspace, REFERENTS[kind]
    doomed = ref.make(ws, receiver)
    body = rule_body(actions=[ref.naming(doomed)])
    deleting = _flushed_deletion(ws, kind, doomed)
    resp = race(deleting, lambda: ws.call("POST", RULES, json=body))
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == f"actions[0].params.{ref.param}"
    assert _actions(ws) == []


@pytest.mark.parametrize("kind", sorted(DELETIONS))
def test_a_rule_changed_to_name_a_referent_being_deleted_is_refused(
    workspace,
    receiver,  # noqa: F811
    kind,
):
    ws, ref = workspace, REFERENTS[kind]
    doomed = ref.make(ws, receiver)
    rule = create_rule(ws, actions=[TAG])
    change = {"actions": [TAG, ref.naming(doomed)]}
    deleting = _flushed_deletion(ws, kind, doomed)
    resp = race(deleting, lambda: ws.call("PATCH", f"{RULES}/{rule['id']}", json=change))
    assert resp.status_code == 422, resp.text
    assert _actions(ws) == [[TAG]]


@pytest.mark.parametrize("kind", sorted(DELETIONS))
def test_a_rule_already_naming_a_referent_being_deleted_is_edited_then_loses_it(
    workspace,
    receiver,  # noqa: F811
    kind,
):
    """The deletion holds the row (its first step) while a rule naming it already is
    edited. The edit does not lock it again: locked after the rule, it waited for the
    deletion, which then waited for the rule to take the row off it (a deadlock, the
    PATCH answered 409). Here the edit lands first, and the deletion takes the row off it."""
    ws, ref = workspace, REFERENTS[kind]
    doomed = ref.make(ws, receiver)
    rule = create_rule(ws, actions=[TAG, ref.naming(doomed)])
    deleting = get_sessionmaker()()
    LOCK_FIRST[kind](deleting, admin_ctx(ws), uuid.UUID(doomed))

    def delete() -> None:
        DELETIONS[kind](deleting, admin_ctx(ws), uuid.UUID(doomed))
        deleting.flush()

    resp = race(
        deleting,
        lambda: ws.call("PATCH", f"{RULES}/{rule['id']}", json={"name": "Renamed"}),
        delete,
    )
    assert resp.status_code == 200, resp.text
    [after] = ws.call("GET", RULES, params={"limit": 100}).json["items"]
    assert (after["name"], after["actions"], after["is_active"]) == ("Renamed", [TAG], False)
