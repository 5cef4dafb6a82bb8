"""Media files: agent uploads, the download proxy (fetching inbound media once) and S3 uploads.

Uploads arrive as a stream: :func:`shared.channels.media_storage.stage` writes them
to a temporary file (size limit, SHA-256, first bytes), the real type is sniffed
from the bytes and checked against ``MEDIA_ALLOWED_TYPES``, and only then is the
file stored and its row written. Inbound media rows (``process_inbound``) start
without bytes; the first download fetches them from the provider with the
account's token under the row's lock, so concurrent first requests fetch once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import logging
import math
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared import activity
from shared.billing import usage as billing_usage
from shared.channels import email, graph, media_release
from shared.channels.account_lookup import ACCOUNT_DELETED, acting_account
from shared.channels.accounts import decrypt_credentials
from shared.channels.media_sniff import HEAD_BYTES, base_type, contradicts, sniff
from shared.channels.media_storage import (
    Staged,
    Storage,
    media_key,
    s3_storage,
    stage,
    storage,
    storage_for,
)
from shared.channels.send_errors import SendFailed
from shared.config import get_settings
from shared.context import Ctx
from shared.db import release_request_connection, session_scope
from shared.errors import DependencyUnavailable, DomainError, NotFound, ValidationFailed
from shared.models import InboundEvent, MediaFile
from shared.webhooks import ssrf
from shared.webhooks.transport import VettedTransport

log = logging.getLogger(__name__)

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._ -]+")
#: PostgreSQL's lock_not_available: a lock wait ran past ``lock_timeout``.
LOCK_NOT_AVAILABLE = "55P03"


class UnsupportedType(DomainError):
    status, code = 415, "unsupported_media_type"


class MediaUnavailable(NotFound):
    code = "media_unavailable"


def clean_filename(name: str | None) -> str | None:
    """A filename safe for headers and disks: no paths, quotes or control characters."""
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_FILENAME.sub("_", name).strip(" .")
    return name[:255] or None


def view(media: MediaFile) -> dict[str, Any]:
    return {
        "id": media.id,
        "url": f"/api/media/{media.id}",
        "mime_type": media.mime_type,
        "size": media.size,
        "filename": media.filename,
    }


def check_type(staged: Staged, declared: str | None) -> str:
    """The sniffed type, if allowed (415) and not contradicting the declared one (422)."""
    mime = sniff(staged.head, declared)
    if mime not in get_settings().media_allowed_type_set:
        raise UnsupportedType(f"Files of type {mime} are not accepted")
    if contradicts(declared, mime):
        raise ValidationFailed.field(
            "file", f"declared as {base_type(declared)} but the content is {mime}"
        )
    return mime


def save_upload(
    session: Session,
    ctx: Ctx,
    source: IO[bytes],
    *,
    filename: str | None,
    declared_type: str | None,
    s3: bool = False,
) -> MediaFile:
    """Stage, check and store an agent's upload; write its row (and the activity log)."""
    settings = get_settings()
    target = s3_storage() if s3 else storage()  # 409 s3_not_configured before reading
    staged = stage(source, max_bytes=settings.media_max_bytes)
    try:
        if staged.size == 0:
            raise ValidationFailed.field("file", "the file is empty")
        mime = check_type(staged, declared_type)
        media = store_upload(session, ctx, staged, mime, filename=filename, target=target)
    finally:
        staged.discard()
    activity.record(session, ctx, "media.uploaded", "media", media.id, after=_jsonable(view(media)))
    return media


def store_upload(
    session: Session,
    ctx: Ctx,
    staged: Staged,
    mime: str,
    *,
    filename: str | None,
    target: Storage,
) -> MediaFile:
    """Store a user's staged upload, its type already checked, and write its row (flushed).

    Every upload a user makes goes through here (media, knowledge files), so the plan's
    storage limit (402) holds for all of them: it is checked before a byte is stored.
    The caller discards ``staged``.
    """
    billing_usage.check_storage(session, ctx.tenant_id, staged.size)
    key = media_key(ctx.tenant_id, staged.sha256)
    media_release.lock_key(session, key)  # a file freed meanwhile is not deleted under us
    with storage_errors():
        target.put(key, staged.path, mime)
    media = MediaFile(
        tenant_id=ctx.tenant_id,
        source="upload",
        storage_backend=target.backend,
        storage_key=key,
        mime_type=mime,
        size=staged.size,
        filename=clean_filename(filename),
        sha256=staged.sha256,
        fetched_at=func.now(),
        created_by=ctx.user_id,
    )
    session.add(media)
    session.flush()
    return media


def presigned(media: MediaFile) -> dict[str, Any]:
    """The S3 key and a time-limited URL of a file stored in S3."""
    seconds = get_settings().s3_presign_seconds
    url = s3_storage().presigned_url(media.storage_key, expires=seconds, filename=media.filename)
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return view(media) | {"key": media.storage_key, "presigned_url": url, "expires_at": expires_at}


def get_media(session: Session, ctx: Ctx, media_id: uuid.UUID) -> MediaFile:
    media = session.scalars(
        select(MediaFile).where(MediaFile.id == media_id, MediaFile.tenant_id == ctx.tenant_id)
    ).one_or_none()
    if media is None:
        raise NotFound("Media file not found")
    return media


def open_media(
    session: Session, ctx: Ctx, media_id: uuid.UUID
) -> tuple[MediaFile, Iterator[bytes]]:
    """The row and its bytes; inbound media not yet stored is fetched from the provider first."""
    media = get_media(session, ctx, media_id)
    if media.storage_key is None:
        # NOTE: the request's own connection goes back to the pool first: the fetch runs
        # on one connection of its own, so the thread holds one while it waits on the
        # provider, as the connection budget counts (shared.db_budget), not two.
        release_request_connection(session)
        media = fetch_inbound(
            media.tenant_id, media.id, within=get_settings().media_fetch_timeout_seconds
        )
    with storage_errors():
        try:
            return media, storage_for(media.storage_backend).open(media.storage_key)
        except FileNotFoundError as exc:
            log.error("media %s: %s is missing from %s", media.id, media.storage_key, exc)
            raise MediaUnavailable("The stored file is missing") from exc


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """S3 unreachable or refusing: 503, not 500 (a missing object is the caller's 404)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError(str(exc)) from exc
        raise DependencyUnavailable("Media storage is unavailable; retry shortly") from exc
    except BotoCoreError as exc:
        raise DependencyUnavailable("Media storage is unavailable; retry shortly") from exc


def fetch_inbound(tenant_id: uuid.UUID, media_id: uuid.UUID, *, within: float) -> MediaFile:
    """Fetch and store an inbound file once; concurrent callers wait on the row lock.

    ``within`` (seconds) bounds the whole fetch: the wait on another caller's fetch of the
    same file (``lock_timeout``), the provider's answers and the download. WHY: a CDN that
    trickled its bytes (a Messenger / Instagram URL is the tenant's own Meta app's to
    choose) held a web thread for minutes, and every GET of the same file behind it.
    Past the deadline: 503 with ``Retry-After``, nothing stored, the next call tries again.
    """
    deadline = time.monotonic() + within
    retry_after = max(1, math.ceil(within))
    try:
        with session_scope() as session:
            return _fetch_locked(session, tenant_id, media_id, deadline, retry_after)
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        raise DependencyUnavailable(
            "The file is being fetched from the provider by another request; retry shortly",
            retry_after=retry_after,
        ) from exc


def _fetch_locked(
    session: Session,
    tenant_id: uuid.UUID,
    media_id: uuid.UUID,
    deadline: float,
    retry_after: int,
) -> MediaFile:
    _bound_lock_waits(session, deadline)
    media = session.scalars(
        select(MediaFile)
        .where(MediaFile.id == media_id, MediaFile.tenant_id == tenant_id)
        .with_for_update()
    ).one()
    if media.storage_key is not None:
        return media  # another request fetched it while we waited
    if media.source != "inbound" or not media.provider_media_id:
        raise MediaUnavailable("This media file has no content")
    try:
        staged, provider_type = _download(session, media, deadline)
    except SendFailed as error:
        log.warning("media %s: fetch failed: %s", media.id, error)
        if error.transient:
            raise DependencyUnavailable(
                f"The provider did not deliver the file ({error.code}); retry shortly",
                retry_after=retry_after,
            ) from error
        raise MediaUnavailable(
            f"The provider refused the file ({error.code}): {error.message}"
        ) from error
    target = storage()
    key = media_key(tenant_id, staged.sha256)
    try:
        sniffed = sniff(staged.head, provider_type)
        mime = provider_type if sniffed == "application/octet-stream" else sniffed
        media_release.lock_key(session, key)
        with storage_errors():
            target.put(key, staged.path, mime or "application/octet-stream")
    finally:
        staged.discard()
    media.storage_backend = target.backend
    media.storage_key = key
    media.mime_type = mime or media.mime_type
    media.size = staged.size
    media.sha256 = staged.sha256
    media.fetched_at = func.now()
    session.flush()
    session.refresh(media)
    return media


def _bound_lock_waits(session: Session, deadline: float) -> None:
    """This transaction waits on a lock no later than ``deadline`` (then 55P03)."""
    left_ms = max(1, int((deadline - time.monotonic()) * 1000))
    session.execute(text(f"SET LOCAL lock_timeout = {left_ms}"))


def _download(session: Session, media: MediaFile, deadline: float) -> tuple[Staged, str | None]:
    """WhatsApp: ``GET /{media-id}`` then its URL, both with the token. Messenger and
    Instagram send a CDN URL that needs no token (and must not receive one). Both calls
    end by ``deadline`` (``time.monotonic()``): a transient ``timeout`` then."""
    settings = get_settings()
    client = graph.graph_client()
    provider_type = media.mime_type
    if media.channel == "email":
        return _email_part(session, media), provider_type
    if media.channel == "whatsapp":
        token = _account_token(session, media)
        info = client.get(media.provider_media_id, token, timeout=_seconds_left(deadline, settings))
        url, size, mime_type = _media_location(info)
        if size is not None and size > settings.media_max_bytes:
            raise SendFailed("media_too_large", "the file is over the size limit", transient=False)
        provider_type = mime_type or provider_type
    else:
        url, token = _outside_url(media.provider_media_id), None
    http = None if token else _cdn_client(ssrf.Policy.from_settings(settings))
    fd, name = tempfile.mkstemp(prefix="media-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as sink, _unsafe_refused():
            size, sha256 = client.download(
                url, token, sink, max_bytes=settings.media_max_bytes, http=http, deadline=deadline
            )
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Staged(path, size, sha256, head), provider_type


def _seconds_left(deadline: float, settings: Any) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise SendFailed("timeout", "the fetch took longer than allowed", transient=True)
    return min(left, settings.graph_timeout_seconds)


def _outside_url(url: str) -> str:
    """A Messenger / Instagram file URL, if the SSRF guard lets it be fetched.

    APPSEC: a tenant with its own Meta app signs its own callbacks, so the URL is its to
    choose: fetched as it came, it read our internal network (cloud metadata, services on
    loopback) back through the download proxy.
    """
    with _unsafe_refused():
        return ssrf.check_url(url, ssrf.Policy.from_settings())


@contextlib.contextmanager
def _unsafe_refused() -> Iterator[None]:
    """A URL (or, at connect time, an address) the guard refuses: a permanent failure."""
    try:
        yield
    except ssrf.UnsafeUrl as exc:
        raise SendFailed(
            "unsafe_url", f"the file URL is not fetched: {exc}", transient=False
        ) from exc


@functools.cache
def _cdn_client(policy: ssrf.Policy) -> httpx.Client:
    """The client for CDN URLs: connects only to vetted addresses, follows no redirect."""
    return httpx.Client(
        transport=VettedTransport(policy, limits=httpx.Limits(max_connections=20)),
        timeout=get_settings().graph_timeout_seconds,
        follow_redirects=False,
        trust_env=False,
    )


def _media_location(info: dict[str, Any]) -> tuple[str, int | None, str | None]:
    """The URL, size and MIME type of Meta's ``GET /{media-id}`` answer.

    A URL or size of another shape is Meta's answer gone wrong, as a missing URL is:
    ``bad_response``, transient (503, retry shortly). Before, a ``file_size`` that was not
    a number or a ``url`` that was not a string answered 500. A MIME type of another shape
    is left to the sniffer.
    """
    url, size, mime_type = info.get("url"), info.get("file_size"), info.get("mime_type")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise SendFailed("bad_response", "no usable url in Meta's media answer", transient=True)
    if size is not None and (type(size) is not int or size < 0):
        raise SendFailed("bad_response", "a file_size that is not a size", transient=True)
    return url, size, mime_type if isinstance(mime_type, str) and mime_type else None


def _email_part(session: Session, media: MediaFile) -> Staged:
    """An inbound email's attachment: part ``n`` of the MIME stored with its inbound event."""
    _, event_id, index = (media.provider_media_id or "").split(":", 2)
    event = session.scalars(
        select(InboundEvent).where(
            InboundEvent.id == uuid.UUID(event_id), InboundEvent.tenant_id == media.tenant_id
        )
    ).one_or_none()
    if event is None:
        raise SendFailed(
            "gone", "the email this file came with is no longer stored", transient=False
        )
    found = email.attachment_bytes(event.payload, int(index), sha256=media.sha256)
    if found is None:
        raise SendFailed(
            "gone", "the email this file came with no longer holds it", transient=False
        )
    data, _, _ = found
    return stage(io.BytesIO(data), max_bytes=get_settings().media_max_bytes)


def _account_token(session: Session, media: MediaFile) -> str:
    """The token of the account the file came through, never another account's.

    NOTE: ingest names the account on every inbound file; ``account_id`` is NULL only once
    that account was deleted (``ON DELETE SET NULL``), not "use the channel's default".
    """
    if media.account_id is None:
        raise SendFailed(
            ACCOUNT_DELETED,
            "the account this file came through was deleted; another account's token does not"
            " fetch it",
            transient=False,
        )
    account = acting_account(session, media.tenant_id, media.account_id, media.channel)
    token = decrypt_credentials(account).get("access_token")
    if not token:
        raise SendFailed("no_account", "no account token to fetch the file with", transient=False)
    return token


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in data.items()}
