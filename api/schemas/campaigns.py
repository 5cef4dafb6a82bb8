"""Campaigns: the draft's body and edits, the recipients to add, the send and the list filters."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from api.schemas.common import Input, ListQuery, Name, Nullable, Update, WallTime
from api.schemas.conversations import Tags
from api.schemas.messages import Body, Channel, TemplateRef
from shared.campaigns.recipients import MAX_IDS
from shared.models.campaigns import CAMPAIGN_STATUSES, RECIPIENT_STATUSES

CampaignStatus = Literal[CAMPAIGN_STATUSES]  # type: ignore[valid-type]
RecipientStatus = Literal[RECIPIENT_STATUSES]  # type: ignore[valid-type]
Scalar = str | int | float | bool


class CampaignCreate(Input):
    name: Name
    channel: Channel
    #: The sending account; default: the channel's default account.
    integration_account_id: uuid.UUID | None = None
    #: The message of a non-WhatsApp campaign; placeholders ``{{name}}``, ``{{phone}}``,
    #: ``{{email}}``, ``{{attr.KEY}}`` (contact attribute), ``{{var.KEY}}`` (per recipient).
    body: Body | None = None
    #: A WhatsApp campaign's APPROVED template; its text parameters may hold placeholders.
    template: TemplateRef | None = None


class CampaignUpdate(Update):
    name: Name | None = None
    integration_account_id: Nullable[uuid.UUID] = None
    body: Nullable[Body] = None
    template: Nullable[TemplateRef] = None


class CampaignListQuery(ListQuery):
    status: CampaignStatus | None = None


class RecipientListQuery(ListQuery):
    status: RecipientStatus | None = None


class ContactFilter(Input):
    """Contacts that match every condition given."""

    #: The contact has every one of these tags.
    tags: Tags | None = None
    #: Must be the campaign's channel (contacts are per channel).
    channel: Channel | None = None
    #: The contact's custom attributes contain these (JSON containment).
    custom_attributes: dict[str, Any] | None = Field(None, max_length=20)
    #: The contact last wrote at or after / before; without an offset, the tenant's wall clock.
    last_inbound_after: WallTime | None = None
    last_inbound_before: WallTime | None = None


class RecipientItem(Input):
    contact_id: uuid.UUID
    #: Values of the message's ``{{var.KEY}}`` placeholders for this recipient.
    variables: dict[Annotated[str, StringConstraints(max_length=64)], Scalar] = Field(
        default_factory=dict, max_length=20
    )


class RecipientsAdd(Input):
    """Exactly one of ``contact_ids``, ``recipients`` (ids with variables) or ``filter``."""

    contact_ids: list[uuid.UUID] | None = Field(None, min_length=1, max_length=MAX_IDS)
    recipients: list[RecipientItem] | None = Field(None, min_length=1, max_length=MAX_IDS)
    filter: ContactFilter | None = None


class CampaignSend(Input):
    #: Omitted: send now. A time without an offset is wall-clock time in ``timezone``.
    scheduled_at: WallTime | None = None
    #: An IANA timezone for a naive ``scheduled_at``; default: the tenant's.
    timezone: str | None = Field(None, min_length=1, max_length=64)
