"""the jobs re-drive reads running jobs too

A bulk job whose worker died and whose broker message was lost with it (a Redis restart
without persistence) stayed ``running`` for good: the scheduler only re-drove jobs still
``queued``. Running bulk jobs now stamp ``enqueued_at`` as they progress, and the re-drive
reads unfinished jobs idle past its delay; its partial index covers both statuses.

Revision ID: 0030_jobs_unfinished_index
Revises: 0029_contact_tags_normalised
Create Date: 2026-12-06 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030_jobs_unfinished_index"
down_revision: str | None = "0029_contact_tags_normalised"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_jobs_unfinished_enqueued",
        "jobs",
        ["enqueued_at"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.drop_index("ix_jobs_queued_enqueued", table_name="jobs")


def downgrade() -> None:
    op.create_index(
        "ix_jobs_queued_enqueued",
        "jobs",
        ["enqueued_at"],
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.drop_index("ix_jobs_unfinished_enqueued", table_name="jobs")
