"""A file source's media: freed with the source, unless a message or another source uses it."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from shared.ai.knowledge import sources
from shared.channels.media_storage import storage_for
from shared.db import get_sessionmaker, session_scope
from shared.inbox import messages
from shared.models import KnowledgeSource, MediaFile
from tests.ai_knowledge.conftest import sources_path, upload
from tests.automation.conftest import admin_ctx
from tests.inbox_messages.conftest import Inbox
from tests.lock_races import race

GUIDE = b"Gift cards never expire and can be used in every shop.\n"


def _storage_used(ws) -> int:
    resp = ws.call("GET", "/api/billing/usage")
    assert resp.status_code == 200, resp.text
    return resp.json["usage"]["storage_bytes"]


def _stored(media_id: str) -> tuple[str, str] | None:
    with session_scope() as session:
        media = session.get(MediaFile, uuid.UUID(media_id))
        return (media.storage_backend, media.storage_key) if media else None


def _upload_source(ws, agent) -> dict:
    resp = upload(ws, sources_path(agent), "cards.txt", GUIDE, "text/plain")
    assert resp.status_code == 201, resp.text
    return resp.json


def _deleting(ws, agent: str, source: dict) -> Session:
    """A session that has deleted ``source`` (and freed its file), not committed yet."""
    deleting = get_sessionmaker()()
    sources.delete_source(deleting, admin_ctx(ws), uuid.UUID(agent), uuid.UUID(source["id"]))
    deleting.flush()
    return deleting


def test_deleting_a_file_source_frees_its_media_once_no_source_uses_it(workspace, ai_agent):
    first = _upload_source(workspace, ai_agent)
    media_id = first["media_id"]
    backend, key = _stored(media_id)
    assert _storage_used(workspace) == len(GUIDE)
    second = workspace.call(
        "POST", sources_path(ai_agent), json={"kind": "file", "media_id": media_id}
    )
    assert second.status_code == 201, second.text

    path = sources_path(ai_agent)
    assert workspace.call("DELETE", f"{path}/{first['id']}").status_code == 204
    # The other source still reads the file.
    assert workspace.call("GET", f"/api/media/{media_id}").status_code == 200
    assert _storage_used(workspace) == len(GUIDE)

    assert workspace.call("DELETE", f"{path}/{second.json['id']}").status_code == 204
    assert workspace.call("GET", f"/api/media/{media_id}").status_code == 404
    assert _storage_used(workspace) == 0
    assert not storage_for(backend).exists(key)


def test_a_file_a_message_carries_is_kept_when_its_source_is_deleted(workspace, ai_agent):
    source = _upload_source(workspace, ai_agent)
    media_id = source["media_id"]
    inbox = Inbox(workspace.tenant["id"])
    inbox.message(
        inbox.conversation(),
        "the card terms",
        direction="outbound",
        sender_type="agent",
        status="sent",
        attachments=[{"media_id": media_id, "type": "document", "mime_type": "text/plain"}],
    )

    resp = workspace.call("DELETE", f"{sources_path(ai_agent)}/{source['id']}")

    assert resp.status_code == 204
    assert workspace.call("GET", f"/api/media/{media_id}").status_code == 200
    assert _storage_used(workspace) == len(GUIDE)


def test_a_file_whose_bytes_another_upload_shares_keeps_its_object(workspace, ai_agent):
    """Stored objects are content-addressed: two uploads of the same bytes share one."""
    source = _upload_source(workspace, ai_agent)
    again = upload(workspace, "/api/media", "copy.txt", GUIDE, "text/plain")
    assert again.status_code == 201, again.text
    backend, key = _stored(source["media_id"])
    assert _stored(again.json["id"]) == (backend, key)

    assert workspace.call("DELETE", f"{sources_path(ai_agent)}/{source['id']}").status_code == 204

    assert _stored(source["media_id"]) is None
    assert _storage_used(workspace) == len(GUIDE)
    assert storage_for(backend).exists(key)
    assert workspace.call("GET", f"/api/media/{again.json['id']}").status_code == 200


def test_deleting_an_agent_frees_the_files_of_its_sources(workspace, ai_agent):
    """The agent's sources go by cascade; their files must not stay counted."""
    media_id = _upload_source(workspace, ai_agent)["media_id"]
    backend, key = _stored(media_id)

    assert workspace.call("DELETE", f"/api/ai-agents/{ai_agent}").status_code == 204

    assert workspace.call("GET", f"/api/media/{media_id}").status_code == 404
    assert _storage_used(workspace) == 0
    assert not storage_for(backend).exists(key)


def test_an_upload_whose_title_holds_a_nul_is_422(workspace, ai_agent):
    resp = upload(
        workspace, sources_path(ai_agent), "cards.txt", GUIDE, "text/plain", title="Gift\x00cards"
    )

    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "title", resp.json
    assert _storage_used(workspace) == 0


def test_a_reply_attaching_a_file_keeps_it_when_its_source_is_deleted_meanwhile(
    workspace, ai_agent
):
    """The reply has checked the file and is not committed yet when the source goes: the
    deletion must wait for it and then see the reply's reference, not free the file."""
    source = _upload_source(workspace, ai_agent)
    media_id = uuid.UUID(source["media_id"])
    conversation = Inbox(workspace.tenant["id"]).conversation()
    replying = get_sessionmaker()()
    messages.send_message(
        replying,
        admin_ctx(workspace),
        conversation["id"],
        body="The card terms",
        attachments=[media_id],
    )
    replying.flush()

    deleted = race(
        replying,
        lambda: workspace.call("DELETE", f"{sources_path(ai_agent)}/{source['id']}").status_code,
    )

    assert deleted == 204
    assert workspace.call("GET", f"/api/media/{media_id}").status_code == 200
    assert _storage_used(workspace) == len(GUIDE)


def test_a_reply_attaching_a_file_whose_source_is_being_deleted_is_refused(workspace, ai_agent):
    """The deletion freed the file first: the reply waiting on it answers 422, not a
    message whose attachment is gone."""
    source = _upload_source(workspace, ai_agent)
    conversation = Inbox(workspace.tenant["id"]).conversation()
    deleting = _deleting(workspace, ai_agent, source)

    resp = race(
        deleting,
        lambda: workspace.call(
            "POST",
            f"/api/conversations/{conversation['id']}/messages",
            json={"body": "The card terms", "attachments": [{"media_id": source["media_id"]}]},
        ),
    )

    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "attachments[0].media_id"


def test_a_file_source_from_a_file_whose_source_is_being_deleted_is_refused(workspace, ai_agent):
    """The deletion freed the file first: the new source waiting on it answers 422 naming
    ``media_id``, as a reply attaching it does, not a database error."""
    source = _upload_source(workspace, ai_agent)
    deleting = _deleting(workspace, ai_agent, source)

    resp = race(
        deleting,
        lambda: workspace.call(
            "POST", sources_path(ai_agent), json={"kind": "file", "media_id": source["media_id"]}
        ),
    )

    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "media_id"
    assert _stored(source["media_id"]) is None
    assert _storage_used(workspace) == 0


def test_a_file_source_keeps_its_file_when_the_other_source_is_deleted_meanwhile(
    workspace, ai_agent
):
    """The new source has checked the file and is not committed when the first source
    goes: the deletion waits for it and then sees its reference, not free the file."""
    first = _upload_source(workspace, ai_agent)
    media_id = uuid.UUID(first["media_id"])
    adding = get_sessionmaker()()
    second = sources.create_from_media(
        adding, admin_ctx(workspace), uuid.UUID(ai_agent), media_id=media_id, title=None
    )
    adding.flush()

    deleted = race(
        adding,
        lambda: workspace.call("DELETE", f"{sources_path(ai_agent)}/{first['id']}").status_code,
    )

    assert deleted == 204
    assert workspace.call("GET", f"/api/media/{media_id}").status_code == 200
    with session_scope() as session:
        assert session.get(KnowledgeSource, second["id"]).media_id == media_id
    assert _storage_used(workspace) == len(GUIDE)
