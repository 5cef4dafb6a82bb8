"""Outgoing webhooks: endpoints, the event catalogue, deliveries, resend, recover and test."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.schemas.common import ListQuery, Page
from api.schemas.webhooks import (
    DeliveryIds,
    DeliveryListQuery,
    EventTypeView,
    RecoverBody,
    TestResult,
    WebhookCreate,
    WebhookUpdate,
    WebhookWithSecret,
)
from shared.webhooks import catalogue, endpoints
from shared.webhooks.views import DeliveryView, WebhookView

# NOTE: resend, recover and new deliveries are enqueued after commit by the enqueuer
# this import installs (the sweeper would otherwise pick them up within seconds).
from workers.actors import webhooks as _deliver_webhook  # noqa: F401

TAGS = ("Outgoing Webhooks",)
MANAGE = "webhooks.manage"


def _with_secret(endpoint_row, secret: str | None) -> dict:
    return WebhookView.data(endpoint_row) | {"secret": secret}


class WebhooksResource:
    @endpoint(
        "List outgoing webhooks",
        permission=MANAGE,
        query=ListQuery,
        response=Page[WebhookView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: ListQuery):
        page = endpoints.list_endpoints(req.context.db, ctx, **query.model_dump())
        return Plain(
            {"items": [WebhookView.data(e) for e in page.items], "next_cursor": page.next_cursor}
        )

    @endpoint(
        "Create an outgoing webhook",
        permission=MANAGE,
        body=WebhookCreate,
        response=WebhookWithSecret,
        status=201,
        description="The signing secret (whsec_...) is in this response only. A workspace"
        " has at most 20 endpoints (409 `endpoint_limit`).",
        tags=TAGS,
        errors=(409,),
    )
    def on_post(self, req, resp, *, ctx, body: WebhookCreate):
        created, secret = endpoints.create_endpoint(req.context.db, ctx, **body.model_dump())
        return _with_secret(created, secret)


class EventTypesResource:
    @endpoint(
        "List available webhook event types",
        permission=MANAGE,
        response=list[EventTypeView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx):
        return catalogue.event_types()


class WebhookResource:
    @endpoint("Get an outgoing webhook", permission=MANAGE, response=WebhookView, tags=TAGS)
    def on_get(self, req, resp, *, ctx, id):
        return WebhookView.data(endpoints.get_endpoint(req.context.db, ctx, id))

    @endpoint(
        "Update an outgoing webhook",
        permission=MANAGE,
        body=WebhookUpdate,
        response=WebhookWithSecret,
        description="rotate_secret: true answers the new secret once.",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: WebhookUpdate):
        changes = body.model_dump(exclude_unset=True)
        updated, secret = endpoints.update_endpoint(req.context.db, ctx, id, changes)
        return _with_secret(updated, secret)

    @endpoint("Delete an outgoing webhook", permission=MANAGE, status=204, tags=TAGS)
    def on_delete(self, req, resp, *, ctx, id):
        endpoints.delete_endpoint(req.context.db, ctx, id)


class DeliveriesResource:
    @endpoint(
        "List deliveries for a webhook",
        permission=MANAGE,
        query=DeliveryListQuery,
        response=Page[DeliveryView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: DeliveryListQuery):
        filters = query.model_dump(exclude={"from_", "to"})
        page = endpoints.list_deliveries(
            req.context.db, ctx, id, since=query.from_, until=query.to, **filters
        )
        return Plain({"items": page.items, "next_cursor": page.next_cursor})


class ResendResource:
    @endpoint(
        "Resend one delivery",
        permission=MANAGE,
        response=DeliveryIds,
        status=202,
        description="Queues the event again as a new delivery with the same `webhook-id`."
        " While a resend of the event to this webhook is pending or in flight, another"
        " answers 409 `resend_pending` naming it (a retried call queues no second copy)."
        " A `webhook.test` delivery is not resent (422; send a new test instead), nor is"
        " any delivery of a disabled webhook (422).",
        tags=TAGS,
        errors=(422,),
    )
    def on_post(self, req, resp, *, ctx, id, delivery_id):
        return {"delivery_ids": [endpoints.resend_delivery(req.context.db, ctx, id, delivery_id)]}


class RecoverResource:
    @endpoint(
        "Resend every failed delivery in a time window",
        permission=MANAGE,
        body=RecoverBody,
        response=DeliveryIds,
        status=202,
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: RecoverBody):
        ids = endpoints.recover(req.context.db, ctx, id, since=body.since, until=body.until)
        return {"delivery_ids": ids}


class TestResource:
    @endpoint(
        "Send a test event to the webhook",
        permission=MANAGE,
        response=TestResult,
        description="Sends a signed webhook.test event now and answers the attempt's result."
        " The request waits for the receiver, so each server process lets a few test sends"
        " and agent tests wait at once and answers 429 with `Retry-After` beyond them.",
        tags=TAGS,
        errors=(429,),
    )
    def on_post(self, req, resp, *, ctx, id):
        return endpoints.send_test(req.context.db, ctx, id)


ROUTES = [
    ("/api/outgoing-webhooks", WebhooksResource()),
    ("/api/outgoing-webhooks/event-types", EventTypesResource()),
    ("/api/outgoing-webhooks/{id:uuid}", WebhookResource()),
    ("/api/outgoing-webhooks/{id:uuid}/deliveries", DeliveriesResource()),
    (
        "/api/outgoing-webhooks/{id:uuid}/deliveries/{delivery_id:uuid}/resend",
        ResendResource(),
    ),
    ("/api/outgoing-webhooks/{id:uuid}/recover", RecoverResource()),
    ("/api/outgoing-webhooks/{id:uuid}/test", TestResource()),
]
