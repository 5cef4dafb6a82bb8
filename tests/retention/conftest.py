"""Fixtures for the retention tests: a tenant with aged rows of every purged kind."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import delete, func, select

from shared.config import get_settings
from shared.db import session_scope
from shared.models import (
    AutomationEvent,
    AutomationRun,
    DeadLetter,
    InboundEvent,
    OutboxEvent,
    Tenant,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)


def days_ago(days: float):
    """A database-clock timestamp ``days`` days in the past."""
    return func.now() - dt.timedelta(days=days)


@dataclass
class Seeder:
    """Insert rows of every purged kind for one tenant, aged as the test says."""

    tenant_id: uuid.UUID
    endpoint_id: uuid.UUID
    ids: dict[str, set[uuid.UUID]] = field(default_factory=dict)

    def _note(self, table: str, row_id: uuid.UUID) -> uuid.UUID:
        self.ids.setdefault(table, set()).add(row_id)
        return row_id

    def delivery(
        self, *, status: str, age_days: float, attempts: int = 1, resend_of=None
    ) -> uuid.UUID:
        """A delivery ``age_days`` old (finished then too, when final) with its attempts."""
        final = status in ("succeeded", "failed", "disabled")
        with session_scope() as session:
            row = WebhookDelivery(
                tenant_id=self.tenant_id,
                endpoint_id=self.endpoint_id,
                event_id=uuid.uuid4(),
                event_type="agent.status_changed",
                payload={"n": 1},
                status=status,
                attempt_count=attempts,
                created_at=days_ago(age_days),
                finished_at=days_ago(age_days) if final else None,
                resend_of=resend_of,
            )
            session.add(row)
            session.flush()
            for n in range(1, attempts + 1):
                attempt = WebhookAttempt(
                    tenant_id=self.tenant_id,
                    delivery_id=row.id,
                    attempt=n,
                    started_at=days_ago(age_days),
                    duration_ms=3,
                    request_url="http://127.0.0.1:9/hook",
                    request_headers={},
                    request_body="{}",
                    response_status=500 if n < attempts else 200,
                )
                session.add(attempt)
                session.flush()
                self._note("webhook_attempts", attempt.id)
            return self._note("webhook_deliveries", row.id)

    def outbox_event(self, *, status: str, age_days: float) -> uuid.UUID:
        with session_scope() as session:
            row = OutboxEvent(
                tenant_id=self.tenant_id,
                type="message.created",
                actor_type="system",
                data={},
                status=status,
                occurred_at=days_ago(age_days),
            )
            session.add(row)
            session.flush()
            return self._note("outbox_events", row.id)

    def automation_event(
        self, *, status: str, age_days: float, runs: int = 2, outbox_event_id=None
    ) -> uuid.UUID:
        final = status in ("done", "failed")
        with session_scope() as session:
            event = AutomationEvent(
                tenant_id=self.tenant_id,
                outbox_event_id=outbox_event_id or uuid.uuid4(),
                event_type="message.created",
                payload={},
                fingerprint="f" * 64,
                status=status,
                created_at=days_ago(age_days),
                finished_at=days_ago(age_days) if final else None,
            )
            session.add(event)
            session.flush()
            for _ in range(runs):
                run = AutomationRun(
                    tenant_id=self.tenant_id,
                    automation_event_id=event.id,
                    rule_id=uuid.uuid4(),
                    rule_version=1,
                    rule_snapshot={},
                    facts={},
                    matched=False,
                    status="not_matched",
                    created_at=days_ago(age_days),
                )
                session.add(run)
                session.flush()
                self._note("automation_runs", run.id)
            return self._note("automation_events", event.id)

    def inbound_event(
        self, *, status: str, age_days: float, channel: str = "whatsapp"
    ) -> uuid.UUID:
        with session_scope() as session:
            row = InboundEvent(
                channel=channel,
                provider_event_id=f"retention-{uuid.uuid4()}",
                tenant_id=self.tenant_id,
                payload={},
                status=status,
                received_at=days_ago(age_days),
            )
            session.add(row)
            session.flush()
            return self._note("inbound_events", row.id)

    def dead_letter(self, *, age_days: float) -> uuid.UUID:
        with session_scope() as session:
            row = DeadLetter(
                message_id=uuid.uuid4().hex,
                queue_name="webhooks",
                actor_name="deliver_webhook",
                args=[],
                kwargs={},
                options={},
                tenant_id=self.tenant_id,
                failed_at=days_ago(age_days),
            )
            session.add(row)
            session.flush()
            return self._note("dead_letters", row.id)


MODELS = {
    "webhook_deliveries": WebhookDelivery,
    "webhook_attempts": WebhookAttempt,
    "automation_events": AutomationEvent,
    "automation_runs": AutomationRun,
    "inbound_events": InboundEvent,
    "outbox_events": OutboxEvent,
    "dead_letters": DeadLetter,
}


def surviving(seeder: Seeder) -> dict[str, set[uuid.UUID]]:
    """Which of the seeded rows still exist, per table."""
    with session_scope() as session:
        return {
            table: set(session.scalars(select(MODELS[table].id).where(MODELS[table].id.in_(ids))))
            for table, ids in seeder.ids.items()
        }


@pytest.fixture
def seeder(database) -> Iterator[Seeder]:
    suffix = uuid.uuid4().hex[:12]
    with session_scope() as session:
        tenant = Tenant(name=f"Retention {suffix}", slug=f"retention-{suffix}")
        session.add(tenant)
        session.flush()
        endpoint = WebhookEndpoint(
            tenant_id=tenant.id,
            url="http://127.0.0.1:9/hook",
            event_types=["agent.status_changed"],
            secret_encrypted="not-used-here",
        )
        session.add(endpoint)
        session.flush()
        tenant_id, endpoint_id = tenant.id, endpoint.id
    seeder = Seeder(tenant_id, endpoint_id)
    yield seeder
    with session_scope() as session:
        session.execute(
            delete(DeadLetter).where(DeadLetter.id.in_(seeder.ids.get("dead_letters", ())))
        )
        session.execute(delete(Tenant).where(Tenant.id == tenant_id))


@pytest.fixture
def retention_env(monkeypatch):
    """Set retention settings for one test: ``retention_env(RETENTION_DAYS="30")``."""

    def apply(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()
