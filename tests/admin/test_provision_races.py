"""Two tenants provisioned at once under the same name (or slug) answer as if one came first."""

from __future__ import annotations

import uuid

from shared.admin import tenants
from shared.admin.context import AdminCtx
from shared.db import get_sessionmaker
from tests.lock_races import race


def _holding(root, name: str, slug: str | None = None):
    """A session that provisioned ``name`` (its slug taken, not committed yet)."""
    holder = get_sessionmaker()()
    ctx = AdminCtx(super_admin_id=uuid.UUID(root.id), email=root.email)
    tenants.provision(
        holder,
        ctx,
        name=name,
        slug=slug,
        admin_email=f"first-{uuid.uuid4().hex[:8]}@hooli.example",
        admin_full_name="Gavin Belson",
    )
    return holder


def _provision(root, name: str, **fields):
    body = {
        "name": name,
        "admin_email": f"second-{uuid.uuid4().hex[:8]}@hooli.example",
        "admin_full_name": "Richard Hendricks",
    } | fields
    return root.call("POST", "/api/admin/tenants", json=body)


def test_a_name_provisioned_twice_at_once_gets_a_second_slug(root):
    name = f"Hooli {uuid.uuid4().hex[:6]}"
    holder = _holding(root, name)

    resp = race(holder, lambda: _provision(root, name))

    assert resp.status_code == 201, resp.text
    first = name.lower().replace(" ", "-")
    slug = resp.json["tenant"]["slug"]
    assert slug.startswith(f"{first}-"), slug


def test_a_slug_provisioned_twice_at_once_is_a_409_naming_the_slug(root):
    slug = f"pied-piper-{uuid.uuid4().hex[:6]}"
    holder = _holding(root, "Pied Piper", slug)

    resp = race(holder, lambda: _provision(root, "Pied Piper", slug=slug))

    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["details"] == [{"field": "slug", "message": "already used"}]


def test_a_slug_given_to_two_tenants_at_once_is_a_409_naming_the_slug(root, workspace):
    slug = f"raviga-{uuid.uuid4().hex[:6]}"
    other = _provision(root, "Raviga").json["tenant"]
    holder = get_sessionmaker()()
    ctx = AdminCtx(super_admin_id=uuid.UUID(root.id), email=root.email)
    tenants.update(holder, ctx, uuid.UUID(other["id"]), {"slug": slug})

    resp = race(
        holder,
        lambda: root.call(
            "PATCH", f"/api/admin/tenants/{workspace.tenant['id']}", json={"slug": slug}
        ),
    )

    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["details"] == [{"field": "slug", "message": "already used"}]
