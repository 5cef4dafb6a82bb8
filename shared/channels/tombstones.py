"""The ids of a tenant's deleted senders, given back when it connects the same sender again.

Integration accounts are hard-deleted, but conversations and api contacts keep naming
them by id (no foreign key), and a conversation of a deleted account refuses replies
(``account_deleted``): nothing answers a customer from another number. The same (tenant,
channel, external id) connected again is the number the customer wrote to, so it takes
the deleted id back and what names it without a foreign key works again.

Nothing else comes back: rows the deletion cascaded (WhatsApp templates and their syncs,
AI agent assignments) are gone, and ``ON DELETE SET NULL`` references (a campaign's named
account, which then fails ``account_deleted``; a media file's account) were cleared.
Automation rules and webhook endpoints never name an account.

Both sides run under the channel's integration row lock (``create_account`` and the
deletions take it first), so a connection racing a deletion sees its tombstone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.models import IntegrationAccount, IntegrationAccountTombstone


def bury(session: Session, deleted: Iterable[IntegrationAccount]) -> None:
    """Remember the ids of accounts being deleted, in the deletion's transaction.

    A sender already buried (deleted before this table existed, reconnected under a new
    id, deleted again) keeps the latest id: its conversations are the most recent.
    """
    rows = [
        {
            "tenant_id": account.tenant_id,
            "channel": account.channel,
            "external_id": account.external_id,
            "account_id": account.id,
        }
        for account in deleted
    ]
    if not rows:
        return
    stmt = insert(IntegrationAccountTombstone).values(rows)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["tenant_id", "channel", "external_id"],
            set_={"account_id": stmt.excluded.account_id, "deleted_at": func.now()},
        )
    )


def unearth(
    session: Session, tenant_id: uuid.UUID, channel: str, external_id: str
) -> uuid.UUID | None:
    """The id the tenant's deleted ``channel`` sender ``external_id`` had, removing its
    tombstone (None: it never had one, or it was given back already).

    The delete locks the row: of two connections at once, one gets the id, the other
    none (and then loses on the external id's unique index: 409). Call it in the
    savepoint of the insert, so that a connection refused rolls the removal back.
    """
    return session.scalar(
        delete(IntegrationAccountTombstone)
        .where(
            IntegrationAccountTombstone.tenant_id == tenant_id,
            IntegrationAccountTombstone.channel == channel,
            IntegrationAccountTombstone.external_id == external_id,
        )
        .returning(IntegrationAccountTombstone.account_id)
    )
