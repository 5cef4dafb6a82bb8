"""Request and response shapes of the api channel (`/api/integration-accounts/{id}/api/...`)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, EmailStr, Field, StringConstraints

from api.schemas.common import Input, Instant, Name
from api.schemas.contacts import Phone
from api.schemas.messages import AttachmentRef
from shared.channels import choices
from shared.channels.api_channel import REPORTABLE_STATUSES, ContactIdentity
from shared.webhooks.views import AttemptView

SourceId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
ExternalMessageId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]
#: Inbound text: longer than a reply may be (an email body relayed by the caller's system).
Content = Annotated[str, StringConstraints(min_length=1, max_length=65_536)]
Subject = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
ChoiceId = Annotated[str, StringConstraints(min_length=1, max_length=choices.MAX_ID)]


class ApiContact(Input):
    """The contact as the caller's system knows it; fields sent replace the stored ones."""

    #: The caller's own id for the contact (its ``external_id`` on the account).
    source_id: SourceId
    name: Name | None = None
    email: EmailStr | None = None
    phone: Phone | None = None

    def identity(self) -> ContactIdentity:
        return ContactIdentity(self.source_id, self.name, self.email, self.phone)


class ApiConversationCreate(Input):
    contact: ApiContact
    subject: Subject | None = None


class ApiMessageCreate(Input):
    """A message from the contact. ``contact`` or ``conversation_id`` (or both) say whose."""

    contact: ApiContact | None = None
    #: A conversation of this account to post into (reopened if resolved); without it the
    #: message joins the contact's open conversation on the account, or opens one.
    conversation_id: uuid.UUID | None = None
    content: Content | None = None
    #: Files uploaded first with ``POST /api/media``; up to 10.
    attachments: list[AttachmentRef] = Field(default_factory=list, max_length=10)
    #: The caller's id for the message: a retry with the same id returns the stored
    #: message (200) and creates nothing.
    external_message_id: ExternalMessageId | None = None
    #: The subject of a conversation the message opens.
    subject: Subject | None = None
    #: The id of the reply choice the contact picked, one of the ``choices`` a message sent
    #: to them offered (a CSAT survey's ratings: picking one rates the survey).
    choice: ChoiceId | None = None


class ApiStatusReport(Input):
    status: Literal[REPORTABLE_STATUSES]  # type: ignore[valid-type]
    #: For ``failed``: the caller's reason, shown on the message.
    error_code: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    error_message: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = None
    #: When it happened on the caller's side (kept in the message's status timestamps).
    at: Instant | None = None


class SecretRotated(BaseModel):
    """The new signing secret, shown once; the previous one also signs until the time given."""

    signing_secret: str
    previous_secret_expires_at: dt.datetime | None


class CallbackTested(BaseModel):
    """One signed ``webhook.test`` POST to the callback URL, as it went."""

    event_id: uuid.UUID
    status: Literal["succeeded", "failed"]
    attempt: AttemptView
