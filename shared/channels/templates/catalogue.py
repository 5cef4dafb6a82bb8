"""The tenant's templates: list, get, create (submitted to Meta inline), local delete, header media.

Reads are open to any agent (they pick templates to send); writes need
``integrations.manage``. A template belongs to one WhatsApp integration account; an
account (or template) of another tenant answers 404 like an unknown one.

Create checks what is certainly wrong first (:mod:`.components`, a name and language
this account already has: 409), then submits to Meta in the request and stores Meta's
answer (status ``PENDING`` unless Meta says otherwise). If our commit failed after Meta
accepted, the template exists at Meta only, and the next sync imports it.
Delete is local: Meta keeps the template and the next sync imports it again if it is
still there.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import activity
from shared.channels import accounts
from shared.channels.templates import components as rules
from shared.channels.templates import meta
from shared.context import Ctx
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.models import IntegrationAccount, WaTemplate
from shared.pagination import Page, paginate
from shared.schemas.wa_templates import WaTemplateView
from shared.sql import contains_pattern, lock_key

MANAGE = "integrations.manage"


# --- accounts -----------------------------------------------------------------------------------


def whatsapp_account(session: Session, ctx: Ctx, account_id: uuid.UUID) -> IntegrationAccount:
    """The caller's WhatsApp account ``account_id``; 404 for another tenant's, 422 for a
    non-WhatsApp one."""
    account = accounts.get_account(session, ctx, account_id)
    if account.channel != "whatsapp":
        raise ValidationFailed.field("integration_account_id", "not a WhatsApp account")
    return account


def graph_credentials(account: IntegrationAccount) -> tuple[str, str]:
    """The account's WABA id and access token, or 422 naming what is missing."""
    waba_id = str((account.settings or {}).get("waba_id") or "")
    token = accounts.decrypt_credentials(account).get("access_token") or ""
    if not waba_id or not token:
        raise ValidationFailed.field(
            "integration_account_id", "the WhatsApp account needs a waba_id and an access_token"
        )
    return waba_id, token


def lock_account(session: Session, account_id: uuid.UUID) -> None:
    """Serialize the writers of one account's templates (create, sync) for this transaction."""
    lock_key(session, f"wa_templates:{account_id}")


# --- reads --------------------------------------------------------------------------------------


def list_templates(
    session: Session,
    ctx: Ctx,
    *,
    integration_account_id: uuid.UUID | None = None,
    status: str | None = None,
    category: str | None = None,
    language: str | None = None,
    q: str | None = None,
    limit: int,
    cursor: str | None = None,
) -> Page[dict[str, Any]]:
    """A page of the tenant's templates, newest first; ``q`` matches the name."""
    query = select(WaTemplate).where(WaTemplate.tenant_id == ctx.tenant_id)
    if integration_account_id is not None:
        query = query.where(WaTemplate.integration_account_id == integration_account_id)
    if status:
        query = query.where(WaTemplate.status == status.upper())
    if category:
        query = query.where(WaTemplate.category == category.upper())
    if language:
        query = query.where(WaTemplate.language == language)
    if q:
        query = query.where(WaTemplate.name.ilike(contains_pattern(q), escape="\\"))
    page = paginate(
        session,
        query,
        created_at=WaTemplate.created_at,
        id_column=WaTemplate.id,
        limit=limit,
        cursor=cursor,
    )
    return Page([WaTemplateView.data(row) for row in page.items], page.next_cursor)


def get_template(
    session: Session, ctx: Ctx, template_id: uuid.UUID, *, for_update: bool = False
) -> WaTemplate:
    query = select(WaTemplate).where(
        WaTemplate.id == template_id, WaTemplate.tenant_id == ctx.tenant_id
    )
    if for_update:
        query = query.with_for_update()
    template = session.scalars(query).one_or_none()
    if template is None:
        raise NotFound("WhatsApp template not found")
    return template


# --- writes -------------------------------------------------------------------------------------


def create_template(
    session: Session,
    ctx: Ctx,
    *,
    integration_account_id: uuid.UUID,
    name: str,
    language: str,
    category: str,
    components: list[dict[str, Any]],
    parameter_format: str = "POSITIONAL",
    allow_category_change: bool = True,
) -> WaTemplate:
    """Submit a template to Meta for review and store it (see the module doc)."""
    ctx.require(MANAGE)
    account = whatsapp_account(session, ctx, integration_account_id)
    waba_id, token = graph_credentials(account)
    try:
        normalized = rules.normalize_new(components, category, parameter_format)
    except rules.ComponentProblems as exc:
        raise ValidationFailed(
            "The template's components are invalid", details=exc.details
        ) from exc
    lock_account(session, account.id)
    existing = session.scalar(
        select(WaTemplate.id).where(
            WaTemplate.integration_account_id == account.id,
            WaTemplate.name == name,
            WaTemplate.language == language,
        )
    )
    if existing is not None:
        raise Conflict(
            f"This account already has a template '{name}' in '{language}'",
            details=[{"field": "name", "message": "already used with this language"}],
        )
    payload: dict[str, Any] = {
        "name": name,
        "language": language,
        "category": category,
        "components": normalized,
        "allow_category_change": allow_category_change,
    }
    if parameter_format != "POSITIONAL":
        payload["parameter_format"] = parameter_format
    answer = meta.created(meta.create_template(ctx, account, waba_id, token, payload), category)
    template = WaTemplate(
        tenant_id=ctx.tenant_id,
        integration_account_id=account.id,
        meta_template_id=answer.id,
        name=name,
        language=language,
        category=answer.category,
        status=answer.status,
        components=normalized,
        parameter_format=parameter_format,
        created_by=ctx.user_id,
        # When Meta answered, not when the request began: a sync whose listing was read
        # before (without this template) never marks it DELETED (sync.apply_listing).
        created_at=func.clock_timestamp(),
    )
    session.add(template)
    session.flush()
    session.refresh(template)
    activity.record(
        session,
        ctx,
        "wa_template.created",
        "wa_template",
        template.id,
        after=WaTemplateView.data(template),
    )
    return template


def delete_template(session: Session, ctx: Ctx, template_id: uuid.UUID) -> None:
    """Forget the template here; Meta keeps it (the next sync brings it back if it is there)."""
    ctx.require(MANAGE)
    template = get_template(session, ctx, template_id, for_update=True)
    before = WaTemplateView.data(template)
    session.delete(template)
    session.flush()
    activity.record(session, ctx, "wa_template.deleted", "wa_template", template_id, before=before)


def set_header_media(
    session: Session, ctx: Ctx, template_id: uuid.UUID, header_media_url: str | None
) -> WaTemplate:
    """Set (or clear, with None) the media a send of a media-header template uses by default."""
    ctx.require(MANAGE)
    template = get_template(session, ctx, template_id, for_update=True)
    if header_media_url is not None and rules.expected(template.components).header_media is None:
        raise ValidationFailed.field(
            "header_media_url", "the template has no IMAGE, VIDEO or DOCUMENT header"
        )
    before = WaTemplateView.data(template)
    template.header_media_url = header_media_url
    session.flush()
    session.refresh(template)
    after = WaTemplateView.data(template)
    activity.record(
        session, ctx, "wa_template.updated", "wa_template", template.id, before=before, after=after
    )
    return template
