"""Migration 0037: an api contact shared by two accounts becomes one contact per account,
with each account's conversations and messages; the downgrade folds them back."""

from __future__ import annotations

import datetime as dt
import uuid

from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from shared import migrate
from shared.models import Conversation, IntegrationAccount, Message
from tests.migrations.seeding import tenant_with_integration
from tests.migrations.test_up_down_up import scratch_url  # noqa: F401 (fixture)

BEFORE = "0036_campaign_account_named"
REVISION = "0037_api_contacts_per_account"


def _contact(session: Session, tenant_id: uuid.UUID, channel: str, external_id: str, **more):
    """A contact as written before the revision (the model has the revision's column)."""
    values = {"id": uuid.uuid4(), "t": tenant_id, "channel": channel, "ext": external_id}
    session.execute(
        text(
            "INSERT INTO contacts (id, tenant_id, channel, external_id, name, created_at)"
            " VALUES (:id, :t, :channel, :ext, :name, '2026-01-15T00:00:00Z')"
        ),
        values | {"name": more.get("name")},
    )
    return values["id"]


def _seed(session: Session) -> dict[str, uuid.UUID]:
    """A tenant with api accounts shop and crm (older first), a contact "42" written to
    by both, a contact "7" with no conversation, and a WhatsApp contact."""
    t, integration_id = tenant_with_integration(session, "Split", "api")
    ids = {"tenant": t}
    for n, name in enumerate(("shop", "crm")):
        account = IntegrationAccount(
            tenant_id=t,
            integration_id=integration_id,
            channel="api",
            name=name,
            external_id=f"api_{name}",
            is_default=n == 0,
            created_at=dt.datetime(2026, 1, n + 1, tzinfo=dt.UTC),
        )
        session.add(account)
        session.flush()
        ids[name] = account.id
    ids["shared"] = _contact(session, t, "api", "42", name="Sam")
    ids["lonely"] = _contact(session, t, "api", "7")
    ids["wa"] = _contact(session, t, "whatsapp", "1555")
    for n, account in enumerate(("crm", "shop")):  # the crm wrote first
        at = dt.datetime(2026, 2, n + 1, tzinfo=dt.UTC)
        conversation = Conversation(
            tenant_id=t,
            contact_id=ids["shared"],
            channel="api",
            integration_account_id=ids[account],
            created_at=at,
            last_inbound_at=at,
        )
        session.add(conversation)
        session.flush()
        message = Message(
            tenant_id=t,
            conversation_id=conversation.id,
            channel="api",
            direction="inbound",
            sender_type="contact",
            sender_id=ids["shared"],
            body="hi",
            status="received",
        )
        session.add(message)
        session.flush()
        ids[f"{account}_conversation"], ids[f"{account}_message"] = conversation.id, message.id
    return ids


def _contacts(connection) -> list[tuple]:
    return connection.execute(
        text(
            "SELECT id, channel, external_id, integration_account_id, name, last_inbound_at"
            " FROM contacts ORDER BY channel, external_id, created_at, id"
        )
    ).all()


def _owner(connection, table: str, column: str, row_id: uuid.UUID) -> uuid.UUID:
    return connection.execute(
        text(f"SELECT {column} FROM {table} WHERE id = :id"),  # noqa: S608
        {"id": row_id},
    ).scalar_one()


def test_a_shared_api_contact_is_split_per_account_and_folded_back(scratch_url):  # noqa: F811
    config = migrate.alembic_config(scratch_url)
    command.upgrade(config, BEFORE)
    engine = create_engine(scratch_url)
    try:
        with Session(engine) as session, session.begin():
            ids = _seed(session)
        command.upgrade(config, REVISION)
        with engine.connect() as connection:
            rows = {(r.external_id, r.integration_account_id): r for r in _contacts(connection)}
            # The crm wrote first: the original is the crm's; the shop's is a copy.
            original = rows[("42", ids["crm"])]
            copy = rows[("42", ids["shop"])]
            assert original.id == ids["shared"] and copy.id != ids["shared"]
            assert copy.name == "Sam"
            assert original.last_inbound_at.day == 1 and copy.last_inbound_at.day == 2
            assert rows[("7", ids["shop"])].id == ids["lonely"]  # the oldest api account's
            assert rows[("1555", None)].id == ids["wa"]  # other channels: no account
            assert len(rows) == 4
            shop_conversation = ids["shop_conversation"]
            assert _owner(connection, "conversations", "contact_id", shop_conversation) == copy.id
            crm_conversation = ids["crm_conversation"]
            assert (
                _owner(connection, "conversations", "contact_id", crm_conversation) == original.id
            )
            assert _owner(connection, "messages", "sender_id", ids["shop_message"]) == copy.id
            assert _owner(connection, "messages", "sender_id", ids["crm_message"]) == original.id

        command.downgrade(config, BEFORE)
        with engine.connect() as connection:
            folded = connection.execute(text("SELECT id FROM contacts WHERE external_id = '42'"))
            assert folded.scalars().all() == [ids["shared"]]
            for name in ("shop", "crm"):
                conversation = ids[f"{name}_conversation"]
                assert (
                    _owner(connection, "conversations", "contact_id", conversation) == ids["shared"]
                )
                message = ids[f"{name}_message"]
                assert _owner(connection, "messages", "sender_id", message) == ids["shared"]
        command.upgrade(config, REVISION)
    finally:
        engine.dispose()
