"""The platform audit log keeps every call, even one racing its super admin's deletion."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.admin import super_admins
from shared.admin.context import AdminCtx
from shared.db import get_sessionmaker, session_scope
from shared.models import PlatformAuditLog
from tests.admin.conftest import create_super_admin, login
from tests.admin.test_tenants import provision
from tests.lock_races import race


def _provisioning_rows(tenant_id: str) -> list[PlatformAuditLog]:
    with session_scope() as session:
        rows = list(
            session.scalars(
                select(PlatformAuditLog).where(
                    PlatformAuditLog.action == "Provision a new tenant",
                    PlatformAuditLog.details["tenant_id"].astext == tenant_id,
                )
            )
        )
        session.expunge_all()
        return rows


def test_a_call_whose_super_admin_is_deleted_meanwhile_is_still_audited(client, root):
    other = login(client, create_super_admin())
    holder = get_sessionmaker()()
    # Another super admin deletes ``other`` while other's call runs (not committed yet).
    by_root = AdminCtx(super_admin_id=uuid.UUID(root.id), email=root.email)
    super_admins.delete(holder, by_root, uuid.UUID(other.id))

    created = race(holder, lambda: provision(other))

    assert created is not None  # the call did its work...
    tenant_id = created["tenant"]["id"]
    assert root.call("GET", f"/api/admin/tenants/{tenant_id}").status_code == 200
    rows = _provisioning_rows(tenant_id)
    assert len(rows) == 1, "...which the audit log lost"
    (row,) = rows
    assert row.status == 201 and row.super_admin_id is None  # the account is gone
    assert row.details["super_admin_id"] == other.id  # who it was is kept


def test_a_super_admin_deleted_meanwhile_cannot_delete_another(client, root):
    """Two super admins deleting each other at once: the one deleted first is gone, and its
    call (authenticated before) must not remove the other account after that."""
    first = login(client, create_super_admin())
    second = login(client, create_super_admin())
    holder = get_sessionmaker()()
    by_first = AdminCtx(super_admin_id=uuid.UUID(first.id), email=first.email)
    super_admins.delete(holder, by_first, uuid.UUID(second.id))

    resp = race(holder, lambda: second.call("DELETE", f"/api/admin/super-admins/{first.id}"))

    assert resp is not None and resp.status_code == 401, resp and resp.text
    listed = {item["id"] for item in root.call("GET", "/api/admin/super-admins").json}
    assert first.id in listed and second.id not in listed


def test_a_super_admin_deleted_meanwhile_cannot_reset_anothers_password(client, root):
    """The reset waited on the deletion's locks; after it, the removed account must not
    learn a new password of the account that removed it."""
    first = login(client, create_super_admin())
    second = login(client, create_super_admin())
    holder = get_sessionmaker()()
    by_first = AdminCtx(super_admin_id=uuid.UUID(first.id), email=first.email)
    super_admins.delete(holder, by_first, uuid.UUID(second.id))

    path = f"/api/admin/super-admins/{first.id}/reset-password"
    resp = race(holder, lambda: second.call("POST", path))

    assert resp is not None and resp.status_code == 401, resp and resp.text
    assert first.call("GET", "/api/admin/super-admins").status_code == 200  # not reset
