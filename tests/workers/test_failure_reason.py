"""How a job's failure reads on the row it leaves (automation events, inbound items)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DataError

from shared.db import failure_reason, session_scope


def test_a_refused_statement_reads_as_the_database_reason_not_the_sql():
    with pytest.raises(DataError) as refused, session_scope() as session:
        session.execute(text("SELECT CAST(:id AS uuid)"), {"id": "not-an-id"})
    reason = failure_reason(refused.value)
    assert reason.startswith('DataError: invalid input syntax for type uuid: "not-an-id"')
    assert "SELECT" not in reason and "[SQL:" not in reason


def test_any_other_error_reads_as_its_type_and_message():
    assert failure_reason(TypeError("'int' object is not iterable")) == (
        "TypeError: 'int' object is not iterable"
    )
