"""WA Templates: the tenant's WhatsApp message templates, kept in step with Meta."""

from __future__ import annotations

import falcon

from api.endpoint import Plain, endpoint
from api.schemas.common import Page
from api.schemas.wa_templates import (
    HeaderMediaUpdate,
    WaTemplateCreate,
    WaTemplateListQuery,
    WaTemplateSyncRequest,
)
from shared.channels import graph_errors
from shared.channels.templates import catalogue, sync
from shared.schemas.wa_templates import WaTemplateSyncAccepted, WaTemplateView
from workers.actors import wa_templates as _sync_wa_templates  # noqa: F401  (enqueuer)

TAGS = ("WA Templates",)
MANAGE = catalogue.MANAGE


class WaTemplatesResource:
    @endpoint(
        "List WhatsApp message templates",
        query=WaTemplateListQuery,
        response=Page[WaTemplateView],
        description="Newest first. `q` matches part of the name. Templates Meta no longer"
        " lists are kept with status `DELETED` by the sync.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: WaTemplateListQuery):
        page = catalogue.list_templates(req.context.db, ctx, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})

    @endpoint(
        "Create a WhatsApp message template",
        permission=MANAGE,
        body=WaTemplateCreate,
        response=WaTemplateView,
        status=201,
        errors=(404, 409, *graph_errors.STATUSES),
        description="Submitted to Meta for review in the request and stored with Meta's status"
        " (`PENDING`); the review result arrives on `/api/webhooks/meta` and emits"
        " `template.status_changed`. 409 when the account already has the name in that"
        " language; 422 for invalid components or when Meta refuses the template (Meta's"
        " message in `details`); 502 `meta_api_error` when Meta fails or refuses the token.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: WaTemplateCreate):
        return catalogue.create_template(req.context.db, ctx, **body.model_dump())


class WaTemplatesSyncResource:
    @endpoint(
        "Sync templates from Meta",
        permission=MANAGE,
        body=WaTemplateSyncRequest,
        response=WaTemplateSyncAccepted,
        status=202,
        errors=(404,),
        description="Queues `sync_wa_templates` for the account named, or every WhatsApp"
        " account of the tenant; follow it at `/api/jobs/{job_id}` (its result lists each"
        " account's counts or error). The scheduler also syncs every account every 6 h."
        " 404 `integration_not_found` without a WhatsApp account.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: WaTemplateSyncRequest):
        job, account_ids = sync.request_sync(req.context.db, ctx, body.integration_account_id)
        resp.status = falcon.HTTP_202
        return {"job_id": job.id, "integration_account_ids": account_ids}


class WaTemplateResource:
    @endpoint("Get a WhatsApp template by ID", response=WaTemplateView, errors=(404,), tags=TAGS)
    def on_get(self, req, resp, *, ctx, id):
        return catalogue.get_template(req.context.db, ctx, id)

    @endpoint(
        "Delete a WhatsApp template (local only)",
        permission=MANAGE,
        status=204,
        errors=(404,),
        description="Meta keeps the template; the next sync imports it again if it still"
        " exists there.",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id):
        catalogue.delete_template(req.context.db, ctx, id)


class WaTemplateHeaderMediaResource:
    @endpoint(
        "Update template header media URL",
        permission=MANAGE,
        body=HeaderMediaUpdate,
        response=WaTemplateView,
        errors=(404,),
        description="The https URL a send of this template uses for its IMAGE, VIDEO or"
        " DOCUMENT header when the send gives no header parameter; `null` removes it. 422"
        " when the template has no media header.",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: HeaderMediaUpdate):
        return catalogue.set_header_media(req.context.db, ctx, id, body.header_media_url)


ROUTES = [
    ("/api/wa-templates", WaTemplatesResource()),
    ("/api/wa-templates/sync", WaTemplatesSyncResource()),
    ("/api/wa-templates/{id:uuid}", WaTemplateResource()),
    ("/api/wa-templates/{id:uuid}/header-media", WaTemplateHeaderMediaResource()),
]
