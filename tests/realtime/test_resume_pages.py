"""A resume sends the backlog a page at a time, as it reads it, never gathered first.

Every client of a stream process that restarts resumes at once, and a tenant's stream
holds up to 50,000 entries: gathered, their backlogs were all in memory together. The
proof: once the client has been sent its first missed entry, the stream is trimmed;
a resume that reads as it sends finds nothing more after its first page, one that had
gathered the backlog first still sends it all.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import redis

from api.stream_hub import PAGE, Client, Hub
from shared.config import get_settings
from shared.context import Actor, Ctx
from shared.inbox.access import EVERYTHING
from shared.realtime import access, feed


def _fill(tenant_id: uuid.UUID, count: int) -> list[str]:
    client = redis.Redis.from_url(get_settings().redis_url)
    key = feed.stream_key(tenant_id)
    with client.pipeline() as pipe:
        for n in range(count):
            envelope = json.dumps({"type": "message.created", "n": n})
            pipe.xadd(key, {feed.ENVELOPE: envelope, feed.SCOPE: "{}", feed.KIND: feed.EVENT})
        ids = [i.decode() for i in pipe.execute()]
    client.close()
    return ids


def test_the_backlog_is_read_as_it_is_sent(database):
    tenant_id = uuid.uuid4()
    viewer = access.Viewer(tenant_id, None, EVERYTHING, frozenset())
    client = Client(Ctx(tenant_id, Actor("system", None)), viewer, None, None)

    async def resume() -> list:
        hub = Hub(get_settings().redis_url)
        sent = []
        try:
            # Its access recorded before the disconnect: the resume is no access reset.
            await hub.access_mark(client)
            start = _fill(tenant_id, 1)[0]
            missed[:] = _fill(tenant_id, 2 * PAGE + 5)
            async for item in hub.opening(client, start):
                if not sent:
                    await hub.redis.delete(feed.stream_key(tenant_id))
                sent.append(item)
        finally:
            await hub.redis.aclose()
            await hub.readers.aclose()
        return sent

    missed: list[str] = []
    sent = asyncio.run(resume())
    *entries, ready = sent
    assert [item.id for item in entries] == missed[:PAGE]
    assert ready.event == "ready"
    assert json.loads(ready.data) == {"last_event_id": missed[PAGE - 1], "resumed": PAGE}
