"""What dispatch's targets ask of a tenant for every batch, kept per process (epoch cache).

Which event types a tenant's enabled webhook endpoints take, which ones trigger its active
automation rules, whether it has an active AI agent: every dispatched batch asked
PostgreSQL (one ``SELECT EXISTS`` per question and event type, ~16 % of a dispatch's CPU)
for answers that change only when an operator edits an endpoint, a rule or an agent.

One query answers all three for a tenant; the answer is kept in an
:class:`~shared.epoch_cache.EpochCache` watching the three tables, so a committed change
to any of them is seen by every dispatch that starts after it (the worker reads the
epochs with the tenant gate's, before the message runs: no extra Redis round trip). When
Redis cannot be read the cache is bypassed and PostgreSQL is asked, as before.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared import epoch_cache
from shared.db import fetch_rows, memo_for_transaction

#: Columns the webhook engine writes on every successful batch (endpoint health): they
#: change no answer here, and watching them would make every delivery forget every tenant.
HEALTH_COLUMNS = frozenset({"last_success_at", "first_failure_at"})

CACHE = epoch_cache.EpochCache(
    "dispatch_facts",
    tables=["webhook_endpoints", "automation_rules", "ai_agents"],
    per_tenant=True,
    ignore={"webhook_endpoints": HEALTH_COLUMNS},
    max_entries=50_000,
)


class Facts(NamedTuple):
    webhook_types: frozenset[str]
    rule_types: frozenset[str]
    has_ai_agent: bool


_FACTS = text(
    """
    SELECT ARRAY(SELECT DISTINCT t FROM webhook_endpoints e, unnest(e.event_types) t
                  WHERE e.tenant_id = :tenant_id AND e.enabled),
           ARRAY(SELECT DISTINCT t FROM automation_rules r, unnest(r.trigger_event_types) t
                  WHERE r.tenant_id = :tenant_id AND r.is_active),
           EXISTS (SELECT 1 FROM ai_agents a WHERE a.tenant_id = :tenant_id AND a.is_active)
    """
)


def _query(session: Session, tenant_id: uuid.UUID) -> Facts:
    webhooks, rules, ai = fetch_rows(session.connection(), _FACTS, {"tenant_id": tenant_id})[0]
    return Facts(frozenset(webhooks or ()), frozenset(rules or ()), bool(ai))


def _epochs(session: Session) -> epoch_cache.Epochs:
    """The epochs this transaction's answers are tagged with: the message's, else read now."""
    return memo_for_transaction(session, "dispatch_facts.epochs", _message_epochs)


def _message_epochs() -> epoch_cache.Epochs:
    # NOTE: an empty Epochs reads the keys it is asked for, when asked (one MGET).
    return epoch_cache.FOR_MESSAGE.get() or epoch_cache.Epochs({})


def of(session: Session, tenant_id: uuid.UUID) -> Facts:
    """The tenant's facts, as committed before this transaction's first question at least.

    NOTE: asked once per transaction and tenant; the cached value is used only while the
    epochs read before the message (or this transaction) still hold.
    """

    def compute() -> Facts:
        tag = _epochs(session).tag(CACHE, tenant_id)
        facts = CACHE.get(tenant_id, tag)
        if facts is None:
            facts = _query(session, tenant_id)
            CACHE.put(tenant_id, tag, facts)
        return facts

    return memo_for_transaction(session, ("dispatch_facts", tenant_id), compute)
