"""Workspace slugs are named in any case: the schemas lower them (``to_lower``)."""

from __future__ import annotations

import uuid

from tests.workspaces import PASSWORD, register


def test_login_names_the_workspace_in_any_case(client):
    """The slug's pattern was checked before it was lowered: 'Acme' answered 422."""
    email = f"case-{uuid.uuid4().hex[:8]}@example.com"
    register(client, email=email)
    second = register(client, email=email)
    chosen = client.simulate_post(
        "/api/auth/login",
        json={"email": email, "password": PASSWORD, "tenant": second.tenant["slug"].upper()},
    )
    assert chosen.status_code == 200, chosen.text
    assert chosen.json["user"]["id"] == second.admin["id"]


def test_a_slug_chosen_in_capitals_is_kept_lowercase(client):
    slug = f"Mixed-Case-{uuid.uuid4().hex[:6]}"
    ws = register(client, slug=slug)
    assert ws.tenant["slug"] == slug.lower()
    bad = client.simulate_post(
        "/api/auth/register",
        json={
            "organization_name": "Bad",
            "full_name": "B",
            "email": f"b-{uuid.uuid4().hex[:6]}@example.com",
            "password": PASSWORD,
            "slug": "no_underscores",
        },
    )
    assert bad.status_code == 422
