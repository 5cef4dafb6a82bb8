"""A JSON body is refused at the door when it nests too deep or holds what JSON has not.

Free-form fields (an account's settings, a rule's payload, a plan's features) take
any JSON. Before the bound, one nested 300 levels was stored and reading it back
overflowed the stack (a 500 for as long as the row lived), and one nested a few
thousand levels failed the parser itself (RecursionError, a 500).
"""

from __future__ import annotations

import json

import pytest

from shared.json_encoding import MAX_DEPTH
from tests.channels_inbound.conftest import numeric_id
from tests.channels_inbound.test_integrations_api import _account


def _nested(levels: int) -> dict:
    """``levels`` objects, one inside the next."""
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


#: An account the API creates (the WhatsApp fields the channel requires).
VALID = {
    "channel": "whatsapp",
    "name": "Deep",
    "credentials": {"access_token": "t" * 20, "app_secret": "s" * 20, "verify_token": "v" * 20},
}


def _raw_nested(levels: int) -> str:
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 300, 5000])
def test_a_body_nested_too_deep_is_400_and_nothing_is_stored(workspace, levels):
    """A valid account but for its settings, which bring the body to ``levels`` levels."""
    settings = {"waba_id": "102290129340398", "deep": "DEEP"}
    body = json.dumps(VALID | {"external_id": numeric_id(), "settings": settings})
    body = body.replace('"DEEP"', _raw_nested(levels - 2))
    resp = workspace.call(
        "POST", "/api/integration-accounts", body=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400, resp.text
    error = resp.json["error"]
    assert error["message"] == f"The request body nests deeper than {MAX_DEPTH} levels"
    assert error["details"] == [
        {"field": "body", "message": f"nested deeper than {MAX_DEPTH} levels"}
    ]
    assert workspace.call("GET", "/api/integration-accounts").json["items"] == []


def test_a_body_at_the_bound_is_stored_and_answers_as_sent(workspace):
    settings = {"waba_id": "102290129340398", "deep": _nested(MAX_DEPTH - 2)}
    created = _account(workspace, settings=settings)
    assert created.status_code == 201, created.text
    assert created.json["settings"]["deep"] == settings["deep"]
    again = workspace.call("GET", f"/api/integration-accounts/{created.json['id']}")
    assert again.status_code == 200 and again.json["settings"] == created.json["settings"]


def test_brackets_inside_strings_do_not_count(workspace):
    settings = {"waba_id": "102290129340398", "note": "[" * 500 + "{" * 500}
    created = _account(workspace, settings=settings)
    assert created.status_code == 201, created.text
    assert created.json["settings"]["note"] == settings["note"]


@pytest.mark.parametrize(
    ("number", "said"),
    [
        ("NaN", "NaN is not a JSON number"),
        ("-Infinity", "-Infinity is not a JSON number"),
        ("1e400", "1e400 is too large a number"),
    ],
)
def test_numbers_json_does_not_have_are_400_naming_the_body(workspace, number, said):
    """Python's parser takes them; jsonb does not: the database refused them, and the
    answer named no field (a 422 'cannot be stored', logged as a schema bug)."""
    body = json.dumps(VALID | {"external_id": numeric_id(), "settings": {"waba_id": "1"}})
    body = body.replace('"waba_id": "1"', f'"waba_id": "1", "rate": {number}')
    resp = workspace.call(
        "POST", "/api/integration-accounts", body=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400, resp.text
    error = resp.json["error"]
    assert error["message"] == "The request body is not valid JSON"
    assert said in error["details"][0]["message"]
    assert workspace.call("GET", "/api/integration-accounts").json["items"] == []
