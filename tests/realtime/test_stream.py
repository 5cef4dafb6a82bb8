"""GET /api/stream: live, tenant- and visibility-scoped, resumable, closed on revocation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import httpx
import redis

from shared.config import get_settings
from shared.realtime import feed, presence
from tests.realtime.conftest import inbound, new_division, of_type, ready_event
from tests.webhooks.faults_support import free_port


def test_credentials_are_checked_before_the_stream_opens(stream_url, ws):
    for headers in (
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic abc"},
        {"X-API-Key": "osk_nope"},
    ):
        resp = httpx.get(stream_url, headers=headers, timeout=5)
        assert resp.status_code == 401, (headers, resp.text)
        assert resp.headers["content-type"].startswith("application/json")
        assert resp.json()["error"]["code"] == "unauthenticated"


def test_an_inbound_message_reaches_the_tenant_and_nobody_else(stream_url, ws, other, streams):
    mine = streams(stream_url, ws.token)
    theirs = streams(stream_url, other.token)
    start = ready_event(mine)
    ready_event(theirs)
    sent = inbound(ws, "cust-live", "Where is my parcel?")
    event = mine.until(of_type("message.created", conversation_id=sent["conversation_id"]))
    body = event.json
    assert body["tenant_id"] == ws.tenant["id"]
    assert set(body) >= {"id", "type", "occurred_at", "timestamp", "actor", "data"}
    # The SSE id is the tenant stream's entry id, after the position given at connect.
    assert feed_id(event.id) > feed_id(start)
    # The other tenant's stream carries its own events only.
    inbound(other, "cust-other", "Hi")
    got = theirs.until(of_type("message.created"))
    assert got.json["tenant_id"] == other.tenant["id"]
    assert all(e.event != "message" or e.json["tenant_id"] == other.tenant["id"]
               for e in theirs.drain())  # fmt: skip


def feed_id(value: str) -> tuple[int, int]:
    ms, seq = value.split("-")
    return int(ms), int(seq)


def test_an_agent_sees_only_what_the_conversations_list_shows_them(stream_url, ws, streams):
    agent, agent_token = ws.create_agent("agent")
    watcher = streams(stream_url, agent_token)
    admin = streams(stream_url, ws.token)
    ready_event(watcher)
    ready_event(admin)
    conversation = inbound(ws, "cust-vis", "first")["conversation_id"]
    # Unassigned, and the agent is in no division: they see it.
    watcher.until(of_type("message.created", conversation_id=conversation))
    # Assigned to the admin: the agent learns it left their queue, then sees nothing more.
    _assign(ws, conversation, ws.admin["id"])
    gone = watcher.until(lambda e: e.event == "conversation.removed")
    assert gone.json["type"] == "conversation.assigned"
    assert gone.json["data"]["id"] == conversation
    inbound(ws, "cust-vis", "second")
    admin.until(of_type("message.created", conversation_id=conversation, body="second"))
    assert not [e for e in watcher.drain() if of_type("message.created")(e)]
    # Assigned to the agent: visible again.
    _assign(ws, conversation, agent["id"])
    watcher.until(of_type("conversation.assigned", id=conversation, assignee_id=agent["id"]))
    inbound(ws, "cust-vis", "third")
    watcher.until(of_type("message.created", conversation_id=conversation, body="third"))


def _assign(ws, conversation_id: str, agent_id: str) -> None:
    resp = ws.call(
        "PATCH", f"/api/conversations/{conversation_id}/assignment", json={"assignee_id": agent_id}
    )
    assert resp.status_code == 200, resp.text


def test_a_reconnect_with_last_event_id_receives_what_it_missed(stream_url, ws, streams):
    first = streams(stream_url, ws.token)
    position = ready_event(first)
    first.close()
    sent = [inbound(ws, f"cust-missed-{i}", f"missed {i}") for i in range(3)]
    _settled(ws, len(sent))
    again = streams(stream_url, ws.token, **{"Last-Event-ID": position})
    opening = again.drain(0.5)
    got = [e for e in opening if of_type("message.created")(e)]
    # The backlog ends with ``ready``, at the position the client is now live from.
    [ready] = [e for e in opening if e.event == "ready"]
    assert ready.json["resumed"] >= len(got) and feed_id(ready.id) >= feed_id(got[-1].id)
    assert opening.index(ready) > opening.index(got[-1])
    # NOTE: the three are dispatched by concurrent worker threads, in any order.
    assert sorted(e.json["data"]["conversation_id"] for e in got) == sorted(
        s["conversation_id"] for s in sent
    )
    ids = [feed_id(e.id) for e in got]
    assert ids == sorted(ids) and ids[0] > feed_id(position)
    # And it is live after the backlog.
    live = inbound(ws, "cust-after", "live")
    again.until(of_type("message.created", conversation_id=live["conversation_id"]))


def _settled(ws, messages: int, timeout: float = 10.0) -> None:
    """Until the tenant's stream holds ``messages`` message.created entries."""
    client = redis.Redis.from_url(get_settings().redis_url)
    deadline = time.monotonic() + timeout
    key = feed.stream_key(ws.tenant["id"])
    while True:
        entries = client.xrange(key)
        envelopes = (fields.get(feed.ENVELOPE, b"") for _, fields in entries)
        found = sum(b'"type":"message.created"' in envelope for envelope in envelopes)
        if found >= messages:
            return
        assert time.monotonic() < deadline, f"{found} of {messages} entries published"
        time.sleep(0.05)


def test_an_unusable_last_event_id_answers_reset(stream_url, ws, other, streams):
    inbound(other, "cust-foreign", "theirs")
    _settled(other, 1)
    foreign = (
        redis.Redis.from_url(get_settings().redis_url)
        .xrevrange(feed.stream_key(other.tenant["id"]), count=1)[0][0]
        .decode()
    )
    inbound(ws, "cust-own", "ours")
    _settled(ws, 1)
    own = (
        redis.Redis.from_url(get_settings().redis_url)
        .xrevrange(feed.stream_key(ws.tenant["id"]), count=1)[0][0]
        .decode()
    )
    for last_event_id, reason in (
        ("garbage", "invalid_id"),
        ("1-2-3", "invalid_id"),
        (b"\xb2-1", "invalid_id"),  # '²' passes str.isdigit(), not int()
        ("18446744073709551616-0", "invalid_id"),  # past Redis's 64 bits: it refuses them
        ("1-18446744073709551616", "invalid_id"),
        (foreign, "unknown_id"),
    ):
        stream = streams(stream_url, ws.token, **{"Last-Event-ID": last_event_id})
        event = stream.next()
        assert event.event == "reset", event
        assert event.json == {"reason": reason}
        # Nothing is replayed: the client refetches, then the stream is live from here.
        assert feed_id(event.id) >= feed_id(own)
        later = [e for e in stream.drain(0.3) if e.event == "message"]
        assert all(e.json["tenant_id"] == ws.tenant["id"] for e in later)
        assert all(feed_id(e.id) > feed_id(event.id) for e in later)
        stream.close()


def test_a_gap_older_than_the_backlog_answers_reset_then_goes_live(stream_url, ws, streams):
    first = streams(stream_url, ws.token)
    inbound(ws, "cust-old", "old")
    old = first.until(of_type("message.created")).id
    first.close()
    inbound(ws, "cust-new", "new")
    _settled(ws, 2)
    # Time moved: the backlog no longer reaches back to ``old`` (trimmed as XADD would).
    client = redis.Redis.from_url(get_settings().redis_url)
    ms, seq = feed_id(old)
    client.xtrim(feed.stream_key(ws.tenant["id"]), minid=f"{ms}-{seq + 1}", approximate=False)
    stream = streams(stream_url, ws.token, **{"Last-Event-ID": old})
    reset = stream.next()
    assert reset.event == "reset" and reset.json == {"reason": "unknown_id"}
    live = inbound(ws, "cust-later", "later")
    stream.until(of_type("message.created", conversation_id=live["conversation_id"]))


def test_logging_out_closes_the_stream_within_seconds(stream_url, ws, streams):
    _, token = ws.create_agent("agent")
    stream = streams(stream_url, token)
    ready_event(stream)
    resp = ws.call("POST", "/api/auth/logout", token=token)
    assert resp.status_code in (200, 204), resp.text
    started = time.monotonic()
    closing = stream.until(lambda e: e.event == "close", timeout=8)
    assert closing.json == {"reason": "unauthorized"}
    assert time.monotonic() - started < 8
    assert httpx.get(stream_url, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_typing_is_relayed_to_watchers_not_the_typist_and_presence_counts(stream_url, ws, streams):
    agent, agent_token = ws.create_agent("agent")
    typist = streams(stream_url, agent_token)
    admin = streams(stream_url, ws.token)
    ready_event(typist)
    ready_event(admin)
    assert uuid.UUID(agent["id"]) in presence.connected_agents(uuid.UUID(ws.tenant["id"]))
    conversation = inbound(ws, "cust-typing", "hi")["conversation_id"]
    resp = ws.call(
        "POST",
        f"/api/conversations/{conversation}/typing",
        json={"typing": True},
        token=agent_token,
    )
    assert resp.status_code == 202, resp.text
    event = admin.until(lambda e: e.event == "typing")
    assert event.id is None
    assert event.json == {"conversation_id": conversation, "user_id": agent["id"], "typing": True}
    assert not [e for e in typist.drain(0.3) if e.event == "typing"]
    # Nothing stored, and a conversation the caller may not see is a 404.
    missing = ws.call("POST", f"/api/conversations/{uuid.uuid4()}/typing", json={"typing": True})
    assert missing.status_code == 404
    bad = ws.call("POST", f"/api/conversations/{conversation}/typing", json={"typing": "x"})
    assert bad.status_code == 422


def test_a_connected_agent_counts_as_online_for_analytics(stream_url, ws, streams):
    connected, token = ws.create_agent("agent")
    away, _ = ws.create_agent("agent")
    before = ws.call("GET", "/api/analytics/overview").json["online_agents"]
    ready_event(streams(stream_url, token))
    agents = {a["agent_id"]: a for a in ws.call("GET", "/api/analytics/agents").json["agents"]}
    assert agents[connected["id"]]["is_online"] is True
    assert agents[away["id"]]["is_online"] is (away["status"] == "online")
    assert ws.call("GET", "/api/analytics/overview").json["online_agents"] == before + 1


def test_division_changes_apply_to_an_open_stream(stream_url, ws, streams):
    agent, token = ws.create_agent("agent")
    new_division(ws, "Sales", agent["id"])
    support = new_division(ws, "Support")
    watcher = streams(stream_url, token)
    ready_event(watcher)
    conversation = inbound(ws, "cust-div", "first")["conversation_id"]
    moved = ws.call(
        "POST", f"/api/conversations/{conversation}/transfer", json={"to_division_id": support}
    )
    assert moved.status_code == 200, moved.text
    inbound(ws, "cust-div", "hidden")
    _settled(ws, 2)
    # Unassigned in a division they are not in: nothing of it reaches them.
    assert not [e for e in watcher.drain(0.5) if e.event == "message"]
    added = ws.call("POST", f"/api/divisions/{support}/agents", json={"agent_ids": [agent["id"]]})
    assert added.status_code in (200, 204), added.text
    # The stream re-checks the agent within seconds of the change; no reconnect needed.
    deadline = time.monotonic() + 8
    seen = []
    while not seen:
        assert time.monotonic() < deadline, "the division change never applied"
        inbound(ws, "cust-div", "visible")
        seen = [e for e in watcher.drain(0.5) if of_type("message.created")(e)]
    assert seen[0].json["data"]["conversation_id"] == conversation


def test_an_api_key_streams_until_it_is_revoked(stream_url, ws, streams):
    created = ws.call("POST", "/api/api-keys", json={"name": "inbox screen"})
    assert created.status_code == 201, created.text
    stream = streams(stream_url, **{"X-API-Key": created.json["key"]})
    ready_event(stream)
    sent = inbound(ws, "cust-key", "via key")
    stream.until(of_type("message.created", conversation_id=sent["conversation_id"]))
    revoked = ws.call("DELETE", f"/api/api-keys/{created.json['id']}")
    assert revoked.status_code in (200, 204), revoked.text
    closing = stream.until(lambda e: e.event == "close", timeout=8)
    assert closing.json == {"reason": "unauthorized"}


def test_a_feed_that_fell_behind_its_backlog_sends_reset_not_a_silent_gap(
    stream_url, ws, streams, monkeypatch
):
    import threading

    from api import stream_hub

    stream = streams(stream_url, ws.token)
    ready_event(stream)
    stalled, trimmed = threading.Event(), threading.Event()
    fan_out = stream_hub.TenantFeed.fan_out

    def stalling_fan_out(self, decoded):
        # NOTE: blocks the stream process's event loop, as a long pause would.
        if not stalled.is_set():
            stalled.set()
            trimmed.wait(10)
        fan_out(self, decoded)

    monkeypatch.setattr(stream_hub, "GAP_CHECK_AFTER_SECONDS", 0.2)
    monkeypatch.setattr(stream_hub.TenantFeed, "fan_out", stalling_fan_out)
    inbound(ws, "cust-stalled", "read before the stall")
    assert stalled.wait(10), "the feed never read the entry"
    # Meanwhile the backlog moves past the feed's position (XADD's trimming, 10 minutes on).
    client = redis.Redis.from_url(get_settings().redis_url)
    client.xtrim(feed.stream_key(ws.tenant["id"]), maxlen=0, approximate=False)
    time.sleep(0.3)
    trimmed.set()

    # The entries read before the stall still arrive; what was trimmed unread is a reset.
    reset = stream.until(lambda event: event.event == "reset")
    assert reset.json == {"reason": "events_lost"}
    live = inbound(ws, "cust-after-stall", "live again")
    stream.until(of_type("message.created", conversation_id=live["conversation_id"]))


def test_a_stream_whose_database_cannot_answer_is_503_with_retry_after(ws):
    """The stream process meets a database it cannot reach as the web API does: a 503 the
    client retries, not a 500."""
    port, dead = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{dead}/x"}
    command = (sys.executable, "-m", "uvicorn", "--factory", "api.stream_app:create_stream_app")
    command += ("--http", "h11")
    server = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/stream"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "no stream server"
                time.sleep(0.05)
        resp = httpx.get(url, headers={"Authorization": f"Bearer {ws.token}"}, timeout=10)
    finally:
        server.terminate()
        _, log = server.communicate(timeout=10)
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "database_unavailable"
    assert resp.headers["Retry-After"] == "1"
    assert b"database unavailable on GET /api/stream" in log


def test_a_request_uvicorn_cannot_parse_is_answered_in_the_api_error_shape(stream_url):
    """uvicorn answers it before the app; still the API's JSON error, not plain text."""
    with socket.create_connection(("127.0.0.1", urlsplit(stream_url).port), timeout=10) as sock:
        sock.sendall(b"NOT A REQUEST\x00\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), data
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {
        "error": {
            "code": "bad_request",
            "message": "Invalid HTTP request received.",
            "details": [],
        }
    }


def test_a_stream_whose_feed_cannot_reach_redis_closes_unavailable(
    database, broker, ws, streams, monkeypatch
):
    """Redis unreachable when a stream opens: ``close`` (the client retries), not a stream
    that stays open in silence, unpinged, until Redis comes back."""
    from api import stream_app, stream_hub
    from tests.realtime.conftest import serving

    monkeypatch.setattr(stream_hub, "READY_TIMEOUT_SECONDS", 1.0, raising=False)
    hub = stream_hub.Hub(f"redis://127.0.0.1:{free_port()}/0")
    with serving(stream_app.create_stream_app(hub)) as url:
        stream = streams(url, ws.token)
        closing = stream.until(lambda e: e.event == "close", timeout=8)
        assert closing.json == {"reason": "unavailable"}
        # The client is gone from the process: not counted, not kept.
        assert httpx.get(f"{url}/health", timeout=5).json()["streams"] == 0


def test_an_api_key_stream_closes_when_the_key_expires(stream_url, ws, streams):
    """An expiring API key stops streaming when it expires (as a token does), not at the
    next full re-check up to a minute later: nothing is written when a key expires."""
    import datetime as dt

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    created = ws.call(
        "POST",
        "/api/api-keys",
        json={"name": "short-lived screen", "expires_at": expires.isoformat()},
    )
    assert created.status_code == 201, created.text
    stream = streams(stream_url, **{"X-API-Key": created.json["key"]})
    ready_event(stream)
    closing = stream.until(lambda e: e.event == "close", timeout=10)
    assert closing.json == {"reason": "expired"}
    assert dt.datetime.now(dt.UTC) >= expires


def test_an_api_key_stream_does_not_make_its_creator_online(stream_url, ws, streams):
    """An integration's stream (a wall screen on an API key) is not its creator at their
    desk: round robin must not route conversations to them for it."""
    created = ws.call("POST", "/api/api-keys", json={"name": "wall screen"})
    assert created.status_code == 201, created.text
    ready_event(streams(stream_url, **{"X-API-Key": created.json["key"]}))
    agent, token = ws.create_agent("agent")
    ready_event(streams(stream_url, token))
    tenant = uuid.UUID(ws.tenant["id"])
    deadline = time.monotonic() + 5
    while uuid.UUID(agent["id"]) not in presence.connected_agents(tenant):
        assert time.monotonic() < deadline, "the agent's stream never counted"
        time.sleep(0.05)
    assert uuid.UUID(ws.admin["id"]) not in presence.connected_agents(tenant)


def test_a_supervisor_does_not_receive_admin_only_events(stream_url, ws, streams):
    """``conversations.manage`` sees every conversation, not the roles, webhooks or
    integrations only their own permission reads (``GET /api/roles`` is 403 to them)."""
    _, token = ws.create_agent("supervisor")
    assert ws.call("GET", "/api/roles", token=token).status_code == 403
    supervisor = streams(stream_url, token)
    admin = streams(stream_url, ws.token)
    ready_event(supervisor)
    ready_event(admin)
    created = ws.call("POST", "/api/roles", json={"name": "Night shift", "permissions": []})
    assert created.status_code == 201, created.text
    admin.until(of_type("role.created", id=created.json["id"]))
    # A later tenant-wide event: once it arrives, the role's entry was offered before it.
    agent, _ = ws.create_agent("agent")
    seen = []
    supervisor.until(lambda e: seen.append(e) or of_type("agent.created", id=agent["id"])(e))
    assert not [e for e in seen if e.event == "message" and e.json["type"].startswith("role.")]


def test_an_agent_who_sees_little_resumes_a_short_gap_instead_of_a_reset(
    stream_url, ws, streams, monkeypatch
):
    """The heartbeat moves the client's Last-Event-ID past what it may not see: an agent
    whose last visible event is older than the backlog still resumes a gap of seconds."""
    from api import stream_hub

    monkeypatch.setattr(stream_hub, "HEARTBEAT_SECONDS", 0.3)
    agent, token = ws.create_agent("agent")
    new_division(ws, "Sales", agent["id"])
    watcher = streams(stream_url, token)
    opened_at = ready_event(watcher)
    # Unassigned, in no division: not the agent's; the tenant's stream moves on.
    inbound(ws, "cust-quiet", "not yours")
    _settled(ws, 1)
    time.sleep(1.0)
    assert not [e for e in watcher.drain(0.3) if e.event == "message"]
    last = watcher.last_id
    watcher.close()
    # The backlog no longer holds where the agent connected (ten minutes on).
    ms, seq = feed_id(opened_at)
    client = redis.Redis.from_url(get_settings().redis_url)
    client.xtrim(feed.stream_key(ws.tenant["id"]), minid=f"{ms}-{seq + 1}", approximate=False)
    again = streams(stream_url, token, **{"Last-Event-ID": last})
    assert again.next().event == "ready"
