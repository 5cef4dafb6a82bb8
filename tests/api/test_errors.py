"""Every kind of bad request gets the error envelope, the right status and a request id."""

from __future__ import annotations

import logging

import falcon.testing
import pytest

from api.app import create_app
from api.endpoint import endpoint


def _assert_envelope(resp, status: int, code: str):
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert set(resp.json) == {"error"}
    assert set(resp.json["error"]) == {"code", "message", "details"}
    assert resp.json["error"]["code"] == code
    assert resp.headers["x-request-id"]


def test_malformed_json_is_400(workspace):
    for body in ("{not json", "[1, 2]", '"text"', "\xff\xfe"):
        resp = workspace.call(
            "POST", "/api/roles", body=body, headers={"Content-Type": "application/json"}
        )
        _assert_envelope(resp, 400, "bad_request")


def test_invalid_fields_are_422_with_each_field(workspace):
    resp = workspace.call("POST", "/api/roles", json={"name": "", "permissions": "all", "x": 1})
    _assert_envelope(resp, 422, "validation_error")
    assert {d["field"] for d in resp.json["error"]["details"]} == {"name", "permissions", "x"}


def test_unknown_route_404_and_wrong_method_405(client):
    _assert_envelope(client.simulate_get("/api/no-such-thing"), 404, "not_found")
    resp = client.simulate_put("/api/auth/login", json={})
    _assert_envelope(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["allow"]


def test_oversized_body_is_413(workspace):
    huge = '{"name": "' + "x" * 1_100_000 + '", "permissions": []}'
    resp = workspace.call(
        "POST", "/api/roles", body=huge, headers={"Content-Type": "application/json"}
    )
    _assert_envelope(resp, 413, "payload_too_large")


def test_wrong_content_type_is_415(workspace):
    resp = workspace.call(
        "POST",
        "/api/roles",
        body="name=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    _assert_envelope(resp, 415, "unsupported_media_type")


def test_request_id_is_echoed_or_generated(client):
    given = client.simulate_get("/api/nope", headers={"X-Request-ID": "trace-123"})
    assert given.headers["x-request-id"] == "trace-123"
    hostile = client.simulate_get("/api/nope", headers={"X-Request-ID": "a\r\nSet-Cookie: x"})
    assert hostile.headers["x-request-id"] != "a\r\nSet-Cookie: x"
    assert len(hostile.headers["x-request-id"]) == 32


class _Boom:
    @endpoint("Explode", public=True)
    def on_get(self, req, resp):
        raise RuntimeError("secret internals: password=hunter2")


@pytest.fixture
def exploding_client(database, broker):
    app = create_app()
    app.add_route("/api/boom", _Boom())
    return falcon.testing.TestClient(app)


def test_unhandled_exception_is_500_with_request_id_and_no_internals(exploding_client, caplog):
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        resp = exploding_client.simulate_get("/api/boom", headers={"X-Request-ID": "boom-1"})
    _assert_envelope(resp, 500, "internal_error")
    assert "hunter2" not in resp.text and "RuntimeError" not in resp.text
    assert "boom-1" in resp.json["error"]["message"]
    assert resp.json["error"]["details"] == [{"request_id": "boom-1"}]
    assert any("hunter2" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_nul_characters_are_refused_not_500(workspace):
    body = '{"name": "evil\\u0000role", "permissions": []}'
    resp = workspace.call(
        "POST", "/api/roles", body=body, headers={"Content-Type": "application/json"}
    )
    _assert_envelope(resp, 422, "validation_error")
    assert resp.json["error"]["details"] == [
        {"field": "name", "message": "must not contain NUL characters"}
    ]
    # A literal backslash-u sequence is ordinary text.
    literal = '{"name": "slash\\\\u0000ok", "permissions": []}'
    ok = workspace.call(
        "POST", "/api/roles", body=literal, headers={"Content-Type": "application/json"}
    )
    assert ok.status_code == 201, ok.text
    assert ok.json["name"] == "slash\\u0000ok"
    query = workspace.call("GET", "/api/agents", params={"q": "a\x00b"})
    _assert_envelope(query, 400, "bad_request")
