"""api channel: integrations and accounts of channel ``api``

The API channel needs no table of its own: its accounts are integration accounts
(``settings.callback_url``, the ``signing_secret`` credential), its contacts,
conversations and messages are the inbox's rows. Only the channel CHECKs learn ``api``.

Downgrade deletes what only the api channel can hold, so the old CHECKs (and the old
code's channel lists) hold again: the api integrations (their accounts cascade) and the
api contacts (their conversations and messages cascade).

Revision ID: 0007_api_channel
Revises: 0006_automation
Create Date: 2026-12-04 05:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_api_channel"
down_revision: str | None = "0006_automation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Tables whose ``channel`` column is checked against the known channels.
_TABLES = ("integrations", "integration_accounts")
_BEFORE = "channel IN ('whatsapp', 'instagram', 'messenger', 'email')"
_AFTER = "channel IN ('whatsapp', 'instagram', 'messenger', 'email', 'api')"


def _replace_checks(condition: str) -> None:
    for table in _TABLES:
        name = op.f(f"ck_{table}_channel_known")
        op.drop_constraint(name, table, type_="check")
        op.create_check_constraint(name, table, condition)


def upgrade() -> None:
    _replace_checks(_AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM contacts WHERE channel = 'api'")
    op.execute("DELETE FROM integrations WHERE channel = 'api'")
    _replace_checks(_BEFORE)
