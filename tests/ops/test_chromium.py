"""Headless Chromium loads /ops from a real HTTP server: the API's figures, live, on a phone.

Screenshots are kept as test artefacts under ``tests/artifacts/`` (gitignored); their
paths are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path

import dramatiq
import pytest

from tests.live_server import serving
from tests.ops.chromium import Chromium, find_chromium
from tests.ops.conftest import OPERATOR
from tests.ops.figures import expected_figures
from tests.waiting import wait_until

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="chromium is not installed (apt-get install chromium)"
)

#: Every figure on the page, read from the DOM as the browser rendered it.
READ_FIGURES = (
    "JSON.stringify(Object.fromEntries(Array.from(document.querySelectorAll('[data-figure]'))"
    ".map(function(e){return [e.dataset.figure, e.dataset.value];})))"
)


@dramatiq.actor(queue_name="test_ops_browser", max_retries=0)
def browser_actor(marker: str, fail: bool = False) -> None:
    if fail:
        raise RuntimeError(f"browser test failure {marker}")


@pytest.fixture
def live_server(app):
    """The application on a real socket (wsgiref, one thread per request)."""
    with serving(app) as url:
        yield url


def _api(base: str) -> dict:
    # The live server's own http:// URL, never a user-supplied one.
    request = urllib.request.Request(f"{base}/api/ops/overview", headers=OPERATOR)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return json.load(answer)


def _dead_letters(client) -> int:
    return client.simulate_get("/api/ops/overview", headers=OPERATOR).json["summary"][
        "dead_letters"
    ]


def test_chromium_shows_the_apis_figures_live_on_a_phone(client, worker, live_server):
    ARTIFACTS.mkdir(exist_ok=True)
    before = _dead_letters(client)
    browser_actor.send(uuid.uuid4().hex)
    browser_actor.send(uuid.uuid4().hex, True)
    wait_until(lambda: _dead_letters(client) == before + 1, timeout=10)

    def settled():
        actors = _api(live_server)["actors"]
        mine = next((a for a in actors if a["actor"] == "browser_actor"), None)
        return mine and mine["processed"] == 1 and mine["dead_lettered"] == 1

    wait_until(settled, timeout=10)

    with Chromium() as browser:
        page = browser.open_page(headers=OPERATOR)
        page.navigate(f"{live_server}/ops")
        assert page.evaluate("document.title") == "OmniStream ops"
        shown = json.loads(page.evaluate(READ_FIGURES))
        expected = expected_figures(_api(live_server))
        assert {key: shown.get(key) for key in expected} == expected
        assert shown["actor.browser_actor.processed"] == "1"

        # Usable on a phone: the page is as wide as the screen, wide tables scroll inside.
        assert page.evaluate("window.innerWidth") == 412
        assert page.evaluate("document.documentElement.scrollWidth") <= 412
        sections = page.evaluate("Array.from(document.querySelectorAll('section')).map(s => s.id)")
        assert {"summary", "busy", "queues", "actors", "delayed", "dead-letters"} <= set(sections)
        phone = page.screenshot(str(ARTIFACTS / "ops-console-phone.png"))
        print(f"\nscreenshot: {phone}")

        # Live: a new dead letter appears without reloading the page.
        browser_actor.send(uuid.uuid4().hex, True)
        wait_until(lambda: _dead_letters(client) == before + 2, timeout=10)
        page.evaluate("window.__not_reloaded = true")

        def refreshed():
            figures = json.loads(page.evaluate(READ_FIGURES))
            return figures["dead_letters.count"] == str(_api(live_server)["dead_letters"]["count"])

        wait_until(refreshed, timeout=20, interval=0.5)
        assert page.evaluate("window.__not_reloaded") is True
        assert page.evaluate("document.getElementById('state').textContent") == "live"

        desktop = browser.open_page(headers=OPERATOR, width=1280, height=900, mobile=False)
        desktop.navigate(f"{live_server}/ops")
        shot = desktop.screenshot(str(ARTIFACTS / "ops-console-desktop.png"))
        print(f"screenshot: {shot}")
    assert Path(phone).stat().st_size > 10_000 and Path(shot).stat().st_size > 10_000


def test_chromium_without_credentials_gets_the_login_form(live_server):
    with Chromium() as browser:
        page = browser.open_page()
        page.navigate(f"{live_server}/ops")
        assert page.evaluate("document.querySelectorAll('input[name=token]').length") == 1
        assert page.evaluate("document.querySelectorAll('[data-figure]').length") == 0


def test_chromium_renders_the_api_docs_under_their_content_security_policy(live_server):
    """The docs page's CSP allows its bundle and its start script by hash: Swagger UI
    must still render the document (a policy that blocked it would show a blank page)."""
    with Chromium() as browser:
        page = browser.open_page(width=1280, height=900, mobile=False)
        page.navigate(f"{live_server}/api/docs")
        title = "(document.querySelector('.swagger-ui .info .title') || {}).textContent || ''"
        wait_until(lambda: "OmniStream" in page.evaluate(title), "the docs' title", timeout=20)
        assert page.evaluate("document.querySelectorAll('.opblock').length") > 100
