"""Migration 0029: contact tags written before it are normalised as the API now does."""

from __future__ import annotations

import uuid

from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from shared import migrate
from shared.models import Contact, Tenant
from tests.migrations.test_up_down_up import scratch_url  # noqa: F401 (fixture)

BEFORE = "0028_retrieval_indexes"
REVISION = "0029_contact_tags_normalised"


def test_up_normalises_old_contact_tags_and_leaves_the_rest(scratch_url):  # noqa: F811
    config = migrate.alembic_config(scratch_url)
    command.upgrade(config, BEFORE)
    engine = create_engine(scratch_url)
    written = {
        "spaced": ["VIP  Gold", " vip gold", "Late\tPayer", "new"],
        "clean": ["vip", "gold"],
        "refused_now": ["o'brien"],
        "none": [],
    }
    ids = {name: uuid.uuid4() for name in written}
    try:
        with Session(engine) as session, session.begin():
            tenant = Tenant(name="Tags", slug=f"tags-{uuid.uuid4().hex[:8]}")
            session.add(tenant)
            session.flush()
            # Core, naming its columns: the model has columns of revisions after BEFORE.
            for name, tags in written.items():
                session.execute(
                    Contact.__table__.insert().values(
                        id=ids[name],
                        tenant_id=tenant.id,
                        channel="api",
                        external_id=name,
                        tags=tags,
                    )
                )
        command.upgrade(config, REVISION)
        with engine.connect() as connection:
            rows = dict(connection.execute(text("SELECT id, tags FROM contacts")).all())
        assert rows[ids["spaced"]] == ["vip gold", "late payer", "new"]
        assert rows[ids["clean"]] == ["vip", "gold"]
        assert rows[ids["refused_now"]] == ["o'brien"]
        assert rows[ids["none"]] == []
        command.downgrade(config, BEFORE)  # nothing to undo
        command.upgrade(config, REVISION)
    finally:
        engine.dispose()
