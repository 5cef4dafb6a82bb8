"""Quick replies: canned answers, personal or shared, with CSV import and export."""

from __future__ import annotations

import datetime as dt
import io

import falcon
from falcon.media import MultipartFormHandler

from api.endpoint import PayloadTooLarge, Plain, UnsupportedMediaType, endpoint
from api.request_parts import form_parts
from api.schemas.common import Page
from api.schemas.quick_replies import QuickReplyCreate, QuickReplyListQuery, QuickReplyUpdate
from shared.errors import ValidationFailed
from shared.inbox import quick_replies, quick_reply_csv
from shared.schemas.team import ImportResult, QuickReplyItem

TAGS = ("Quick Replies",)
MANAGE = quick_replies.MANAGE
#: Media types accepted as a raw CSV body.
CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain"})


def _read_upload(req: falcon.Request) -> bytes:
    """The CSV bytes of an import: the raw body, or the one file of a multipart form.

    NOTE: @endpoint parses JSON only, so the body is read here, under the same limit.
    """
    content_type = req.content_type or ""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in CSV_TYPES and media_type != falcon.MEDIA_MULTIPART:
        raise UnsupportedMediaType(
            "Send the CSV as text/csv, or as multipart/form-data with one file"
        )
    limit = req.context.max_body_bytes
    # APPSEC: read at most limit+1 bytes, so a chunked body cannot make us buffer more.
    raw = req.bounded_stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request bodies are limited to {limit} bytes")
    if media_type != falcon.MEDIA_MULTIPART:
        return raw
    # NOTE: the form is parsed from the bounded bytes already read, so a chunked
    # upload (no Content-Length) is as safe as a declared one. Malformed forms
    # raise falcon's MultipartParseError: a 400 envelope.
    form = MultipartFormHandler().deserialize(io.BytesIO(raw), content_type, len(raw))
    files = [part.stream.read() for part in form_parts(form) if part.filename is not None]
    if len(files) != 1:
        raise ValidationFailed.field("file", f"send exactly one file (got {len(files)})")
    return files[0]


class QuickRepliesResource:
    @endpoint(
        "List all quick replies",
        query=QuickReplyListQuery,
        response=Page[QuickReplyItem],
        description=(
            "Shared replies and the caller's personal ones, with the caller's favorite flag"
            " and usage. `sort=shortcut` (default) or `most_used`."
        ),
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: QuickReplyListQuery):
        page = quick_replies.list_quick_replies(req.context.db, ctx, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})

    @endpoint(
        "Create a quick reply",
        errors=(409,),
        body=QuickReplyCreate,
        response=QuickReplyItem,
        status=201,
        description=(
            "Any agent creates personal replies; shared ones need `quick_replies.manage`."
            f" A workspace has at most {quick_replies.MAX_SHARED} shared replies and an agent"
            f" at most {quick_replies.MAX_PERSONAL} personal ones: past that, 422"
            " `quick_reply_limit`."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: QuickReplyCreate):
        return quick_replies.create_quick_reply(req.context.db, ctx, **body.model_dump())


class QuickReplyResource:
    @endpoint(
        "Update a quick reply",
        errors=(409,),
        body=QuickReplyUpdate,
        response=QuickReplyItem,
        description="The owner (personal), or `quick_replies.manage` (shared).",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: QuickReplyUpdate):
        changes = body.model_dump(exclude_unset=True)
        return quick_replies.update_quick_reply(req.context.db, ctx, id, changes)

    @endpoint(
        "Delete a quick reply",
        status=204,
        description="The owner (personal), or `quick_replies.manage` (shared).",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id):
        quick_replies.delete_quick_reply(req.context.db, ctx, id)


class QuickReplyUsageResource:
    @endpoint("Record usage of a quick reply", response=QuickReplyItem, tags=TAGS)
    def on_post(self, req, resp, *, ctx, id):
        return quick_replies.record_usage(req.context.db, ctx, id)


class QuickReplyFavoriteResource:
    @endpoint("Add quick reply to favorites", response=QuickReplyItem, tags=TAGS)
    def on_post(self, req, resp, *, ctx, id):
        return quick_replies.set_favorite(req.context.db, ctx, id, True)

    @endpoint("Remove quick reply from favorites", status=204, tags=TAGS)
    def on_delete(self, req, resp, *, ctx, id):
        quick_replies.set_favorite(req.context.db, ctx, id, False)


class QuickRepliesExportResource:
    @endpoint(
        "Export quick replies as CSV",
        permission=MANAGE,
        produces="text/csv",
        description=(
            "Answers 200 `text/csv` (UTF-8, header `shortcut,title,content`) with the"
            " tenant's shared replies, as an attachment."
        ),
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx):
        resp.stream = quick_reply_csv.export_shared_csv(ctx)
        resp.content_type = "text/csv; charset=utf-8"
        today = dt.datetime.now(dt.UTC).date().isoformat()
        resp.downloadable_as = f"quick-replies-{today}.csv"


class QuickRepliesImportResource:
    @endpoint(
        "Import quick replies from CSV",
        errors=(409,),
        permission=MANAGE,
        response=ImportResult,
        accepts=("text/csv", "multipart/form-data"),
        description=(
            "Send the CSV as the `text/csv` body, or as the one file of a"
            " `multipart/form-data` form. The whole file is checked first: any bad row"
            " refuses it (422, one `{line, field, message}` per problem). Existing shared"
            " replies with the same shortcut are updated. An import whose new replies would"
            f" pass the workspace's {quick_replies.MAX_SHARED} shared replies is refused whole"
            " (422 `quick_reply_limit`)."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx):
        return quick_reply_csv.import_shared_csv(req.context.db, ctx, _read_upload(req))


ROUTES = [
    ("/api/quick-replies", QuickRepliesResource()),
    ("/api/quick-replies/export", QuickRepliesExportResource()),
    ("/api/quick-replies/import", QuickRepliesImportResource()),
    ("/api/quick-replies/{id:uuid}", QuickReplyResource()),
    ("/api/quick-replies/{id:uuid}/usage", QuickReplyUsageResource()),
    ("/api/quick-replies/{id:uuid}/favorite", QuickReplyFavoriteResource()),
]
