"""campaigns: campaigns, their per-recipient rows, and the contacts' opt-out

Revision ID: 0019_campaigns
Revises: 0018_csat
Create Date: 2026-12-04 15:50:00

``campaign_recipients`` holds one row per (campaign, contact), the unit that
``run_campaign`` claims, marks and links to the message it created; the counts are
read from it. ``contacts.opted_out_at`` is new: a contact who opted out is skipped.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019_campaigns"
down_revision: str | None = "0018_csat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CAMPAIGN_STATUSES = "'draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled', 'failed'"
RECIPIENT_STATUSES = (
    "'pending', 'queued', 'sent', 'delivered', 'read', 'failed', 'skipped', 'cancelled'"
)


def upgrade() -> None:
    op.add_column("contacts", sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "campaigns",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("integration_account_id", sa.UUID(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("template", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="draft", nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("step", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_batch_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("backoff_seconds", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claim_step", sa.Integer(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            f"status IN ({CAMPAIGN_STATUSES})", name=op.f("ck_campaigns_status_known")
        ),
        sa.CheckConstraint(
            "(body IS NULL) <> (template IS NULL)", name=op.f("ck_campaigns_body_or_template")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_campaigns_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["integration_account_id"],
            ["integration_accounts.id"],
            name=op.f("fk_campaigns_integration_account_id_integration_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_campaigns_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_index(
        "ix_campaigns_tenant_created", "campaigns", ["tenant_id", sa.text("created_at DESC"), "id"]
    )
    op.create_index(
        "ix_campaigns_scheduled_due",
        "campaigns",
        ["scheduled_at"],
        postgresql_where=sa.text("status = 'scheduled'"),
    )
    op.create_index(
        "ix_campaigns_running_next",
        "campaigns",
        ["next_batch_at"],
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_table(
        "campaign_recipients",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column(
            "variables",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("batch", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.UUID(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replied_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            f"status IN ({RECIPIENT_STATUSES})", name=op.f("ck_campaign_recipients_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_campaign_recipients_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_recipients_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_campaign_recipients_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_campaign_recipients_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_recipients")),
    )
    op.create_index(
        "uq_campaign_recipients_contact",
        "campaign_recipients",
        ["campaign_id", "contact_id"],
        unique=True,
    )
    op.create_index(
        "ix_campaign_recipients_status", "campaign_recipients", ["campaign_id", "status", "id"]
    )
    op.create_index("ix_campaign_recipients_batch", "campaign_recipients", ["campaign_id", "batch"])
    op.create_index(
        "ix_campaign_recipients_message",
        "campaign_recipients",
        ["message_id"],
        postgresql_where=sa.text("message_id IS NOT NULL"),
    )
    op.create_index(
        "ix_campaign_recipients_contact_sent",
        "campaign_recipients",
        ["tenant_id", "contact_id"],
        postgresql_where=sa.text("message_id IS NOT NULL AND replied_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_recipients_contact_sent", table_name="campaign_recipients")
    op.drop_index("ix_campaign_recipients_message", table_name="campaign_recipients")
    op.drop_index("ix_campaign_recipients_batch", table_name="campaign_recipients")
    op.drop_index("ix_campaign_recipients_status", table_name="campaign_recipients")
    op.drop_index("uq_campaign_recipients_contact", table_name="campaign_recipients")
    op.drop_table("campaign_recipients")
    op.drop_index("ix_campaigns_running_next", table_name="campaigns")
    op.drop_index("ix_campaigns_scheduled_due", table_name="campaigns")
    op.drop_index("ix_campaigns_tenant_created", table_name="campaigns")
    op.drop_table("campaigns")
    op.drop_column("contacts", "opted_out_at")
