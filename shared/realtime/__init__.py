"""Realtime for inbox clients: ``GET /api/stream`` (Server-Sent Events), presence, typing.

Serving model: gunicorn's web processes are sync threads, so an idle stream would
hold a thread each. Streams are served instead by a separate asyncio process
(``stream:`` in the Procfile: Falcon's ASGI app under uvicorn, :mod:`api.stream_app`),
where an idle stream is a coroutine and a queue.

Data path: ``dispatch_event`` (the worker) XADDs every committed event's catalogue
envelope to its tenant's Redis stream (:mod:`shared.realtime.feed`), after its
commit. Each stream process runs one blocking ``XREAD`` per tenant that has clients
connected to it and fans entries out, in memory, to those clients whose visibility
rule admits them (:mod:`shared.realtime.access`). Nothing polls PostgreSQL per
client; the stream entry id is the SSE event id, which makes reconnects resumable.
"""
