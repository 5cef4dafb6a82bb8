"""api-channel contacts belong to their account, not to the whole tenant

A contact was keyed by (tenant, channel, external id). On the api channel the external
id is the ``source_id`` of the tenant's system behind one api account, so two of its
systems' customer "42" landed on one contact: one person's conversations, name and
email mixed with another's. ``contacts.integration_account_id`` now scopes an api
contact to its account (null on the other channels, whose ids name the same person on
every account), and the unique key is (tenant, channel, account, external id) with
nulls not distinct, which is the old key wherever the account is null.

Existing api contacts:

- each is given the account of its earliest api conversation; one without any, the
  tenant's oldest api account (none left: it stays null, reachable by nobody's posts);
- a contact with conversations on several api accounts was several people: for each
  other account a copy of it (same fields; created when that account's first
  conversation with it was) is made, and that account's conversations
  and their inbound messages' ``sender_id`` move to the copy. Campaign recipients stay
  on the original. ``last_inbound_at`` of both is recomputed from their conversations.

The downgrade folds api contacts that share (tenant, external id) back into the oldest
one (conversations, inbound messages and campaign recipients move to it; the others'
own fields are lost, which the old key cannot hold), then restores the old key.

Revision ID: 0037_api_contacts_per_account
Revises: 0036_campaign_account_named
Create Date: 2026-12-07 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0037_api_contacts_per_account"
down_revision: str | None = "0036_campaign_account_named"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KEY = "uq_contacts_tenant_channel_external"
NEW_KEY = "uq_contacts_tenant_channel_account_external"

#: Every api contact: the account of its earliest api conversation.
OWN_FIRST_CONVERSATIONS_ACCOUNT = """
UPDATE contacts c
   SET integration_account_id = first.account_id
  FROM (SELECT DISTINCT ON (cv.contact_id) cv.contact_id, cv.integration_account_id AS account_id
          FROM conversations cv
         WHERE cv.channel = 'api' AND cv.integration_account_id IS NOT NULL
         ORDER BY cv.contact_id, cv.created_at, cv.id) first
 WHERE c.id = first.contact_id AND c.channel = 'api'
"""

#: An api contact without conversations: the tenant's oldest api account, if any.
OWN_OLDEST_ACCOUNT = """
UPDATE contacts c
   SET integration_account_id = (
        SELECT a.id FROM integration_accounts a
         WHERE a.tenant_id = c.tenant_id AND a.channel = 'api'
         ORDER BY a.created_at, a.id LIMIT 1)
 WHERE c.channel = 'api' AND c.integration_account_id IS NULL
"""

#: One row per (contact, other api account it has conversations on): the copy to make.
SPLITS = """
CREATE TEMPORARY TABLE api_contact_splits ON COMMIT DROP AS
SELECT pairs.old_id, pairs.tenant_id, pairs.account_id, pairs.first_at,
       gen_random_uuid() AS new_id
  FROM (SELECT c.id AS old_id, c.tenant_id, cv.integration_account_id AS account_id,
               min(cv.created_at) AS first_at
          FROM contacts c
          JOIN conversations cv ON cv.contact_id = c.id AND cv.tenant_id = c.tenant_id
         WHERE c.channel = 'api'
           AND cv.integration_account_id IS NOT NULL
           AND cv.integration_account_id <> c.integration_account_id
         GROUP BY c.id, c.tenant_id, cv.integration_account_id) pairs
"""

COPY_CONTACTS = """
INSERT INTO contacts (id, integration_account_id, tenant_id, channel, external_id, name, phone,
                      email, country, language, avatar_url, tags, custom_attributes,
                      last_inbound_at, opted_out_at, created_at, updated_at)
SELECT s.new_id, s.account_id, c.tenant_id, c.channel, c.external_id, c.name, c.phone,
       c.email, c.country, c.language, c.avatar_url, c.tags, c.custom_attributes,
       c.last_inbound_at, c.opted_out_at, greatest(c.created_at, s.first_at), now()
  FROM api_contact_splits s JOIN contacts c ON c.id = s.old_id
"""

MOVE_CONVERSATIONS = """
UPDATE conversations cv SET contact_id = s.new_id
  FROM api_contact_splits s
 WHERE cv.tenant_id = s.tenant_id AND cv.contact_id = s.old_id
   AND cv.integration_account_id = s.account_id
"""

MOVE_SENDERS = """
UPDATE messages m SET sender_id = s.new_id
  FROM api_contact_splits s
  JOIN conversations cv ON cv.tenant_id = s.tenant_id AND cv.contact_id = s.new_id
 WHERE m.tenant_id = cv.tenant_id AND m.conversation_id = cv.id
   AND m.sender_type = 'contact' AND m.sender_id = s.old_id
"""

RECOUNT_LAST_INBOUND = """
UPDATE contacts c
   SET last_inbound_at = (SELECT max(cv.last_inbound_at) FROM conversations cv
                           WHERE cv.tenant_id = c.tenant_id AND cv.contact_id = c.id)
 WHERE c.id IN (SELECT old_id FROM api_contact_splits UNION SELECT new_id FROM api_contact_splits)
"""

#: Downgrade: every api contact sharing (tenant, external id) with an older one, and it.
FOLDS = """
CREATE TEMPORARY TABLE api_contact_folds ON COMMIT DROP AS
SELECT c.id AS old_id, c.tenant_id,
       first_value(c.id) OVER (PARTITION BY c.tenant_id, c.external_id
                               ORDER BY c.created_at, c.id) AS keep_id
  FROM contacts c
 WHERE c.channel = 'api'
"""

FOLD_STEPS = (
    "DELETE FROM api_contact_folds WHERE old_id = keep_id",
    """UPDATE conversations cv SET contact_id = f.keep_id FROM api_contact_folds f
        WHERE cv.tenant_id = f.tenant_id AND cv.contact_id = f.old_id""",
    """UPDATE messages m SET sender_id = f.keep_id FROM api_contact_folds f
        WHERE m.tenant_id = f.tenant_id AND m.sender_type = 'contact'
          AND m.sender_id = f.old_id""",
    """UPDATE campaign_recipients r SET contact_id = f.keep_id FROM api_contact_folds f
        WHERE r.contact_id = f.old_id AND NOT EXISTS (
              SELECT 1 FROM campaign_recipients k
               WHERE k.campaign_id = r.campaign_id AND k.contact_id = f.keep_id)""",
    "DELETE FROM contacts c USING api_contact_folds f WHERE c.id = f.old_id",
)


def upgrade() -> None:
    op.add_column("contacts", sa.Column("integration_account_id", sa.UUID(), nullable=True))
    op.execute(OWN_FIRST_CONVERSATIONS_ACCOUNT)
    op.execute(OWN_OLDEST_ACCOUNT)
    # The copies share the original's (tenant, channel, external id): the old key goes first.
    op.drop_index(OLD_KEY, table_name="contacts")
    for statement in (SPLITS, COPY_CONTACTS, MOVE_CONVERSATIONS, MOVE_SENDERS):
        op.execute(statement)
    op.execute(RECOUNT_LAST_INBOUND)
    op.execute("DROP TABLE api_contact_splits")
    op.create_index(
        NEW_KEY,
        "contacts",
        ["tenant_id", "channel", "integration_account_id", "external_id"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )


def downgrade() -> None:
    op.drop_index(NEW_KEY, table_name="contacts")
    op.execute(FOLDS)
    for statement in FOLD_STEPS:
        op.execute(statement)
    op.execute("DROP TABLE api_contact_folds")
    op.create_index(OLD_KEY, "contacts", ["tenant_id", "channel", "external_id"], unique=True)
    op.drop_column("contacts", "integration_account_id")
