"""Realtime on the normal API: typing indicators, and the live inbox example page.

``GET /api/stream`` itself is served by the ``stream`` process (:mod:`api.stream_app`).
"""

from __future__ import annotations

import re
from pathlib import Path

import falcon

from api import ops_html
from api.endpoint import endpoint
from api.schemas.realtime import TypingBody, TypingView
from shared.realtime import (
    access,  # noqa: F401  (this process's writes move the access epochs)
    typing,
)

TAGS = ("Conversations",)
PAGE = Path(__file__).resolve().parent.parent / "realtime_page.html"
#: A Host header fit to name in a CSP source (no spaces, quotes or semicolons).
_HOSTNAME = re.compile(r"^[A-Za-z0-9.-]{1,253}$")


class TypingResource:
    @endpoint(
        "Relay a typing indicator",
        body=TypingBody,
        response=TypingView,
        status=202,
        description="Relayed at once to the agents streaming `GET /api/stream` who may see the"
        " conversation (event `typing`); nothing is stored. 404 for a conversation the caller"
        " may not see.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: TypingBody):
        return typing.relay(req.context.db, ctx, id, body.typing)


class LivePageResource:
    """``/realtime``: a no-build page that logs in and shows the inbox's events live.

    APPSEC: the page sends its bearer token to the stream, which may be on another port of
    this host (the stream process in development) and nowhere else: ``connect-src``.
    """

    def on_get(self, req, resp) -> None:
        resp.content_type = falcon.MEDIA_HTML
        connect = "'self'"
        try:
            host = req.host
        except ValueError:
            # WHY: Falcon raises on a Host header whose port is not a number (a 500).
            host = ""
        if _HOSTNAME.match(host):
            connect += f" {req.scheme}://{host}:*"
        resp.set_header("Content-Security-Policy", ops_html.csp(connect))
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("X-Frame-Options", "DENY")
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")
        resp.text = PAGE.read_text()


ROUTES = [
    ("/api/conversations/{id:uuid}/typing", TypingResource()),
    ("/realtime", LivePageResource()),
]
