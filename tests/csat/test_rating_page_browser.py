"""The survey link opened in headless Chromium: a customer rates once, a stranger not at all."""

from __future__ import annotations

import json
import time

import pytest

from tests.csat.conftest import conversation, link_of, survey_messages
from tests.live_server import serving
from tests.ops.chromium import Chromium, find_chromium

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="chromium is not installed (apt-get install chromium)"
)

#: Click a star, type a comment, press Send: what a customer does on the page.
RATE = """
document.querySelector('.stars button[data-r="{rating}"]').click();
document.getElementById('comment').value = {comment};
document.querySelector('#rate button[type=submit]').click();
"""


def _status_after(page, action: str) -> str:
    """Run ``action`` on the page and wait for its status line to say something."""
    page.evaluate(action)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        said = page.evaluate("document.getElementById('status').textContent")
        if said:
            return said
        time.sleep(0.05)
    raise AssertionError("the rating page never answered")


def test_the_rating_page_rates_once_and_refuses_a_wrong_token(ws, app):
    conv = conversation(ws)
    resp = ws.call("POST", f"/api/conversations/{conv}/csat")
    assert resp.status_code == 201, resp.text
    (message,) = survey_messages(ws, conv)
    survey_id, token = link_of(message)

    with serving(app) as base, Chromium() as browser:

        def visit(link_token: str):
            # NOTE: a new tab each time: a link differing only in its fragment would be a
            # same-document navigation, which fires no load event.
            page = browser.open_page()
            page.navigate(f"{base}/csat/{survey_id}#token={link_token}")
            return page

        page = visit("x" * len(token))
        assert _status_after(page, RATE.format(rating=2, comment='"guess"')) == (
            "This link is not valid."
        )
        assert ws.call("GET", f"/api/conversations/{conv}/csat").json["rating"] is None

        page = visit(token)
        said = _status_after(page, "document.getElementById('rate').requestSubmit()")
        assert said == "Choose a rating from 1 to 5."
        thanks = _status_after(
            page,
            "document.getElementById('status').textContent = '';"
            + RATE.format(rating=4, comment=json.dumps("Quick, thanks")),
        )
        assert thanks == "Thank you for your feedback!"
        assert page.evaluate("document.getElementById('rate').hidden") is True
        shown = ws.call("GET", f"/api/conversations/{conv}/csat").json
        assert (shown["rating"], shown["comment"]) == (4, "Quick, thanks")

        page = visit(token)
        again = _status_after(page, RATE.format(rating=1, comment='""'))
        assert again == "This conversation was already rated."
        assert ws.call("GET", f"/api/conversations/{conv}/csat").json["rating"] == 4
