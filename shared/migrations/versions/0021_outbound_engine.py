"""outbound engine: a send's claim expires; a retry waits for its time

Revision ID: 0021_outbound_engine
Revises: 0020_admin
Create Date: 2026-12-04 15:45:00

``next_attempt_at``: a pending send may be claimed from then on. A worker's claim
sets it to the claim's expiry (so no other worker sends the message meanwhile, and
a killed worker's claim runs out); a transient failure or a throttled account sets
it to the retry time. Existing rows are claimable at once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_outbound_engine"
down_revision: str | None = "0020_admin"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "outbound_sends",
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("outbound_sends", "next_attempt_at")
