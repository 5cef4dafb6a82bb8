"""The safety net: a constraint the schemas missed is a logged 409/422, never a 500."""

from __future__ import annotations

import logging

import falcon.testing
import pytest
from sqlalchemy import text

from api.app import create_app
from api.endpoint import endpoint

STATEMENTS = {
    "not-null": "INSERT INTO net_probe (x, y) VALUES (NULL, 1)",
    "unique": "INSERT INTO net_probe (x, y) VALUES (1, 7), (2, 7)",
    "data": "SELECT 'not a number'::int",
}


class _Probe:
    @endpoint("Break a constraint", public=True, status=204)
    def on_post(self, req, resp, kind):
        session = req.context.db
        session.execute(text("CREATE TEMP TABLE net_probe (x int NOT NULL, y int UNIQUE)"))
        session.execute(text(STATEMENTS[kind]))


@pytest.fixture
def probe_client(database, broker):
    app = create_app()
    app.add_route("/api/net-probe/{kind}", _Probe())
    return falcon.testing.TestClient(app)


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("not-null", 422, "validation_error"),
        ("unique", 409, "conflict"),
        ("data", 422, "validation_error"),
    ],
)
def test_constraint_errors_map_and_are_logged(probe_client, caplog, kind, status, code):
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        resp = probe_client.simulate_post(f"/api/net-probe/{kind}")
    assert resp.status_code == status, resp.text
    assert resp.json["error"]["code"] == code
    assert "net_probe" not in resp.text
    assert any(r.exc_info for r in caplog.records if "database refused" in r.getMessage())
