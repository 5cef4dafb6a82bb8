"""Every migration goes up, down (with rows in the tables) and up again to the same schema.

The revisions are read from Alembic's script directory, so a migration added later
is covered without touching this test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from shared import migrate
from shared.models import (
    AutomationEvent,
    AutomationRule,
    AutomationRun,
    Base,
    Contact,
    Conversation,
    DeadLetter,
    InboundEvent,
    Integration,
    IntegrationAccount,
    IntegrationAccountTombstone,
    Message,
    OutboxEvent,
    Role,
    Tenant,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.peers.throwaway_database import commit_without_flush_wait

#: What makes up a schema, one catalog query per aspect, each row rendered as text.
SCHEMA_QUERIES = {
    "columns": """
        SELECT table_name, column_name, ordinal_position, data_type, udt_name,
               character_maximum_length, is_nullable, column_default, is_generated,
               generation_expression
          FROM information_schema.columns WHERE table_schema = 'public'""",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
          FROM pg_trigger WHERE NOT tgisinternal""",
    # NOTE: the functions of extensions are the extensions' business, not ours.
    "functions": """
        SELECT proname, pg_get_function_identity_arguments(p.oid), md5(prosrc)
          FROM pg_proc p
         WHERE pronamespace = 'public'::regnamespace
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')""",
    "types": """
        SELECT typname, typtype FROM pg_type
         WHERE typnamespace = 'public'::regnamespace AND typtype IN ('e', 'd', 'r')""",
    "sequences": "SELECT sequence_name FROM information_schema.sequences",
    "extensions": "SELECT extname FROM pg_extension",
}


#: Extensions a downgrade to base leaves installed, on purpose.
KEPT_EXTENSIONS = {("pg_trgm",), ("btree_gin",)}


def schema_of(url: str) -> dict[str, list[tuple[str, ...]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                aspect: sorted(
                    tuple(str(v) for v in row)
                    for row in conn.execute(text(query))
                    # Alembic's own bookkeeping outlives a downgrade to base.
                    if "alembic_version" not in "".join(str(v) for v in row)
                )
                for aspect, query in SCHEMA_QUERIES.items()
            }
    finally:
        engine.dispose()


def revisions_base_to_head(url: str) -> list[str]:
    script = ScriptDirectory.from_config(migrate.alembic_config(url))
    assert len(script.get_heads()) == 1, f"more than one head: {script.get_heads()}"
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def insert_representative_rows(url: str) -> None:
    """A tenant with agents, a conversation with messages, a webhook endpoint with a
    delivery and its attempt, an automation rule with an event and its run, channel
    accounts and a deleted one's tombstone, an inbound payload, an outbox event and a
    dead letter."""
    engine = create_engine(url)
    try:
        with Session(engine) as session, session.begin():
            tenant = Tenant(name="Migrations", slug=f"migrations-{uuid.uuid4().hex[:8]}")
            session.add(tenant)
            session.flush()
            t = tenant.id
            role = Role(tenant_id=t, name="admin", is_builtin=True, permissions=["*"])
            session.add(role)
            session.flush()
            agents = [
                User(tenant_id=t, role_id=role.id, email=f"a{n}@example.com", full_name=f"A {n}")
                for n in range(2)
            ]
            session.add_all(agents)
            integration = Integration(tenant_id=t, channel="whatsapp")
            session.add(integration)
            session.flush()
            account = IntegrationAccount(
                tenant_id=t,
                integration_id=integration.id,
                channel="whatsapp",
                name="Support line",
                external_id=f"pn-{uuid.uuid4().hex[:8]}",
                is_default=True,
            )
            contact = Contact(tenant_id=t, channel="whatsapp", external_id="15550001")
            # A sender deleted earlier: its id, kept for its reconnection.
            tombstone = IntegrationAccountTombstone(
                tenant_id=t,
                channel="email",
                external_id="gone@example.com",
                account_id=uuid.uuid4(),
            )
            session.add_all([account, contact, tombstone])
            session.flush()
            conversation = Conversation(
                tenant_id=t,
                contact_id=contact.id,
                channel="whatsapp",
                integration_account_id=account.id,
            )
            session.add(conversation)
            session.flush()
            for n, direction in enumerate(("inbound", "outbound")):
                session.add(
                    Message(
                        tenant_id=t,
                        conversation_id=conversation.id,
                        channel="whatsapp",
                        direction=direction,
                        sender_type="contact" if direction == "inbound" else "user",
                        body=f"message {n}",
                        status="received" if direction == "inbound" else "sent",
                    )
                )
            endpoint = WebhookEndpoint(
                tenant_id=t,
                url="https://example.com/hook",
                event_types=["message.created"],
                secret_encrypted="encrypted",
            )
            session.add(endpoint)
            session.flush()
            delivery = WebhookDelivery(
                tenant_id=t,
                endpoint_id=endpoint.id,
                event_id=uuid.uuid4(),
                event_type="message.created",
                payload={},
                status="succeeded",
            )
            session.add(delivery)
            session.flush()
            session.add(
                WebhookAttempt(
                    tenant_id=t,
                    delivery_id=delivery.id,
                    attempt=1,
                    started_at=delivery.next_attempt_at,
                    duration_ms=5,
                    request_url=endpoint.url,
                    request_headers={},
                    request_body="{}",
                    response_status=200,
                )
            )
            rule = AutomationRule(
                tenant_id=t,
                name="Tag refunds",
                trigger_event_types=["message.created"],
                conditions={"match": "all", "conditions": []},
                actions=[{"type": "add_tags", "params": {"tags": ["refund"]}}],
            )
            event = AutomationEvent(
                tenant_id=t,
                outbox_event_id=uuid.uuid4(),
                event_type="message.created",
                payload={},
                fingerprint="0" * 64,
                status="done",
            )
            session.add_all([rule, event])
            session.flush()
            session.add(
                AutomationRun(
                    tenant_id=t,
                    automation_event_id=event.id,
                    rule_id=rule.id,
                    rule_version=1,
                    rule_snapshot={},
                    facts={},
                    matched=True,
                    status="matched",
                )
            )
            session.add_all(
                [
                    InboundEvent(
                        channel="whatsapp", provider_event_id="p-1", tenant_id=t, payload={}
                    ),
                    OutboxEvent(tenant_id=t, type="message.created", actor_type="system", data={}),
                    DeadLetter(
                        message_id=uuid.uuid4().hex,
                        queue_name="webhooks",
                        actor_name="deliver_webhook",
                        args=[],
                        kwargs={},
                        options={},
                        tenant_id=t,
                    ),
                ]
            )
    finally:
        engine.dispose()


@pytest.fixture
def scratch_url(database) -> Iterator[str]:
    """A database of this test's own (dropped at the end)."""
    url = (
        make_url(database)
        .set(database=f"{make_url(database).database}_migrations")
        .render_as_string(hide_password=False)
    )
    migrate.drop_database(url)
    migrate.create_database(url)
    commit_without_flush_wait(url)
    yield url
    migrate.drop_database(url)


def same_schema(actual: dict, expected: dict, where: str) -> None:
    """Assert two schema dumps match; extensions may only differ by :data:`KEPT_EXTENSIONS`."""
    for aspect in SCHEMA_QUERIES:
        if aspect == "extensions":
            extra = set(actual[aspect]) - set(expected[aspect])
            assert extra <= KEPT_EXTENSIONS, f"{where}: extensions {extra}"
            assert set(expected[aspect]) <= set(actual[aspect]), f"{where}: extensions"
        else:
            assert actual[aspect] == expected[aspect], f"{where}: {aspect} differ"


# NOTE: autogenerate cannot compare the one expression index with an operator class.
@pytest.mark.filterwarnings("ignore:Expression #2:UserWarning")
def test_every_migration_goes_down_with_rows_and_up_again_to_the_same_schema(database, scratch_url):
    config = migrate.alembic_config(scratch_url)
    revisions = revisions_base_to_head(scratch_url)
    schema_at = {"base": schema_of(scratch_url)}
    for revision in revisions:
        command.upgrade(config, revision)
        schema_at[revision] = schema_of(scratch_url)
    insert_representative_rows(scratch_url)

    # Down one step at a time, each landing on the schema its revision had on the way up.
    for revision, previous in reversed(
        list(zip(revisions, ["base", *revisions[:-1]], strict=True))
    ):
        try:
            command.downgrade(config, previous)
        except Exception as exc:  # name the migration whose downgrade broke
            pytest.fail(f"downgrade of {revision} (with rows) failed: {exc!r}")
        same_schema(schema_of(scratch_url), schema_at[previous], f"downgrade of {revision}")

    command.upgrade(config, "head")
    again = schema_of(scratch_url)
    same_schema(again, schema_at[revisions[-1]], "upgrade to head again")
    # This run's own database went from base to head in one go: the same schema.
    same_schema(again, schema_of(database), "head vs the suite's fresh database")

    # And the models agree with the migrations (autogenerate would write nothing).
    engine = create_engine(scratch_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
