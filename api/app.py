"""``create_app()``: the Falcon WSGI application (gunicorn serves ``api.app:create_app()``)."""

from __future__ import annotations

import importlib
import logging
import pkgutil

import falcon

from api import errors, resources
from api.middleware import RequestContext
from api.openapi import build_document
from api.resources import docs, operations
from shared import logs
from shared.config import get_settings

log = logging.getLogger(__name__)

API_TITLE = "OmniStream API"
API_VERSION = "0.1.0"


def routes() -> list[tuple[str, object]]:
    """Every route and its resource: each module of ``api.resources`` lists its ``ROUTES``.

    Modules are read in name order, so a new endpoint group is one new module and
    no edit here.
    """
    table: list[tuple[str, object]] = []
    for module in sorted(pkgutil.iter_modules(resources.__path__), key=lambda m: m.name):
        table += getattr(
            importlib.import_module(f"{resources.__name__}.{module.name}"), "ROUTES", []
        )
    return table


def create_app() -> falcon.App:
    """Build the application; also installs this process's outbox publisher."""
    from workers import publisher

    # NOTE: before anything reads the settings, so that even their warnings are in LOG_FORMAT.
    logs.configure()
    settings = get_settings()
    publisher.install()
    app = falcon.App(middleware=[RequestContext(settings.max_body_bytes)])
    # NOTE: '/api/agents/' and '/api/agents' are the same resource to a client.
    app.req_options.strip_url_path_trailing_slash = True
    app.resp_options.secure_cookies_by_default = settings.cookie_secure
    errors.register(app)
    table = routes()
    for template, resource in table:
        app.add_route(template, resource)
    document = build_document(table, title=API_TITLE, version=API_VERSION)
    app.add_route("/api/openapi.json", docs.OpenApiResource(document))
    app.add_route("/api/docs", docs.DocsResource())
    app.add_route("/metrics", operations.PrometheusResource())
    app.add_static_route("/api/docs/static", docs.ASSETS_DIR)
    return app
