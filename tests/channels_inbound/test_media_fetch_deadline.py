"""The first download of an inbound file is fetched within MEDIA_FETCH_TIMEOUT_SECONDS.

A CDN that trickles its bytes (a Messenger / Instagram file URL is the tenant's own Meta
app's to choose) held a web thread for minutes: httpx's timeout bounds each read, not the
download. Past the deadline the GET answers 503 with Retry-After, stores nothing, and the
next GET tries again; a GET waiting on another's fetch of the same file is bounded too.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
import uuid

import pytest
from sqlalchemy import select

from shared.db import session_scope
from shared.models import MediaFile
from tests.channels_inbound.conftest import load
from tests.peers.environment import environment

BODY = b"GIF89a" + bytes(range(256)) * 8
DEADLINE = 1.0
SLACK = 1.5


class _Cdn(http.server.BaseHTTPRequestHandler):
    #: Seconds between two bytes of the body; 0 sends it at once.
    trickle = 0.0
    hits: list[str] = []

    def do_GET(self):
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        if not type(self).trickle:
            self.wfile.write(BODY)
            return
        with contextlib.suppress(OSError):
            for byte in BODY[:200]:  # 200 x trickle: far past the deadline, then hang up
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(type(self).trickle)

    def log_message(self, *args):
        pass


@pytest.fixture
def cdn():
    """A CDN on the tests' SSRF allowlist (127.0.0.1), fast unless told to trickle."""
    _Cdn.trickle, _Cdn.hits = 0.0, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Cdn)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _inbound_file(channels, url: str) -> uuid.UUID:
    """A signed Messenger callback carrying a file at ``url``, processed: its media row."""
    account = channels.account("messenger")
    payload = load("messenger_attachment.json", PAGE_ID=account["external_id"])
    payload["entry"][0]["id"] = account["external_id"]
    (attachment,) = payload["entry"][0]["messaging"][0]["message"]["attachments"]
    attachment["payload"]["url"] = url
    resp = channels.post_meta("messenger", payload, secret=account["credentials"]["app_secret"])
    assert resp.status_code == 200, resp.text
    channels.settle()
    (message,) = channels.messages()
    return uuid.UUID(message.attachments[0]["media_id"])


def _timed_get(channels, media_id: uuid.UUID):
    started = time.monotonic()
    got = channels.ws.call("GET", f"/api/media/{media_id}")
    return got, time.monotonic() - started


def _stored_key(media_id: uuid.UUID) -> str | None:
    with session_scope() as session:
        return session.get_one(MediaFile, media_id).storage_key


def _assert_retry_later(got) -> None:
    assert got.status_code == 503, got.text
    assert got.json["error"]["code"] == "dependency_unavailable"
    assert int(got.headers["Retry-After"]) >= 1


def test_a_trickling_cdn_answers_503_within_the_deadline_and_a_later_get_fetches(
    channels, cdn, tmp_path
):
    media_id = _inbound_file(channels, f"{cdn}/v/slow.gif")
    _Cdn.trickle = 0.05
    with environment(MEDIA_ROOT=str(tmp_path), MEDIA_FETCH_TIMEOUT_SECONDS=str(DEADLINE)):
        got, took = _timed_get(channels, media_id)

        _assert_retry_later(got)
        assert took < DEADLINE + SLACK, took
        assert _stored_key(media_id) is None
        assert [p for p in tmp_path.rglob("*") if p.is_file()] == []

        _Cdn.trickle = 0.0
        again, _ = _timed_get(channels, media_id)

    assert again.status_code == 200, again.text
    assert again.content == BODY
    assert _stored_key(media_id) is not None


def test_a_get_waiting_on_another_fetch_of_the_same_file_is_bounded(channels, cdn, tmp_path):
    media_id = _inbound_file(channels, f"{cdn}/v/held.gif")
    with (
        environment(MEDIA_ROOT=str(tmp_path), MEDIA_FETCH_TIMEOUT_SECONDS=str(DEADLINE)),
        session_scope() as holder,
    ):
        # Another request's fetch, as far as the row lock tells: it holds the row.
        holder.scalars(select(MediaFile).where(MediaFile.id == media_id).with_for_update()).one()
        got, took = _timed_get(channels, media_id)
        holder.rollback()

    _assert_retry_later(got)
    assert took < DEADLINE + SLACK, took
