"""Inbound files are fetched by the worker as they arrive, so the first GET finds them stored."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

from scheduler import jobs
from shared.db import session_scope
from shared.models import MediaFile
from tests.channels_inbound.test_media_fetch_deadline import BODY, _Cdn, _inbound_file, cdn
from tests.peers.environment import environment
from workers import queues

__all__ = ["cdn"]  # the fixture, shared with the deadline tests


@pytest.fixture
def prefetching(tmp_path):
    with environment(MEDIA_ROOT=str(tmp_path), MEDIA_PREFETCH="true"):
        yield tmp_path


def _stored(media_id) -> MediaFile:
    with session_scope() as session:
        return session.get_one(MediaFile, media_id)


def test_an_inbound_file_is_stored_by_the_worker_without_any_get(channels, cdn, prefetching):
    media_id = _inbound_file(channels, f"{cdn}/v/early.gif")
    channels.broker.join(queues.CHANNELS, timeout=20_000)

    row = _stored(media_id)
    assert row.storage_key is not None and row.size == len(BODY)
    assert _Cdn.hits == ["/v/early.gif"]

    got = channels.ws.call("GET", f"/api/media/{media_id}")
    assert got.status_code == 200, got.text
    assert got.content == BODY
    assert _Cdn.hits == ["/v/early.gif"]  # served from storage, not fetched again


def test_a_file_whose_prefetch_was_lost_is_fetched_by_the_sweep(channels, cdn, prefetching):
    with environment(MEDIA_PREFETCH="false"):  # the hand-off lost on the way
        media_id = _inbound_file(channels, f"{cdn}/v/lost.gif")
    assert _stored(media_id).storage_key is None
    with session_scope() as session:
        session.execute(
            update(MediaFile)
            .where(MediaFile.id == media_id)
            .values(created_at=MediaFile.created_at - dt.timedelta(seconds=150))
        )

    with session_scope() as session:
        assert jobs.sweep_media_prefetch(session) == 1
    channels.broker.join(queues.CHANNELS, timeout=20_000)

    assert _stored(media_id).storage_key is not None
    with session_scope() as session:  # the next mark (4 minutes) is not crossed yet
        assert jobs.sweep_media_prefetch(session) == 0
