"""Prebuilt statements run on the driver's cursor bind what SQLAlchemy would have bound.

``shared.db.fetch_rows`` and ``write_rows`` skip SQLAlchemy's execution: a reply's write,
every event, status and assignment changes run there, so their values must reach
PostgreSQL exactly as through ``session.execute``.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, bindparam, literal, select
from sqlalchemy.dialects.postgresql import JSONB

from shared import db

_ECHO = select(
    bindparam("document", type_=JSONB).label("document"),
    (bindparam("document", type_=JSONB).is_(None)).label("sql_null"),
    literal(None, Integer).label("given_none"),
)


def _both(params: dict) -> tuple[tuple, tuple]:
    with db.get_engine().connect() as connection:
        through_sqlalchemy = tuple(connection.execute(_ECHO, params).one())
        on_the_driver = tuple(db.fetch_rows(connection, _ECHO, params)[0])
    return through_sqlalchemy, on_the_driver


@pytest.mark.parametrize("document", [{"a": [1, "x"]}, [], None])
def test_json_values_and_statement_literals_bind_as_through_sqlalchemy(document):
    """A JSON value is serialized by its type (None as JSON null, as SQLAlchemy does), and
    a value written in the statement, None included, is bound without being passed."""
    through_sqlalchemy, on_the_driver = _both({"document": document})
    assert on_the_driver == through_sqlalchemy
    assert on_the_driver[0] == document and on_the_driver[2] is None


def test_a_list_expanded_per_execution_is_refused_on_the_driver():
    statement = select(literal(1)).where(literal("a").in_(["a", "b"]))
    with db.get_engine().connect() as connection, pytest.raises(ValueError, match="expanded"):
        db.fetch_rows(connection, statement, {})
