"""``shared.sql.tenant_row(lock=True)``: a locked read sees the row as it is now."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update

from shared.db import get_sessionmaker, session_scope
from shared.models import Role
from shared.sql import tenant_row
from tests.workspaces import register


def test_a_row_read_before_is_refreshed_by_the_locked_read(client):
    ws = register(client)
    tenant_id = uuid.UUID(ws.tenant["id"])
    with session_scope() as session:
        role_id = session.scalar(
            select(Role.id).where(Role.tenant_id == tenant_id, Role.name == "agent")
        )

    reader = get_sessionmaker()()
    try:
        stale = tenant_row(reader, Role, tenant_id, role_id, missing="Role not found")
        assert stale.description != "changed meanwhile"
        with session_scope() as other:
            other.execute(
                update(Role).where(Role.id == role_id).values(description="changed meanwhile")
            )

        locked = tenant_row(reader, Role, tenant_id, role_id, missing="Role not found", lock=True)

        assert locked is stale and locked.description == "changed meanwhile"
    finally:
        reader.rollback()
        reader.close()
