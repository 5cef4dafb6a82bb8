"""retrieval indexes: every knowledge lookup walks one agent's entries only

Retrieval corrects a misspelt question word against the agent's lexicon
(``knowledge_terms``). The GiST trigram index on ``term`` alone found the nearest word
across every agent of every tenant and filtered by agent afterwards: about a millisecond
and a hundred pages a word on one agent's 12,000 words, and worse with every tenant
added. A GIN trigram index with the agent in front (btree_gin) finds the words sharing
enough trigrams in that agent's lexicon only, and the closest is picked among those
few: a tenth of a millisecond a word.

QnA pairs and products were matched through GIN indexes on ``search`` / ``question``
alone, so one agent's query read every tenant's postings (or the planner scanned the
table): the agent goes in front of those too, as ``knowledge_chunks`` has had since
0013. Nothing is rewritten; the indexes are rebuilt from the rows.

Revision ID: 0028_retrieval_indexes
Revises: 0027_automation_run_outcomes
Create Date: 2026-12-05 03:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0028_retrieval_indexes"
down_revision: str | None = "0027_automation_run_outcomes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_TRGM_TERM = {"term": "gin_trgm_ops"}
_TRGM_QUESTION = {"question": "gin_trgm_ops"}
#: NOTE: no pending list for the lexicon's index: ingestion adds words a few hundred at a
#: time, and every correction would otherwise scan the whole unmerged list (up to 4 MB,
#: until a vacuum): 90 ms a question instead of 1 in the bench's freshly built lexicon.
_DIRECT = {"fastupdate": "off"}

#: Per table: the index before (name, columns, method, operator classes, storage
#: parameters) and after.
INDEXES = (
    (
        "knowledge_terms",
        ("ix_knowledge_terms_trigram", ["term"], "gist", {"term": "gist_trgm_ops"}, {}),
        (
            "ix_knowledge_terms_agent_trigram",
            ["ai_agent_id", "term"],
            "gin",
            _TRGM_TERM,
            _DIRECT,
        ),
    ),
    (
        "qna_pairs",
        ("ix_qna_pairs_search", ["search"], "gin", {}, {}),
        ("ix_qna_pairs_search", ["ai_agent_id", "search"], "gin", {}, {}),
    ),
    (
        "qna_pairs",
        ("ix_qna_pairs_trigram", ["question"], "gin", _TRGM_QUESTION, {}),
        ("ix_qna_pairs_trigram", ["ai_agent_id", "question"], "gin", _TRGM_QUESTION, {}),
    ),
    (
        "ai_products",
        ("ix_ai_products_search", ["search"], "gin", {}, {}),
        ("ix_ai_products_search", ["ai_agent_id", "search"], "gin", {}, {}),
    ),
)


def _swap(table: str, old: tuple, new: tuple) -> None:
    op.drop_index(old[0], table_name=table)
    name, columns, using, ops, options = new
    op.create_index(
        name, table, columns, postgresql_using=using, postgresql_ops=ops, postgresql_with=options
    )


def upgrade() -> None:
    for table, before, after in INDEXES:
        _swap(table, before, after)


def downgrade() -> None:
    for table, before, after in reversed(INDEXES):
        _swap(table, after, before)
