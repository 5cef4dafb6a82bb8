"""A human reply racing a resolution: counted before it, or refused (409), never after.

The reply reads the conversation unlocked; a resolution committing meanwhile must not be
followed by the reply's message and counters on the resolved row.
"""

from __future__ import annotations

import threading
import uuid

import falcon.testing

from shared.db import session_scope
from shared.models import Conversation


def _race(app, headers, conversation_id) -> dict:
    """Resolve and reply at once; each answer, and the conversation's final row."""
    barrier, results = threading.Barrier(2), {}

    def resolve():
        client = falcon.testing.TestClient(app)
        barrier.wait()
        resp = client.simulate_patch(
            f"/api/conversations/{conversation_id}/status",
            json={"status": "resolved"},
            headers=headers,
        )
        results["resolve"] = (resp.status_code, resp.json)

    def reply():
        client = falcon.testing.TestClient(app)
        barrier.wait()
        resp = client.simulate_post(
            f"/api/conversations/{conversation_id}/messages",
            json={"body": "on my way"},
            headers=headers,
        )
        results["reply"] = resp.status_code

    threads = [threading.Thread(target=resolve), threading.Thread(target=reply)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    with session_scope() as session:
        results["final"] = session.get(Conversation, uuid.UUID(str(conversation_id))).message_count
    return results


def test_a_reply_racing_a_resolution_is_counted_before_it_or_refused(workspace, inbox, app):
    late = []
    for _ in range(15):
        conversation_id = inbox.conversation()["id"]
        got = _race(app, workspace.headers, conversation_id)
        (resolve_status, resolved), reply_status = got["resolve"], got["reply"]
        assert resolve_status == 200 and reply_status in (201, 409), got
        # The resolution answered the row it resolved: a 201 reply not counted there was
        # written onto the conversation after it was resolved.
        if reply_status == 201 and resolved["message_count"] != got["final"]:
            late.append(str(conversation_id))
    assert late == [], f"{len(late)}/15 replies landed on a resolved conversation: {late}"
