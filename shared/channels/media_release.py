"""Free a media file nothing references any more: its row (the tenant's storage) and bytes.

Media is referenced by message attachments (``messages.attachments[].media_id``) and by
file knowledge sources (``knowledge_sources.media_id``); the plan's storage is the sum of
the tenant's rows (:func:`shared.billing.usage.storage_used`), so a row kept for nothing
counts forever. Stored objects are content-addressed per tenant
(:func:`shared.channels.media_storage.media_key`): rows with the same bytes share one, so
the object goes only once no row holds its key, after commit, under the key's lock that
storing takes too (:func:`lock_key`): a concurrent upload of the same bytes either
stores them again or is seen holding them.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from shared import db, sql
from shared.channels.media_storage import storage_for
from shared.models import KnowledgeSource, MediaFile, Message

log = logging.getLogger(__name__)

#: A message referencing a file is written after the file's row (it must see it), so
#: older messages are not searched; the slack covers a message transaction begun
#: before the upload committed (``created_at`` is the transaction's start).
_MESSAGE_SLACK = dt.timedelta(days=1)


def lock_key(session: Session, key: str) -> None:
    """Serialize storing and deleting the object at ``key`` (until the transaction ends)."""
    sql.lock_key(session, key)


def referenced(session: Session, media: MediaFile) -> bool:
    """Whether a message or a knowledge source still uses ``media``."""
    by_source = exists().where(
        KnowledgeSource.tenant_id == media.tenant_id, KnowledgeSource.media_id == media.id
    )
    by_message = exists().where(
        Message.tenant_id == media.tenant_id,
        Message.created_at >= media.created_at - _MESSAGE_SLACK,
        Message.attachments.contains([{"media_id": str(media.id)}]),
    )
    return bool(session.scalar(select(by_source | by_message)))


def release(session: Session, tenant_id: uuid.UUID, media_id: uuid.UUID | None) -> bool:
    """Delete the media row if nothing references it (its object after commit); True if so.

    Call it after removing the caller's own reference, in the same transaction. The row
    is locked first, so two sources of one file deleted at once cannot both see the other.
    """
    if media_id is None:
        return False
    media = session.scalars(
        select(MediaFile)
        .where(MediaFile.id == media_id, MediaFile.tenant_id == tenant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if media is None or referenced(session, media):
        return False
    backend, key = media.storage_backend, media.storage_key
    session.execute(delete(MediaFile).where(MediaFile.id == media.id))
    session.expunge(media)
    if backend and key:
        db.after_commit(session, lambda: remove_object(backend, key))
    return True


def remove_object(backend: str, key: str) -> None:
    """Delete the stored object unless another row holds its key (a shared upload).

    A failure leaves an orphan object (never a row without bytes); it is logged.
    """
    try:
        with db.session_scope() as session:
            lock_key(session, key)
            same = (MediaFile.storage_backend == backend) & (MediaFile.storage_key == key)
            held = session.scalar(select(exists().where(same)))
            if not held:
                storage_for(backend).delete(key)
    except Exception:
        log.exception("media object %s on %s could not be removed", key, backend)
