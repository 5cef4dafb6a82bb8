"""The snooze wake-up and the expiry jobs against a running SLA check: no deadlock.

Each job locks a batch of conversations, then moves each one's SLA clock; ``check_sla``
claims a clock, then inserts its breach (FOR KEY SHARE on the conversation it references).
"""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from shared.db import session_scope
from tests.inbox_conversations.conftest import ago, row, set_columns
from tests.inbox_conversations.test_expiration import RULES, _job
from tests.lock_races import SlaCheckHolding, clocked_conversation, race


def _snoozed_and_due(ws, conversation: str) -> str:
    body = {"status": "snoozed", "snoozed_until": ago(hours=-1).isoformat()}
    resp = ws.call("PATCH", f"/api/conversations/{conversation}/status", json=body)
    assert resp.status_code == 200, resp.text
    set_columns(conversation, snoozed_until=ago(minutes=1))
    return "open"


def _idle_past_its_rule(ws, conversation: str) -> str:
    assert ws.call("PUT", f"{RULES}/api", json={"inactive_minutes": 60}).status_code == 200
    set_columns(conversation, last_activity_at=ago(days=2))
    return "resolved"


JOBS = {"reopen_snoozed": _snoozed_and_due, "expire_conversations": _idle_past_its_rule}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_the_job_does_not_deadlock_with_a_running_sla_check(workspace, job):
    conversation = clocked_conversation(workspace, pause_on_snoozed=False)
    expected = JOBS[job](workspace, conversation)
    check = SlaCheckHolding(conversation)

    def run():
        try:
            with session_scope() as session:
                return _job(job)(session)
        except DBAPIError as exc:
            return str(exc.orig)

    done = race(check.holder, run, then=check.breach)

    assert check.failures == []
    assert (done["expired"] if isinstance(done, dict) else done) == 1, done
    assert row(conversation).status == expected
    breaches = workspace.call("GET", f"/api/conversations/{conversation}/sla").json["breaches"]
    assert [b["kind"] for b in breaches] == ["first_response"]
