"""``create_stream_app()``: the ASGI app of the ``stream`` process, serving ``GET /api/stream``.

Why a process of its own: gunicorn's web workers are sync threads, and an open
Server-Sent Events stream would hold one for as long as the agent's tab is open.
Here (Falcon's ASGI app under uvicorn) an idle stream costs a coroutine and a
queue. Run it with::

    uvicorn --factory api.stream_app:create_stream_app --http h11 --port 8001

Behind a load balancer, route ``/api/stream`` to the stream processes and
everything else to gunicorn; any stream process can serve any agent (the state
is in Redis), so they scale out by adding processes and machines, without sticky
sessions. Responses allow any origin (CORS, no cookies): a page served by the API
on another port or host may open a stream with its Bearer token.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import falcon
import falcon.asgi

from api import errors, stream_refusals  # noqa: F401 (uvicorn's refusals as API errors)
from api.stream_hub import Hub
from shared import logs
from shared.config import get_settings

log = logging.getLogger(__name__)

#: How long one send may wait for the client to read (its socket buffers full) before
#: its connection is dropped.
SEND_TIMEOUT_SECONDS = 30.0


class _SendTimedOut(Exception):
    """A send waited :data:`SEND_TIMEOUT_SECONDS`: the client does not read."""


class StreamApp(falcon.asgi.App):
    """Falcon's ASGI app, whose sends to a client wait at most :data:`SEND_TIMEOUT_SECONDS`.

    WHY: a client that does not read (a frozen tab, a dead NAT flow the kernel still
    ACKs) blocks the send, and the stream is suspended there: closing it as ``too_slow``
    sends nothing. Unbounded, the connection, its buffers and its task were held for as
    long as the peer kept the socket open.
    """

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)

        async def bounded_send(message) -> None:
            try:
                async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                    await send(message)
            except TimeoutError:
                raise _SendTimedOut from None

        try:
            await super().__call__(scope, receive, bounded_send)
        except _SendTimedOut:
            log.info("dropped a stream whose client read nothing for %ss", SEND_TIMEOUT_SECONDS)
            # NOTE: ASGI cannot drop a connection, and a close (the server's, then the
            # kernel's) waits for the buffers to flush, which a client that does not read
            # never lets happen: the socket is reset (no linger) and its transport aborted
            # (uvicorn's send is a method of the request's cycle, which holds it).
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is None:
                raise
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            await asyncio.sleep(0)  # the server sees the connection lost before we return


class StreamResource:
    """``GET /api/stream``: the authenticated agent's live events (text/event-stream)."""

    def __init__(self, hub: Hub):
        self.hub = hub

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        client = await self.hub.authenticate(req)
        # EventSource sends the header when it reconnects; a first connect may use the query.
        last_event_id = req.get_header("Last-Event-ID") or req.get_param("last_event_id")
        resp.set_header("Cache-Control", "no-store")
        # NOTE: nginx would otherwise buffer the stream and deliver events late.
        resp.set_header("X-Accel-Buffering", "no")
        resp.sse = self.hub.stream(client, last_event_id)


class HealthResource:
    """``GET /api/stream/health``: for the load balancer; counts this process's streams."""

    def __init__(self, hub: Hub):
        self.hub = hub

    async def on_get(self, req, resp) -> None:
        streams = sum(len(f.clients) for f in self.hub.feeds.values())
        resp.media = {"status": "ok", "streams": streams}


class Lifespan:
    """Start the hub's tasks with the event loop and stop them with it."""

    def __init__(self, hub: Hub):
        self.hub = hub

    async def process_startup(self, scope, event) -> None:
        self.hub.start()

    async def process_shutdown(self, scope, event) -> None:
        await self.hub.stop()


def _awaitable(handler):
    """The web API's error handler, as the coroutine Falcon's ASGI app requires.

    The stream answers its refusals (401, a database that cannot answer now) exactly
    as every other endpoint does: same bodies, statuses and ``Retry-After``.
    """

    async def handle(req, resp, ex, params) -> None:
        handler(req, resp, ex, params)

    return handle


def _adopt_uvicorn_logging() -> None:
    """Uvicorn's own lines (start, shutdown, refused requests) in LOG_FORMAT with our context.

    WHY: uvicorn installs its handlers before it calls this factory, in its own
    format; with ``LOG_FORMAT=json`` they were the stream process's only non-JSON lines.
    Their streams stay uvicorn's; only what a line looks like changes.
    """
    logs.adopt(
        [*logging.getLogger("uvicorn").handlers, *logging.getLogger("uvicorn.access").handlers]
    )


def create_stream_app(hub: Hub | None = None) -> StreamApp:
    logs.configure()
    _adopt_uvicorn_logging()
    settings = get_settings()
    hub = hub or Hub(settings.redis_url)
    app = StreamApp(middleware=[Lifespan(hub)], cors_enable=True)
    for exception, handler in errors.HANDLERS:
        app.add_error_handler(exception, _awaitable(handler))
    app.set_error_serializer(errors.serialize_http_error)
    app.add_route("/api/stream", StreamResource(hub))
    app.add_route("/api/stream/health", HealthResource(hub))
    return app
