"""Migration 0038: the accounts deleted before it are remembered from their activity rows
(the latest id per sender the tenant has not connected again); the downgrade drops them."""

from __future__ import annotations

import datetime as dt
import uuid

from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from shared import migrate
from shared.models import ActivityLog, IntegrationAccount
from tests.migrations.seeding import tenant_with_integration
from tests.migrations.test_up_down_up import scratch_url  # noqa: F401 (fixture)

BEFORE = "0037_api_contacts_per_account"
REVISION = "0038_account_tombstones"


def _disconnected(session: Session, tenant_id, account_id, channel, external_id, day: int):
    session.add(
        ActivityLog(
            tenant_id=tenant_id,
            actor_type="user",
            action="integration_account.disconnected",
            entity_type="integration_account",
            entity_id=account_id,
            before={"id": str(account_id), "channel": channel, "external_id": external_id},
            created_at=dt.datetime(2026, 3, day, tzinfo=dt.UTC),
        )
    )


def _seed(session: Session) -> dict[str, uuid.UUID]:
    """A tenant that deleted number 111 twice (ids old, latest), deleted 222 and connected
    it again (as ``live``), deleted 333 (``gone``); and a row of a live account."""
    t, integration_id = tenant_with_integration(session, "Tombstones", "whatsapp")
    live = IntegrationAccount(
        tenant_id=t,
        integration_id=integration_id,
        channel="whatsapp",
        name="Back again",
        external_id="222",
        is_default=True,
    )
    session.add(live)
    session.flush()
    ids = {"tenant": t, "live": live.id}
    ids |= {name: uuid.uuid4() for name in ("old", "latest", "before_live", "gone")}
    _disconnected(session, t, ids["old"], "whatsapp", "111", 1)
    _disconnected(session, t, ids["latest"], "whatsapp", "111", 2)
    _disconnected(session, t, ids["before_live"], "whatsapp", "222", 3)
    _disconnected(session, t, ids["gone"], "email", "help@shop.example", 4)
    _disconnected(session, t, live.id, "whatsapp", "222", 5)  # an odd row naming a live one
    session.flush()
    return ids


def _tombstones(connection) -> set[tuple]:
    rows = connection.execute(
        text(
            "SELECT tenant_id, channel, external_id, account_id FROM integration_account_tombstones"
        )
    )
    return {tuple(row) for row in rows}


def test_deleted_accounts_are_remembered_from_their_activity_rows(scratch_url):  # noqa: F811
    config = migrate.alembic_config(scratch_url)
    command.upgrade(config, BEFORE)
    engine = create_engine(scratch_url)
    try:
        with Session(engine) as session, session.begin():
            ids = _seed(session)
        command.upgrade(config, REVISION)
        t = ids["tenant"]
        with engine.connect() as connection:
            assert _tombstones(connection) == {
                (t, "whatsapp", "111", ids["latest"]),
                (t, "email", "help@shop.example", ids["gone"]),
            }

        command.downgrade(config, BEFORE)
        with engine.connect() as connection:
            assert (
                connection.execute(
                    text("SELECT to_regclass('integration_account_tombstones')")
                ).scalar_one()
                is None
            )
            assert connection.execute(text("SELECT version_num FROM alembic_version")).all() == [
                (BEFORE,)
            ]
        command.upgrade(config, REVISION)
    finally:
        engine.dispose()
