"""``create_app()``: the Falcon WSGI application (gunicorn serves ``api.app:create_app()``)."""

from __future__ import annotations

import logging

import falcon

from api import errors
from api.middleware import RequestContext
from api.openapi import build_document
from api.resources import activity_logs, agents, api_keys, auth, docs, operations, roles
from shared import logs
from shared.config import get_settings

log = logging.getLogger(__name__)

API_TITLE = "OmniStream API"
API_VERSION = "0.1.0"


def routes() -> list[tuple[str, object]]:
    """Every route and its resource, in API.md order (the OpenAPI document follows it)."""
    return [
        ("/api/auth/login", auth.LoginResource()),
        ("/api/auth/me", auth.MeResource()),
        ("/api/auth/logout", auth.LogoutResource()),
        ("/api/auth/refresh", auth.RefreshResource()),
        ("/api/auth/register", auth.RegisterResource()),
        ("/api/agents", agents.AgentsResource()),
        ("/api/agents/{id:uuid}", agents.AgentResource()),
        ("/api/agents/{id:uuid}/status", agents.AgentStatusResource()),
        ("/api/activity-logs", activity_logs.ActivityLogsResource()),
        ("/api/roles", roles.RolesResource()),
        ("/api/roles/{id:uuid}", roles.RoleResource()),
        ("/api/permissions", roles.PermissionsResource()),
        ("/api/api-keys", api_keys.ApiKeysResource()),
        ("/api/api-keys/{id:uuid}", api_keys.ApiKeyResource()),
        ("/api/health", operations.HealthResource()),
        ("/api/automation/worker-metrics", operations.WorkerMetricsResource()),
    ]


def create_app() -> falcon.App:
    """Build the application; also installs this process's outbox publisher."""
    from workers import publisher

    settings = get_settings()
    logs.configure()
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
