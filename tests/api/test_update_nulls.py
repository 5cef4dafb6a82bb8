"""PATCH/PUT bodies: ``null`` clears only what may be empty; elsewhere it is a 422 naming the field.

These answered 500 before (NotNullViolation, or a TypeError in the service).
"""

from __future__ import annotations

import uuid

import pytest
from pydantic import BaseModel

from api.app import routes
from api.schemas.common import Update


def _null_refused(resp, field: str) -> None:
    assert resp.status_code == 422, resp.text
    assert {"field": field, "message": resp.json["error"]["details"][0]["message"]} in resp.json[
        "error"
    ]["details"]
    assert "null" in resp.json["error"]["details"][0]["message"]


@pytest.mark.parametrize("field", ["role", "full_name", "password", "email"])
def test_agent_fields_that_cannot_be_null(workspace, field):
    agent, _ = workspace.create_agent()
    resp = workspace.call("PATCH", f"/api/agents/{agent['id']}", json={field: None})
    _null_refused(resp, field)
    again = workspace.call("GET", f"/api/agents/{agent['id']}").json
    assert [again[k] for k in ("email", "full_name", "role")] == [
        agent[k] for k in ("email", "full_name", "role")
    ]


def test_null_removes_an_agents_avatar(workspace):
    agent, _ = workspace.create_agent(avatar_url="https://example.com/a.png")
    resp = workspace.call("PATCH", f"/api/agents/{agent['id']}", json={"avatar_url": None})
    assert resp.status_code == 200, resp.text
    assert resp.json["avatar_url"] is None


def test_integration_account_name_cannot_be_null(workspace):
    created = workspace.call(
        "POST",
        "/api/integration-accounts",
        json={"channel": "whatsapp", "name": "Line", "external_id": str(uuid.uuid4().int)[:15]},
    )
    assert created.status_code == 201, created.text
    path = f"/api/integration-accounts/{created.json['id']}"
    for field in ("name", "settings", "credentials", "status"):
        _null_refused(workspace.call("PATCH", path, json={field: None}), field)
    assert workspace.call("GET", path).json["name"] == "Line"


def test_integration_upsert_refuses_null(workspace):
    resp = workspace.call("PUT", "/api/integrations/whatsapp", json={"enabled": None})
    _null_refused(resp, "enabled")


def test_contact_fields_null_clears_but_tags_cannot(workspace):
    from tests.inbox_conversations.conftest import add_conversation

    conversation = add_conversation(workspace, email="c@example.com")
    contact = workspace.call("GET", f"/api/conversations/{conversation}").json["contact"]["id"]
    cleared = workspace.call("PATCH", f"/api/contacts/{contact}", json={"email": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json["email"] is None
    _null_refused(workspace.call("PATCH", f"/api/contacts/{contact}", json={"tags": None}), "tags")


def _update_bodies() -> list[type[BaseModel]]:
    found = []
    for _template, resource in routes():
        for method in ("on_patch", "on_put"):
            spec = getattr(getattr(resource, method, None), "__endpoint__", None)
            if spec is not None and spec.body is not None:
                found.append(spec.body)
    return found


def test_every_partial_update_body_is_an_update():
    """A PATCH body whose fields are all optional must say which take null (Update)."""
    for model in _update_bodies():
        optional = [f for f in model.model_fields.values() if not f.is_required()]
        if len(optional) == len(model.model_fields) and len(optional) > 1:
            assert issubclass(model, Update), model.__name__


def test_update_schemas_never_offer_null_where_it_is_refused():
    for model in _update_bodies():
        if not issubclass(model, Update):
            continue
        properties = model.model_json_schema()["properties"]
        for name, prop in properties.items():
            offers_null = {"type": "null"} in prop.get("anyOf", []) or prop.get("type") == "null"
            assert offers_null == (name in model.nullable_fields), (model.__name__, name)
            if name not in model.nullable_fields:
                assert prop.get("default", 0) is not None, (model.__name__, name)
