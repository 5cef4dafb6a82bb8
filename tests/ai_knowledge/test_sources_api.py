"""Knowledge sources and QnA pairs through HTTP: create, list, delete, reprocess, scoping."""

from __future__ import annotations

import uuid

from shared.ai.knowledge import sources
from shared.db import get_sessionmaker, session_scope
from shared.models import KnowledgeChunk, QnaPair
from tests.ai_knowledge.agents import add_ai_agent
from tests.ai_knowledge.conftest import sources_path, upload, wait_for_status
from tests.ai_knowledge.documents import docx, pdf
from tests.automation.conftest import admin_ctx
from tests.lock_races import race
from tests.multipart import form


def _text_source(ws, agent, content="Our shop opens at nine and closes at six.", title="Hours"):
    resp = ws.call(
        "POST", sources_path(agent), json={"kind": "text", "title": title, "content": content}
    )
    assert resp.status_code == 201, resp.text
    return resp.json


def test_text_source_is_chunked_by_the_worker(worker, workspace, ai_agent):
    source = _text_source(workspace, ai_agent)
    assert source["status"] == "pending" and source["kind"] == "text"
    ready = wait_for_status(workspace, ai_agent, source["id"], "ready", "failed")
    assert ready["status"] == "ready", ready
    assert ready["chunk_count"] == 1 and ready["attempts"] == 1 and ready["error"] is None
    assert ready["processed_at"] is not None


def test_json_body_must_match_its_kind(workspace, ai_agent):
    path = sources_path(ai_agent)
    for body in (
        {"kind": "text", "title": "No content"},
        {"kind": "text", "content": "no title"},
        {"kind": "url"},
        {"kind": "url", "url": "https://example.com", "content": "both"},
        {"kind": "file"},
        {"kind": "video", "url": "https://example.com"},
        {"kind": "text", "title": "x", "content": "a\u0000b"},
    ):
        resp = workspace.call("POST", path, json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json["error"]["code"] == "validation_error"


def test_url_to_a_private_address_is_refused(workspace, ai_agent):
    for url in (
        "http://10.0.0.5/faq",
        "http://192.168.1.10/",
        "http://localhost:8080/",
        "http://169.254.169.254/latest/meta-data",
        "ftp://example.com/file",
        "http://0x7f.1/",
    ):
        resp = workspace.call("POST", sources_path(ai_agent), json={"kind": "url", "url": url})
        assert resp.status_code == 422, (url, resp.text)
        assert resp.json["error"]["details"][0]["field"] == "url"
    listed = workspace.call("GET", sources_path(ai_agent)).json
    assert listed["items"] == []  # nothing half-written


def test_upload_pdf_docx_markdown_html_and_csv(worker, workspace, ai_agent):
    files = {
        "guide.pdf": (pdf([["Returns are accepted within thirty days."]]), "application/pdf"),
        "policy.docx": (
            docx(["Shipping takes two days."], table=[["Zone", "Price"], ["EU", "5 EUR"]]),
            "application/octet-stream",
        ),
        "faq.md": (b"# FAQ\n\n## Payment\n\nWe take cards and cash.\n", "text/markdown"),
        "page.html": (
            b"<html><head><title>About</title><script>x()</script></head>"
            b"<body><p>Family run since 1990.</p></body></html>",
            "text/html",
        ),
        "prices.csv": (b"item,price\nTea,3\nCoffee,4\n", "text/csv"),
        "notes.txt": ("Caf\u00e9 au lait is served until noon.".encode(), "text/plain"),
    }
    created = {}
    for name, (data, mime) in files.items():
        title = f"Upload {name}" if name.endswith(".md") else None
        resp = upload(workspace, sources_path(ai_agent), name, data, mime, title=title)
        assert resp.status_code == 201, (name, resp.text)
        assert resp.json["kind"] == "file" and resp.json["media_id"]
        created[name] = resp.json
    assert created["faq.md"]["title"] == "Upload faq.md"
    assert created["guide.pdf"]["title"] == "guide.pdf"
    for name, source in created.items():
        ready = wait_for_status(workspace, ai_agent, source["id"], "ready", "failed")
        assert ready["status"] == "ready", (name, ready)
    with session_scope() as session:
        texts = {
            str(c.source_id): c.content
            for c in session.query(KnowledgeChunk).filter(
                KnowledgeChunk.ai_agent_id == uuid.UUID(ai_agent)
            )
        }
    assert "thirty days" in texts[created["guide.pdf"]["id"]]
    assert "EU | 5 EUR" in texts[created["policy.docx"]["id"]]
    assert "x()" not in texts[created["page.html"]["id"]]
    assert "Family run since 1990." in texts[created["page.html"]["id"]]
    assert "item: Tea; price: 3" in texts[created["prices.csv"]["id"]]
    assert "Caf\u00e9 au lait" in texts[created["notes.txt"]["id"]]


def test_unsupported_and_disguised_files_are_415(workspace, ai_agent):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    zip_not_docx = _zip({"hello.txt": b"hi"})
    elf = b"\x7fELF\x02\x01\x01" + bytes(range(200))
    for name, data in (("photo.pdf", png), ("archive.docx", zip_not_docx), ("tool.txt", elf)):
        resp = upload(workspace, sources_path(ai_agent), name, data, "application/pdf")
        assert resp.status_code == 415, (name, resp.text)
        assert resp.json["error"]["code"] == "unsupported_media_type"


def test_oversized_upload_is_413(workspace, ai_agent):
    big = b"lorem ipsum " * 200_000  # 2.4 MB; the tests allow 2 MB
    resp = upload(workspace, sources_path(ai_agent), "big.txt", big, "text/plain")
    assert resp.status_code == 413, resp.text
    assert resp.json["error"]["code"] == "payload_too_large"


def test_an_upload_whose_filename_is_not_utf8_is_400(workspace, ai_agent):
    """Some clients send a Latin-1 filename; reading the part once raised (a 500)."""
    body, headers = form(
        b"Opening hours: 9 to 5.",
        filename="horaires-été.txt",
        content_type="text/plain",
        header_encoding="latin-1",
    )
    resp = workspace.call("POST", sources_path(ai_agent), body=body, headers=headers)
    assert resp.status_code == 400, resp.text
    assert resp.json["error"]["details"][0]["field"] == "file"


def test_file_source_from_a_media_id(worker, workspace, ai_agent, other_workspace):
    manual = pdf([["Hold the button for five seconds."]])
    uploaded = upload(workspace, "/api/media", "manual.pdf", manual, "application/pdf")
    assert uploaded.status_code == 201, uploaded.text
    media_id = uploaded.json["id"]
    resp = workspace.call(
        "POST", sources_path(ai_agent), json={"kind": "file", "media_id": media_id}
    )
    assert resp.status_code == 201, resp.text
    assert resp.json["title"] == "manual.pdf"
    ready = wait_for_status(workspace, ai_agent, resp.json["id"], "ready", "failed")
    assert ready["status"] == "ready", ready
    # Another tenant's agent cannot use this tenant's media.
    theirs = add_ai_agent(other_workspace)
    stolen = other_workspace.call(
        "POST", sources_path(theirs), json={"kind": "file", "media_id": media_id}
    )
    # NOTE: an id in a body answers 422 naming the field, as everywhere in the API.
    assert stolen.status_code == 422, stolen.text
    assert stolen.json["error"]["details"][0]["field"] == "media_id"


def test_media_of_an_unsupported_type_is_415(workspace, ai_agent):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    uploaded = upload(workspace, "/api/media", "a.png", png, "image/png")
    assert uploaded.status_code == 201, uploaded.text
    resp = workspace.call(
        "POST", sources_path(ai_agent), json={"kind": "file", "media_id": uploaded.json["id"]}
    )
    assert resp.status_code == 415, resp.text


def test_another_tenants_or_agents_ids_are_404(workspace, other_workspace, ai_agent):
    source = _text_source(workspace, ai_agent)
    pair = workspace.call(
        "POST",
        f"{sources_path(ai_agent)}/{source['id']}/qna-pairs",
        json={"question": "When do you open?", "answer": "At nine."},
    )
    assert pair.status_code == 201, pair.text
    base = f"{sources_path(ai_agent)}/{source['id']}"
    calls = [
        ("GET", sources_path(ai_agent), None),
        ("POST", sources_path(ai_agent), {"kind": "text", "title": "t", "content": "c"}),
        ("DELETE", base, None),
        ("POST", f"{base}/reprocess", None),
        ("GET", f"{base}/qna-pairs", None),
        ("POST", f"{base}/qna-pairs", {"question": "q", "answer": "a"}),
        ("DELETE", f"{base}/qna-pairs/{pair.json['id']}", None),
    ]
    for method, path, body in calls:
        resp = other_workspace.call(method, path, json=body)
        assert resp.status_code == 404, (method, path, resp.text)
    # The same tenant's other agent does not see this agent's source.
    other_agent = add_ai_agent(workspace)
    other_base = f"{sources_path(other_agent)}/{source['id']}"
    for method, path in (
        ("DELETE", other_base),
        ("POST", f"{other_base}/reprocess"),
        ("GET", f"{other_base}/qna-pairs"),
        ("DELETE", f"{other_base}/qna-pairs/{pair.json['id']}"),
    ):
        resp = workspace.call(method, path)
        assert resp.status_code == 404, (method, path, resp.text)
    assert workspace.call("GET", f"{base}/qna-pairs").json["items"][0]["id"] == pair.json["id"]


def test_permissions_reads_need_review_and_writes_manage(workspace, ai_agent):
    source = _text_source(workspace, ai_agent)
    _agent, agent_token = workspace.create_agent("agent")
    _sup, supervisor_token = workspace.create_agent("supervisor")
    path = sources_path(ai_agent)
    assert workspace.call("GET", path, token=agent_token).status_code == 403
    assert workspace.call("GET", path, token=supervisor_token).status_code == 200
    qna = f"{path}/{source['id']}/qna-pairs"
    assert workspace.call("GET", qna, token=supervisor_token).status_code == 200
    body = {"kind": "text", "title": "t", "content": "c"}
    assert workspace.call("POST", path, json=body, token=supervisor_token).status_code == 403
    assert (
        workspace.call("POST", f"{path}/{source['id']}/reprocess", token=supervisor_token)
    ).status_code == 403
    assert (
        workspace.call("DELETE", f"{path}/{source['id']}", token=supervisor_token).status_code
        == 403
    )


def test_qna_pairs_and_deleting_a_source_takes_its_chunks_and_pairs(worker, workspace, ai_agent):
    source = _text_source(workspace, ai_agent)
    wait_for_status(workspace, ai_agent, source["id"], "ready")
    qna = f"{sources_path(ai_agent)}/{source['id']}/qna-pairs"
    first = workspace.call("POST", qna, json={"question": "Open on Sunday?", "answer": "No."})
    second = workspace.call("POST", qna, json={"question": "Parking?", "answer": "Yes, free."})
    assert first.status_code == second.status_code == 201
    listed = workspace.call("GET", qna, params={"limit": 1})
    assert [p["id"] for p in listed.json["items"]] == [second.json["id"]]
    rest = workspace.call("GET", qna, params={"cursor": listed.json["next_cursor"]})
    assert [p["id"] for p in rest.json["items"]] == [first.json["id"]]
    assert workspace.call("DELETE", f"{qna}/{first.json['id']}").status_code == 204
    assert workspace.call("DELETE", f"{qna}/{first.json['id']}").status_code == 404
    assert workspace.call("POST", qna, json={"question": " ", "answer": "x"}).status_code == 422

    assert workspace.call("DELETE", f"{sources_path(ai_agent)}/{source['id']}").status_code == 204
    with session_scope() as session:
        sid = uuid.UUID(source["id"])
        assert session.query(KnowledgeChunk).filter_by(source_id=sid).count() == 0
        assert session.query(QnaPair).filter_by(source_id=sid).count() == 0
    assert workspace.call("GET", qna).status_code == 404


def test_reprocess_answers_202_and_runs_again(worker, workspace, ai_agent):
    source = _text_source(workspace, ai_agent)
    wait_for_status(workspace, ai_agent, source["id"], "ready")
    resp = workspace.call("POST", f"{sources_path(ai_agent)}/{source['id']}/reprocess")
    assert resp.status_code == 202, resp.text
    assert resp.json["status"] == "pending" and resp.json["attempts"] == 0
    ready = wait_for_status(workspace, ai_agent, source["id"], "ready")
    assert ready["attempts"] == 1 and ready["chunk_count"] == 1


def _zip(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_qna_pairs_and_reprocessing_are_in_the_activity_log(workspace, ai_agent):
    """Every state-changing request writes an activity row (API.md, Conventions)."""
    source = _text_source(workspace, ai_agent)
    base = f"{sources_path(ai_agent)}/{source['id']}"
    pair = workspace.call(
        "POST", f"{base}/qna-pairs", json={"question": "Parking?", "answer": "Yes, free."}
    ).json
    assert workspace.call("DELETE", f"{base}/qna-pairs/{pair['id']}").status_code == 204
    assert workspace.call("POST", f"{base}/reprocess").status_code == 202

    def actions(entity_id: str) -> list[str]:
        logs = workspace.call("GET", "/api/activity-logs", params={"entity_id": entity_id})
        assert logs.status_code == 200, logs.text
        return sorted(item["action"] for item in logs.json["items"])

    assert actions(pair["id"]) == ["qna_pair.created", "qna_pair.deleted"]
    assert actions(source["id"]) == ["knowledge_source.created", "knowledge_source.reprocessed"]


def test_a_qna_pair_added_while_its_source_is_deleted_is_404(workspace, ai_agent):
    """The deletion goes first: the pair waiting on the source answers 404 (the source is
    gone), not a 409 from its insert's foreign key."""
    source = _text_source(workspace, ai_agent)
    deleting = get_sessionmaker()()
    sources.delete_source(
        deleting, admin_ctx(workspace), uuid.UUID(ai_agent), uuid.UUID(source["id"])
    )
    deleting.flush()

    resp = race(
        deleting,
        lambda: workspace.call(
            "POST",
            f"{sources_path(ai_agent)}/{source['id']}/qna-pairs",
            json={"question": "When do you open?", "answer": "At nine."},
        ),
    )

    assert resp.status_code == 404, resp.text
    with session_scope() as session:
        assert session.query(QnaPair).filter_by(ai_agent_id=uuid.UUID(ai_agent)).count() == 0
