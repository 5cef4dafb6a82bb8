"""Realtime on the normal API: typing indicators, and the live inbox example page.

``GET /api/stream`` itself is served by the ``stream`` process (:mod:`api.stream_app`).
"""

from __future__ import annotations

from pathlib import Path

import falcon

from api.endpoint import endpoint
from api.schemas.realtime import TypingBody, TypingView
from shared.realtime import (
    access,  # noqa: F401  (this process's writes move the access epochs)
    typing,
)

TAGS = ("Conversations",)
PAGE = Path(__file__).resolve().parent.parent / "realtime_page.html"


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
    """``/realtime``: a no-build page that logs in and shows the inbox's events live."""

    def on_get(self, req, resp) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("X-Frame-Options", "DENY")
        resp.text = PAGE.read_text()


ROUTES = [
    ("/api/conversations/{id:uuid}/typing", TypingResource()),
    ("/realtime", LivePageResource()),
]
