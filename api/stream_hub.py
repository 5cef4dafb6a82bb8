"""The stream process's fan-out: one Redis reader per tenant, many clients per reader.

- :class:`TenantFeed`: one blocking ``XREAD`` loop per tenant with clients connected
  to this process; each entry is matched in memory against every client's
  :class:`~shared.realtime.access.Viewer` and queued to those who may see it.
- :class:`Client`: one open stream: its credential, viewer and queue. A client whose
  queue grows past :data:`MAX_QUEUED` (it does not read) is closed; it reconnects
  with ``Last-Event-ID`` and resumes from the backlog.
- :class:`Hub`: the feeds, the typing subscription (one pattern subscription for
  every tenant) and the monitor that re-authenticates clients when their tenant's
  access epoch moves (revocation, suspension, role or division change: within
  :data:`CHECK_SECONDS`), at least every :data:`FULL_CHECK_SECONDS` anyway (a client
  whose agent now sees other conversations is sent :data:`ACCESS_CHANGED`), and
  refreshes presence. A resume from before the agent's access *mark* (the last change of
  what they see, :mod:`shared.realtime.access`) is that ``reset`` and no backlog.

PostgreSQL is only asked when a client connects and when it is re-checked, in a
thread (SQLAlchemy here is synchronous).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import falcon.asgi
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import auth as api_auth
from shared.context import Ctx
from shared.db import session_scope
from shared.digits import ascii_digits
from shared.errors import DomainError
from shared.identity.security import InvalidToken, decode_access_token
from shared.inbox.access import EVERYTHING
from shared.models import ApiKey
from shared.realtime import access, feed, presence, typing

log = logging.getLogger(__name__)

#: Seconds between heartbeat comments on an idle stream (proxies close silent ones).
HEARTBEAT_SECONDS = 15.0
#: What EventSource waits before reconnecting (milliseconds, sent as ``retry:``).
RETRY_MS = 2_000
#: How often the monitor compares access epochs (revocation closes a stream this fast).
CHECK_SECONDS = 2.0
#: Every client is re-authenticated at least this often, whatever the epochs say.
FULL_CHECK_SECONDS = 60.0
#: How long a new stream waits for its tenant's feed to reach Redis before ``close``.
READY_TIMEOUT_SECONDS = 10.0
#: Entries queued for a client that does not read before it is closed.
MAX_QUEUED = 1_000
#: How long one XREAD blocks (milliseconds); a cancelled feed stops at once anyway.
BLOCK_MS = 10_000
#: Entries per XREAD / XRANGE page.
PAGE = 500
#: A feed that read a full page (it is behind) or whose previous read returned this long
#: ago (its loop stalled) first checks that nothing past its position was trimmed.
GAP_CHECK_AFTER_SECONDS = 5.0
#: How long a Redis answer may take (a busy event loop reads answers late).
SOCKET_TIMEOUT_SECONDS = 15.0
#: Redis connections for short commands (opening a stream, presence), per process.
COMMAND_CONNECTIONS = 64
#: Bound on the blocking readers' connections: one per tenant with clients here.
READER_CONNECTIONS = 100_000
#: The typing subscription PINGs Redis after this long without a message (idle cost: one
#: PING per process this often)...
TYPING_PING_SECONDS = 10.0
#: ... and drops its connection and subscribes again after this long without a message
#: nor a PONG (a half-open connection gives no error: it only goes silent).
TYPING_SILENCE_SECONDS = 15.0
#: The first wait before subscribing again; it doubles per failed attempt up to the max.
TYPING_RETRY_SECONDS = 1.0
TYPING_RETRY_MAX_SECONDS = 15.0


#: The SSE event name of an entry that takes its conversation out of the client's view (an
#: assignment to someone else, a move to a division they are not in): the entry's envelope
#: as usual, under a name that tells the client to drop the conversation. Nothing more of
#: it follows (unless it comes back into view).
REMOVED = "conversation.removed"

#: Redis stream ids are two unsigned 64-bit numbers; a larger one is refused by Redis.
_ID_PART_LIMIT = 2**64


def parse_id(value: str) -> tuple[int, int] | None:
    """A stream entry id ``<ms>-<seq>`` as a comparable tuple, or None for garbage.

    Out of Redis's range is garbage too: Redis's refusal of it looked like an outage
    (``close unavailable``), and the client reconnected with the same id forever.
    """
    ms, sep, seq = value.partition("-")
    if not sep or not ascii_digits(ms) or not ascii_digits(seq) or len(value) > 41:
        return None
    parsed = int(ms), int(seq)
    return parsed if max(parsed) < _ID_PART_LIMIT else None


class Item:
    """Something to send to one client: an entry (with its id) or a typing indicator."""

    __slots__ = ("data", "event", "id", "key")

    def __init__(self, key: tuple[int, int] | None, id: str | None, event: str | None, data: bytes):
        self.key, self.id, self.event, self.data = key, id, event, data

    def sse(self, with_id: bool = True) -> falcon.asgi.SSEvent:
        event_id = self.id if with_id else None
        return falcon.asgi.SSEvent(data=self.data, event=self.event, event_id=event_id)

    def removal(self) -> Item:
        """The entry as :data:`REMOVED`: the same envelope and id, for a client that must
        drop the conversation (it left their view)."""
        return Item(self.key, self.id, REMOVED, self.data)


#: The ``reset`` reason of a change of what an agent sees (live, or found on resume).
ACCESS_CHANGED_REASON = "access_changed"
#: What a client is sent when a re-check finds its agent sees other conversations than before
#: (a division joined or left or deleted, ``conversations.manage`` gained or lost): the
#: conversations it holds were chosen by the old rule, so it refetches. No id: it is no entry.
ACCESS_CHANGED = Item(
    None,
    None,
    "reset",
    json.dumps({"reason": ACCESS_CHANGED_REASON}, separators=(",", ":")).encode(),
)


def for_viewer(item: Item, removal: Item | None, viewer: access.Viewer, scope: dict) -> Item:
    """What ``viewer`` is sent of an entry it may see: the entry, or its removal."""
    return (removal or item.removal()) if viewer.loses(scope) else item


class Client:
    """One open stream of one agent."""

    def __init__(self, ctx: Ctx, viewer: access.Viewer, api_key: str | None, token: str | None):
        self.ctx, self.viewer = ctx, viewer
        self.api_key, self.token = api_key, token
        self.tenant_id = ctx.tenant_id
        self.queue: asyncio.Queue[Item | None] = asyncio.Queue()
        self.closed: str | None = None
        self.tag: tuple | None = None
        #: When the credential stops working (a token's or an API key's expiry), or None.
        self.expires_at: dt.datetime | None = None
        self.next_full_check = time.monotonic() + FULL_CHECK_SECONDS * random.uniform(0.5, 1.0)
        #: The feed read a change of this agent's access that the client's viewer does not
        #: have yet: until it is sent :data:`ACCESS_CHANGED`, it is sent no ids (see
        #: :meth:`TenantFeed.hold_ids`).
        self.ids_held = False
        #: Called (soon, by the event loop) once the client is closed: the hub forgets it.
        self.on_close: Callable[[Client], None] | None = None

    def offer(self, item: Item) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= MAX_QUEUED:
            self.close("too_slow")
            return
        self.queue.put_nowait(item)

    def close(self, reason: str) -> None:
        """Close the stream: it sends ``close`` next, and nothing queued (so that is dropped).

        WHY: a client that does not read blocks its server's send, and its stream stays
        suspended there, short of its ``finally``, for as long as the socket stays open:
        the hub forgets it now (``on_close``), not then. Kept, its agent counted as online,
        and its feed, its re-checks and its full queue went on.
        """
        if not self.closed:
            self.closed = reason
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            if self.on_close is not None:
                # NOTE: deferred: a caller may be iterating the feed's clients.
                asyncio.get_running_loop().call_soon(self.on_close, self)


class TenantFeed:
    """The tenant's stream, read by one task while this process has clients of the tenant."""

    def __init__(self, hub: Hub, tenant_id: uuid.UUID):
        self.hub, self.tenant_id = hub, tenant_id
        self.key = feed.stream_key(tenant_id)
        self.clients: set[Client] = set()
        #: PERF: who may receive what, so an entry is matched against its audience only
        #: (a conversation's assignee, the tenant's managers, the queue's watchers) and
        #: not against every client of the tenant.
        self.managers: set[Client] = set()
        self.watchers: set[Client] = set()
        self.by_user: dict[str, set[Client]] = {}
        self.ready = asyncio.Event()
        #: The newest entry fanned out: every client has been offered what it may see to here.
        self.position: tuple[int, int] = (0, 0)
        self.task = asyncio.create_task(self.run(), name=f"feed {tenant_id}")

    def add(self, client: Client) -> None:
        self.clients.add(client)
        self._index(client, client.viewer)

    def remove(self, client: Client) -> None:
        self.clients.discard(client)
        self._unindex(client, client.viewer)

    def set_viewer(self, client: Client, viewer: access.Viewer) -> None:
        if client in self.clients:
            self._unindex(client, client.viewer)
            self._index(client, viewer)
        client.viewer = viewer

    def _index(self, client: Client, viewer: access.Viewer) -> None:
        if viewer.shape == EVERYTHING:
            self.managers.add(client)
        elif viewer.user_id is not None:
            self.watchers.add(client)
            self.by_user.setdefault(viewer.user_id, set()).add(client)

    def _unindex(self, client: Client, viewer: access.Viewer) -> None:
        self.managers.discard(client)
        self.watchers.discard(client)
        mine = self.by_user.get(viewer.user_id) if viewer.user_id else None
        if mine is not None:
            mine.discard(client)
            if not mine:
                del self.by_user[viewer.user_id]

    def audience(self, scope: dict | None) -> list[Client]:
        """The clients that may receive an entry of ``scope`` (None: every client)."""
        if scope is None:
            return list(self.clients)
        if "c" not in scope or scope.get("a") is None or scope.get("pa") is None:
            # Tenant-wide, or in a queue (unassigned before or after): the rule decides.
            return [c for c in self.clients if c.viewer.can_see(scope)]
        found = list(self.managers)
        found.extend(self.by_user.get(scope["a"], ()))
        if scope["pa"] != scope["a"]:
            found.extend(self.by_user.get(scope["pa"], ()))
        return found

    async def run(self) -> None:
        redis = self.hub.readers
        while True:
            try:
                last = await self.hub.last_id(self.key)
                break
            except RedisError:
                log.warning("reading the realtime feed of %s failed; retrying", self.tenant_id)
                await asyncio.sleep(0.5)
        self.ready.set()
        behind, returned_at = False, time.monotonic()
        while True:
            try:
                if behind or time.monotonic() - returned_at > GAP_CHECK_AFTER_SECONDS:
                    await self._reset_if_trimmed(last)
                answer = await redis.xread({self.key: last}, count=PAGE, block=BLOCK_MS)
            except RedisError:
                log.warning("reading the realtime feed of %s failed; retrying", self.tenant_id)
                await asyncio.sleep(0.5)
                continue
            behind, returned_at = False, time.monotonic()
            for _, entries in answer or ():
                behind = len(entries) >= PAGE
                for entry_id, fields in entries:
                    last = entry_id
                    if fields.get(feed.KIND) == feed.ACCESS.encode():
                        self.hold_ids(fields)
                        self.position = parse_id(entry_id.decode()) or self.position
                        continue
                    item, scope = self.hub.item_of(entry_id, fields)
                    self.fan_out((item, scope))
                    self.position = item.key or self.position

    async def _reset_if_trimmed(self, last: str | bytes) -> None:
        """Tell every client to refetch when entries past ``last`` may be gone unread.

        The stream keeps about 10 minutes; a feed that fell further behind would
        otherwise read on from what survived and skip the rest in silence.
        """
        position = last.decode() if isinstance(last, bytes) else last
        if await self.hub.resume_refused(self.key, position):
            log.warning("realtime feed of %s fell behind its backlog: reset", self.tenant_id)
            self.fan_out((Item(None, None, "reset", _json({"reason": "events_lost"})), None))

    def hold_ids(self, mark: dict[bytes, bytes]) -> None:
        """An access mark: the clients of its principal whose viewer differs are sent no
        ids until their re-check's :data:`ACCESS_CHANGED`.

        WHY: another client's connect recorded the change first; what this one is sent
        until its re-check is still filtered by the old rule. With ids past the mark, a
        disconnect before the re-check resumed with no ``reset`` and a stale list.
        """
        who = mark.get(feed.PRINCIPAL, b"").decode()
        fingerprint = mark.get(feed.FINGERPRINT, b"").decode()
        for client in self.clients:
            viewer = client.viewer
            if access.principal(viewer, client.ctx.api_key_id) != who:
                continue
            if access.fingerprint(viewer) != fingerprint:
                client.ids_held = True

    def fan_out(self, decoded: tuple[Item, dict | None]) -> None:
        item, scope = decoded
        if scope is None or "c" not in scope:
            for client in self.audience(scope):
                client.offer(item)
            return
        removal = None
        for client in self.audience(scope):
            sent = for_viewer(item, removal, client.viewer, scope)
            removal = sent if sent is not item else removal
            client.offer(sent)


class Hub:
    """Every feed, client and background task of one stream process."""

    def __init__(self, redis_url: str):
        # Short commands share a bounded pool (a burst of connects waits for a connection
        # instead of opening hundreds); each tenant's blocking XREAD holds a connection
        # of the other pool for as long as the process has clients of that tenant.
        self.redis = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                redis_url,
                max_connections=COMMAND_CONNECTIONS,
                timeout=30,
                socket_timeout=SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=2,
                health_check_interval=30,
            )
        )
        self.readers = aioredis.Redis.from_url(
            redis_url,
            max_connections=READER_CONNECTIONS,
            # NOTE: longer than an XREAD blocks, or every idle read would time out.
            socket_timeout=BLOCK_MS / 1000 + SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=2,
            health_check_interval=30,
        )
        self.feeds: dict[uuid.UUID, TenantFeed] = {}
        self._mark_script = self.redis.register_script(access.MARK_LUA)
        self.local_users: Counter[tuple[uuid.UUID, str]] = Counter()
        self.process = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._tasks: list[asyncio.Task] = []
        self._short: set[asyncio.Task] = set()
        #: Agents whose first stream here opened since the last presence write.
        self._arrived: set[tuple[uuid.UUID, str]] = set()
        #: The typing subscription failed and has not heard from Redis since (warned once).
        self._typing_outage = False

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._typing_loop(), name="typing"),
            asyncio.create_task(self._monitor_loop(), name="monitor"),
            asyncio.create_task(self._presence_loop(), name="presence"),
        ]

    async def stop(self) -> None:
        for task in [*self._tasks, *(f.task for f in self.feeds.values())]:
            task.cancel()
        for feed_ in self.feeds.values():
            for client in feed_.clients:
                client.close("shutdown")
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.redis.aclose()
        await self.readers.aclose()

    def _background(self, coroutine: Any) -> None:
        """Run a short Redis write without holding up the caller (kept until it ends)."""
        task = asyncio.create_task(coroutine)
        self._short.add(task)
        task.add_done_callback(self._short.discard)

    # --- connecting ----------------------------------------------------------------------

    async def authenticate(self, req: falcon.asgi.Request) -> Client:
        """The request's client, authenticated as the API does (401 before the stream opens)."""
        api_key, token = api_auth.credential(req)
        req.context.request_id = uuid.uuid4().hex

        def check() -> Client:
            # NOTE: the epoch is read before the check, so a change committed meanwhile
            # moves it and the monitor's next round checks again. Only a token names its
            # tenant up front; an API key's client is re-checked in that first round.
            tenant_id = _token_tenant(token)
            tag = access.epoch_tags([tenant_id])[tenant_id] if tenant_id else None
            with session_scope() as session:
                req.context.db = session
                ctx = api_auth.authenticate(req)
                client = Client(ctx, access.load_viewer(session, ctx), api_key, token)
                client.expires_at = _expiry(session, ctx)
            client.tag = tag if ctx.tenant_id == tenant_id else None
            return client

        return await asyncio.to_thread(check)

    def register(self, client: Client) -> TenantFeed:
        client.on_close = self.unregister
        tenant_feed = self.feeds.get(client.tenant_id)
        if tenant_feed is None:
            tenant_feed = self.feeds[client.tenant_id] = TenantFeed(self, client.tenant_id)
        tenant_feed.add(client)
        user = _present_as(client)
        if user is not None:
            self.local_users[user] += 1
            if self.local_users[user] == 1:
                self._arrived.add(user)
                if len(self._arrived) == 1:
                    self._background(self._mark_arrived())
        return tenant_feed

    def unregister(self, client: Client) -> None:
        """Forget the client (once: on its close, and when its stream ends)."""
        if client.on_close is None:
            return
        client.on_close = None
        tenant_feed = self.feeds.get(client.tenant_id)
        if tenant_feed is not None:
            tenant_feed.remove(client)
            if not tenant_feed.clients:
                del self.feeds[client.tenant_id]
                tenant_feed.task.cancel()
        user = _present_as(client)
        if user is not None:
            self.local_users[user] -= 1
            if self.local_users[user] <= 0:
                del self.local_users[user]
                self._background(self._mark_absent(user))

    # --- one stream ----------------------------------------------------------------------

    async def stream(
        self, client: Client, last_event_id: str | None
    ) -> AsyncIterator[falcon.asgi.SSEvent | None]:
        """The client's events: ``ready`` or a resume (or ``reset``), then live, with heartbeats."""
        tenant_feed = self.register(client)
        try:
            yield falcon.asgi.SSEvent(retry=RETRY_MS, comment="connected")
            try:
                # NOTE: bounded: while Redis is unreachable the feed never gets ready, and a
                # stream waiting in silence (no ping) outlived its client until Redis returned.
                await asyncio.wait_for(tenant_feed.ready.wait(), READY_TIMEOUT_SECONDS)
                async for item in self.opening(client, last_event_id):
                    last_sent = item.key or parse_id(item.id)
                    yield item.sse()
            except (RedisError, TimeoutError):
                # A resume cut short here reconnects from the last entry it was sent.
                log.warning("could not open a stream (Redis unavailable)", exc_info=True)
                yield falcon.asgi.SSEvent(event="close", data=_json({"reason": "unavailable"}))
                return
            while client.closed is None:
                try:
                    item = await asyncio.wait_for(client.queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    # NOTE: the position is read before yielding: the feed moves on meanwhile.
                    ping, last_sent = self._ping(tenant_feed, last_sent, client.ids_held)
                    yield ping
                    continue
                if item is None:
                    continue
                if item.key is not None:
                    if item.key <= last_sent:
                        continue
                    last_sent = item.key
                if item is ACCESS_CHANGED:
                    client.ids_held = False
                yield item.sse(with_id=not client.ids_held)
            yield falcon.asgi.SSEvent(event="close", data=_json({"reason": client.closed}))
        finally:
            self.unregister(client)

    @staticmethod
    def _ping(
        tenant_feed: TenantFeed, last_sent: tuple[int, int], ids_held: bool = False
    ) -> tuple[falcon.asgi.SSEvent, tuple[int, int]]:
        """The heartbeat (and the client's new ``last_sent``): with the feed's position as its
        id when that is past the client's last id.

        NOTE: an idle client has been sent all it may see up to the feed's position. Without
        the id, an agent who sees little kept the id of their last visible event, and once
        the backlog dropped it even a reconnect after seconds answered ``reset``. A block
        with an id and no data fires no event in EventSource; it only moves Last-Event-ID.
        """
        position = tenant_feed.position
        if position <= last_sent or ids_held:
            return falcon.asgi.SSEvent(comment="ping"), last_sent
        ping = falcon.asgi.SSEvent(comment="ping", event_id=f"{position[0]}-{position[1]}")
        return ping, position

    async def opening(self, client: Client, last_event_id: str | None) -> AsyncIterator[Item]:
        """What the client is sent first: its missed entries, if any, then ``ready``; or
        ``reset``. The last item's id is the position the client is live from.

        The backlog is read a page at a time as it is sent, never gathered first: a
        tenant's stream holds up to :data:`feed.MAX_ENTRIES` entries, and every client of
        a stream process that restarted resumes at once. Gathered, their backlogs (up
        to 50,000 envelopes each) were all held in memory together.
        """
        key = feed.stream_key(client.tenant_id)
        mark = await self.access_mark(client)
        if not last_event_id:
            position = await self.last_id(key)
            yield Item(None, position, "ready", _json({"last_event_id": position}))
            return
        reason = await self.resume_refused(key, last_event_id)
        if not reason and parse_id(last_event_id) < mark:
            # WHY: what the client holds was chosen by the rule before the mark; the
            # backlog, filtered by the new one, cannot tell it what to drop or add.
            reason = ACCESS_CHANGED_REASON
        if reason:
            position = await self.last_id(key)
            yield Item(None, position, "reset", _json({"reason": reason}))
            return
        resumed, position, start = 0, last_event_id, f"({last_event_id}"
        while True:
            page = await self.redis.xrange(key, min=start, max="+", count=PAGE)
            for entry_id, fields in page:
                position = entry_id.decode()
                if fields.get(feed.KIND) == feed.ACCESS.encode():
                    continue
                item, scope = self.item_of(entry_id, fields)
                if scope is None:
                    resumed += 1
                    yield item
                elif client.viewer.can_see(scope):
                    resumed += 1
                    yield for_viewer(item, None, client.viewer, scope)
            if len(page) < PAGE:
                ready = {"last_event_id": position, "resumed": resumed}
                yield Item(None, position, "ready", _json(ready))
                return
            start = f"({position}"

    async def access_mark(self, client: Client) -> tuple[int, int]:
        """The position of the last change of what the client's agent sees (recorded now
        if the client's viewer is not the one Redis holds)."""
        keys, args = access.mark_call(client.tenant_id, client.viewer, client.ctx.api_key_id)
        mark = await self._mark_script(keys=keys, args=args)
        return parse_id(mark.decode()) or (0, 0)

    async def _record_access(self, client: Client) -> None:
        """After a re-check changed a connected client's viewer: a new mark, so that its
        agent's other clients resume with a ``reset`` (and this one, whose ACCESS_CHANGED
        is queued before anything later than the mark, does not)."""
        try:
            await self.access_mark(client)
        except RedisError:
            log.warning("could not record an access change; the next stream opened records it")

    async def resume_refused(self, key: str, last_event_id: str) -> str | None:
        """None if every entry after ``last_event_id`` is still in the stream, else why not.

        An id the stream does not hold was trimmed (the gap is older than the backlog),
        is another tenant's, or never existed: in each case the client must refetch.
        ``0-0`` is the position of a stream that did not exist yet.
        """
        if parse_id(last_event_id) is None:
            return "invalid_id"
        if last_event_id == "0-0":
            info = await self._info(key)
            if info is None or info["entries-added"] == info["length"]:
                return None
            return "gap"
        if await self.redis.xrange(key, min=last_event_id, max=last_event_id, count=1):
            return None
        return "unknown_id"

    async def _info(self, key: str) -> dict | None:
        try:
            return await self.redis.xinfo_stream(key)
        except aioredis.ResponseError:
            return None

    async def last_id(self, key: str) -> str:
        """The stream's newest entry id (``0-0`` when it does not exist)."""
        newest = await self.redis.xrevrange(key, count=1)
        return newest[0][0].decode() if newest else "0-0"

    @staticmethod
    def item_of(entry_id: bytes, fields: dict[bytes, bytes]) -> tuple[Item, dict | None]:
        """The entry as an item to send, and its scope (None: every client gets it)."""
        id_ = entry_id.decode()
        key = parse_id(id_)
        if fields.get(feed.KIND) == feed.RESET.encode():
            return Item(key, id_, "reset", _json({"reason": "events_lost"})), None
        return Item(key, id_, None, fields[feed.ENVELOPE]), json.loads(fields[feed.SCOPE])

    # --- typing --------------------------------------------------------------------------

    async def _typing_loop(self) -> None:
        """Relay typing indicators for as long as the process runs, subscribing again
        (with back-off) whenever the subscription fails or its connection goes silent.

        WHY: ``pubsub.listen()`` read without a timeout: a half-open connection (a
        failover to a dead host, a NAT that forgot the flow) kept it waiting forever, in
        silence, and no client of the process saw typing again until a restart.
        """
        delay = TYPING_RETRY_SECONDS
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    # NOTE: bounded: connecting to a black hole waits for its socket_timeout.
                    async with asyncio.timeout(TYPING_SILENCE_SECONDS):
                        await pubsub.psubscribe(typing.channel_pattern())
                    await self._relay_typing_until_silent(pubsub)
            except (RedisError, TimeoutError) as exc:
                if not self._typing_outage:
                    # A new outage: warned once, and retried from the shortest wait.
                    self._typing_outage, delay = True, TYPING_RETRY_SECONDS
                    log.warning("the typing subscription failed (%r); subscribing again", exc)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, TYPING_RETRY_MAX_SECONDS)

    async def _relay_typing_until_silent(self, pubsub: aioredis.client.PubSub) -> None:
        """Relay the subscription's messages; raise TimeoutError once the connection has
        been silent for :data:`TYPING_SILENCE_SECONDS` although it was PINGed.

        The subscription's confirmation and every PONG count as heard: an idle but
        healthy connection answers the PING sent after :data:`TYPING_PING_SECONDS`.
        """
        heard, pinged = time.monotonic(), False
        while True:
            silent = time.monotonic() - heard
            if silent >= TYPING_SILENCE_SECONDS:
                raise TimeoutError(f"no answer from Redis in {silent:.1f} s")
            if silent >= TYPING_PING_SECONDS and not pinged:
                await pubsub.ping()
                pinged = True
            wait = (TYPING_SILENCE_SECONDS if pinged else TYPING_PING_SECONDS) - silent
            message = await pubsub.get_message(timeout=max(wait, 0.0))
            if message is None:
                continue
            heard, pinged = time.monotonic(), False
            if self._typing_outage:
                self._typing_outage = False
                log.info("the typing subscription is back")
            if message["type"] == "pmessage":
                self._relay_typing(message["channel"], message["data"])

    def _relay_typing(self, channel: bytes, data: bytes) -> None:
        try:
            tenant_id = uuid.UUID(channel.decode().rsplit(":", 1)[1])
            message = json.loads(data)
        except (ValueError, IndexError):
            return
        tenant_feed = self.feeds.get(tenant_id)
        if tenant_feed is None:
            return
        item = Item(None, None, "typing", _json(message["data"]))
        typist = message["data"].get("user_id")
        for client in tenant_feed.clients:
            if client.viewer.user_id != typist and client.viewer.can_see(message["scope"]):
                client.offer(item)

    # --- re-checking credentials ---------------------------------------------------------

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            try:
                await self.check_clients()
            except Exception:
                log.exception("re-checking stream clients failed")

    async def check_clients(self) -> None:
        """Re-authenticate the clients whose tenant's access epoch moved, or whose time came."""
        if not self.feeds:
            return
        tags = await asyncio.to_thread(access.epoch_tags, list(self.feeds))
        now = time.monotonic()
        due: list[tuple[Client, tuple | None]] = []
        for tenant_id, tenant_feed in list(self.feeds.items()):
            tag = tags.get(tenant_id)
            for client in tenant_feed.clients:
                moved = tag is not None and client.tag != tag
                if moved or now >= client.next_full_check or _expired(client.expires_at):
                    due.append((client, tag))
        if not due:
            return
        for client, found, reason in await asyncio.to_thread(_recheck, due):
            client.next_full_check = time.monotonic() + FULL_CHECK_SECONDS
            if found is None:
                client.close(reason or "unauthorized")
            else:
                client.ctx, viewer, client.tag, client.expires_at = found
                changed = not client.viewer.sees_as(viewer)
                tenant_feed = self.feeds.get(client.tenant_id)
                if tenant_feed is not None:
                    tenant_feed.set_viewer(client, viewer)
                else:
                    client.viewer = viewer
                if changed:
                    # NOTE: queued after everything the old rule let through, and what
                    # follows is filtered by the new one: the client refetches in between.
                    client.offer(ACCESS_CHANGED)
                    self._background(self._record_access(client))

    # --- presence ------------------------------------------------------------------------

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(presence.REFRESH_SECONDS)
            try:
                await self._mark_present(list(self.local_users))
            except RedisError:
                log.warning("could not refresh presence (Redis down)")

    async def _mark_present(self, users: list[tuple[uuid.UUID, str]]) -> None:
        """Mark present those of ``users`` still streaming here, and unmark any who left
        while that was written.

        WHY: an agent whose stream closed before (or while) their arrival or refresh was
        written had their departure's removal reach Redis first; the write then showed
        them online, and round robin routed to them, until the mark lapsed.
        """
        users = [user for user in users if user in self.local_users]
        by_tenant: dict[uuid.UUID, list[str]] = {}
        for tenant_id, user_id in users:
            by_tenant.setdefault(tenant_id, []).append(presence.member(user_id, self.process))
        if not by_tenant:
            return
        pipe = self.redis.pipeline(transaction=False)
        now = time.time()
        for tenant_id, members in by_tenant.items():
            presence.mark_commands(pipe, tenant_id, members, now)
        try:
            await pipe.execute()
        except RedisError:
            log.warning("could not record presence (Redis down)")
            return
        for user in users:
            await self._mark_absent(user)  # NOTE: a no-op for those still streaming here

    async def _mark_arrived(self) -> None:
        """Mark present, in one round trip, every agent who arrived meanwhile."""
        await asyncio.sleep(0)
        arrived, self._arrived = list(self._arrived), set()
        await self._mark_present(arrived)

    async def _mark_absent(self, user: tuple[uuid.UUID, str]) -> None:
        if user in self.local_users:
            return
        try:
            await self.redis.zrem(
                presence.presence_key(user[0]), presence.member(user[1], self.process)
            )
        except RedisError:
            log.warning("could not clear presence (Redis down); it lapses by itself")


def _present_as(client: Client) -> tuple[uuid.UUID, str] | None:
    """The agent the stream shows online, or None: an API key's stream is an integration's
    (a wall screen), an impersonation's is support's; neither is the agent at their desk,
    and round robin would route conversations to them."""
    if not client.viewer.user_id or client.api_key or client.ctx.impersonator_id:
        return None
    return client.tenant_id, client.viewer.user_id


def _token_tenant(token: str | None) -> uuid.UUID | None:
    """The tenant a valid token names (no database), or None."""
    if not token:
        return None
    try:
        return decode_access_token(token).tenant_id
    except InvalidToken:
        return None


def _expiry(session: Session, ctx: Ctx) -> dt.datetime | None:
    """When the caller's credential expires: a token's, or its API key's.

    NOTE: an API key's expiry writes nothing, so no epoch moves when it passes: without
    it a key streamed on until the next full re-check, up to a minute past its expiry.
    """
    if ctx.api_key_id is None:
        return ctx.token_expires_at
    return session.scalar(select(ApiKey.expires_at).where(ApiKey.id == ctx.api_key_id))


def _expired(expires: dt.datetime | None) -> bool:
    return expires is not None and expires.timestamp() <= time.time()


def _recheck(due: list[tuple[Client, tuple | None]]) -> list[tuple[Client, Any, str | None]]:
    """In a thread: authenticate each client again; ``(client, (ctx, viewer, tag, expiry)
    or None, why)``.

    The answers are applied by the event loop (:meth:`Hub.check_clients`): a client's
    queue is not thread-safe.

    WHY: an API key's check may write its ``last_used_at``, which locks the key's row
    until the transaction ends. Held to the end of the round, two stream processes
    re-checking clients of the same keys in another order deadlocked (the round failed),
    and the key's web requests waited for the whole round. Each API key's check commits
    at once, so a round holds at most one key's lock, for one client's check; the token
    clients' checks only read and share a transaction (PERF: no commit each).
    """
    answers: list[tuple[Client, Any, str | None]] = []
    with session_scope() as session:
        for client, tag in due:
            answers.append((client, *_recheck_one(session, client, tag)))
            if client.api_key:
                session.commit()
    return answers


def _recheck_one(session: Session, client: Client, tag: tuple | None) -> tuple[Any, str | None]:
    """One client's answer for :func:`_recheck`: ``(ctx, viewer, tag, expiry)``, or None
    and why not."""
    # NOTE: before resolving, which refuses an expired credential as any other.
    if _expired(client.expires_at):
        return None, "expired"
    try:
        ctx = api_auth.resolve(session, client.api_key, client.token)
    except DomainError as exc:
        return None, "unauthorized" if exc.status == 401 else "forbidden"
    viewer = access.load_viewer(session, ctx)
    return (ctx, viewer, tag, _expiry(session, ctx)), None


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
