"""Outbound attachments: check an agent's media ids and describe them on the message.

WhatsApp, Messenger and Instagram carry one file per message (WhatsApp puts the
text in the caption; Messenger and Instagram cannot combine them); email and the
api channel carry up to :data:`MAX_EMAIL_ATTACHMENTS`. The items use the same shape
as inbound attachments: ``{"media_id", "type", "mime_type", "filename", "size"}``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.context import Ctx
from shared.errors import ValidationFailed
from shared.models import MediaFile

MAX_EMAIL_ATTACHMENTS = 10
#: Media types WhatsApp takes as ``image`` (others go as documents).
_WHATSAPP_IMAGES = ("image/jpeg", "image/png")


def kind(mime_type: str | None, channel: str) -> str:
    """The provider's attachment type for a file: image, video, audio, document / file."""
    mime = mime_type or ""
    major = mime.split("/", 1)[0]
    if channel == "whatsapp" and major == "image" and mime not in _WHATSAPP_IMAGES:
        return "document"
    if major in ("image", "video", "audio"):
        return major
    return "file" if channel in ("messenger", "instagram") else "document"


def resolve(
    session: Session, ctx: Ctx, channel: str, media_ids: list[uuid.UUID], *, has_body: bool
) -> list[dict[str, Any]]:
    """The attachment items for ``media_ids`` (the tenant's stored files), or 422."""
    if not media_ids:
        return []
    limit = MAX_EMAIL_ATTACHMENTS if channel in ("email", "api") else 1
    if len(media_ids) > limit:
        raise ValidationFailed.field("attachments", f"at most {limit} on {channel}")
    if has_body and channel in ("messenger", "instagram"):
        raise ValidationFailed.field(
            "attachments", f"{channel} sends text and a file as separate messages"
        )
    # NOTE: share-locked until the message commits: freeing a file locks its row FOR
    # UPDATE and then looks for messages using it (media_release.release), so it waits
    # for this message and sees it, or has deleted the row and this finds none (422).
    rows = {
        m.id: m
        for m in session.scalars(
            select(MediaFile)
            .where(MediaFile.tenant_id == ctx.tenant_id, MediaFile.id.in_(media_ids))
            .order_by(MediaFile.id)
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        )
    }
    items = []
    first_at: dict[uuid.UUID, int] = {}
    for index, media_id in enumerate(media_ids):
        media = rows.get(media_id)
        field = f"attachments[{index}].media_id"
        # WHY: an email naming a file twice went out with it attached twice; WhatsApp's
        # one-file limit already refuses a second copy, so every channel refuses it.
        if media_id in first_at:
            raise ValidationFailed.field(
                field, f"already attached as attachments[{first_at[media_id]}]"
            )
        first_at[media_id] = index
        if media is None:
            raise ValidationFailed.field(field, "no such media file")
        if media.storage_key is None:
            raise ValidationFailed.field(field, "the file is not stored yet; download it first")
        items.append(
            {
                "media_id": str(media.id),
                "type": kind(media.mime_type, channel),
                "mime_type": media.mime_type,
                "filename": media.filename,
                "size": media.size,
            }
        )
    return items
