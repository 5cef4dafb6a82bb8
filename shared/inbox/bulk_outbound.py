"""Many system messages at once, each to its contact: a campaign's batch.

:func:`create_system_messages` does for a batch of drafts what
:func:`shared.inbox.messages.create_outbound_message` and
:func:`shared.channels.ingest.open_conversation` do for one, with the same rows, counters,
activity and events, but a statement per step instead of a few per message:

1. the contacts' open conversations on the account, one query (an email draft starts
   its own thread instead);
2. the refusals, per draft and before anything is stored, as the single path refuses:
   a WhatsApp template checked against the account's copy (one query per template
   name), a free-form WhatsApp message outside the contact's 24-hour window on the
   account's number (one query per batch), then the plan's monthly messages (one slot
   reserved per message, as every send does);
3. the missing conversations, one ``INSERT ... RETURNING`` (their SLA clock
   when a policy matches, and a ``conversation.created`` each, opened by its contact);
4. the messages, one ``INSERT ... RETURNING`` (:mod:`shared.bulk_insert`); their
   conversations counted by one relative ``UPDATE``; the activity rows and the
   ``message.created`` events, one statement each.

Everything is written in the caller's transaction: the events go through the outbox as
any other, and their dispatch (webhooks, automation, analytics, the send's row) is
unchanged. A refused draft creates nothing; the others are not affected by it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from shared import activity, bulk_insert
from shared.billing import usage as billing_usage
from shared.channels.templates import sending as template_sending
from shared.context import Ctx
from shared.errors import DomainError
from shared.events import Actor, emit_each
from shared.inbox import conversation_counts
from shared.inbox.messages import WHATSAPP_WINDOW, WindowClosed, preview
from shared.models import Contact, Conversation, IntegrationAccount, Message
from shared.schemas.inbox import ConversationView
from shared.schemas.messages import MessageView
from shared.timekeeping import sla

#: Conversations a new message may join (as an inbound message would: never a resolved one).
ACTIVE = ("open", "pending", "snoozed")


@dataclass(frozen=True, slots=True)
class Draft:
    """One message to send: a ``body`` or a ``template``, to ``contact``."""

    contact: Contact
    body: str | None = None
    template: dict[str, Any] | None = None


@dataclass(slots=True)
class _Pending:
    draft: Draft
    template: dict[str, Any] | None
    conversation: Any = None  # a conversations row (found or inserted)


#: Each contact's latest active conversation on the account (or on none), as inbound finds it.
#: PERF: one index probe per contact (``ix_conversations_contact``: tenant, contact, newest
#: first; ``LIMIT 1``), a plan that needs no statistics. The ``DISTINCT ON`` over
#: ``contact_id IN (...)`` it replaces was planned, on a table not analyzed yet (autovacuum
#: is not to be relied on), as a read of every conversation of the tenant, per batch.
_OPEN_CONVERSATIONS = text(
    """
    SELECT c.id, c.contact_id, c.channel, c.integration_account_id
      FROM unnest(CAST(:contact_ids AS uuid[])) AS k(contact_id)
     CROSS JOIN LATERAL (
           SELECT id, contact_id, channel, integration_account_id
             FROM conversations
            WHERE tenant_id = :tenant_id AND contact_id = k.contact_id
              AND status = ANY(CAST(:active AS text[]))
              AND (integration_account_id = :account_id OR integration_account_id IS NULL)
            ORDER BY created_at DESC
            LIMIT 1) AS c
    """
)

#: Per contact, whether it wrote to the account's number in the last 24 hours (as
#: :func:`shared.inbox.messages.whatsapp_window_open` reads it): one index probe each.
_WINDOWS_OPEN = text(
    """
    SELECT k.contact_id,
           coalesce(w.last_inbound_at >= now() - CAST(:window AS interval), false) AS open
      FROM unnest(CAST(:contact_ids AS uuid[])) AS k(contact_id)
     CROSS JOIN LATERAL (
           SELECT max(last_inbound_at) AS last_inbound_at
             FROM conversations
            WHERE tenant_id = :tenant_id AND contact_id = k.contact_id
              AND (integration_account_id = :account_id OR integration_account_id IS NULL)
           ) AS w
    """
)

# NOTE: clock_timestamp, as the single path: the messages of one batch keep their order.
_MESSAGE_STAMPS = {"created_at": "clock_timestamp()", "updated_at": "clock_timestamp()"}


def create_system_messages(
    session: Session,
    account: IntegrationAccount,
    drafts: Sequence[Draft],
    *,
    subject: str | None = None,
    new_thread: bool = False,
) -> list[Row | DomainError]:
    """Store each draft as a queued system message; per draft its row, or why it was refused.

    ``new_thread`` opens a new conversation per draft (an email campaign); otherwise a
    contact's open conversation on ``account`` is reused and the others are opened with
    ``subject``. The contacts must be the account's tenant's (the caller's query).
    """
    tenant_id = account.tenant_id
    found = {} if new_thread else _open_conversations(session, account, drafts)
    results: list[Row | DomainError | None] = [None] * len(drafts)
    pending: dict[int, _Pending] = {}
    checks = _Checks(session, account, list({draft.contact.id for draft in drafts}))
    for index, draft in enumerate(drafts):
        conversation = found.get(draft.contact.id)
        try:
            template = checks.refusals(draft, conversation)
            # Last, after every refusal: a reservation is only taken by a send that happens.
            billing_usage.check_message_send(session, tenant_id)
        except DomainError as exc:
            results[index] = exc
            continue
        pending[index] = _Pending(draft, template, conversation)
    items = list(pending.values())
    _open_missing(session, account, items, subject=subject, new_thread=new_thread)
    for index, row in zip(pending, _insert_messages(session, tenant_id, items), strict=True):
        results[index] = row
    return results


def _open_conversations(
    session: Session, account: IntegrationAccount, drafts: Sequence[Draft]
) -> dict[uuid.UUID, Row]:
    contact_ids = list({draft.contact.id for draft in drafts})
    if not contact_ids:
        return {}
    rows = session.execute(
        _OPEN_CONVERSATIONS,
        {
            "tenant_id": account.tenant_id,
            "contact_ids": contact_ids,
            "account_id": account.id,
            "active": list(ACTIVE),
        },
    )
    return {row.contact_id: row for row in rows}


class _Checks:
    """The single path's refusals, with what they read fetched once per batch."""

    def __init__(
        self, session: Session, account: IntegrationAccount, contact_ids: list[uuid.UUID]
    ) -> None:
        self.session, self.account, self.contact_ids = session, account, contact_ids
        self._templates: dict[tuple[uuid.UUID | None, str], list] = {}
        self._windows: dict[uuid.UUID, bool] | None = None

    def refusals(self, draft: Draft, conversation: Row | None) -> dict[str, Any] | None:
        """The template to store (checked), or raise the single path's refusal."""
        channel = conversation.channel if conversation is not None else self.account.channel
        template = draft.template
        if template is not None and channel == "whatsapp":
            account_id = (
                conversation.integration_account_id if conversation is not None else self.account.id
            )
            name = template.get("name")
            rows = self._rows(account_id, name) if isinstance(name, str) else []
            return template_sending.checked(template, rows, template_sending.CONVERSATIONS)
        if channel == "whatsapp" and template is None and not self._window_open(draft.contact):
            raise WindowClosed(
                "The WhatsApp 24-hour window is closed: the contact has not written to this"
                " number in the last 24 hours, send a template instead"
            )
        return template

    def _rows(self, account_id: uuid.UUID | None, name: str) -> list:
        key = (account_id, name)
        if key not in self._templates:
            self._templates[key] = template_sending.account_templates(
                self.session, self.account.tenant_id, account_id, name
            )
        return self._templates[key]

    def _window_open(self, contact: Contact) -> bool:
        """As :func:`~shared.inbox.messages.whatsapp_window_open`, by the database clock: on
        the batch's account, for every contact of the batch at the first asking."""
        if self._windows is None:
            rows = self.session.execute(
                _WINDOWS_OPEN,
                {
                    "window": WHATSAPP_WINDOW,
                    "tenant_id": self.account.tenant_id,
                    "account_id": self.account.id,
                    "contact_ids": self.contact_ids,
                },
            )
            self._windows = {row.contact_id: row.open for row in rows}
        return self._windows.get(contact.id, False)


def _open_missing(
    session: Session,
    account: IntegrationAccount,
    pending: Sequence[_Pending],
    *,
    subject: str | None,
    new_thread: bool,
) -> None:
    """Open the conversations the drafts lack (one per contact; per draft for a new thread)."""
    missing = [p for p in pending if p.conversation is None]
    if not missing:
        return
    by_key: dict[Any, list[_Pending]] = {}
    for item in missing:
        key = id(item) if new_thread else item.draft.contact.id
        by_key.setdefault(key, []).append(item)
    values = [
        {
            "id": uuid.uuid4(),
            "tenant_id": account.tenant_id,
            "contact_id": items[0].draft.contact.id,
            "channel": account.channel,
            "integration_account_id": account.id,
            "status": "open",
            "subject": (subject or "")[:500] or None,
        }
        for items in by_key.values()
    ]
    inserted = bulk_insert.insert_many(session, Conversation.__table__, values, returning="*")
    rows = {row.id: row for row in inserted}
    opened = [rows[value["id"]] for value in values]
    for row, items in zip(opened, by_key.values(), strict=True):
        for item in items:
            item.conversation = row
    _attach_sla(session, account, opened)
    emit_each(
        session,
        "conversation.created",
        [
            (account.tenant_id, ConversationView.data(row), Actor("contact", row.contact_id))
            for row in opened
        ],
    )


def _attach_sla(session: Session, account: IntegrationAccount, opened: list[Row]) -> None:
    """Start each new conversation's SLA clock (as ``ingest.open_conversation`` does).

    New conversations of one account look alike to the policies (same channel, no tags,
    no division): one query says whether any policy applies; only then is each attached.
    """
    probe = Conversation(tenant_id=account.tenant_id, channel=account.channel, tags=[])
    if sla.matching_policy(session, probe) is None:
        return
    ids = [row.id for row in opened]
    for conversation in session.scalars(select(Conversation).where(Conversation.id.in_(ids))):
        sla.attach(session, conversation, now=conversation.created_at)


def _insert_messages(
    session: Session, tenant_id: uuid.UUID, pending: Sequence[_Pending] | Any
) -> list[Row]:
    """The messages, their conversations' counters, activity rows and events, in order."""
    pending = list(pending)
    if not pending:
        return []
    values = [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "conversation_id": item.conversation.id,
            "channel": item.conversation.channel,
            "direction": "outbound",
            "sender_type": "system",
            "sender_id": None,
            "content_type": "template" if item.template is not None else "text",
            "body": item.draft.body,
            "attachments": [],
            "template": item.template,
            "status": "queued",
        }
        for item in pending
    ]
    session.flush()  # pending ORM changes first, as the single path's flush writes them
    inserted = bulk_insert.insert_many(
        session, Message.__table__, values, computed=_MESSAGE_STAMPS, returning="*"
    )
    by_id = {row.id: row for row in inserted}
    rows = [by_id[value["id"]] for value in values]
    _count(session, tenant_id, rows)
    activity.record_changes(
        session,
        Ctx.system(tenant_id),
        "message.created",
        "message",
        [(row.id, MessageView.data(row)) for row in rows],
    )
    return rows


def _count(session: Session, tenant_id: uuid.UUID, rows: Sequence[Row]) -> None:
    """The batch's conversations counted, one statement (:mod:`.conversation_counts`)."""
    last: dict[uuid.UUID, Row] = {}
    counts: dict[uuid.UUID, int] = {}
    for row in rows:  # in creation order: the last one is the conversation's latest
        last[row.conversation_id] = row
        counts[row.conversation_id] = counts.get(row.conversation_id, 0) + 1
    conversation_counts.count_many(
        session,
        [
            conversation_counts.Counted(
                tenant_id, cid, counts[cid], row.created_at, preview(row.body, row.template)
            )
            for cid, row in last.items()
        ],
    )


__all__ = ["Draft", "create_system_messages"]
