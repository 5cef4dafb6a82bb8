"""Migration 0027 down: runs that kept leaf outcomes get their rebuilt trace back."""

from __future__ import annotations

import uuid

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from shared import migrate
from shared.automation.runs import snapshot_digest, to_json
from shared.models import (
    AutomationEvent,
    AutomationRuleSnapshot,
    AutomationRun,
    AutomationRunContext,
    Tenant,
)
from tests.migrations.test_up_down_up import scratch_url  # noqa: F401 (fixture)

REVISION = "0027_automation_run_outcomes"
SNAPSHOT = {
    "id": str(uuid.uuid4()),
    "version": 1,
    "conditions": {
        "match": "all",
        "conditions": [
            {"attribute": "message.content", "operator": "contains", "value": "refund"},
            {"attribute": "contact.country", "operator": "equal_to", "value": "FR"},
        ],
    },
    "actions": [],
}


def test_down_writes_each_runs_rebuilt_trace_and_up_keeps_it(scratch_url):  # noqa: F811
    config = migrate.alembic_config(scratch_url)
    command.upgrade(config, REVISION)
    engine = create_engine(scratch_url)
    try:
        with Session(engine) as session, session.begin():
            tenant = Tenant(name="Outcomes", slug=f"outcomes-{uuid.uuid4().hex[:8]}")
            session.add(tenant)
            session.flush()
            event = AutomationEvent(
                tenant_id=tenant.id,
                outbox_event_id=uuid.uuid4(),
                event_type="message.created",
                payload={},
                fingerprint="0" * 64,
                status="done",
            )
            session.add(event)
            session.flush()
            context = AutomationRunContext(
                tenant_id=tenant.id,
                automation_event_id=event.id,
                facts={"message.content": "a refund please", "contact.country": "DE"},
                changes={},
            )
            digest = snapshot_digest(to_json(SNAPSHOT))
            session.add_all(
                [
                    context,
                    AutomationRuleSnapshot(
                        digest=digest,
                        tenant_id=tenant.id,
                        rule_id=uuid.UUID(SNAPSHOT["id"]),
                        snapshot=SNAPSHOT,
                    ),
                ]
            )
            session.flush()
            run = AutomationRun(
                tenant_id=tenant.id,
                automation_event_id=event.id,
                rule_id=uuid.UUID(SNAPSHOT["id"]),
                rule_version=1,
                context_id=context.id,
                snapshot_digest=digest,
                matched=False,
                status="not_matched",
                condition_outcomes="10",
            )
            session.add(run)
            session.flush()
            run_id = run.id
        command.downgrade(
            config, ScriptDirectory.from_config(config).get_revision(REVISION).down_revision
        )
        with engine.connect() as conn:
            [trace] = conn.execute(
                text("SELECT condition_results FROM automation_runs WHERE id = :id"),
                {"id": run_id},
            ).scalars()
        assert [(i["attribute"], i["seen"], i["matched"]) for i in trace] == [
            ("message.content", "a refund please", True),
            ("contact.country", "DE", False),
        ]
        command.upgrade(config, "head")
        with Session(engine) as session:
            again = session.get(AutomationRun, run_id)
            assert again.condition_outcomes is None and again.condition_results == trace
    finally:
        engine.dispose()
