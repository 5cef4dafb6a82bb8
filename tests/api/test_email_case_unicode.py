"""Emails and role names compared without case: PostgreSQL lowers both sides.

Python's ``str.lower`` and PostgreSQL's ``lower`` differ on some letters ('İ' is 'i̇',
two code points, in Python and 'i' in PostgreSQL): a column lowered by the one compared
with a value lowered by the other never matched.
"""

from __future__ import annotations

import uuid

from tests.workspaces import PASSWORD, register


def test_an_email_whose_python_and_database_lowercase_differ_still_logs_in(client):
    email = f"İpek-{uuid.uuid4().hex[:8]}@example.com"
    ws = register(client, email=email)
    login = client.simulate_post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    assert login.json["user"]["id"] == ws.admin["id"]


def test_a_role_named_with_such_a_letter_can_be_given_by_name(workspace):
    name = f"İnceleme {uuid.uuid4().hex[:6]}"
    role = workspace.call("POST", "/api/roles", json={"name": name, "permissions": []})
    assert role.status_code == 201, role.text
    agent, _ = workspace.create_agent(role=name)
    assert agent["role"]["id"] == role.json["id"]
    again = workspace.call("POST", "/api/roles", json={"name": name, "permissions": []})
    assert again.status_code == 409, again.text
    assert again.json["error"]["details"][0]["field"] == "name"
