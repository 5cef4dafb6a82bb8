"""AI agents' knowledge: sources (text, URL, file) and their QnA pairs."""

from __future__ import annotations

import falcon

from api.endpoint import Plain, endpoint
from api.request_parts import multipart_form
from api.schemas.ai_knowledge import (
    KnowledgeSourceCreate,
    KnowledgeSourceListQuery,
    KnowledgeSourceView,
    QnaPairCreate,
    QnaPairListQuery,
    QnaPairView,
)
from api.schemas.common import Page
from shared.ai.knowledge import sources
from shared.config import get_settings
from shared.errors import ValidationFailed
from workers.actors import ai_knowledge as _ingest_knowledge_source  # noqa: F401  (enqueuer)

TAGS = ("AI Agents",)
REVIEW, MANAGE = "ai_agents.review", "ai_agents.manage"
#: The longest ``title`` form field read from a multipart upload.
_MAX_FORM_TITLE = 4 * sources.MAX_TITLE


def _upload(req: falcon.Request, ctx, agent_id):
    """The multipart form: an optional ``title`` field, then the ``file`` (streamed, not held)."""
    title = None
    for part in multipart_form(req, "Send the file as multipart/form-data"):
        if part.name == "title":
            title = part.stream.read(_MAX_FORM_TITLE).decode("utf-8", "replace").strip() or None
        elif part.name == "file":
            return sources.create_upload(
                req.context.db,
                ctx,
                agent_id,
                part.stream,
                filename=part.filename,
                declared_type=part.content_type,
                title=title[: sources.MAX_TITLE] if title else None,
            )
    raise ValidationFailed.field("file", "required (a multipart field named 'file')")


class KnowledgeSourcesResource:
    @property
    def max_body_bytes(self) -> int:
        # NOTE: the multipart envelope adds a little to the file itself.
        return get_settings().knowledge_max_file_bytes + 64 * 1024

    @endpoint(
        "List knowledge sources for an AI agent",
        permission=REVIEW,
        query=KnowledgeSourceListQuery,
        response=Page[KnowledgeSourceView],
        description="Newest first, with each source's ingestion status and last error.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: KnowledgeSourceListQuery):
        page = sources.list_sources(req.context.db, ctx, id, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})

    @endpoint(
        "Add a knowledge source",
        permission=MANAGE,
        body=KnowledgeSourceCreate,
        response=KnowledgeSourceView,
        status=201,
        accepts=("multipart/form-data",),
        errors=(402, 503),
        description=(
            "JSON: `{kind: text, title, content}`, `{kind: url, url}` or `{kind: file, media_id}`."
            " Or multipart/form-data with the file in `file` (and an optional `title` field"
            " before it). Files: PDF, DOCX, TXT, CSV, Markdown or HTML, the type sniffed from"
            " the bytes (others 415), at most `KNOWLEDGE_MAX_FILE_BYTES` (413); an uploaded file"
            " counts toward the plan's storage like any media (402 `plan_limit_reached` when it"
            " would pass it, nothing stored). A URL the SSRF"
            " guard refuses (private address, internal name) is 422. The source starts"
            " `pending`; `ingest_knowledge_source` chunks it (`ready`) or records why not"
            " (`failed`, `error`)."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: KnowledgeSourceCreate | None):
        session = req.context.db
        if body is None:
            return Plain(_upload(req, ctx, id))
        if body.kind == "text":
            view = sources.create_text(session, ctx, id, title=body.title, content=body.content)
        elif body.kind == "url":
            view = sources.create_url(session, ctx, id, url=body.url, title=body.title)
        else:
            view = sources.create_from_media(
                session, ctx, id, media_id=body.media_id, title=body.title
            )
        return Plain(view)


class KnowledgeSourceResource:
    @endpoint(
        "Delete a knowledge source",
        permission=MANAGE,
        status=204,
        description="Its chunks and QnA pairs go with it.",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id, source_id):
        sources.delete_source(req.context.db, ctx, id, source_id)


class KnowledgeSourceReprocessResource:
    @endpoint(
        "Reprocess a knowledge source",
        permission=MANAGE,
        response=KnowledgeSourceView,
        status=202,
        description=(
            "Back to `pending` with its attempts reset; the current chunks keep serving until"
            " the new ones replace them in one commit."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, source_id):
        return Plain(sources.reprocess(req.context.db, ctx, id, source_id))


class QnaPairsResource:
    @endpoint(
        "List QnA pairs for a knowledge source",
        permission=REVIEW,
        query=QnaPairListQuery,
        response=Page[QnaPairView],
        description="Newest first.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, source_id, query: QnaPairListQuery):
        page = sources.list_qna(req.context.db, ctx, id, source_id, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})

    @endpoint(
        "Add a QnA pair",
        permission=MANAGE,
        body=QnaPairCreate,
        response=QnaPairView,
        status=201,
        description="Preferred over passages when a contact's question matches its question.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, source_id, body: QnaPairCreate):
        return Plain(
            sources.create_qna(
                req.context.db, ctx, id, source_id, question=body.question, answer=body.answer
            )
        )


class QnaPairResource:
    @endpoint("Delete a QnA pair", permission=MANAGE, status=204, tags=TAGS)
    def on_delete(self, req, resp, *, ctx, id, source_id, qna_id):
        sources.delete_qna(req.context.db, ctx, id, source_id, qna_id)


_BASE = "/api/ai-agents/{id:uuid}/knowledge-sources"
ROUTES = [
    (_BASE, KnowledgeSourcesResource()),
    (f"{_BASE}/{{source_id:uuid}}", KnowledgeSourceResource()),
    (f"{_BASE}/{{source_id:uuid}}/reprocess", KnowledgeSourceReprocessResource()),
    (f"{_BASE}/{{source_id:uuid}}/qna-pairs", QnaPairsResource()),
    (f"{_BASE}/{{source_id:uuid}}/qna-pairs/{{qna_id:uuid}}", QnaPairResource()),
]
