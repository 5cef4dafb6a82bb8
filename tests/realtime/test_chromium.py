"""Headless Chromium runs the example page: it logs in and shows an inbound message live."""

from __future__ import annotations

import socketserver
import threading
import time
from urllib.parse import quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from tests.ops.chromium import Chromium, find_chromium
from tests.realtime.conftest import inbound
from tests.workspaces import PASSWORD

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="chromium is not installed (apt-get install chromium)"
)


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def live_server(app):
    """The API on a real socket: it serves the page and the login."""
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _wait(page, expression: str, timeout: float) -> float:
    """Seconds until ``expression`` is truthy in the page (fails after ``timeout``)."""
    started = time.monotonic()
    while not page.evaluate(expression):
        assert time.monotonic() - started < timeout, f"{expression} still false"
        time.sleep(0.02)
    return time.monotonic() - started


def test_the_page_logs_in_and_shows_an_inbound_message_within_a_second(live_server, stream_url, ws):
    inbound(ws, "cust-warm", "before the page")  # the account exists before the page loads
    with Chromium() as browser:
        page = browser.open_page(width=1280, height=900, mobile=False)
        page.navigate(f"{live_server}/realtime?stream={stream_url}")
        page.evaluate(
            f"document.getElementById('email').value = {ws.admin['email']!r};"
            f"document.getElementById('password').value = {PASSWORD!r};"
            "document.getElementById('login').requestSubmit(); true"
        )
        _wait(page, "document.getElementById('state').dataset.state === 'live'", timeout=10)
        assert page.evaluate("document.querySelectorAll('#conversations li').length") == 1

        sent = inbound(ws, "cust-browser", "Shown live")
        shown = (
            "Array.from(document.querySelectorAll('#events li[data-type=\"message.created\"]'))"
            ".some(function (li) { return li.textContent.indexOf('Shown live') >= 0; })"
        )
        assert _wait(page, shown, timeout=1.0) < 1.0
        listed = f"!!document.querySelector('[data-conversation=\"{sent['conversation_id']}\"]')"
        _wait(page, listed, timeout=5)


def test_the_page_sends_its_token_to_no_other_host(live_server, stream_url):
    """``?stream=`` may name another port of this host (the stream process in development),
    never another host: the page sends its bearer token to the stream."""
    port = stream_url.split(":")[2].split("/")[0]
    with Chromium() as browser:
        page = browser.open_page(width=800, height=600, mobile=False)
        for asked, used in (
            ("https://evil.example/api/stream", "/api/stream"),
            ("//evil.example/x", "/api/stream"),
            ("javascript:alert(1)", "/api/stream"),
            (stream_url, stream_url),
            (f"http://localhost:{port}/api/stream", "/api/stream"),  # another host name
        ):
            page.navigate(f"{live_server}/realtime?stream={quote(asked, safe='')}")
            assert page.evaluate("STREAM_URL") == used, asked
