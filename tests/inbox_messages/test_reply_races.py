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

RESOLVE, REPLY = {"status": "resolved"}, {"body": "on my way"}


def _race(app, headers, conversation_id) -> dict:
    """Resolve and reply at once; each answer, and the conversation's final row."""
    barrier, results = threading.Barrier(2), {}
    path = f"/api/conversations/{conversation_id}"

    def call(name: str, method: str, url: str, body: dict) -> None:
        client = falcon.testing.TestClient(app)
        barrier.wait()
        results[name] = client.simulate_request(method, url, json=body, headers=headers)

    threads = [
        threading.Thread(target=call, args=("resolve", "PATCH", f"{path}/status", RESOLVE)),
        threading.Thread(target=call, args=("reply", "POST", f"{path}/messages", REPLY)),
    ]
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
        resolved, reply_status = got["resolve"], got["reply"].status_code
        assert resolved.status_code == 200 and reply_status in (201, 409), got
        # The resolution answered the row it resolved: a 201 reply not counted there was
        # written onto the conversation after it was resolved.
        if reply_status == 201 and resolved.json["message_count"] != got["final"]:
            late.append(str(conversation_id))
    assert late == [], f"{len(late)}/15 replies landed on a resolved conversation: {late}"
