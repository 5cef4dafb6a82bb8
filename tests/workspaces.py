"""Workspaces for HTTP tests: register a tenant and call the API as one of its users."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass

_counter = itertools.count()
PASSWORD = "correct horse battery"


@dataclass
class Workspace:
    """A registered tenant and its admin's credentials."""

    client: object
    tenant: dict
    admin: dict
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, *, token: str | None = None, **kwargs):
        headers = {"Authorization": f"Bearer {token or self.token}", **kwargs.pop("headers", {})}
        return self.client.simulate_request(method, path, headers=headers, **kwargs)

    def create_agent(self, role: str = "agent", **fields) -> tuple[dict, str]:
        """Create an agent with a password and log them in; return (agent, token)."""
        email = fields.pop("email", f"agent-{uuid.uuid4().hex[:8]}@example.com")
        body = {"email": email, "full_name": "Ada Agent", "role": role, "password": PASSWORD}
        resp = self.call("POST", "/api/agents", json=body | fields)
        assert resp.status_code == 201, resp.text
        login = self.client.simulate_post(
            "/api/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        return resp.json, login.json["access_token"]


def register(client, **overrides) -> Workspace:
    n = next(_counter)
    body = {
        "organization_name": f"Acme {n} {uuid.uuid4().hex[:6]}",
        "full_name": "Grace Admin",
        "email": f"admin-{uuid.uuid4().hex[:10]}@example.com",
        "password": PASSWORD,
    } | overrides
    resp = client.simulate_post("/api/auth/register", json=body)
    assert resp.status_code == 201, resp.text
    data = resp.json
    return Workspace(client, data["tenant"], data["user"], data["access_token"])
