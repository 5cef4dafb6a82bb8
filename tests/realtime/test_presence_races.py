"""Presence of an agent whose stream closes while their arrival is being written."""

from __future__ import annotations

import asyncio
import uuid

from api.stream_hub import Client, Hub
from shared.config import get_settings
from shared.context import Actor, Ctx
from shared.inbox.access import EVERYTHING
from shared.realtime import access, presence


class _SlowWrites(Hub):
    """The hub, its presence writes reaching Redis late (a busy pool, a slow network)."""

    async def _mark_present(self, users):
        await asyncio.sleep(0.2)
        await super()._mark_present(users)


def test_a_stream_closed_at_once_leaves_its_agent_offline(database):
    """The arrival's write landed after the departure's removal: the agent, gone, was
    shown online (and routed conversations by round robin) until the mark lapsed."""
    tenant_id, user_id = uuid.uuid4(), uuid.uuid4()
    viewer = access.Viewer(tenant_id, str(user_id), EVERYTHING, frozenset())
    ctx = Ctx(tenant_id, Actor("user", user_id), user_id=user_id)
    client = Client(ctx, viewer, None, "token")

    async def scenario() -> None:
        hub = _SlowWrites(get_settings().redis_url)
        try:
            events = hub.stream(client, None)
            await events.__anext__()  # "connected": registered, its arrival to be written
            await events.aclose()  # the client went at once
            await asyncio.sleep(0.6)  # both writes ran
        finally:
            await hub.stop()

    asyncio.run(scenario())
    assert user_id not in presence.connected_agents(tenant_id)
