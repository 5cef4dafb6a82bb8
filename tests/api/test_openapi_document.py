"""The served OpenAPI document: valid 3.1, groups in the reference's order, errors documented."""

from __future__ import annotations

import uuid

import pytest
from openapi_spec_validator import validate

from api.openapi import TAGS

#: The endpoint groups in the API reference's order (its ``### Group (N)`` headings).
#: NOTE: copied here, not read from ../shared/API.md: nothing the project runs may
#: depend on files outside the repository.
REFERENCE_GROUPS = (
    "Auth",
    "Conversations",
    "Messages",
    "Contacts",
    "Agents",
    "Notes",
    "Quick Replies",
    "Analytics",
    "Media",
    "Divisions",
    "Transfers",
    "Scheduled Messages",
    "CSAT",
    "SLA",
    "Outgoing Webhooks",
    "Campaigns",
    "Integrations",
    "Activity Logs",
    "WA Templates",
    "Webhooks",
    "Roles",
    "API Keys",
    "Health",
    "Automation",
    "Chat Expiration",
    "AI Agents",
    "Working Hours",
    "Super Admin",
    "Billing Admin",
    "Billing",
)


def _document(client) -> dict:
    resp = client.simulate_get("/api/openapi.json")
    assert resp.status_code == 200
    return resp.json


def test_the_document_is_valid_openapi_3_1(client):
    document = _document(client)
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises OpenAPIValidationError naming the first problem


def test_a_document_with_a_non_nullable_null_default_is_refused():
    """The validator really checks schemas: the defect the document used to have fails."""
    import pytest
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

    bad = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {},
        "components": {
            "schemas": {"U": {"properties": {"name": {"type": "string", "default": None}}}}
        },
    }
    with pytest.raises(OpenAPIValidationError):
        validate(bad)


def test_update_schemas_say_which_fields_null_clears(client):
    schemas = _document(client)["components"]["schemas"]
    agent = schemas["AgentUpdate"]["properties"]
    assert agent["email"].get("type") == "string" and "default" not in agent["email"]
    assert {"type": "null"} in agent["avatar_url"]["anyOf"]
    division = schemas["DivisionUpdate"]["properties"]["name"]
    assert division["type"] == "string" and "default" not in division


def test_tags_are_declared_in_the_reference_order_with_descriptions(client):
    document = _document(client)
    names = [tag["name"] for tag in document["tags"]]
    used = {
        tag for path in document["paths"].values() for op in path.values() for tag in op["tags"]
    }
    assert set(names) == used
    assert all(tag.get("description") for tag in document["tags"])
    reference = list(REFERENCE_GROUPS)
    in_reference = [name for name in names if name in reference]
    assert in_reference == sorted(in_reference, key=reference.index)
    declared = [name for name, _ in TAGS if name in reference]
    assert declared == [name for name in reference if name in declared]


def _responses(document, method, path) -> set[str]:
    return set(document["paths"][path][method]["responses"])


def test_error_responses_follow_from_the_declarations(client):
    document = _document(client)
    login = _responses(document, "post", "/api/auth/login")
    assert {"200", "400", "401", "415", "422", "429", "500"} <= login
    assert "404" not in login
    patch_agent = _responses(document, "patch", "/api/agents/{id}")
    assert {"200", "400", "401", "403", "404", "413", "415", "422", "500"} <= patch_agent
    list_agents = _responses(document, "get", "/api/agents")
    assert {"200", "400", "401", "403", "500"} <= list_agents
    assert not {"404", "413", "415", "422"} & list_agents
    assert "409" in _responses(document, "delete", "/api/roles/{id}")
    health = document["paths"]["/api/health"]["get"]["responses"]
    assert health["503"]["content"] == health["200"]["content"]
    for path in document["paths"].values():
        for op in path.values():
            assert "500" in op["responses"]


def test_the_suite_fails_an_answer_its_document_does_not_list(app, workspace):
    """Every request of the suite goes through tests.documented_statuses: prove it bites."""
    import falcon.testing

    from tests.documented_statuses import DocumentedStatuses, UndocumentedStatus

    checked = DocumentedStatuses(app)
    checked._documented[("GET", "/api/agents/{id}")].discard(404)
    client = falcon.testing.TestClient(checked)
    headers = {"Authorization": f"Bearer {workspace.token}"}
    with pytest.raises(UndocumentedStatus, match=r"GET /api/agents/\{id\} answered 404"):
        client.simulate_get(f"/api/agents/{uuid.uuid4()}", headers=headers)
    assert client.simulate_get("/api/agents", headers=headers).status_code == 200
