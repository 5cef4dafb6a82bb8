"""contact tags normalised as conversation tags are

Contact tags were only trimmed and lower-cased, while conversation tags, and every tag
filter (campaign recipients, contact lists, automation), also collapse runs of spaces.
A contact tagged "VIP  Gold" was stored as "vip  gold" and never matched "vip gold".
The API now normalises contact tags with the same rule; this rewrites the rows written
before: whitespace trimmed and collapsed to one space, lower-cased, duplicates dropped
(first kept), empty tags dropped. Tags holding characters the rule now refuses are kept
as they are: dropping a customer's data silently is worse than a tag no filter can name.

Only rows whose tags change are written. The downgrade keeps the normalised tags (the
originals are not kept anywhere): nothing to undo.

Revision ID: 0029_contact_tags_normalised
Revises: 0028_retrieval_indexes
Create Date: 2026-12-06 16:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0029_contact_tags_normalised"
down_revision: str | None = "0028_retrieval_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: normalize_tag's rule in SQL: whitespace trimmed, runs of it one space, lower case.
_NORMALISED = r"lower(regexp_replace(regexp_replace(raw, '^\s+|\s+$', '', 'g'), '\s+', ' ', 'g'))"

UPGRADE = f"""
WITH fixed AS (
    SELECT c.id,
           coalesce(array_agg(n.tag ORDER BY n.first) FILTER (WHERE n.tag IS NOT NULL),
                    '{{}}')::varchar(64)[] AS tags
      FROM contacts c
      CROSS JOIN LATERAL (
            SELECT t.tag, min(t.pos) AS first
              FROM (SELECT {_NORMALISED} AS tag, u.pos
                      FROM unnest(c.tags) WITH ORDINALITY AS u(raw, pos)) t
             WHERE t.tag <> ''
             GROUP BY t.tag
      ) n
     WHERE EXISTS (SELECT 1 FROM unnest(c.tags) AS raw WHERE raw <> {_NORMALISED})
     GROUP BY c.id
)
UPDATE contacts c SET tags = fixed.tags FROM fixed WHERE c.id = fixed.id
"""  # noqa: S608 (constants only)


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    """The original spellings are gone; normalised tags are valid before this revision too."""
