"""The file URLs a Messenger or Instagram callback carries are fetched only on the outside.

A tenant may connect its own Meta app (``app_secret``), so it can sign any callback for
its own Page: the attachment URL is the sender's to choose, and the download proxy must
never reach an address inside our network with it.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import uuid

import pytest

from tests.channels_inbound.conftest import load
from tests.peers.environment import environment

SECRET = b"internal: only the platform's own network may read this"


class _Internal(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(SECRET)))
        self.end_headers()
        self.wfile.write(SECRET)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _serving(host: str):
    _Internal.hits = []
    server = http.server.ThreadingHTTPServer((host, 0), _Internal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def internal_server():
    """An HTTP server on a loopback address outside the tests' SSRF allowlist (127.0.0.1)."""
    with _serving("127.0.0.2") as url:
        yield url


@pytest.fixture
def cdn_server():
    """An HTTP server the tests' SSRF allowlist lets through: a CDN, as far as the guard knows."""
    with _serving("127.0.0.1") as url:
        yield url


def _download(channels, channel: str, url: str, media_root) -> object:
    """A signed callback carrying a file at ``url``, processed; then the agent's download."""
    account = channels.account(channel)
    payload = load(f"{channel}_attachment.json", PAGE_ID=account["external_id"])
    payload["entry"][0]["id"] = account["external_id"]
    (attachment,) = payload["entry"][0]["messaging"][0]["message"]["attachments"]
    attachment["payload"]["url"] = url
    resp = channels.post_meta(channel, payload, secret=account["credentials"]["app_secret"])
    assert resp.status_code == 200, resp.text
    channels.settle()
    (message,) = channels.messages()
    media_id = uuid.UUID(message.attachments[0]["media_id"])
    with environment(MEDIA_ROOT=str(media_root)):
        return channels.ws.call("GET", f"/api/media/{media_id}")


def test_an_attachment_url_outside_is_fetched_and_served(channels, cdn_server, tmp_path):
    got = _download(channels, "messenger", f"{cdn_server}/v/image.bin", tmp_path)

    assert got.status_code == 200, got.text
    assert got.content == SECRET
    assert _Internal.hits == ["/v/image.bin"]


@pytest.mark.parametrize("channel", ["messenger", "instagram"])
def test_an_attachment_url_inside_our_network_is_never_fetched(
    channels, internal_server, tmp_path, channel
):
    got = _download(channels, channel, f"{internal_server}/latest/meta-data/creds", tmp_path)

    assert got.status_code == 404, got.text
    assert got.json["error"]["code"] == "media_unavailable"
    assert SECRET not in got.content
    assert _Internal.hits == []
