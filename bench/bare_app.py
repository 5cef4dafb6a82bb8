"""The baseline of bench/http_api.py: a bare Falcon app answering a constant JSON body.

No middleware, no database, no validation: what gunicorn (gthread) plus Falcon cost
per request on this machine. ``bench/http_api.py`` serves it with exactly the
settings of the real ``web`` process::

    gunicorn --config python:api.gunicorn_conf 'bench.bare_app:create_app()'

``GET /`` answers ``200 {"status":"ok"}`` (15 bytes, like a small API answer).
"""

from __future__ import annotations

import falcon

BODY = b'{"status":"ok"}'


class _Constant:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = BODY


def create_app() -> falcon.App:
    app = falcon.App()
    app.add_route("/", _Constant())
    return app
