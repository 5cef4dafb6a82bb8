"""A body sent chunked (no Content-Length) is refused with 411 on every body method.

Falcon reads a body within its declared length: without one, a JSON body read as empty
(its fields "missing") and a multipart upload failed an assertion in the form parser.
"""

from __future__ import annotations

import uuid

from tests.workspaces import register

CHUNKED = {"Transfer-Encoding": "chunked"}


def _refused(resp) -> None:
    assert resp.status_code == 411, resp.text
    assert resp.json["error"]["code"] == "length_required"


def test_a_chunked_json_body_is_411(client):
    ws = register(client)
    _refused(
        ws.call(
            "POST",
            "/api/quick-replies",
            body=b"",
            headers={"Content-Type": "application/json", **CHUNKED},
        )
    )


def test_a_chunked_upload_is_411_wherever_files_are_taken(client):
    ws = register(client)
    form = {"Content-Type": "multipart/form-data; boundary=x", **CHUNKED}
    agent = uuid.uuid4()
    for path in (
        "/api/media",
        f"/api/ai-agents/{agent}/knowledge-sources",
        "/api/quick-replies/import",
    ):
        _refused(ws.call("POST", path, body=b"", headers=form))


def test_the_document_says_every_body_method_may_answer_411(client):
    document = client.simulate_get("/api/openapi.json").json
    post = document["paths"]["/api/quick-replies"]["post"]
    assert "411" in post["responses"]
