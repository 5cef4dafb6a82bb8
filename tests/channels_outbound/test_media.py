"""Media endpoints: uploads and their limits, the download proxy, S3, tenant isolation."""

from __future__ import annotations

import os
import threading
import uuid

import httpx
import pytest

from shared.config import get_settings
from shared.db import session_scope
from shared.models import MediaFile
from tests.multipart import form
from tests.peers.environment import environment

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(600)
PDF = b"%PDF-1.7\n" + os.urandom(400)
EXE = b"MZ\x90\x00\x03\x00\x00\x00" + os.urandom(300)


def multipart(
    content: bytes, *, filename="photo.png", content_type="image/png", field="file", **more
) -> tuple[bytes, dict[str, str]]:
    """A form with a text field before the file, which the upload must skip."""
    return form(
        content,
        filename=filename,
        content_type=content_type,
        field=field,
        before={"note": "hello"},
        **more,
    )


def upload(workspace, content: bytes, path="/api/media", **kwargs):
    body, headers = multipart(content, **kwargs)
    return workspace.call("POST", path, body=body, headers=headers)


def test_upload_then_download(workspace):
    resp = upload(workspace, PNG, filename="../../etc/photo.png")

    assert resp.status_code == 201, resp.text
    media = resp.json
    assert media["mime_type"] == "image/png"
    assert media["size"] == len(PNG)
    assert media["filename"] == "photo.png"
    assert media["url"] == f"/api/media/{media['id']}"
    got = workspace.call("GET", media["url"])
    assert got.status_code == 200
    assert got.content == PNG
    assert got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"


def test_another_tenants_media_is_not_found(workspace, other_workspace):
    media_id = upload(workspace, PNG).json["id"]

    resp = other_workspace.call("GET", f"/api/media/{media_id}")

    assert resp.status_code == 404
    assert resp.json["error"]["code"] == "not_found"


def test_type_is_sniffed_from_the_bytes(workspace):
    refused = upload(workspace, EXE, filename="invoice.pdf", content_type="application/pdf")
    assert refused.status_code == 415
    assert refused.json["error"]["code"] == "unsupported_media_type"

    lying = upload(workspace, PDF, filename="cat.png", content_type="image/png")
    assert lying.status_code == 422
    assert lying.json["error"]["details"][0]["field"] == "file"

    generic = upload(workspace, PDF, filename="doc", content_type="application/octet-stream")
    assert generic.status_code == 201
    assert generic.json["mime_type"] == "application/pdf"


def test_size_limit_is_413_whether_declared_or_streamed(workspace):
    with environment(MEDIA_MAX_BYTES="2048"):
        # Over the declared-length limit (file limit + multipart allowance): refused at once.
        declared = upload(workspace, PNG + os.urandom(80 * 1024))
        assert declared.status_code == 413
        # Under the envelope allowance but over the file limit: refused while streaming.
        streamed = upload(workspace, PNG + os.urandom(4096))
        assert streamed.status_code == 413
        assert streamed.json["error"]["code"] == "payload_too_large"
        with session_scope() as session:
            assert session.query(MediaFile).filter_by(size=len(PNG) + 4096).count() == 0


def test_malformed_uploads_are_clear_4xx(workspace):
    not_multipart = workspace.call("POST", "/api/media", json={"file": "x"})
    assert not_multipart.status_code == 415

    no_file = upload(workspace, PNG, field="attachment")
    assert no_file.status_code == 422
    assert no_file.json["error"]["details"][0]["field"] == "file"

    empty = upload(workspace, b"")
    assert empty.status_code == 422

    # A filename in Latin-1, as some clients send it, once raised while reading the part.
    latin1_name = upload(workspace, PNG, filename="café.png", header_encoding="latin-1")
    assert latin1_name.status_code == 400, latin1_name.text


def inbound_media(channels, provider_media_id: str, **fields) -> uuid.UUID:
    """A WhatsApp media row as process_inbound leaves it: known to Meta, not fetched."""
    account_id = channels.account("whatsapp", credentials={"access_token": "media-token"})
    with session_scope() as session:
        row = MediaFile(
            tenant_id=channels.tenant_id,
            source="inbound",
            channel="whatsapp",
            account_id=account_id,
            provider_media_id=provider_media_id,
            **fields,
        )
        session.add(row)
        session.flush()
        return row.id


def test_inbound_whatsapp_media_is_fetched_once_then_served(workspace, channels, fake_graph):
    media_id = inbound_media(channels, "1037543291543636", mime_type="image/jpeg")
    jpeg = b"\xff\xd8\xff\xe0" + os.urandom(5000)
    fake_graph.add_media("1037543291543636", jpeg, "image/jpeg")
    fake_graph.media_delay = 0.3

    results = []

    def fetch():
        results.append(workspace.call("GET", f"/api/media/{media_id}"))

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert [r.status_code for r in results] == [200, 200, 200]
    assert all(r.content == jpeg for r in results)
    info = fake_graph.gets("/v21.0/1037543291543636")
    download = fake_graph.gets("/media/1037543291543636")
    assert (len(info), len(download)) == (1, 1)
    assert info[0].token == download[0].token == "media-token"
    with session_scope() as session:
        stored = session.get_one(MediaFile, media_id)
        assert stored.size == len(jpeg) and stored.fetched_at is not None
    again = workspace.call("GET", f"/api/media/{media_id}")
    assert again.content == jpeg
    assert len(fake_graph.gets("/media/")) == 1


def test_a_deleted_accounts_media_is_not_fetched_with_another_accounts_token(
    workspace, channels, fake_graph
):
    """The file is the deleted number's; the tenant's other number's token must not fetch it."""
    media_id = inbound_media(channels, "1037543291543639", mime_type="image/jpeg")
    fake_graph.add_media("1037543291543639", b"\xff\xd8\xff\xe0" + os.urandom(500), "image/jpeg")
    with session_scope() as session:
        deleted_account = session.get_one(MediaFile, media_id).account_id
    channels.account("whatsapp", credentials={"access_token": "other-number-token"})
    deleted = workspace.call("DELETE", f"/api/integration-accounts/{deleted_account}")
    assert deleted.status_code == 204, deleted.text

    resp = workspace.call("GET", f"/api/media/{media_id}")

    assert resp.status_code == 404, resp.text
    assert resp.json["error"]["code"] == "media_unavailable"
    assert "deleted" in resp.json["error"]["message"]
    assert fake_graph.gets("/v21.0/1037543291543639") == []


def test_inbound_media_the_provider_refuses_is_a_clear_error(workspace, channels, fake_graph):
    media_id = inbound_media(channels, "999000111")

    resp = workspace.call("GET", f"/api/media/{media_id}")

    assert resp.status_code == 404
    assert resp.json["error"]["code"] == "media_unavailable"
    assert "100" in resp.json["error"]["message"]


@pytest.mark.parametrize(
    "info",
    [
        {"file_size": "big"},
        {"file_size": {"bytes": 5}},
        {"url": 12345},
        {"url": {"href": "x"}},
        {"url": "not a url at all"},
    ],
)
def test_a_media_answer_of_another_shape_is_a_clear_error(workspace, channels, fake_graph, info):
    """Meta's media info with a field of another type: 503 as for no url, nothing stored."""
    media_id = inbound_media(channels, "1037543291543637", mime_type="image/jpeg")
    fake_graph.add_media(
        "1037543291543637", b"\xff\xd8\xff\xe0" + os.urandom(64), "image/jpeg", info
    )

    resp = workspace.call("GET", f"/api/media/{media_id}")

    assert resp.status_code == 503, resp.text
    assert resp.json["error"]["code"] == "dependency_unavailable"
    assert "bad_response" in resp.json["error"]["message"]
    with session_scope() as session:
        assert session.get_one(MediaFile, media_id).storage_key is None


def test_a_mime_type_of_another_shape_is_sniffed_instead(workspace, channels, fake_graph):
    media_id = inbound_media(channels, "1037543291543638")
    jpeg = b"\xff\xd8\xff\xe0" + os.urandom(64)
    fake_graph.add_media("1037543291543638", jpeg, "image/jpeg", {"mime_type": ["image/jpeg"]})

    resp = workspace.call("GET", f"/api/media/{media_id}")

    assert resp.status_code == 200, resp.text
    assert resp.content == jpeg
    with session_scope() as session:
        assert session.get_one(MediaFile, media_id).mime_type == "image/jpeg"


def test_s3_upload_answers_a_working_presigned_url(workspace):
    resp = upload(
        workspace, PDF, path="/api/media/s3", filename="terms.pdf", content_type="application/pdf"
    )

    assert resp.status_code == 201, resp.text
    body = resp.json
    assert body["key"].startswith(f"{workspace.tenant['id']}/")
    assert body["mime_type"] == "application/pdf"
    fetched = httpx.get(body["presigned_url"])
    assert fetched.status_code == 200
    assert fetched.content == PDF
    assert workspace.call("GET", body["url"]).content == PDF  # the proxy reads S3 too


def test_s3_upload_without_a_bucket_is_409(workspace):
    with environment(S3_BUCKET=None):
        resp = upload(workspace, PDF, path="/api/media/s3", content_type="application/pdf")
    assert resp.status_code == 409
    assert resp.json["error"]["code"] == "s3_not_configured"


@pytest.mark.parametrize("path", ["/api/media", "/api/media/s3"])
def test_uploads_need_a_credential(client, path):
    body, headers = multipart(PNG)
    assert client.simulate_post(path, body=body, headers=headers).status_code == 401


def test_a_stored_file_gone_missing_is_a_clear_404(workspace):
    from pathlib import Path

    media = upload(workspace, PNG + b"gone").json
    with session_scope() as session:
        key = session.get_one(MediaFile, media["id"]).storage_key
    (Path(get_settings().media_root) / key).unlink()

    resp = workspace.call("GET", media["url"])

    assert resp.status_code == 404
    assert resp.json["error"]["code"] == "media_unavailable"


def test_inbound_email_attachment_is_served_from_the_stored_mime(workspace, channels):
    import base64
    from email.message import EmailMessage

    from shared.models import InboundEvent

    mime = EmailMessage()
    mime["From"], mime["To"], mime["Subject"] = "a@x.example", "b@y.example", "files"
    mime.set_content("see attached")
    mime.add_attachment(PDF, maintype="application", subtype="pdf", filename='q"1.pdf')
    with session_scope() as session:
        event = InboundEvent(
            channel="email",
            provider_event_id=f"<{uuid.uuid4()}@x.example>",
            tenant_id=channels.tenant_id,
            payload={"mime": base64.b64encode(mime.as_bytes()).decode()},
            status="processed",
        )
        session.add(event)
        session.flush()
        row = MediaFile(
            tenant_id=channels.tenant_id,
            source="inbound",
            channel="email",
            provider_media_id=f"email:{event.id}:0",
            mime_type="application/pdf",
            filename='q"1.pdf',
        )
        session.add(row)
        session.flush()
        media_id = row.id

    resp = workspace.call("GET", f"/api/media/{media_id}")

    assert resp.status_code == 200
    assert resp.content == PDF
    assert resp.headers["content-disposition"] == 'inline; filename="q_1.pdf"'
