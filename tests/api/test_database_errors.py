"""What the database cannot do now answers 409 or 503 with a reason, never a 500."""

from __future__ import annotations

import logging

import falcon.testing
import pytest
from sqlalchemy import create_engine, text

from api.app import create_app
from api.endpoint import endpoint
from tests.webhooks.faults_support import free_port


def _raise(sqlstate: str) -> str:
    return f"DO $$ BEGIN RAISE EXCEPTION 'probe' USING ERRCODE = '{sqlstate}'; END $$"


STATEMENTS = {
    "deadlock": _raise("40P01"),
    "serialization": _raise("40001"),
    "lock": _raise("55P03"),
    "disk-full": _raise("53100"),
}


class _Probe:
    @endpoint("Meet a database failure", public=True, status=204)
    def on_post(self, req, resp, kind):
        session = req.context.db
        if kind == "timeout":
            session.execute(text("SET LOCAL statement_timeout = '20ms'"))
            session.execute(text("SELECT pg_sleep(2)"))
        elif kind == "unreachable":
            engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
            try:
                engine.connect()
            finally:
                engine.dispose()
        else:
            session.execute(text(STATEMENTS[kind]))


@pytest.fixture(scope="module")
def probe_client(database, broker):
    app = create_app()
    app.add_route("/api/db-probe/{kind}", _Probe())
    return falcon.testing.TestClient(app)


@pytest.mark.parametrize("kind", ["deadlock", "serialization", "lock"])
def test_a_collision_with_another_transaction_is_409_to_retry(probe_client, kind):
    resp = probe_client.simulate_post(f"/api/db-probe/{kind}")
    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["code"] == "concurrent_update"
    assert "nothing was saved" in resp.json["error"]["message"]


@pytest.mark.parametrize(
    ("kind", "code", "logged"),
    [
        ("timeout", "database_timeout", "statement timeout"),
        ("unreachable", "database_unavailable", "database unavailable"),
    ],
)
def test_a_database_that_cannot_answer_now_is_503_with_retry_after(
    probe_client, caplog, kind, code, logged
):
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        resp = probe_client.simulate_post(f"/api/db-probe/{kind}")
    assert resp.status_code == 503, resp.text
    assert resp.json["error"]["code"] == code
    assert resp.headers["Retry-After"] == "1"
    assert any(logged in r.getMessage() for r in caplog.records)


def test_any_other_database_failure_is_still_a_logged_500(probe_client, caplog):
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        resp = probe_client.simulate_post("/api/db-probe/disk-full")
    assert resp.status_code == 500
    assert resp.json["error"]["code"] == "internal_error"
    assert any(r.exc_info for r in caplog.records if "unhandled error" in r.getMessage())


def test_every_operation_documents_the_database_answers(client):
    document = client.simulate_get("/api/openapi.json").json
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "503" in operation["responses"], (method, path)
            if method in ("post", "put", "patch", "delete"):
                assert "409" in operation["responses"], (method, path)
