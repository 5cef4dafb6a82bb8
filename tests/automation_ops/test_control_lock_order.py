"""Resuming the control while a rule is being changed: one lock order, no deadlock.

A rule change locks the rule, then the tenant's settings row (the rules version). The
control update locked the settings row, then, resuming, the rules it marks
(re)activated: the two waited on each other until PostgreSQL killed one (a 409 to the
caller, or a failed rule change). The update now locks those rules first.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from shared.automation import rules
from shared.db import get_sessionmaker
from shared.models import AutomationRule
from tests.automation.conftest import create_rule, tid
from tests.automation_ops.conftest import CONTROL
from tests.lock_races import race


def test_resuming_while_a_rule_is_being_changed_does_not_deadlock(workspace):
    ws = workspace
    rule = create_rule(ws)
    assert ws.call("PATCH", CONTROL, json={"enabled": False}).status_code == 200

    holder = get_sessionmaker()()
    holder.execute(  # a rule change's first step (rules.get_rule(..., for_update=True))
        select(AutomationRule.id)
        .where(AutomationRule.id == uuid.UUID(rule["id"]))
        .with_for_update()
    ).one()
    failures: list[str] = []

    def then_bump() -> None:  # its second step, while the control update waits
        try:
            rules.bump_rules_version(holder, tid(ws))
        except DBAPIError as exc:
            failures.append(str(exc.orig))
            holder.rollback()

    resp = race(holder, lambda: ws.call("PATCH", CONTROL, json={"enabled": True}), then_bump)
    assert failures == []
    assert resp is not None and resp.status_code == 200, resp and resp.text
    assert resp.json["enabled"] is True
