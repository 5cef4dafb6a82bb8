"""``ingest_knowledge_source``'s work: claim a source, read it, chunk it, swap the chunks in.

Three short transactions, none open while a URL is fetched or a PDF parsed:

1. claim: ``pending`` (or a dead worker's stale ``processing``) -> ``processing``,
   counting the attempt and stamping ``updated_at``. The stamp is the claim's token: a
   duplicate message claims nothing, and a reprocess or a newer claim makes this one's
   result stale.
2. read and parse, outside any transaction.
3. finish, under the source's row lock and only if the token still holds: delete the
   old chunks and insert the new ones with ``ready`` in one commit, so retrieval sees
   the old passages or the new ones, never a mix and never none; or record the failure.

A transient failure (a URL timing out, a 5xx) puts the source back to ``pending``
with the reason and raises :class:`RetryLater` so the actor retries with backoff; after
``KNOWLEDGE_MAX_ATTEMPTS`` it is ``failed``. A permanent one (a corrupt PDF, a 404, an
unsafe address) fails at once.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from shared.ai.knowledge import chunking, formats, lexicon, parsing
from shared.ai.knowledge.fetching import FetchFailed, fetch
from shared.ai.knowledge.queue import EMBED, PROCESSING_LEASE_SECONDS, ToEmbed
from shared.channels.media_storage import storage_for
from shared.config import get_settings
from shared.db import session_scope
from shared.models import AiAgent, KnowledgeChunk, KnowledgeSource, MediaFile

log = logging.getLogger(__name__)

_CLAIMED = (
    KnowledgeSource.id,
    KnowledgeSource.tenant_id,
    KnowledgeSource.ai_agent_id,
    KnowledgeSource.kind,
    KnowledgeSource.title,
    KnowledgeSource.url,
    KnowledgeSource.media_id,
    KnowledgeSource.content,
    KnowledgeSource.attempts,
    KnowledgeSource.updated_at,
)


class Outcome(StrEnum):
    READY = "ready"
    FAILED = "failed"
    RETRY = "retry"
    #: A duplicate message, a finished or deleted source, or a claim another took over.
    SKIPPED = "skipped"


class IngestFailed(Exception):
    """Reading the source failed; ``transient`` says whether a later attempt may succeed."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.transient = transient


class RetryLater(Exception):
    """Raised to the actor after a transient failure was recorded: retry with backoff."""


@dataclass(frozen=True, slots=True)
class Claim:
    id: uuid.UUID
    tenant_id: uuid.UUID
    ai_agent_id: uuid.UUID
    kind: str
    title: str
    url: str | None
    media_id: uuid.UUID | None
    content: str | None
    attempts: int
    token: dt.datetime


def claim(session: Session, source_id: uuid.UUID) -> Claim | None:
    """Take the source for one attempt, or None if there is nothing to do."""
    lease_over = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, PROCESSING_LEASE_SECONDS)
    row = session.execute(
        update(KnowledgeSource)
        .where(
            KnowledgeSource.id == source_id,
            or_(
                KnowledgeSource.status == "pending",
                (KnowledgeSource.status == "processing")
                & (KnowledgeSource.updated_at < lease_over),
            ),
        )
        .values(
            status="processing",
            attempts=KnowledgeSource.attempts + 1,
            updated_at=func.clock_timestamp(),
        )
        .returning(*_CLAIMED)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    return Claim(*row) if row is not None else None


def _read_file(session: Session, claimed: Claim) -> tuple[str, bytes]:
    media = session.get(MediaFile, claimed.media_id) if claimed.media_id else None
    if media is None or media.tenant_id != claimed.tenant_id or not media.storage_key:
        raise IngestFailed("the uploaded file is gone", transient=False)
    limit = get_settings().knowledge_max_file_bytes
    if (media.size or 0) > limit:
        raise IngestFailed(f"the file is larger than {limit} bytes", transient=False)
    try:
        data = b"".join(storage_for(media.storage_backend).open(media.storage_key))
    except FileNotFoundError as exc:
        raise IngestFailed("the stored file is missing", transient=False) from exc
    except Exception as exc:  # storage unreachable (S3): worth another try
        raise IngestFailed(f"the file could not be read: {exc}"[:300], transient=True) from exc
    return formats.detect(
        data[: formats.HEAD_BYTES], filename=media.filename, declared=media.mime_type
    ), data


def _read_url(url: str) -> tuple[str, bytes]:
    try:
        page = fetch(url)
    except FetchFailed as exc:
        raise IngestFailed(str(exc), transient=exc.transient) from exc
    try:
        fmt = formats.detect(
            page.body[: formats.HEAD_BYTES],
            filename=url.split("?", 1)[0],
            declared=page.content_type,
        )
    except formats.UnsupportedFormat as exc:
        raise IngestFailed(
            f"the page is not text, HTML or PDF ({page.content_type})", transient=False
        ) from exc
    return fmt, page.body


def read_passages(claimed: Claim) -> list[str]:
    """The source's text, parsed and chunked (no transaction is held meanwhile)."""
    if claimed.kind == "text":
        fmt, data = formats.TEXT, (claimed.content or "").encode()
    elif claimed.kind == "url":
        fmt, data = _read_url(claimed.url or "")
    else:
        with session_scope() as session:
            fmt, data = _read_file(session, claimed)
    if fmt == formats.DOCX and not formats.is_docx(io.BytesIO(data)):
        raise IngestFailed("the file is a ZIP archive, not a Word document", transient=False)
    try:
        sections = parsing.parse(fmt, data)
    except parsing.ParseFailed as exc:
        raise IngestFailed(str(exc), transient=False) from exc
    return with_header(claimed, chunking.chunk(sections))


#: A title that is only a file's name (``guide.pdf``): no words worth ranking by.
_FILENAME = re.compile(r"\S+\.[A-Za-z0-9]{2,5}")


def with_header(claimed: Claim, passages: list[str]) -> list[str]:
    """Each passage under its source's title, when a person wrote that title.

    WHY: a passage often leaves its subject to the title ("Returns policy" over "within
    30 days with a receipt"); ranking should see it. URLs and file names add nothing.
    """
    title = " ".join(claimed.title.split())
    if not title or title == claimed.url or _FILENAME.fullmatch(title):
        return passages
    return [f"{title}\n\n{passage}" for passage in passages]


def _locked(session: Session, claimed: Claim) -> KnowledgeSource | None:
    """The source under its row lock, if this claim still holds it.

    NOTE: the agent is locked first (FOR KEY SHARE, which the chunks' foreign key takes
    anyway), as its deletion locks the agent before its cascade takes the sources: an
    ingestion finishing meanwhile waits for the deletion instead of deadlocking with it.
    """
    agent = session.scalar(
        select(AiAgent.id).where(AiAgent.id == claimed.ai_agent_id).with_for_update(key_share=True)
    )
    if agent is None:
        return None
    source = session.scalars(
        select(KnowledgeSource).where(KnowledgeSource.id == claimed.id).with_for_update()
    ).one_or_none()
    if source is None or source.status != "processing" or source.updated_at != claimed.token:
        return None
    return source


def store_passages(session: Session, claimed: Claim, passages: list[str]) -> bool:
    """Replace the source's chunks with ``passages`` and mark it ready (False: stale claim)."""
    source = _locked(session, claimed)
    if source is None:
        return False
    lexicon.lock(session, claimed.ai_agent_id)
    lexicon.forget_source(session, claimed.ai_agent_id, claimed.id)
    session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.source_id == claimed.id))
    ids = [uuid.uuid4() for _ in passages]
    if passages:
        session.execute(
            insert(KnowledgeChunk),
            [
                {
                    "id": chunk_id,
                    "tenant_id": claimed.tenant_id,
                    "ai_agent_id": claimed.ai_agent_id,
                    "source_id": claimed.id,
                    "position": position,
                    "content": text,
                }
                for position, (chunk_id, text) in enumerate(zip(ids, passages, strict=True))
            ],
        )
    lexicon.add_source(session, claimed.tenant_id, claimed.ai_agent_id, claimed.id)
    session.execute(
        update(KnowledgeSource)
        .where(KnowledgeSource.id == claimed.id)
        .values(
            status="ready",
            error=None,
            chunk_count=len(passages),
            processed_at=func.now(),
            updated_at=func.clock_timestamp(),
        )
        .execution_options(synchronize_session=False)
    )
    embedding_model = session.scalar(
        select(AiAgent.embedding_model).where(AiAgent.id == claimed.ai_agent_id)
    )
    if embedding_model:
        EMBED.enqueue_after_commit(
            session, [ToEmbed("chunk", chunk_id, claimed.tenant_id) for chunk_id in ids]
        )
    return True


def record_failure(session: Session, claimed: Claim, error: IngestFailed) -> Outcome:
    """``failed`` (permanent, or out of attempts) or back to ``pending`` for a retry."""
    source = _locked(session, claimed)
    if source is None:
        return Outcome.SKIPPED
    max_attempts = get_settings().knowledge_max_attempts
    final = not error.transient or claimed.attempts >= max_attempts
    reason = str(error)
    if error.transient and final:
        reason = f"gave up after {claimed.attempts} attempts: {reason}"
    session.execute(
        update(KnowledgeSource)
        .where(KnowledgeSource.id == claimed.id)
        .values(
            status="failed" if final else "pending",
            error=reason[:2000],
            processed_at=func.now() if final else KnowledgeSource.processed_at,
            updated_at=func.clock_timestamp(),
        )
        .execution_options(synchronize_session=False)
    )
    return Outcome.FAILED if final else Outcome.RETRY


def ingest(source_id: uuid.UUID) -> Outcome:
    """One attempt at the source; raises :class:`RetryLater` after a transient failure."""
    with session_scope() as session:
        claimed = claim(session, source_id)
    if claimed is None:
        return Outcome.SKIPPED
    if claimed.attempts > get_settings().knowledge_max_attempts:
        # Claimed again and again by workers that died (a file that kills the process).
        failure = IngestFailed("the source could not be processed", transient=True)
        with session_scope() as session:
            return record_failure(session, claimed, failure)
    try:
        passages = read_passages(claimed)
    except (IngestFailed, formats.UnsupportedFormat) as exc:
        failure = (
            exc if isinstance(exc, IngestFailed) else IngestFailed(exc.message, transient=False)
        )
    except Exception as exc:
        log.exception("knowledge source %s: unexpected error", source_id)
        failure = IngestFailed(f"unexpected error: {type(exc).__name__}", transient=True)
    else:
        with session_scope() as session:
            stored = store_passages(session, claimed, passages)
        log.info("knowledge source %s: %d chunk(s)", source_id, len(passages))
        return Outcome.READY if stored else Outcome.SKIPPED
    with session_scope() as session:
        outcome = record_failure(session, claimed, failure)
    log.warning("knowledge source %s: %s (%s)", source_id, failure, outcome)
    if outcome is Outcome.RETRY:
        raise RetryLater(str(failure))
    return outcome
