"""A client that never reads: closed past MAX_QUEUED, and gone from the hub at once.

Its server's send is blocked (the client reads nothing), so the stream's generator stays
suspended at a ``yield`` and never reaches its ``finally``. Until then the client stayed
registered: its agent counted as online (round robin kept routing to a dead tab), the
feed kept matching entries against it, the monitor kept re-checking it against the
database, and its queue kept its 1,000 entries; for as long as the socket stayed open.
"""

from __future__ import annotations

import asyncio
import uuid

from api.stream_hub import MAX_QUEUED, Client, Hub, Item
from shared.config import get_settings
from shared.context import Actor, Ctx
from shared.inbox.access import EVERYTHING
from shared.realtime import access


def test_a_client_closed_for_not_reading_leaves_the_hub_at_once(database):
    tenant_id, user_id = uuid.uuid4(), uuid.uuid4()
    viewer = access.Viewer(tenant_id, str(user_id), EVERYTHING, frozenset())
    ctx = Ctx(tenant_id, Actor("user", user_id), user_id=user_id)
    client = Client(ctx, viewer, None, "token")

    async def scenario() -> dict:
        hub = Hub(get_settings().redis_url)
        try:
            events = hub.stream(client, None)
            await events.__anext__()  # "connected"; the send of what follows never ends
            assert hub.local_users[(tenant_id, str(user_id))] == 1
            for n in range(MAX_QUEUED + 1):
                client.offer(Item((n + 1, 0), f"{n + 1}-0", None, b"{}"))
            await asyncio.sleep(0)  # what the close scheduled
            seen = {
                "closed": client.closed,
                "online": dict(hub.local_users),
                "feeds": list(hub.feeds),
                "queued": client.queue.qsize(),
            }
            await events.aclose()  # the socket finally goes: nothing is counted twice
            seen["online_after"] = dict(hub.local_users)
            return seen
        finally:
            await hub.stop()

    seen = asyncio.run(scenario())
    assert seen["closed"] == "too_slow"
    assert seen["online"] == {} and seen["feeds"] == []
    assert seen["queued"] <= 1  # only the close marker is kept
    assert seen["online_after"] == {}
