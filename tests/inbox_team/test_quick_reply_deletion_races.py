"""A quick reply deleted while an agent uses it or marks it a favorite.

The use read the reply as existing; the deletion committed before the use's writes:
the use must answer 404 like any vanished reply, never a foreign key's refusal.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from shared.context import Ctx
from shared.db import get_sessionmaker
from shared.inbox import quick_replies, quick_reply_csv
from tests.lock_races import race

BASE = "/api/quick-replies"


@pytest.mark.parametrize("use", ["usage", "favorite"])
def test_a_use_racing_the_replys_deletion_answers_404(workspace, use):
    ws = workspace
    created = ws.call(
        "POST", BASE, json={"shortcut": "bye", "title": "Bye", "content": "Bye!", "scope": "shared"}
    )
    reply_id = created.json["id"]
    deleting = get_sessionmaker()()
    ctx = Ctx.system(uuid.UUID(ws.tenant["id"]))
    quick_replies.delete_quick_reply(deleting, ctx, uuid.UUID(reply_id))
    deleting.flush()
    answered = race(deleting, lambda: ws.call("POST", f"{BASE}/{reply_id}/{use}"))
    assert answered.status_code == 404, answered.text


def test_uses_at_once_all_count(workspace):
    ws = workspace
    created = ws.call(
        "POST", BASE, json={"shortcut": "hey", "title": "Hey", "content": "Hey!", "scope": "shared"}
    )
    reply_id = created.json["id"]
    barrier, answers = threading.Barrier(4), []

    def use():
        barrier.wait()
        answers.append(ws.call("POST", f"{BASE}/{reply_id}/usage").status_code)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert answers == [200] * 4
    listed = ws.call("GET", BASE).json["items"]
    assert [r["usage_count"] for r in listed if r["id"] == reply_id] == [4]


def test_a_rename_racing_an_import_does_not_deadlock(workspace):
    """An import takes the tenant's shortcut lock, then the rows it updates; a rename of a
    shared reply must take them in that order too (it took the row first: a deadlock)."""
    ws = workspace
    created = ws.call(
        "POST", BASE, json={"shortcut": "old", "title": "Old", "content": "Old", "scope": "shared"}
    )
    reply_id = created.json["id"]
    ctx = Ctx.system(uuid.UUID(ws.tenant["id"]))
    importing = get_sessionmaker()()
    quick_replies.lock_shared_shortcuts(importing, ctx)  # the import's first step
    imported: dict = {}

    def import_csv() -> None:
        csv = b"shortcut,title,content\nold,Old,Imported\n"
        imported.update(quick_reply_csv.import_shared_csv(importing, ctx, csv))

    answered = race(
        importing,
        lambda: ws.call("PATCH", f"{BASE}/{reply_id}", json={"shortcut": "renamed"}),
        then=import_csv,
    )
    assert imported["updated"] == 1
    assert answered.status_code == 200, answered.text
    assert answered.json["shortcut"] == "renamed"
