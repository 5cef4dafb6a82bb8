"""The check a WhatsApp template send passes before it is stored, let alone sent to Meta.

Meta refuses a template message whose template is unknown to the WABA, not approved,
not in that language, or given the wrong parameters, but only after our message was
queued and the agent moved on. :func:`prepare_send` refuses it at once instead, with a
422 naming what is wrong, by the conversation's WhatsApp account's copy of the template
(kept by the sync and the review webhook). It also fills in the template's header media
URL when a media header is given no parameter (``PATCH /api/wa-templates/{id}/header-media``).
A send scheduled for later is checked when scheduled (all but the approval) and again
when due.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from shared.channels.templates import components as rules
from shared.db import fetch_rows
from shared.errors import ValidationFailed
from shared.models import Conversation, WaTemplate

#: PERF: built once and run on the driver (a template send is a reply: a hot path). Every
#: language of the name, so a wrong language can name the ones there are.
_FIND = select(
    WaTemplate.language,
    WaTemplate.status,
    WaTemplate.components,
    WaTemplate.header_media_url,
    WaTemplate.parameter_format,
).where(
    WaTemplate.tenant_id == bindparam("tenant_id", type_=WaTemplate.tenant_id.type),
    WaTemplate.integration_account_id
    == select(Conversation.integration_account_id)
    .where(
        Conversation.id == bindparam("conversation_id", type_=Conversation.id.type),
        Conversation.tenant_id == bindparam("tenant_id", type_=Conversation.tenant_id.type),
    )
    .scalar_subquery(),
    WaTemplate.name == bindparam("name", type_=WaTemplate.name.type),
)
#: The same, by the sending account itself (a campaign checks its template before any
#: conversation exists).
_FIND_BY_ACCOUNT = select(
    WaTemplate.language,
    WaTemplate.status,
    WaTemplate.components,
    WaTemplate.header_media_url,
    WaTemplate.parameter_format,
).where(
    WaTemplate.tenant_id == bindparam("tenant_id", type_=WaTemplate.tenant_id.type),
    WaTemplate.integration_account_id
    == bindparam("account_id", type_=WaTemplate.integration_account_id.type),
    WaTemplate.name == bindparam("name", type_=WaTemplate.name.type),
)


#: How a refusal names the account of a send in a conversation.
CONVERSATIONS = "The conversation's"


class TemplatePaused(ValidationFailed):
    """The template is ``PAUSED``: Meta pauses a template whose quality dropped for 3, then
    6 hours, and approves it again on its own. A send now is refused (422 like any other
    status); a campaign waits for it instead of failing (:mod:`shared.campaigns.runner`)."""


def _refuse(field: str, message: str, kind: type[ValidationFailed] = ValidationFailed):
    return kind(message, details=[{"field": field, "message": message}])


def prepare_send(
    session: Session,
    tenant_id: uuid.UUID,
    conversation_id: uuid.UUID,
    template: dict[str, Any],
    *,
    require_approved: bool = True,
) -> dict[str, Any]:
    """``template`` (``{"name", "language", "components"}``) checked and ready to store.

    ``require_approved=False`` (a send scheduled for later) checks all but the status:
    Meta may approve the template before the send is due, when it is checked again.
    """
    name, language = template.get("name"), template.get("language")
    given = template.get("components") or []
    if not isinstance(name, str) or not isinstance(language, str) or not isinstance(given, list):
        raise _refuse("template", "a template needs a name, a language and a components list")
    rows = fetch_rows(
        session.connection(),
        _FIND,
        {"tenant_id": tenant_id, "conversation_id": conversation_id, "name": name},
    )
    return checked(template, rows, CONVERSATIONS, require_approved=require_approved)


def check_for_account(
    session: Session,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    template: dict[str, Any],
    *,
    require_approved: bool = True,
) -> dict[str, Any]:
    """:func:`prepare_send` by the sending account rather than a conversation's."""
    name = template.get("name")
    if not isinstance(name, str):
        raise _refuse("template", "a template needs a name, a language and a components list")
    rows = account_templates(session, tenant_id, account_id, name)
    return checked(template, rows, "The", require_approved=require_approved)


def account_templates(
    session: Session, tenant_id: uuid.UUID, account_id: uuid.UUID | None, name: str
) -> list:
    """The rows :func:`checked` reads: every language of template ``name`` of the account
    (none for no account). One query for many sends of one template (a campaign's batch)."""
    if account_id is None:
        return []
    return fetch_rows(
        session.connection(),
        _FIND_BY_ACCOUNT,
        {"tenant_id": tenant_id, "account_id": account_id, "name": name},
    )


def checked(
    template: dict[str, Any], rows: list, whose: str, *, require_approved: bool = True
) -> dict[str, Any]:
    """``template`` checked against its account's ``rows`` (``whose`` names the account in
    the refusals: :data:`CONVERSATIONS` for a send in a conversation)."""
    name, language = template.get("name"), template.get("language")
    given = template.get("components") or []
    if not isinstance(name, str) or not isinstance(language, str) or not isinstance(given, list):
        raise _refuse("template", "a template needs a name, a language and a components list")
    if not rows:
        raise _refuse(
            "template.name",
            f"{whose} WhatsApp account has no template '{name}'"
            " (create it, or sync the account's templates from Meta)",
        )
    found = {row[0]: row for row in rows}
    if language not in found:
        raise _refuse(
            "template.language",
            f"Template '{name}' has no '{language}' version (it has: {', '.join(sorted(found))})",
        )
    _language, status, components, header_media_url, parameter_format = found[language]
    if require_approved and status != "APPROVED":
        raise _refuse(
            "template.status",
            f"Template '{name}' ({language}) is {status}, not APPROVED: Meta would refuse it",
            TemplatePaused if status == "PAUSED" else ValidationFailed,
        )
    try:
        checked = rules.check_send(
            rules.expected(components),
            given,
            header_media_url=header_media_url,
            named=parameter_format == "NAMED",
        )
    except rules.ComponentProblems as exc:
        raise ValidationFailed(
            f"Template '{name}' ({language}) is given the wrong parameters: {exc}",
            details=exc.details,
        ) from exc
    return {**template, "components": checked}
