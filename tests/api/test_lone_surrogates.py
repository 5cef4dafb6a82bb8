"""Half an emoji (a lone UTF-16 surrogate, ``"\\ud83d"``) is valid JSON but not text.

Accepted, it reached the database (which refuses it: the safety net's anonymous 422,
logged as our bug) or a response (which cannot be encoded: a 500). Every JSON body is
checked as it is read: 422 naming where the value is. A whole emoji, sent escaped as
its pair or as UTF-8, is text like any other.
"""

from __future__ import annotations

import json

import pytest

HALF = "\ud83d"


def _send(ws, method: str, path: str, body: dict):
    # json.dumps escapes a lone surrogate as \ud83d, as any client's encoder does
    raw = json.dumps(body).encode()
    return ws.call(method, path, body=raw, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/sla-policies", {"name": f"Fast {HALF}", "first_response_minutes": 30}, "name"),
        (
            "/api/integrations/email",
            {"settings": {"signature": {"lines": ["ok", HALF]}}},
            "settings.signature.lines[1]",
        ),
        ("/api/integrations/email", {"settings": {HALF: "value"}}, "settings"),
    ],
)
def test_a_lone_surrogate_anywhere_in_a_body_is_422_naming_where(workspace, path, body, field):
    method = "PUT" if path.startswith("/api/integrations/") else "POST"
    resp = _send(workspace, method, path, body)
    assert resp.status_code == 422, resp.text
    error = resp.json["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == [field], error


def test_a_whole_emoji_escaped_as_its_pair_is_text(workspace):
    body = {"name": "Fast \ud83d\ude80", "first_response_minutes": 30}
    resp = _send(workspace, "POST", "/api/sla-policies", body)
    assert resp.status_code == 201, resp.text
    assert resp.json["name"] == "Fast \U0001f680"
