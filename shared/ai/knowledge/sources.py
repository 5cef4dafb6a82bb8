"""The API's services for knowledge sources and their QnA pairs, scoped to tenant and agent.

Every lookup goes through the agent (:func:`get_agent`), then the source under that
agent: another tenant's ids, or another agent's source, answer 404 alike. Creating or
reprocessing a source writes it ``pending`` and sends ``ingest_knowledge_source`` after
commit (the scheduler's sweep re-drives a lost message); a QnA pair sends ``embed_items``
when the agent embeds.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Sequence
from typing import IO, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from shared import activity, dead_letters
from shared.ai import agents
from shared.ai.knowledge import formats, lexicon
from shared.ai.knowledge.fetching import check
from shared.ai.knowledge.queue import EMBED, INGEST, ToEmbed
from shared.channels import media as media_service
from shared.channels import media_release
from shared.channels.media_storage import stage, storage, storage_for
from shared.config import get_settings
from shared.context import Ctx
from shared.errors import NotFound, ValidationFailed
from shared.models import AiAgent, KnowledgeSource, MediaFile, QnaPair
from shared.pagination import Page, paginate
from shared.sql import tenant_row
from shared.webhooks.ssrf import UnsafeUrl

MAX_TITLE = 300
MAX_TEXT = 500_000
MAX_QUESTION = 2000
MAX_ANSWER = 10_000


class FileTooLarge(ValidationFailed):
    status, code = 413, "payload_too_large"


def source_view(source: KnowledgeSource) -> dict[str, Any]:
    return {
        "id": source.id,
        "ai_agent_id": source.ai_agent_id,
        "kind": source.kind,
        "title": source.title,
        "url": source.url,
        "media_id": source.media_id,
        "status": source.status,
        "error": source.error,
        "chunk_count": source.chunk_count,
        "attempts": source.attempts,
        "processed_at": source.processed_at,
        "created_at": source.created_at,
        "updated_at": source.updated_at,
    }


def qna_view(pair: QnaPair) -> dict[str, Any]:
    return {
        "id": pair.id,
        "ai_agent_id": pair.ai_agent_id,
        "source_id": pair.source_id,
        "question": pair.question,
        "answer": pair.answer,
        "created_at": pair.created_at,
        "updated_at": pair.updated_at,
    }


def get_agent(session: Session, ctx: Ctx, agent_id: uuid.UUID) -> AiAgent:
    """The caller's tenant's AI agent, or 404 (the resources check the permission)."""
    return agents.find_agent(session, ctx.tenant_id, agent_id)


def get_source(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, source_id: uuid.UUID, *, lock: bool = False
) -> KnowledgeSource:
    get_agent(session, ctx, agent_id)
    return tenant_row(
        session,
        KnowledgeSource,
        ctx.tenant_id,
        source_id,
        KnowledgeSource.ai_agent_id == agent_id,
        missing="Knowledge source not found",
        lock=lock,
    )


def list_sources(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, *, limit: int, cursor: str | None = None
) -> Page[dict[str, Any]]:
    """The agent's sources, newest first."""
    get_agent(session, ctx, agent_id)
    query = select(KnowledgeSource).where(
        KnowledgeSource.tenant_id == ctx.tenant_id, KnowledgeSource.ai_agent_id == agent_id
    )
    page = paginate(
        session,
        query,
        created_at=KnowledgeSource.created_at,
        id_column=KnowledgeSource.id,
        limit=limit,
        cursor=cursor,
    )
    return Page([source_view(s) for s in page.items], page.next_cursor)


def _add(session: Session, ctx: Ctx, agent: AiAgent, **fields: Any) -> dict[str, Any]:
    source = KnowledgeSource(tenant_id=ctx.tenant_id, ai_agent_id=agent.id, **fields)
    session.add(source)
    session.flush()
    session.refresh(source)
    view = source_view(source)
    activity.record(
        session,
        ctx,
        "knowledge_source.created",
        "knowledge_source",
        source.id,
        after={"ai_agent_id": str(agent.id), "kind": source.kind, "title": source.title},
    )
    INGEST.enqueue_after_commit(session, [source.id])
    return view


def create_text(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, *, title: str, content: str
) -> dict[str, Any]:
    agent = agents.share_agent(session, ctx.tenant_id, agent_id)
    return _add(session, ctx, agent, kind="text", title=title, content=content)


def create_url(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, *, url: str, title: str | None
) -> dict[str, Any]:
    """A URL source; a URL the SSRF guard refuses (private address, internal name) is 422."""
    agent = agents.share_agent(session, ctx.tenant_id, agent_id)
    try:
        check(url)
    except UnsafeUrl as exc:
        raise ValidationFailed.field("url", str(exc)) from exc
    return _add(session, ctx, agent, kind="url", title=(title or url)[:MAX_TITLE], url=url)


def _referenced_media(session: Session, ctx: Ctx, media_id: uuid.UUID) -> MediaFile:
    """The tenant's media file a new source will reference, share-locked until it commits;
    422 naming ``media_id`` when there is none, as for a reply's attachments.

    NOTE: freeing a file locks its row FOR UPDATE and then looks for sources and messages
    using it (``media_release.release``): with the lock, a deletion either waits for this
    source and sees it, or has deleted the row and this finds none. Without it, the new
    source's insert failed its foreign key once the deletion committed (409).
    """
    media = session.scalars(
        select(MediaFile)
        .where(MediaFile.tenant_id == ctx.tenant_id, MediaFile.id == media_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if media is None:
        raise ValidationFailed.field("media_id", "no such media file")
    return media


def create_from_media(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, *, media_id: uuid.UUID, title: str | None
) -> dict[str, Any]:
    """A file source from an uploaded media file (``POST /api/media``), checked like an upload."""
    agent = agents.share_agent(session, ctx.tenant_id, agent_id)
    media = _referenced_media(session, ctx, media_id)
    if not media.storage_key:
        raise ValidationFailed.field("media_id", "this media file has not been downloaded yet")
    limit = get_settings().knowledge_max_file_bytes
    if (media.size or 0) > limit:
        raise FileTooLarge(
            f"Knowledge files are limited to {limit} bytes",
            details=[{"field": "media_id", "message": f"larger than {limit} bytes"}],
        )
    try:
        with (
            media_service.storage_errors(),
            contextlib.closing(
                storage_for(media.storage_backend).open_file(media.storage_key)
            ) as handle,
        ):
            head = handle.read(formats.HEAD_BYTES)
            fmt = formats.detect(head, filename=media.filename, declared=media.mime_type)
            if fmt == formats.DOCX:  # a ZIP: only its directory tells a Word document
                formats.require_docx(io.BytesIO(head + handle.read(limit)))
    except FileNotFoundError as exc:
        raise ValidationFailed.field("media_id", "the stored file is missing") from exc
    title = title or media.filename or f"File {media.id}"
    return _add(session, ctx, agent, kind="file", title=title[:MAX_TITLE], media_id=media.id)


def create_upload(
    session: Session,
    ctx: Ctx,
    agent_id: uuid.UUID,
    stream: IO[bytes],
    *,
    filename: str | None,
    declared_type: str | None,
    title: str | None,
) -> dict[str, Any]:
    """A file source from a multipart upload: staged, sniffed (415), stored as media within
    the plan's storage (402)."""
    agent = get_agent(session, ctx, agent_id)
    if title and "\x00" in title:  # a form field, not the JSON schema: checked here
        raise ValidationFailed.field("title", "must not contain NUL characters")
    limit = get_settings().knowledge_max_file_bytes
    staged = stage(stream, max_bytes=limit)
    try:
        if staged.size == 0:
            raise ValidationFailed.field("file", "the file is empty")
        with staged.path.open("rb") as handle:
            head = handle.read(formats.HEAD_BYTES)
        fmt = formats.detect(head, filename=filename, declared=declared_type)
        if fmt == formats.DOCX:
            formats.require_docx(str(staged.path))
        mime = formats.MIME_TYPES[fmt]
        # NOTE: the agent share-locked once the file is staged (see agents.share_agent),
        # before the media it stores, as the agent's deletion locks them.
        agent = agents.share_agent(session, ctx.tenant_id, agent_id)
        media = media_service.store_upload(
            session, ctx, staged, mime, filename=filename, target=storage()
        )
    finally:
        staged.discard()
    title = title or media.filename or "Uploaded file"
    return _add(session, ctx, agent, kind="file", title=title[:MAX_TITLE], media_id=media.id)


def delete_source(session: Session, ctx: Ctx, agent_id: uuid.UUID, source_id: uuid.UUID) -> None:
    """Delete the source; its chunks and QnA pairs go with it (foreign keys cascade).

    A file source's media is freed too (its row counts toward the plan's storage) unless a
    message or another source still uses it.
    """
    source = get_source(session, ctx, agent_id, source_id, lock=True)
    activity.record(
        session,
        ctx,
        "knowledge_source.deleted",
        "knowledge_source",
        source.id,
        before={"ai_agent_id": str(agent_id), "kind": source.kind, "title": source.title},
    )
    lexicon.lock(session, agent_id)
    lexicon.forget_source(session, agent_id, source.id)
    media_id = source.media_id
    session.execute(delete(KnowledgeSource).where(KnowledgeSource.id == source.id))
    media_release.release(session, ctx.tenant_id, media_id)


def reprocess(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, source_id: uuid.UUID
) -> dict[str, Any]:
    """Queue the source again from scratch; its current chunks serve until the new ones land.

    A worker still on an older attempt finds its claim gone and discards its result.
    """
    source = get_source(session, ctx, agent_id, source_id, lock=True)
    _queue_again(session, source.id)
    session.refresh(source)
    activity.record(
        session,
        ctx,
        "knowledge_source.reprocessed",
        "knowledge_source",
        source.id,
        after={"ai_agent_id": str(agent_id), "kind": source.kind, "title": source.title},
    )
    return source_view(source)


def _queue_again(session: Session, source_id: uuid.UUID) -> None:
    """Pending from scratch, a new claim token, and ingested after commit."""
    session.execute(
        update(KnowledgeSource)
        .where(KnowledgeSource.id == source_id)
        .values(status="pending", error=None, attempts=0, updated_at=func.clock_timestamp())
        .execution_options(synchronize_session=False)
    )
    INGEST.enqueue_after_commit(session, [source_id])


def revive(
    session: Session, tenant_id: uuid.UUID | None, args: Sequence[Any], **_options: Any
) -> None:
    """Reprocess the failed source of an ``ingest_knowledge_source`` dead letter, or 409.

    WHY: a source counts its own attempts and turns failed after KNOWLEDGE_MAX_ATTEMPTS
    (the scheduler re-drives a dead job's source until then), so by the time an operator
    requeued the dead letter it was failed and the requeued job ingested nothing. It is
    queued again as a reprocess does, under its row lock; one in flight is left to the job.
    """
    source = dead_letters.locked_row(
        session,
        KnowledgeSource,
        tenant_id,
        dead_letters.row_id(args),
        gone=("source_gone", "The knowledge source was deleted: there is nothing to ingest"),
    )
    if source.status == "ready":
        raise dead_letters.NotRequeueable(
            "source_ready", "The knowledge source is ready already: reprocess it to read it again"
        )
    if source.status == "failed":
        _queue_again(session, source.id)


def _logged(pair: QnaPair) -> dict[str, Any]:
    """A QnA pair as its activity rows keep it (JSON-ready)."""
    return {
        "ai_agent_id": str(pair.ai_agent_id),
        "source_id": str(pair.source_id),
        "question": pair.question,
        "answer": pair.answer,
    }


def list_qna(
    session: Session,
    ctx: Ctx,
    agent_id: uuid.UUID,
    source_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
) -> Page[dict[str, Any]]:
    """The source's QnA pairs, newest first."""
    get_source(session, ctx, agent_id, source_id)
    page = paginate(
        session,
        select(QnaPair).where(QnaPair.tenant_id == ctx.tenant_id, QnaPair.source_id == source_id),
        created_at=QnaPair.created_at,
        id_column=QnaPair.id,
        limit=limit,
        cursor=cursor,
    )
    return Page([qna_view(p) for p in page.items], page.next_cursor)


def create_qna(
    session: Session,
    ctx: Ctx,
    agent_id: uuid.UUID,
    source_id: uuid.UUID,
    *,
    question: str,
    answer: str,
) -> dict[str, Any]:
    agent = agents.share_agent(session, ctx.tenant_id, agent_id)
    # NOTE: FOR KEY SHARE, after the agent (the order of the agent's deletion, which
    # cascades to its sources): a deletion of the source waits for the pair, or went first
    # and this is a 404, not the pair's foreign key failing (409).
    source = session.scalars(
        select(KnowledgeSource)
        .where(
            KnowledgeSource.tenant_id == ctx.tenant_id,
            KnowledgeSource.id == source_id,
            KnowledgeSource.ai_agent_id == agent_id,
        )
        .with_for_update(read=True, key_share=True)
    ).one_or_none()
    if source is None:
        raise NotFound("Knowledge source not found")
    pair = QnaPair(
        tenant_id=ctx.tenant_id,
        ai_agent_id=agent_id,
        source_id=source.id,
        question=question,
        answer=answer,
    )
    session.add(pair)
    session.flush()
    session.refresh(pair)
    activity.record(session, ctx, "qna_pair.created", "qna_pair", pair.id, after=_logged(pair))
    if agent.embedding_model:
        EMBED.enqueue_after_commit(session, [ToEmbed("qna", pair.id, pair.tenant_id)])
    return qna_view(pair)


def delete_qna(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, source_id: uuid.UUID, qna_id: uuid.UUID
) -> None:
    get_source(session, ctx, agent_id, source_id)
    deleted = session.scalars(
        delete(QnaPair)
        .where(
            QnaPair.id == qna_id,
            QnaPair.tenant_id == ctx.tenant_id,
            QnaPair.source_id == source_id,
        )
        .returning(QnaPair)
    ).one_or_none()
    if deleted is None:
        raise NotFound("QnA pair not found")
    activity.record(
        session, ctx, "qna_pair.deleted", "qna_pair", deleted.id, before=_logged(deleted)
    )
