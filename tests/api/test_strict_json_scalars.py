"""JSON bodies take integers, numbers and booleans as JSON gives them: ``true`` is not 1,
``1`` is not ``true`` and ``"5"`` is not 5. Query strings still parse ``"25"`` as 25."""

from __future__ import annotations

import pytest

POLICIES = "/api/sla-policies"


def _policy(**fields) -> dict:
    return {"name": "First answer", "first_response_minutes": 30} | fields


def _refused(resp, field: str) -> None:
    assert resp.status_code == 422, resp.text
    error = resp.json["error"]
    assert error["code"] == "validation_error"
    assert field in {d["field"] for d in error["details"]}, error


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", True),
        ("priority", False),
        ("priority", "5"),
        ("priority", 5.5),
        ("first_response_minutes", True),
        ("first_response_minutes", "30"),
        ("is_active", 1),
        ("is_active", 0),
        ("is_active", "true"),
    ],
)
def test_a_body_scalar_of_another_json_type_is_422_naming_the_field(workspace, field, value):
    _refused(workspace.call("POST", POLICIES, json=_policy(**{field: value})), field)


def test_an_update_is_as_strict_as_a_create(workspace):
    created = workspace.call("POST", POLICIES, json=_policy())
    assert created.status_code == 201, created.text
    path = f"{POLICIES}/{created.json['id']}"
    _refused(workspace.call("PATCH", path, json={"priority": True}), "priority")
    _refused(workspace.call("PATCH", path, json={"is_active": 0}), "is_active")
    listed = workspace.call("GET", POLICIES).json["items"]
    assert [p["priority"] for p in listed if p["id"] == created.json["id"]] == [0]


def test_scalars_of_their_own_type_still_pass(workspace):
    created = workspace.call("POST", POLICIES, json=_policy(priority=7, is_active=False))
    assert created.status_code == 201, created.text
    assert created.json["priority"] == 7 and created.json["is_active"] is False


def test_query_parameters_still_parse_from_strings(workspace):
    resp = workspace.call("GET", "/api/conversations", params={"limit": "25", "unread": "true"})
    assert resp.status_code == 200, resp.text
    refused = workspace.call("GET", "/api/conversations", params={"limit": "many"})
    assert refused.status_code == 400, refused.text
    assert refused.json["error"]["details"][0]["field"] == "limit"
