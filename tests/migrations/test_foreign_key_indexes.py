"""Every foreign key has an index its ON DELETE can use, or a reason it needs none.

Deleting a parent row makes PostgreSQL look up the rows that reference it (to delete
them, set them null, or refuse). Without an index that leads with the referencing
column, each lookup scans the whole child table, every tenant's rows, inside the
deleting request's transaction. A new foreign key must be indexed, or listed below with
why its parent is never deleted or its table stays small.
"""

from __future__ import annotations

from sqlalchemy import text

from shared.db import session_scope

#: (child table, column): why no index is needed.
UNINDEXED = {
    # Users are deactivated, never deleted (``deleted_at``); a tenant's go with it by tenant_id.
    ("revoked_tokens", "user_id"): "users are never deleted",
    ("notes", "author_id"): "users are never deleted",
    ("quick_reply_usage", "user_id"): "users are never deleted",
    ("note_revisions", "editor_id"): "users are never deleted",
    ("webhook_endpoints", "created_by"): "users are never deleted",
    ("media_files", "created_by"): "users are never deleted",
    ("automation_rules", "created_by"): "users are never deleted",
    ("ai_evaluations", "evaluator_id"): "users are never deleted",
    ("scheduled_messages", "author_id"): "users are never deleted",
    ("agent_invitations", "invited_by"): "users are never deleted",
    ("csat_surveys", "agent_id"): "users are never deleted",
    ("csat_surveys", "created_by"): "users are never deleted",
    ("campaigns", "created_by"): "users are never deleted",
    # Messages are kept with their conversation (only a tenant's or the demo's reset
    # deletes them, by tenant).
    ("ai_replies", "last_message_id"): "messages are never deleted one by one",
    ("ai_replies", "reply_message_id"): "messages are never deleted one by one",
    ("scheduled_messages", "message_id"): "messages are never deleted one by one",
    ("csat_surveys", "message_id"): "messages are never deleted one by one",
    ("wa_template_syncs", "job_id"): "jobs are never deleted",
    # Small tables: a handful of rows per tenant.
    ("users", "role_id"): "a tenant's agents",
    ("integration_accounts", "integration_id"): "a tenant's accounts",
    ("working_hours", "division_id"): "one row per division",
    ("ai_handoff_rules", "division_id"): "an AI agent's few rules",
    ("ai_orchestration_rules", "target_ai_agent_id"): "a tenant's few rules",
    ("ai_agent_assignments", "division_id"): "a tenant's few assignments",
    ("ai_product_imports", "ai_agent_id"): "an AI agent's imports",
    # A tenant-first index: the lookup reads the whole index, not the table (68 ms per
    # division deleted at 200,000 conversations). Their parents go by an admin's hand,
    # rarely, or (contacts, conversations, users) never one by one.
    ("ai_agent_assignments", "ai_agent_id"): "tenant-first index; few rows",
    ("ai_agent_assignments", "integration_account_id"): "tenant-first index; few rows",
    ("ai_evaluations", "ai_agent_id"): "tenant-first index; an AI agent's deletion",
    ("ai_handoff_rules", "ai_agent_id"): "tenant-first index; few rows",
    ("ai_usage_daily", "ai_agent_id"): "tenant-first index; a row a day per AI agent",
    ("knowledge_sources", "ai_agent_id"): "tenant-first index; an AI agent's deletion",
    ("knowledge_chunks", "source_id"): "tenant-first index; a source's deletion",
    ("qna_pairs", "source_id"): "tenant-first index; a source's deletion",
    ("conversation_slas", "policy_id"): "tenant-first index; an SLA policy's deletion",
    ("sla_breaches", "policy_id"): "tenant-first index; an SLA policy's deletion",
    ("conversations", "division_id"): "tenant-first index; a division's deletion",
    ("conversations", "contact_id"): "contacts are never deleted one by one",
    ("campaign_recipients", "contact_id"): "contacts are never deleted one by one",
    ("messages", "conversation_id"): "conversations are never deleted one by one",
    ("notes", "conversation_id"): "conversations are never deleted one by one",
    ("scheduled_messages", "conversation_id"): "conversations are never deleted one by one",
    ("transfers", "conversation_id"): "conversations are never deleted one by one",
    ("agent_invitations", "user_id"): "users are never deleted",
    ("api_keys", "user_id"): "users are never deleted",
    ("conversations", "assignee_id"): "users are never deleted",
    ("conversation_reads", "user_id"): "users are never deleted",
    ("division_members", "user_id"): "users are never deleted",
    ("quick_replies", "owner_id"): "users are never deleted",
    # The billing catalogue: plans, add-ons and coupons are few; deleting one in use is
    # refused or detaches a handful of subscriptions.
    ("billing_subscriptions", "coupon_id"): "the billing catalogue is small",
    ("billing_subscriptions", "pending_plan_id"): "the billing catalogue is small",
    ("billing_subscriptions", "plan_id"): "the billing catalogue is small",
    ("billing_subscription_add_ons", "add_on_id"): "the billing catalogue is small",
    ("billing_invoice_lines", "add_on_id"): "the billing catalogue is small",
    ("billing_invoice_lines", "plan_id"): "the billing catalogue is small",
    ("billing_payments", "payment_method_id"): "a tenant's few payment methods",
}

#: Foreign keys (one column) with no index whose first column is theirs. Keys to ``tenants``
#: are left out: a tenant is suspended, never deleted (API.md, super admin).
_UNINDEXED_KEYS = text(
    """
    SELECT c.conrelid::regclass::text, a.attname
      FROM pg_constraint c
      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
     WHERE c.contype = 'f' AND cardinality(c.conkey) = 1
       AND c.connamespace = current_schema()::regnamespace
       AND c.confrelid <> 'tenants'::regclass
       AND NOT EXISTS (SELECT 1 FROM pg_index i
                        WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])
     ORDER BY 1, 2
    """
)
#: Foreign keys over several columns (none today: the check above would not cover them).
_COMPOSITE_KEYS = text(
    "SELECT conname FROM pg_constraint WHERE contype = 'f' AND cardinality(conkey) > 1"
    " AND connamespace = current_schema()::regnamespace"
)


def test_every_foreign_key_is_indexed_or_needs_no_index():
    with session_scope() as session:
        unindexed = {tuple(row) for row in session.execute(_UNINDEXED_KEYS)}
        composite = session.scalars(_COMPOSITE_KEYS).all()

    assert not composite, f"check these foreign keys' indexes by hand: {composite}"
    assert unindexed - UNINDEXED.keys() == set(), "index these, or say why they need none"
    assert UNINDEXED.keys() - unindexed == set(), "indexed now: take them off UNINDEXED"
