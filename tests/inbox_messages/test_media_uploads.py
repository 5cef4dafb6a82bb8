"""Media uploads a client frames oddly: clear 4xx answers, never a 500."""

from __future__ import annotations

import os

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(600)
BOUNDARY = "b0undary"
FORM = f"multipart/form-data; boundary={BOUNDARY}"


def _form(part_headers: str, content: bytes) -> bytes:
    head = f"--{BOUNDARY}\r\n{part_headers}\r\n\r\n".encode()
    return head + content + f"\r\n--{BOUNDARY}--\r\n".encode()


def test_a_part_type_that_is_not_ascii_is_400(workspace):
    body = _form(
        'Content-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/pngé',
        PNG,
    )
    for path in ("/api/media", "/api/media/s3"):
        resp = workspace.call("POST", path, body=body, headers={"Content-Type": FORM})
        assert resp.status_code == 400, (path, resp.text)
        assert resp.json["error"]["details"] == [
            {"field": "file", "message": "Content-Type is not ASCII"}
        ]


def test_an_upload_without_a_content_length_is_411(workspace):
    """A chunked upload (no Content-Length) tripped Falcon's form parser: a 500."""
    for path in ("/api/media", "/api/media/s3"):
        resp = workspace.call(
            "POST",
            path,
            body=b"",
            headers={"Content-Type": FORM, "Transfer-Encoding": "chunked"},
        )
        assert resp.status_code == 411, (path, resp.text)
        assert resp.json["error"]["code"] == "length_required"
