"""channels: integrations, integration accounts, raw inbound events and media files

Messages need no new index: email threading uses provider_message_id (the Message-ID
header), served by uq_messages_provider_id (tenant_id, provider_message_id).

Revision ID: 0004_channels
Revises: 0003_webhooks
Create Date: 2026-11-26 16:12:55.875402
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_channels"
down_revision: str | None = "0003_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "integrations",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default="true", nullable=False),
        sa.Column(
            "settings", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("credentials_encrypted", sa.Text(), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "channel IN ('whatsapp', 'instagram', 'messenger', 'email')",
            name=op.f("ck_integrations_channel_known"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_integrations_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integrations")),
    )
    op.create_index(
        "uq_integrations_tenant_channel", "integrations", ["tenant_id", "channel"], unique=True
    )
    op.create_table(
        "integration_accounts",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("integration_id", sa.UUID(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column(
            "settings", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("credentials_encrypted", sa.Text(), nullable=True),
        sa.Column("is_default", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("verify_token_digest", sa.String(length=64), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "channel IN ('whatsapp', 'instagram', 'messenger', 'email')",
            name=op.f("ck_integration_accounts_channel_known"),
        ),
        sa.CheckConstraint(
            "status IN ('active', 'disabled', 'error')",
            name=op.f("ck_integration_accounts_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["integration_id"],
            ["integrations.id"],
            name=op.f("fk_integration_accounts_integration_id_integrations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_integration_accounts_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integration_accounts")),
    )
    op.create_index(
        "ix_integration_accounts_tenant_channel",
        "integration_accounts",
        ["tenant_id", "channel", "created_at"],
        unique=False,
    )
    op.create_index(
        "uq_integration_accounts_channel_external",
        "integration_accounts",
        ["channel", "external_id"],
        unique=True,
    )
    op.create_index(
        "uq_integration_accounts_default",
        "integration_accounts",
        ["tenant_id", "channel"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.create_index(
        "ix_integration_accounts_verify_token_digest",
        "integration_accounts",
        ["verify_token_digest"],
        unique=False,
    )
    op.create_table(
        "inbound_events",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("provider_event_id", sa.String(length=512), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=True),
        sa.Column("account_id", sa.UUID(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "headers", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "sweep_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'processed', 'failed', 'dropped')",
            name=op.f("ck_inbound_events_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_inbound_events_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_events")),
    )
    op.create_index(
        "ix_inbound_events_pending",
        "inbound_events",
        ["sweep_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_inbound_events_tenant_received",
        "inbound_events",
        ["tenant_id", "received_at"],
        unique=False,
    )
    op.create_index(
        "uq_inbound_events_channel_provider_event",
        "inbound_events",
        ["channel", "provider_event_id"],
        unique=True,
    )
    op.create_table(
        "media_files",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("account_id", sa.UUID(), nullable=True),
        sa.Column("provider_media_id", sa.Text(), nullable=True),
        sa.Column("storage_backend", sa.String(length=8), nullable=True),
        sa.Column("storage_key", sa.String(length=1024), nullable=True),
        sa.Column("mime_type", sa.String(length=255), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.CheckConstraint(
            "source IN ('upload', 'inbound')", name=op.f("ck_media_files_source_known")
        ),
        sa.CheckConstraint(
            "storage_backend IS NULL OR storage_backend IN ('local', 's3')",
            name=op.f("ck_media_files_backend_known"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["integration_accounts.id"],
            name=op.f("fk_media_files_account_id_integration_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_media_files_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_media_files_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_files")),
    )
    op.create_index(
        "ix_media_files_provider",
        "media_files",
        ["tenant_id", "channel", "provider_media_id"],
        unique=False,
        postgresql_where=sa.text("provider_media_id IS NOT NULL"),
    )
    op.create_index(
        "ix_media_files_tenant_created", "media_files", ["tenant_id", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_media_files_tenant_created", table_name="media_files")
    op.drop_index(
        "ix_media_files_provider",
        table_name="media_files",
        postgresql_where=sa.text("provider_media_id IS NOT NULL"),
    )
    op.drop_table("media_files")
    op.drop_index("uq_inbound_events_channel_provider_event", table_name="inbound_events")
    op.drop_index("ix_inbound_events_tenant_received", table_name="inbound_events")
    op.drop_index(
        "ix_inbound_events_pending",
        table_name="inbound_events",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("inbound_events")
    op.drop_index(
        "uq_integration_accounts_default",
        table_name="integration_accounts",
        postgresql_where=sa.text("is_default"),
    )
    op.drop_index("uq_integration_accounts_channel_external", table_name="integration_accounts")
    op.drop_index("ix_integration_accounts_tenant_channel", table_name="integration_accounts")
    op.drop_table("integration_accounts")
    op.drop_index("uq_integrations_tenant_channel", table_name="integrations")
    op.drop_table("integrations")
