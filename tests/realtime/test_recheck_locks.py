"""The stream monitor's re-check round against another transaction touching the same API keys.

A re-check of an API key's client writes the key's ``last_used_at`` (at most once a minute)
and so locks its row. Two stream processes re-check clients of the same keys in whatever
order their clients come; a round holding its first key's lock while it waits on its
second deadlocked with a round that did the opposite (and web requests of the key waited
for the whole round).
"""

from __future__ import annotations

import uuid

from sqlalchemy import update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from api import auth as api_auth
from api.stream_hub import Client, _recheck
from shared.db import get_sessionmaker
from shared.models import ApiKey
from shared.realtime import access
from tests.lock_races import race


def _api_key(ws, name: str) -> dict:
    created = ws.call("POST", "/api/api-keys", json={"name": name})
    assert created.status_code == 201, created.text
    return created.json


def _client(key: dict) -> Client:
    """A stream client of ``key``, as the stream process holds it (the check is rolled back:
    the key's ``last_used_at`` stays stale, so the re-check writes it)."""
    with get_sessionmaker()() as session:
        ctx = api_auth.resolve(session, key["key"], None)
        client = Client(ctx, access.load_viewer(session, ctx), key["key"], None)
        session.rollback()
    return client


def _touch(session: Session, key: dict) -> None:
    """What another stream process's round (or a web request) writes for a key it checks."""
    session.execute(
        update(ApiKey).where(ApiKey.id == uuid.UUID(key["id"])).values(last_used_at=None)
    )


def test_a_recheck_round_does_not_deadlock_with_another_touching_its_keys_in_reverse(ws):
    first, second = _api_key(ws, "wall screen"), _api_key(ws, "lobby screen")
    due = [(_client(first), None), (_client(second), None)]
    holder = get_sessionmaker()()
    # Another round has checked a client of the second key (its row is locked)...
    _touch(holder, second)
    failures: list[str] = []

    def recheck():
        try:
            return _recheck(due)
        except DBAPIError as exc:
            return str(exc.orig)

    def then_the_first_key():
        # ...and goes on to a client of the first key, which this round checked already.
        try:
            _touch(holder, first)
        except DBAPIError as exc:
            failures.append(str(exc.orig))
            holder.rollback()

    answers = race(holder, recheck, then=then_the_first_key)

    assert failures == []
    assert isinstance(answers, list), answers
    assert [(client, reason) for client, _, reason in answers] == [(c, None) for c, _ in due]
    assert all(found is not None for _, found, _ in answers)
