"""Inbound files fetched in the background as they arrive, so an agent's first GET finds
them stored instead of waiting on the provider (``GET /api/media/{id}`` gives up after
``MEDIA_FETCH_TIMEOUT_SECONDS``).

``process_inbound`` hands each new inbound file to :data:`PREFETCH` after its commit;
``prefetch_inbound_media`` (the ``channels`` queue) fetches it through the same
:func:`shared.channels.media.fetch_inbound` as the GET, under the row's lock, so the two
never fetch one file twice. A provider that fails for now is retried by Dramatiq with
backoff, then dead-lettered (listed with the other dead letters); one that refuses the
file is logged and left to the GET, which answers 404 ``media_unavailable`` saying why.

The row without bytes is the owed work: a hand-off lost on the way (a crash, the broker
down) is re-driven by :func:`sweep` (a scheduler job). NOTE: without a column counting
attempts, the sweep re-drives a file as its age crosses 2, 4, 8 ... minutes, and not
once it is older than :data:`GIVE_UP_AFTER_SECONDS`: a dozen tries at most, the later
ones hours apart, for a file the provider keeps refusing.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from sqlalchemy import Float, cast, func, literal_column, select
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import Session

from shared.after_commit_queue import AfterCommitQueue
from shared.channels.media import MediaUnavailable, fetch_inbound
from shared.config import get_settings
from shared.db import session_scope
from shared.models import MediaFile

log = logging.getLogger(__name__)

#: ``[media_id, ...]`` -> ``prefetch_inbound_media`` messages, after commit.
PREFETCH: AfterCommitQueue[uuid.UUID] = AfterCommitQueue(
    "omnistream.media_prefetch", "inbound media files"
)
#: The background fetch's deadline: longer than a GET's (no one waits on it), still bounded
#: so a trickling CDN cannot hold a worker thread for good.
PREFETCH_TIMEOUT_SECONDS = 120.0
#: The sweep's first re-drive of a file still without bytes, then at twice the age each time.
FIRST_REDRIVE_SECONDS = 120
#: Past this age the sweep leaves a file to its GET.
GIVE_UP_AFTER_SECONDS = 24 * 3600
#: Rows one sweep re-drives at most.
SWEEP_BATCH = 500

_ONE_SECOND = literal_column("interval '1 second'")


def owed(session: Session, media_ids: list[uuid.UUID]) -> None:
    """Fetch these new inbound files after the commit (unless ``MEDIA_PREFETCH`` is off)."""
    if media_ids and get_settings().media_prefetch:
        PREFETCH.enqueue_after_commit(session, media_ids)


def prefetch(media_id: uuid.UUID) -> str:
    """Fetch and store one inbound file; what came of it: stored, refused or gone.

    A provider failing for now (``DependencyUnavailable``) propagates, for the job's retries.
    """
    with session_scope() as session:
        row = session.get(MediaFile, media_id)
        if row is None or row.source != "inbound":
            return "gone"
        if row.storage_key is not None:
            return "stored"
        tenant_id = row.tenant_id
    try:
        fetch_inbound(tenant_id, media_id, within=PREFETCH_TIMEOUT_SECONDS)
    except NoResultFound:
        return "gone"  # deleted meanwhile (its tenant, its retention)
    except MediaUnavailable as refused:
        log.warning("media %s: not prefetched, given up: %s", media_id, refused.message)
        return "refused"
    return "stored"


def sweep(session: Session, *, every_seconds: float, batch: int = SWEEP_BATCH) -> int:
    """Re-enqueue inbound files still without bytes whose age crossed a re-drive mark
    (2, 4, 8 ... minutes) since the previous sweep, ``every_seconds`` ago.

    PERF: read through ``ix_media_files_owed`` (migration 0040), which holds only the
    inbound files still without bytes: every minute, across tenants, without it a scan
    of the whole table.
    """
    age = cast(func.extract("epoch", func.now() - MediaFile.created_at), Float)
    before = func.greatest(age - every_seconds, FIRST_REDRIVE_SECONDS / 2)
    step, step_before = _doubling(age), _doubling(before)
    due = (
        select(MediaFile.id)
        .where(
            MediaFile.source == "inbound",
            MediaFile.storage_key.is_(None),
            MediaFile.provider_media_id.is_not(None),
            MediaFile.created_at > func.now() - GIVE_UP_AFTER_SECONDS * _ONE_SECOND,
            MediaFile.created_at <= func.now() - FIRST_REDRIVE_SECONDS * _ONE_SECOND,
            step > step_before,
        )
        .order_by(MediaFile.created_at)
        .limit(batch)
    )
    ids = list(session.scalars(due))
    if ids:
        log.info("re-driving the fetch of %d inbound media file(s)", len(ids))
        PREFETCH.enqueue_after_commit(session, ids)
    return len(ids)


def _doubling(age: Any) -> Any:
    """How many times the first re-drive age doubled by ``age``: floor(log2(age / first))."""
    return func.floor(func.log(age / FIRST_REDRIVE_SECONDS) / math.log10(2))
