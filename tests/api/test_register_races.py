"""Two sign-ups at once under one organisation name (or slug) answer as if one came first."""

from __future__ import annotations

import uuid

from shared.db import get_sessionmaker
from shared.identity.tenants import register_tenant
from tests.lock_races import race
from tests.workspaces import PASSWORD


def _holding(name: str, slug: str | None = None):
    """A session that registered ``name`` (its slug taken, not committed yet)."""
    holder = get_sessionmaker()()
    register_tenant(
        holder,
        organization_name=name,
        full_name="Gavin Belson",
        email=f"first-{uuid.uuid4().hex[:8]}@hooli.example",
        password=PASSWORD,
        slug=slug,
    )
    return holder


def _register(client, name: str, **fields):
    body = {
        "organization_name": name,
        "full_name": "Richard Hendricks",
        "email": f"second-{uuid.uuid4().hex[:8]}@hooli.example",
        "password": PASSWORD,
    } | fields
    return client.simulate_post("/api/auth/register", json=body)


def test_a_name_registered_twice_at_once_gets_a_second_slug(client):
    name = f"Hooli {uuid.uuid4().hex[:6]}"
    holder = _holding(name)

    resp = race(holder, lambda: _register(client, name))

    assert resp.status_code == 201, resp.text
    slug = resp.json["tenant"]["slug"]
    assert slug.startswith(name.lower().replace(" ", "-") + "-"), slug


def test_a_slug_registered_twice_at_once_is_a_409_naming_the_slug(client):
    slug = f"pied-piper-{uuid.uuid4().hex[:6]}"
    holder = _holding("Pied Piper", slug)

    resp = race(holder, lambda: _register(client, "Pied Piper", slug=slug))

    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["details"] == [{"field": "slug", "message": "already used"}]
