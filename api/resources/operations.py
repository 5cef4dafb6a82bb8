"""Health, worker metrics and the Prometheus scrape endpoint."""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal

import falcon
from pydantic import BaseModel, Field

from api.auth import authenticate
from api.endpoint import endpoint
from api.schemas.common import Query
from shared import operations, worker_metrics
from shared.config import get_settings
from shared.errors import Unauthenticated
from workers.queues import ALL as QUEUES


class HealthView(BaseModel):
    """Each dependency's check; ``down`` names the failing ones (503 when any)."""

    status: Literal["ok", "down"]
    down: list[str]
    checks: dict[str, dict[str, Any]]


class HealthResource:
    @endpoint(
        "API Gateway health check",
        public=True,
        response=HealthView,
        also=(503,),
        description="200 when the database, Redis, the broker and the scheduler are well; "
        "503 naming what is down.",
        tags=("Health",),
    )
    def on_get(self, req, resp):
        report = operations.health(req.context.db, QUEUES)
        if report.down:
            resp.status = falcon.HTTP_503
        return report.as_dict()


class WorkerMetricsQuery(Query):
    minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 60


def operator_token(req: falcon.Request) -> bool:
    """True when the request carries the operator's ``METRICS_TOKEN``."""
    expected = get_settings().metrics_token
    header = req.get_header("Authorization") or ""
    # NOTE: bytes: compare_digest() raises TypeError for a str with non-ASCII characters.
    return bool(expected) and hmac.compare_digest(header.encode(), f"Bearer {expected}".encode())


class WorkerMetricsResource:
    @endpoint(
        "Get automation worker metrics",
        public=True,
        query=WorkerMetricsQuery,
        response=dict[str, Any],
        errors=(401, 403, 503),
        description=(
            "Per actor and minute: enqueued, processed, failed, retried, dead-lettered and "
            "latency; queue depths; dead letters; outbox lag. Tenant users holding "
            "`automation.view` see their own tenant's messages; the operator token "
            "(METRICS_TOKEN) sees the whole platform."
        ),
        tags=("Automation",),
    )
    def on_get(self, req, resp, *, query: WorkerMetricsQuery):
        tenant_id = None
        if not operator_token(req):
            ctx = authenticate(req)
            ctx.require("automation.view")
            tenant_id = ctx.tenant_id
        return operations.worker_metrics_report(
            req.context.db, QUEUES, tenant_id=tenant_id, minutes=query.minutes
        )


class PrometheusResource:
    """``GET /metrics``: platform-wide series for Prometheus (operator token when set)."""

    def on_get(self, req, resp):
        if get_settings().metrics_token and not operator_token(req):
            raise Unauthenticated(
                "Send the operator token: 'Authorization: Bearer <METRICS_TOKEN>'"
            )
        resp.content_type = worker_metrics.CONTENT_TYPE
        resp.data = operations.prometheus_exposition(req.context.db, QUEUES)


ROUTES = [
    ("/api/health", HealthResource()),
    ("/api/automation/worker-metrics", WorkerMetricsResource()),
]
