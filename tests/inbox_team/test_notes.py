"""Notes through HTTP: the thread, author-only edits, moderation, visibility, events."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.db import session_scope
from shared.models import NoteRevision, OutboxEvent
from tests.inbox_team.conftest import actions, make_conversation
from tests.waiting import wait_until


def notes_path(conversation_id: str, note_id: str | None = None) -> str:
    path = f"/api/conversations/{conversation_id}/notes"
    return f"{path}/{note_id}" if note_id else path


def revisions(note_id: str) -> list[str]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(NoteRevision.body)
                .where(NoteRevision.note_id == uuid.UUID(note_id))
                .order_by(NoteRevision.created_at)
            )
        )


def test_note_thread_edit_and_delete(workspace):
    ws = workspace
    conversation = make_conversation(ws)
    created = ws.call("POST", notes_path(conversation), json={"body": "  Called them back  "})
    assert created.status_code == 201, created.text
    note = created.json
    assert note["body"] == "Called them back"
    assert note["author"] == {"id": ws.admin["id"], "full_name": ws.admin["full_name"]}
    assert note["conversation_id"] == conversation and note["edited_at"] is None

    second = ws.call("POST", notes_path(conversation), json={"body": "second"}).json
    third = ws.call("POST", notes_path(conversation), json={"body": "third"}).json
    first_page = ws.call("GET", notes_path(conversation), params={"limit": 2}).json
    assert [n["id"] for n in first_page["items"]] == [note["id"], second["id"]]
    assert first_page["items"][0] == note
    rest = ws.call(
        "GET", notes_path(conversation), params={"limit": 2, "cursor": first_page["next_cursor"]}
    ).json
    assert [n["id"] for n in rest["items"]] == [third["id"]] and rest["next_cursor"] is None

    edited = ws.call("PATCH", notes_path(conversation, note["id"]), json={"body": "Called twice"})
    assert edited.status_code == 200, edited.text
    assert edited.json["body"] == "Called twice" and edited.json["edited_at"] is not None
    assert revisions(note["id"]) == ["Called them back"]
    same = ws.call("PATCH", notes_path(conversation, note["id"]), json={"body": "Called twice"})
    assert same.status_code == 200 and revisions(note["id"]) == ["Called them back"]

    assert ws.call("DELETE", notes_path(conversation, second["id"])).status_code == 204
    listed = ws.call("GET", notes_path(conversation)).json["items"]
    assert [n["id"] for n in listed] == [note["id"], third["id"]]
    assert listed[0]["body"] == "Called twice"
    assert ws.call("DELETE", notes_path(conversation, second["id"])).status_code == 404

    logged = [(a.action, str(a.entity_id)) for a in actions(ws, "note")]
    assert ("note.updated", note["id"]) in logged and ("note.deleted", second["id"]) in logged
    assert [a for a, _ in logged].count("note.created") == 3
    assert [a for a, _ in logged].count("note.updated") == 1


def test_only_the_author_edits_and_author_or_moderator_deletes(workspace):
    ws = workspace
    author, author_token = ws.create_agent()
    _, peer_token = ws.create_agent()
    _, supervisor_token = ws.create_agent(role="supervisor")
    # Unassigned, and nobody is in a division: every agent sees it.
    conversation = make_conversation(ws)
    note = ws.call("POST", notes_path(conversation), token=author_token, json={"body": "mine"}).json
    path = notes_path(conversation, note["id"])

    for token in (peer_token, supervisor_token, None):
        denied = ws.call("PATCH", path, token=token, json={"body": "theirs"})
        assert denied.status_code == 403, denied.text
        assert denied.json["error"]["code"] == "forbidden"
    assert ws.call("DELETE", path, token=peer_token).status_code == 403
    assert ws.call("GET", notes_path(conversation), token=peer_token).json["items"][0] == note

    assert (
        ws.call("PATCH", path, token=author_token, json={"body": "still mine"}).status_code == 200
    )
    assert ws.call("DELETE", path, token=supervisor_token).status_code == 204
    own = ws.call("POST", notes_path(conversation), token=peer_token, json={"body": "x"}).json
    deleted = ws.call("DELETE", notes_path(conversation, own["id"]), token=peer_token)
    assert deleted.status_code == 204
    assert author["id"] != own["author"]["id"]


def test_notes_of_conversations_the_caller_cannot_see_are_404(workspace, other_workspace):
    ws = workspace
    agent, agent_token = ws.create_agent()
    other_agent, _ = ws.create_agent()
    hidden = make_conversation(ws, assignee_id=other_agent["id"])
    note = ws.call("POST", notes_path(hidden), json={"body": "supervisors only"}).json
    foreign = make_conversation(other_workspace)
    foreign_note = other_workspace.call("POST", notes_path(foreign), json={"body": "x"}).json
    visible = make_conversation(ws, assignee_id=agent["id"])

    attempts = [
        (agent_token, hidden, note["id"]),
        (None, foreign, foreign_note["id"]),
        # A real note, but under a conversation it does not belong to.
        (None, visible, note["id"]),
    ]
    for token, conversation, note_id in attempts:
        for method, path, body in (
            ("GET", notes_path(conversation), None),
            ("POST", notes_path(conversation), {"body": "hi"}),
            ("PATCH", notes_path(conversation, note_id), {"body": "hi"}),
            ("DELETE", notes_path(conversation, note_id), None),
        ):
            if conversation == visible and method in ("GET", "POST"):
                continue
            resp = ws.call(method, path, token=token, json=body)
            assert resp.status_code == 404, (method, path, resp.text)
            assert resp.json["error"]["code"] == "not_found"
    assert other_workspace.call("GET", notes_path(foreign)).json["items"] == [foreign_note]
    assert ws.call("GET", notes_path(hidden)).json["items"][0]["body"] == "supervisors only"


def test_note_division_visibility(workspace):
    ws = workspace
    agent, agent_token = ws.create_agent()
    sales = ws.call("POST", "/api/divisions", json={"name": "Sales"}).json
    support = ws.call("POST", "/api/divisions", json={"name": "Support"}).json
    ws.call("POST", f"/api/divisions/{sales['id']}/agents", json={"agent_ids": [agent["id"]]})
    mine = make_conversation(ws, division_id=sales["id"])
    theirs = make_conversation(ws, division_id=support["id"])
    assert (
        ws.call("POST", notes_path(mine), token=agent_token, json={"body": "ok"}).status_code == 201
    )
    denied = ws.call("POST", notes_path(theirs), token=agent_token, json={"body": "no"})
    assert denied.status_code == 404


def test_bad_note_input(workspace):
    ws = workspace
    conversation = make_conversation(ws)
    for body in (
        {"body": "   "},
        {"body": ""},
        {},
        {"body": None},
        {"body": 5},
        {"body": "x" * 10_001},
        {"body": "nul \x00 byte"},
        {"body": "ok", "author_id": ws.admin["id"]},
    ):
        resp = ws.call("POST", notes_path(conversation), json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json["error"]["details"][0]["field"] in ("body", "author_id")
    assert ws.call("POST", notes_path(conversation), json={"body": "x" * 10_000}).status_code == 201
    malformed = ws.call(
        "POST", notes_path(conversation), body="{", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    bad_cursor = ws.call("GET", notes_path(conversation), params={"cursor": "nope"})
    assert bad_cursor.status_code == 400
    note = ws.call("POST", notes_path(conversation), json={"body": "edit me"}).json
    blank_edit = ws.call("PATCH", notes_path(conversation, note["id"]), json={"body": " "})
    assert blank_edit.status_code == 422
    assert ws.call("GET", "/api/conversations/not-a-uuid/notes").status_code == 404
    assert ws.call("GET", notes_path(str(uuid.uuid4()))).status_code == 404


def _wait_processed(tenant_id: str, event_type: str, timeout: float = 10.0) -> OutboxEvent:
    def processed() -> OutboxEvent | None:
        with session_scope() as session:
            event = session.scalars(
                select(OutboxEvent).where(
                    OutboxEvent.tenant_id == uuid.UUID(tenant_id), OutboxEvent.type == event_type
                )
            ).first()
        return event if event is not None and event.status == "processed" else None

    return wait_until(processed, f"{event_type} processed", timeout)


def test_note_created_reaches_dispatch_event(worker, workspace):
    ws = workspace
    conversation = make_conversation(ws)
    note = ws.call("POST", notes_path(conversation), json={"body": "for the webhook"}).json
    event = _wait_processed(ws.tenant["id"], "note.created")
    assert event.data == note
    assert event.actor_type == "user" and str(event.actor_id) == ws.admin["id"]
    assert event.dispatch_attempts == 1


def test_a_refused_note_emits_nothing(workspace):
    ws = workspace
    conversation = make_conversation(ws)
    assert ws.call("POST", notes_path(conversation), json={"body": " "}).status_code == 422
    with session_scope() as session:
        emitted = session.scalars(
            select(OutboxEvent.id).where(
                OutboxEvent.tenant_id == uuid.UUID(ws.tenant["id"]),
                OutboxEvent.type == "note.created",
            )
        ).all()
    assert emitted == []
