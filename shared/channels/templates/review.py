"""Review results from the Meta webhook: ``message_template_status_update`` changes.

Meta posts them on ``/api/webhooks/meta`` as a WhatsApp change without a phone number id
(``entry.id`` is the WABA id, so :mod:`shared.channels.receive` resolves the account by
its ``waba_id``)::

    {"field": "message_template_status_update",
     "value": {"event": "APPROVED", "message_template_id": 1234,
               "message_template_name": "order_update", "message_template_language": "en_US",
               "reason": "NONE"}}

``process_inbound`` applies the parsed :class:`TemplateReview`: every copy of the template
in the tenant (accounts sharing one WABA each hold one) takes the new status, and each
that changed emits ``template.status_changed``. A repeat changes nothing. ``REINSTATED``
and ``UNPAUSED`` mean ``APPROVED`` again; ``FLAGGED`` (a quality warning, the template
still sends) changes no status. A review of a template we do not hold yet asks for a
sync of the account, which imports it (recorded ``queued`` with the review, so a lost
message is sent again: :func:`~shared.channels.templates.sync.resync`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from shared.channels.templates import sync
from shared.models import IntegrationAccount, WaTemplate

FIELD = "message_template_status_update"
#: Webhook events that name a status other than themselves.
_EVENT_STATUS = {"REINSTATED": "APPROVED", "UNPAUSED": "APPROVED"}
#: Events that are warnings, not status changes.
_NO_STATUS = frozenset({"FLAGGED"})


@dataclass
class TemplateReview:
    meta_template_id: str
    name: str | None
    language: str | None
    event: str
    reason: str | None


class BadReview(ValueError):
    pass


def parse(value: dict[str, Any]) -> TemplateReview:
    """The review in a change's ``value``; :class:`BadReview` when it names no template."""
    template_id, event = value.get("message_template_id"), value.get("event")
    if template_id in (None, "") or not isinstance(event, str) or not event:
        raise BadReview(f"a template review without template id or event: {str(value)[:200]}")
    reason = value.get("reason")
    name, language = value.get("message_template_name"), value.get("message_template_language")
    return TemplateReview(
        meta_template_id=str(template_id),
        # NOTE: compared with text columns: another type (a number, an object) failed the
        # query and lost the review; ignored instead, Meta's id still finds the template.
        name=name if isinstance(name, str) else None,
        language=language if isinstance(language, str) else None,
        event=event.upper(),
        reason=None if reason in (None, "", "NONE") else str(reason)[:2000],
    )


def apply(session: Session, account: IntegrationAccount, review: TemplateReview) -> str:
    """Apply one review to the tenant's copies of the template; what happened."""
    if review.event in _NO_STATUS:
        return "ignored"
    status = _EVENT_STATUS.get(review.event, review.event)[:32]
    same_name = (
        (WaTemplate.integration_account_id == account.id)
        & (WaTemplate.name == review.name)
        & (WaTemplate.language == review.language)
        if review.name and review.language
        else WaTemplate.meta_template_id == review.meta_template_id
    )
    rows = session.scalars(
        select(WaTemplate)
        .where(
            WaTemplate.tenant_id == account.tenant_id,
            or_(WaTemplate.meta_template_id == review.meta_template_id, same_name),
        )
        .with_for_update()
    ).all()
    if not rows:
        sync.resync(session, account.tenant_id, account.id)
        return "unknown"
    changed = 0
    for row in rows:
        if row.status == status:
            continue
        previous = row.status
        row.status = status
        row.rejected_reason = review.reason if status == "REJECTED" else None
        row.status_updated_at = func.clock_timestamp()
        changed += 1
        sync.emit_status_changed(
            session,
            row.tenant_id,
            {
                "id": row.id,
                "integration_account_id": row.integration_account_id,
                "meta_template_id": row.meta_template_id,
                "name": row.name,
                "language": row.language,
            },
            status=status,
            previous_status=previous,
            reason=review.reason,
            source="webhook",
        )
    session.flush()
    return "changed" if changed else "unchanged"
