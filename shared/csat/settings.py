"""A tenant's CSAT settings: the channels surveyed on resolve, the message, the resend window.

A tenant without a row has the defaults: no channel surveyed automatically (surveys
only when an agent asks), the default message, a 7-day window.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import event, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import activity
from shared.context import Ctx
from shared.errors import ValidationFailed
from shared.models import CsatSettings

MANAGE = "settings.manage"
LINK_PLACEHOLDER = "{link}"
DEFAULT_MESSAGE = "How did we do? Please rate this conversation from 1 to 5: {link}"
DEFAULT_WINDOW_HOURS = 168
MAX_WINDOW_HOURS = 24 * 365
CHANNELS = ("whatsapp", "instagram", "messenger", "email", "api")
_CACHE = "csat_settings"


@dataclass(frozen=True, slots=True)
class Settings:
    enabled_channels: list[str]
    message_template: str
    resend_window_hours: int

    def surveys(self, channel: str) -> bool:
        return channel in self.enabled_channels


def load(session: Session, tenant_id: uuid.UUID) -> Settings:
    row = session.scalars(select(CsatSettings).where(CsatSettings.tenant_id == tenant_id)).first()
    if row is None:
        return Settings([], DEFAULT_MESSAGE, DEFAULT_WINDOW_HOURS)
    return Settings(
        list(row.enabled_channels),
        row.message_template or DEFAULT_MESSAGE,
        row.resend_window_hours,
    )


def for_transaction(session: Session, tenant_id: uuid.UUID) -> Settings:
    """:func:`load`, once per transaction (PERF: a bulk resolve reads them once, not per row)."""
    cache = session.info.get(_CACHE)
    if cache is None:
        cache = session.info[_CACHE] = {}
        # The cache dies with the outermost transaction, committed or not.
        if not event.contains(session, "after_transaction_end", _forget):
            event.listen(session, "after_transaction_end", _forget)
    if tenant_id not in cache:
        cache[tenant_id] = load(session, tenant_id)
    return cache[tenant_id]


def _forget(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_CACHE, None)


def render(template: str, link: str) -> str:
    return template.replace(LINK_PLACEHOLDER, link)


def put(
    session: Session,
    ctx: Ctx,
    *,
    enabled_channels: list[str],
    message_template: str | None,
    resend_window_hours: int,
) -> Settings:
    """Replace the tenant's settings (admin); the message must carry ``{link}``."""
    unknown = sorted(set(enabled_channels) - set(CHANNELS))
    if unknown:
        raise ValidationFailed.field("enabled_channels", f"unknown channels: {', '.join(unknown)}")
    if message_template is not None and LINK_PLACEHOLDER not in message_template:
        raise ValidationFailed.field("message_template", "must contain {link}")
    if not 0 <= resend_window_hours <= MAX_WINDOW_HOURS:
        raise ValidationFailed.field(
            "resend_window_hours", f"must be between 0 and {MAX_WINDOW_HOURS}"
        )
    before = load(session, ctx.tenant_id)
    session.info.pop(_CACHE, None)
    values = {
        "enabled_channels": sorted(set(enabled_channels)),
        "message_template": message_template,
        "resend_window_hours": resend_window_hours,
    }
    session.execute(
        insert(CsatSettings)
        .values(tenant_id=ctx.tenant_id, **values)
        .on_conflict_do_update(index_elements=["tenant_id"], set_=values)
    )
    after = load(session, ctx.tenant_id)
    activity.record(
        session,
        ctx,
        "csat.settings_updated",
        "csat_settings",
        None,
        before=_plain(before),
        after=_plain(after),
    )
    return after


def _plain(settings: Settings) -> dict:
    return {
        "enabled_channels": settings.enabled_channels,
        "message_template": settings.message_template,
        "resend_window_hours": settings.resend_window_hours,
    }
