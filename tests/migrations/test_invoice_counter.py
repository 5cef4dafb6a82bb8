"""Migration 0034: the invoice counter starts after every number taken, and gives it back down."""

from __future__ import annotations

import datetime as dt
import uuid

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from shared import migrate
from shared.models import BillingInvoice, Tenant
from tests.migrations.test_up_down_up import scratch_url  # noqa: F401 (fixture)

REVISION = "0034_invoice_number_counter"


def test_the_counter_starts_after_the_highest_number_taken_and_down_gives_it_back(
    scratch_url,  # noqa: F811
):
    config = migrate.alembic_config(scratch_url)
    before = ScriptDirectory.from_config(config).get_revision(REVISION).down_revision
    command.upgrade(config, before)
    engine = create_engine(scratch_url)
    try:
        with Session(engine) as session, session.begin():
            tenant = Tenant(name="Numbers", slug=f"numbers-{uuid.uuid4().hex[:8]}")
            session.add(tenant)
            session.flush()
            now = dt.datetime.now(dt.UTC)
            for number in (7, 12):
                session.add(
                    BillingInvoice(
                        tenant_id=tenant.id,
                        number=f"INV-{number:06d}",
                        status="paid",
                        reason="plan_change",
                        currency="USD",
                        subtotal=0,
                        total=0,
                        period_start=now,
                        period_end=now,
                    )
                )
            # Drawn by a transaction that rolled back: never reused either.
            session.execute(text("SELECT setval('billing_invoice_number_seq', 15)"))
        command.upgrade(config, REVISION)
        with engine.begin() as conn:
            counter = text("SELECT last_number FROM billing_invoice_counter")
            assert conn.scalar(counter) == 15
            conn.execute(text("UPDATE billing_invoice_counter SET last_number = 3"))
            assert conn.scalar(counter) == 3  # below the invoices': the invoices win
        command.downgrade(config, before)
        command.upgrade(config, REVISION)
        with engine.begin() as conn:
            assert conn.scalar(counter) == 12
        command.downgrade(config, before)
        with engine.begin() as conn:
            assert conn.scalar(text("SELECT nextval('billing_invoice_number_seq')")) == 13
    finally:
        engine.dispose()
