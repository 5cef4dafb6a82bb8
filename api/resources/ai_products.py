"""AI agent products: CRUD, and the bulk import answered 202 with a job."""

from __future__ import annotations

import io

import falcon
from falcon.media import MultipartFormHandler

from api.endpoint import PayloadTooLarge, Plain, UnsupportedMediaType, endpoint
from api.request_parts import form_parts
from api.schemas.ai_agents import ProductBody, ProductListQuery
from api.schemas.common import Page
from api.schemas.conversations import JobAccepted
from shared.ai import agents, product_import, products
from shared.ai.config_views import ProductView
from shared.config import get_settings
from shared.errors import ValidationFailed
from workers.actors.ai_products import enqueue_import

TAGS = ("AI Agents",)
#: Media types of a raw body, by import format.
_FORMATS = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/json": "json",
}
#: The envelope a multipart form adds around the file.
_MULTIPART_SLACK = 64 * 1024


def _format_of_part(part) -> str:
    media_type = (part.content_type or "").split(";")[0].strip().lower()
    if media_type in _FORMATS:
        return _FORMATS[media_type]
    name = (part.filename or "").lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".json"):
        return "json"
    raise UnsupportedMediaType("Send the file as .csv (text/csv) or .json (application/json)")


def read_import(req: falcon.Request) -> tuple[bytes, str]:
    """The import's bytes and format: a raw CSV or JSON body, or the one file of a form.

    NOTE: @endpoint parses JSON objects only, so the body is read here, bounded by
    AI_PRODUCT_IMPORT_MAX_BYTES (413 past it, even when chunked).
    """
    media_type = (req.content_type or "").split(";")[0].strip().lower()
    if media_type not in _FORMATS and media_type != falcon.MEDIA_MULTIPART:
        raise UnsupportedMediaType(
            "Send text/csv, application/json (an array), or multipart/form-data with one file"
        )
    limit = get_settings().ai_product_import_max_bytes
    # APPSEC: read at most the form's limit + 1 bytes, so a chunked body cannot make us
    # buffer more; the file itself is held to the import limit.
    raw = req.bounded_stream.read(req.context.max_body_bytes + 1)
    if len(raw) > req.context.max_body_bytes:
        raise PayloadTooLarge(f"Product imports are limited to {limit} bytes")
    if media_type != falcon.MEDIA_MULTIPART:
        if len(raw) > limit:
            raise PayloadTooLarge(f"Product imports are limited to {limit} bytes")
        return raw, _FORMATS[media_type]
    form = MultipartFormHandler().deserialize(io.BytesIO(raw), req.content_type, len(raw))
    files = [(part, part.stream.read()) for part in form_parts(form) if part.filename is not None]
    if len(files) != 1:
        raise ValidationFailed.field("file", f"send exactly one file (got {len(files)})")
    part, data = files[0]
    if len(data) > limit:
        raise PayloadTooLarge(f"Product imports are limited to {limit} bytes")
    return data, _format_of_part(part)


class ProductsResource:
    @endpoint(
        "List products for an AI agent",
        permission=agents.VIEW,
        query=ProductListQuery,
        response=Page[ProductView],
        description="Newest first; `q` (name contains), `sku` and `in_stock` filter.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: ProductListQuery):
        page = products.list_products(req.context.db, ctx, id, **query.model_dump())
        return Plain(
            {"items": [products.view(p) for p in page.items], "next_cursor": page.next_cursor}
        )

    @endpoint(
        "Create a product",
        permission=agents.MANAGE,
        body=ProductBody,
        response=ProductView,
        status=201,
        errors=(409,),
        description=(
            "`price` is a decimal >= 0 with at most 2 places (answered as a string) and"
            " needs an ISO 4217 `currency`. A `sku` this AI agent already has: 409."
            " The product is then embedded by `embed_items`."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: ProductBody):
        return Plain(products.view(products.create_product(req.context.db, ctx, id, body)))


class ProductResource:
    @endpoint(
        "Update a product",
        permission=agents.MANAGE,
        body=ProductBody,
        response=ProductView,
        errors=(409,),
        description="Full replace; the product is embedded again.",
        tags=TAGS,
    )
    def on_put(self, req, resp, *, ctx, id, product_id, body: ProductBody):
        product = products.replace_product(req.context.db, ctx, id, product_id, body)
        return Plain(products.view(product))

    @endpoint("Delete a product", permission=agents.MANAGE, status=204, tags=TAGS)
    def on_delete(self, req, resp, *, ctx, id, product_id):
        products.delete_product(req.context.db, ctx, id, product_id)


class ProductImportResource:
    @property
    def max_body_bytes(self) -> int:
        return get_settings().ai_product_import_max_bytes + _MULTIPART_SLACK

    @endpoint(
        "Bulk import products",
        permission=agents.MANAGE,
        response=JobAccepted,
        status=202,
        accepts=("text/csv", "application/json", "multipart/form-data"),
        description=(
            "A CSV (`text/csv`; header among sku, name, description, price, currency, url,"
            " image_url, in_stock, attributes; `name` required) or a JSON array of product"
            " objects, as the body or the one file of a multipart form (max"
            " `AI_PRODUCT_IMPORT_MAX_BYTES`, 32 MB by default: 413; other types 415)."
            " Answers 202 `{job_id}`; `GET /api/jobs/{id}` then shows progress and, per bad"
            " row, `{row, field, message}` in `result.errors`. Rows upsert by `sku`."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id):
        raw, fmt = read_import(req)
        job = product_import.start_import(req.context.db, ctx, id, raw, fmt, enqueue=enqueue_import)
        return {"job_id": job.id}


ROUTES = [
    ("/api/ai-agents/{id:uuid}/products", ProductsResource()),
    ("/api/ai-agents/{id:uuid}/products/import", ProductImportResource()),
    ("/api/ai-agents/{id:uuid}/products/{product_id:uuid}", ProductResource()),
]
