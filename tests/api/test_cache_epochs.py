"""Which committed writes set a new agents-list epoch, whatever path they take to PostgreSQL.

Observed where other processes look: the epochs in Redis. A write charged to its
tenant sets that tenant's epoch only; one whose tenant cannot be told sets the global
epoch (every tenant's pages go); a rolled-back write or another table's sets none.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import insert, select, text, update

from shared.db import get_engine, get_sessionmaker, session_scope
from shared.identity.agents_list_cache import PAGES
from shared.models import Contact, Role, User
from shared.redis_client import get_redis, mget_on_own_connection


def epochs(tenant_id) -> tuple:
    """(global epoch, the tenant's epoch) as Redis holds them."""
    return tuple(get_redis().mget(PAGES.epoch_keys(tenant_id)))


def _orm_flush(session, tenant, user):
    session.get(User, user).full_name = "Flushed"


def _orm_delete_role(session, tenant, user):
    session.add(role := Role(tenant_id=tenant, name=f"tmp-{uuid.uuid4().hex[:6]}"))
    session.flush()
    session.delete(role)


def _core_update(session, tenant, user):
    session.execute(
        update(User).where(User.tenant_id == tenant, User.id == user).values(full_name="Core")
    )


def _connection_execute(session, tenant, user):
    session.connection().execute(
        update(Role).where(Role.tenant_id == tenant, Role.name == "agent").values(description="x")
    )


def _bulk_insert(session, tenant, user):
    role = session.scalar(select(Role.id).where(Role.tenant_id == tenant, Role.name == "agent"))
    session.execute(
        insert(User),
        [
            {"tenant_id": tenant, "role_id": role, "email": f"{uuid.uuid4().hex}@e.com"}
            | {"full_name": "Bulk"}
        ],
    )


def _core_update_without_tenant(session, tenant, user):
    session.execute(update(User).where(User.id == user).values(full_name="Anyone's"))


def _text(session, tenant, user):
    session.execute(text("UPDATE users SET full_name = 'Text' WHERE id = :id"), {"id": user})


def _driver_sql(session, tenant, user):
    session.connection().exec_driver_sql(
        "UPDATE users SET full_name = 'Driver' WHERE id = %(id)s", {"id": user}
    )


@pytest.mark.parametrize(
    "write, scope",
    [
        (_orm_flush, "tenant"),
        (_orm_delete_role, "tenant"),
        (_core_update, "tenant"),
        (_connection_execute, "tenant"),
        (_bulk_insert, "tenant"),
        (_core_update_without_tenant, "global"),
        (_text, "global"),
        (_driver_sql, "global"),
    ],
    ids=lambda v: getattr(v, "__name__", v).strip("_"),
)
def test_a_committed_write_sets_the_epoch_of_its_scope(workspace, other_workspace, write, scope):
    tenant, user = uuid.UUID(workspace.tenant["id"]), uuid.UUID(workspace.admin["id"])
    before, bystander = epochs(tenant), epochs(other_workspace.tenant["id"])

    with session_scope() as session:
        write(session, tenant, user)
        assert epochs(tenant) == before, "published before the commit"

    after = epochs(tenant)
    if scope == "tenant":
        assert after[0] == before[0] and after[1] != before[1]
        assert epochs(other_workspace.tenant["id"]) == bystander
    else:
        assert after[0] != before[0]


def test_writes_on_the_engines_own_connections_count(workspace):
    tenant = workspace.tenant["id"]
    before = epochs(tenant)
    with get_engine().begin() as conn:
        conn.execute(
            update(Role)
            .where(Role.tenant_id == tenant, Role.name == "agent")
            .values(description="y")
        )
        assert epochs(tenant) == before
    assert epochs(tenant)[1] != before[1]


def test_an_autocommit_write_counts_without_a_commit(workspace):
    tenant, user = workspace.tenant["id"], workspace.admin["id"]
    before = epochs(tenant)
    session = get_sessionmaker(read_only=True)()
    try:
        session.execute(
            update(User).where(User.tenant_id == tenant, User.id == user).values(status="online")
        )
    finally:
        session.close()
    assert epochs(tenant)[1] != before[1]


def test_rolled_back_and_unrelated_writes_set_no_epoch(workspace):
    tenant, user = workspace.tenant["id"], workspace.admin["id"]
    before = epochs(tenant)
    with pytest.raises(RuntimeError), session_scope() as session:
        session.execute(update(User).where(User.id == user).values(full_name="Never"))
        session.get(User, user).status = "online"
        session.flush()
        raise RuntimeError("roll it back")
    with session_scope() as session:
        session.add(Contact(tenant_id=tenant, channel="email", external_id=f"{uuid.uuid4()}@e.com"))
    assert epochs(tenant) == before


def test_the_epochs_read_are_the_values_redis_holds(redis_namespace):
    """Set, unset and empty values, and a reply too long for one socket read."""
    client = get_redis()
    short = (f"{redis_namespace}:t:set", f"{redis_namespace}:t:unset", f"{redis_namespace}:t:empty")
    client.set(short[0], uuid.uuid4().hex)
    client.set(short[2], b"")
    many = tuple(f"{redis_namespace}:t:many:{i}" for i in range(3000))
    client.mset({k: uuid.uuid4().hex * 2 for k in many[::2]})

    assert mget_on_own_connection(short) == client.mget(short)
    assert mget_on_own_connection(short)[1:] == [None, b""]
    assert mget_on_own_connection(many) == client.mget(many)
    assert mget_on_own_connection(short) == client.mget(short), "the connection is reusable"
