"""The real API plus one route that fails after authenticating, for gunicorn in the log tests.

``gunicorn --config python:api.gunicorn_conf 'tests.logs.app:create_app()'``
"""

from __future__ import annotations

import logging

import falcon

from api.app import create_app as create_api
from api.auth import authenticate

log = logging.getLogger("tests.logs.app")

ROUTE = "/api/test-only/explode"


class Explode:
    def on_get(self, req, resp):
        ctx = authenticate(req)
        log.info("about to fail for this tenant")
        raise RuntimeError(f"boom for tenant {ctx.tenant_id}")


def create_app() -> falcon.App:
    app = create_api()
    app.add_route(ROUTE, Explode())
    return app
