"""Conversations, transfers, bulk actions, jobs and chat expiration rules."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from api.schemas.common import Input, Instant, ListQuery, Update
from shared.inbox import bulk
from shared.inbox.conversations import MAX_TAGS, PRIORITIES, normalize_tag
from shared.inbox.states import STATUSES
from shared.models.inbox import CHANNELS
from shared.schemas.base import View

Status = Literal[STATUSES]
Channel = Literal[CHANNELS]
Tag = Annotated[str, StringConstraints(max_length=200), AfterValidator(normalize_tag)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS)]


class ConversationListQuery(ListQuery):
    status: Status | None = None
    channel: Channel | None = None
    assignee_id: uuid.UUID | Literal["me", "none"] | None = Field(
        None, description="an agent id, `me` or `none` (unassigned)"
    )
    division_id: uuid.UUID | None = None
    tag: Tag | None = None
    contact_id: uuid.UUID | None = None
    integration_account_id: uuid.UUID | None = None
    q: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = Field(None, description="contains-search on the contact's name, phone and email")
    updated_since: Instant | None = None
    unread: bool | None = Field(
        None, description="true: only conversations with inbound messages the caller has not read"
    )


class AssignmentUpdate(Input):
    assignee_id: uuid.UUID | None = Field(description="an agent id, or null to unassign")


class StatusUpdate(Input):
    status: Status
    snoozed_until: Instant | None = Field(None, description="required with `snoozed`")


class TagsUpdate(Update):
    """Either ``tags`` (replaces all) or ``add`` and/or ``remove``."""

    tags: Tags | None = None
    add: Tags | None = None
    remove: Tags | None = None

    @model_validator(mode="after")
    def _one_mode(self) -> TagsUpdate:
        if self.tags is not None and (self.add or self.remove):
            raise ValueError("send either 'tags' or 'add'/'remove', not both")
        if self.tags is None and not self.add and not self.remove:
            raise ValueError("send 'tags', or 'add' and/or 'remove'")
        return self


class TransferCreate(Input):
    to_agent_id: uuid.UUID | None = None
    to_division_id: uuid.UUID | None = None
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None


class ReadStateView(View):
    conversation_id: uuid.UUID
    user_id: uuid.UUID
    read_inbound_count: int
    unread_count: int
    last_read_at: dt.datetime


class TransferView(View):
    id: uuid.UUID
    conversation_id: uuid.UUID
    kind: Literal["transfer", "takeover"]
    from_agent_id: uuid.UUID | None
    from_division_id: uuid.UUID | None
    from_ai: bool
    to_agent_id: uuid.UUID | None
    to_division_id: uuid.UUID | None
    note: str | None
    actor_type: str
    actor_id: uuid.UUID | None
    created_at: dt.datetime


class BulkActionRequest(Input):
    """``ids`` (deduplicated, at most 5000) and an ``action`` with its parameters."""

    ids: list[uuid.UUID] = Field(min_length=1)
    action: Literal[bulk.ACTIONS]
    assignee_id: uuid.UUID | None = Field(None, description="assign")
    status: Status | None = Field(None, description="set_status")
    snoozed_until: Instant | None = Field(None, description="set_status to snoozed")
    tags: Tags | None = Field(None, description="add_tags, remove_tags")
    division_id: uuid.UUID | None = Field(None, description="set_division (null clears it)")
    priority: Literal[PRIORITIES] | None = Field(None, description="set_priority")

    @field_validator("ids")
    @classmethod
    def _distinct_bound(cls, ids: list[uuid.UUID]) -> list[uuid.UUID]:
        # NOTE: kept as sent (bulk.run deduplicates): a refusal names each id's position.
        if len(set(ids)) > bulk.MAX_IDS:
            raise ValueError(f"at most {bulk.MAX_IDS} distinct ids")
        return ids

    def params(self) -> dict[str, Any]:
        return self.model_dump(exclude={"ids", "action"}, exclude_unset=True)


class BulkResultItem(View):
    id: uuid.UUID
    result: Literal["updated", "unchanged", "not_found", "conflict"]
    message: str | None = None


class BulkResult(View):
    results: list[BulkResultItem]
    counts: dict[str, int]


class JobAccepted(View):
    job_id: uuid.UUID


class JobView(View):
    id: uuid.UUID
    kind: str
    status: str
    result: dict[str, Any] | None
    error: str | None
    created_by: uuid.UUID | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class ChatExpirationRuleView(View):
    channel: str
    inactive_minutes: int
    is_active: bool
    closing_message: str | None
    updated_at: dt.datetime


class ChatExpirationRulePut(Input):
    inactive_minutes: int = Field(ge=1, le=43200, description="idle minutes before expiry")
    is_active: bool = True
    closing_message: Annotated[str, StringConstraints(max_length=4096)] | None = None


class ExpireResult(View):
    rules: int
    expired: int
    closing_messages_sent: int
    closing_messages_failed: int
