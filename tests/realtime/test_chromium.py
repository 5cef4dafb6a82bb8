"""Headless Chromium runs the example page: it logs in and shows an inbound message live,
misses nothing between its list and its stream, and retries a stream only while that may help."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from urllib.parse import quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from tests.admin.conftest import root  # noqa: F401  (fixture)
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


def _log_in(page, email: str) -> None:
    page.evaluate(
        f"document.getElementById('email').value = {email!r};"
        f"document.getElementById('password').value = {PASSWORD!r};"
        "document.getElementById('login').requestSubmit(); true"
    )


def _state(page) -> str:
    return page.evaluate("document.getElementById('state').textContent")


def _listed(conversation_id: str) -> str:
    """Expression: the conversation's line in the page's list (its text), or null."""
    found = f"document.querySelector('[data-conversation=\"{conversation_id}\"]')"
    return f"{found} && {found}.textContent"


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


#: Installed before logging in: the responses of the conversation list are held (once the
#: server has read the list) until ``release`` is set.
_HOLD_LISTS = """
window.listsRead = 0; window.release = false;
var originalFetch = window.fetch;
window.fetch = function (url) {
  var answer = originalFetch.apply(this, arguments);
  if (String(url).indexOf('/api/conversations') < 0 || window.release) return answer;
  return answer.then(function (resp) {
    window.listsRead++;
    return new Promise(function (ok) {
      (function wait() { if (window.release) ok(resp); else setTimeout(wait, 20); })();
    });
  });
};
true
"""


def _is_change_of(conversation_id: str):
    def match(event) -> bool:
        body = event.json if event.event == "message" else {}
        return body.get("type", "").startswith("conversation.") and (
            body["data"].get("id") == conversation_id
        )

    return match


def test_a_change_arriving_while_the_page_lists_conversations_is_not_missed(
    live_server, stream_url, ws, streams
):
    """The list is read, then the conversation is resolved before the page shows the list:
    the change reaches the page anyway (its stream was open before the list was read),
    and the older list does not undo it."""
    warm = inbound(ws, "cust-warm", "before the page")["conversation_id"]
    watcher = streams(stream_url, ws.token)
    with Chromium() as browser:
        page = browser.open_page(width=1280, height=900, mobile=False)
        page.navigate(f"{live_server}/realtime?stream={stream_url}")
        page.evaluate(_HOLD_LISTS)
        _log_in(page, ws.admin["email"])
        _wait(page, "window.listsRead > 0", timeout=10)

        resolved = ws.call(
            "PATCH", f"/api/conversations/{warm}/status", json={"status": "resolved"}
        )
        assert resolved.status_code == 200, resolved.text
        watcher.until(_is_change_of(warm))
        received = "!!document.querySelector('#events li[data-type^=\"conversation.\"]')"
        with contextlib.suppress(AssertionError):  # the page before the fix never receives it
            _wait(page, received, timeout=3)
        page.evaluate("window.release = true")

        _wait(page, "document.getElementById('state').dataset.state === 'live'", timeout=10)
        time.sleep(0.3)  # every held list has answered
        assert "resolved" in page.evaluate(_listed(warm))


def test_a_refused_stream_is_not_retried_and_the_page_says_why(
    live_server,
    stream_url,
    ws,
    root,  # noqa: F811
):
    agent, _ = ws.create_agent("agent")
    with Chromium() as browser:
        page = browser.open_page(width=1280, height=900, mobile=False)
        page.navigate(f"{live_server}/realtime?stream={stream_url}")
        page.evaluate(
            "window.streamsOpened = 0; var originalFetch = window.fetch;"
            "window.fetch = function (url) {"
            "  if (String(url).indexOf('/api/stream') >= 0) window.streamsOpened++;"
            "  return originalFetch.apply(this, arguments); }; true"
        )
        _log_in(page, agent["email"])
        _wait(page, "document.getElementById('state').dataset.state === 'live'", timeout=10)

        base = f"/api/admin/tenants/{ws.tenant['id']}/users/{agent['id']}"
        assert root.call("POST", f"{base}/suspend").status_code == 200
        # The stream is closed (forbidden), the page reconnects once and is refused: 403.
        _wait(page, "document.getElementById('state').textContent.indexOf('suspended') >= 0", 15)
        opened = page.evaluate("window.streamsOpened")
        time.sleep(3)  # longer than the first retry's wait

        assert page.evaluate("window.streamsOpened") == opened
        assert page.evaluate("document.getElementById('state').dataset.state") == "down"
        assert "This user is suspended" in _state(page)


def test_a_stream_that_cannot_be_reached_is_retried_ever_more_slowly(live_server, ws):
    """Each failed attempt doubles the wait (with jitter: half to all of it), up to 30 s."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # nothing listens once it is closed
    with Chromium() as browser:
        page = browser.open_page(width=1280, height=900, mobile=False)
        page.navigate(f"{live_server}/realtime?stream=http://127.0.0.1:{closed_port}/api/stream")
        # The page's waits are recorded and skipped (8 of them), not waited for.
        page.evaluate(
            "window.waits = []; var originalSetTimeout = window.setTimeout;"
            "window.setTimeout = function (fn, ms) {"
            "  window.waits.push(ms);"
            "  return window.waits.length <= 8 ? originalSetTimeout(fn, 0) : 0;"
            "}; true"
        )
        _log_in(page, ws.admin["email"])
        _wait(page, "window.waits.length >= 9", timeout=10)
        waits, state = page.evaluate("window.waits"), _state(page)

    for attempt, waited in enumerate(waits):
        longest = min(2000 * 2**attempt, 30_000)
        assert longest / 2 <= waited <= longest, (attempt, waits)
    assert state.startswith("reconnecting in"), state
