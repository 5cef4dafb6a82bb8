"""Many rows into one table by one short statement: ``INSERT ... SELECT ... FROM unnest(...)``.

PERF: SQLAlchemy writes a many-row insert either as a multi-row ``VALUES`` (one new SQL
text per batch size, thousands of placeholders that psycopg re-parses every time, too long
for its query cache, and that PostgreSQL plans again) or as a pipelined ``executemany``
(one executor run per row). A campaign's batch writes hundreds of rows into each of
messages, conversations, outbox events and activity rows: there the statement, not the
rows, was most of the cost. Here the columns travel as one JSON document of text arrays
(one parameter), each value cast back to its column's type by the database, and the SQL
text is the same for every batch (cached by psycopg, planned cheaply).

The rows are written as a Core insert would write them: a column's Python default (the
ids) filled in when a row leaves it out, ``None`` in a JSON column stored as JSON
``null`` unless the column says ``none_as_null``, server defaults applied by the database.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Table, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

_DIALECT = postgresql.dialect()


def insert_many(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    computed: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    on_conflict: str = "",
    returning: str = "",
) -> list[Row]:
    """Insert ``rows`` (dicts with the same keys) into ``table``; the ``RETURNING`` rows.

    ``computed``: column -> SQL expression evaluated per row (``clock_timestamp()``),
    which may name scalar ``params`` (``now() + :sweep_after``). ``on_conflict`` and
    ``returning`` are SQL fragments (``ON CONFLICT (id) DO NOTHING``, ``*``). The rows are
    inserted in order (their ``clock_timestamp()`` follows it); match the returned ones by key.
    """
    if not rows:
        return []
    computed = dict(computed or {})
    names = [*rows[0].keys()]
    defaults = [
        c
        for c in table.c
        if c.default is not None and c.name not in names and c.name not in computed
    ]
    columns: dict[str, list[str | None]] = {}
    for index, name in enumerate(names):
        convert = _converter(table, name)
        columns[f"a{index}"] = [convert(row[name]) for row in rows]
    for offset, column in enumerate(defaults, start=len(names)):
        columns[f"a{offset}"] = [str(column.default.arg(None)) for _ in rows]  # type: ignore[union-attr]
    statement = _statement(
        table,
        tuple(names + [c.name for c in defaults]),
        tuple(computed.items()),
        on_conflict,
        returning,
    )
    # PERF: one JSON document of text columns (json.dumps is C; psycopg's text[] dumper
    # escapes every element of a JSON column with a regular expression).
    result = session.execute(statement, {"columns": json.dumps(columns), **dict(params or {})})
    return list(result) if returning else []


@functools.lru_cache(maxsize=256)
def _statement(
    table: Table,
    names: tuple[str, ...],
    computed: tuple[tuple[str, str], ...],
    on_conflict: str,
    returning: str,
):
    quote = _DIALECT.identifier_preparer.quote
    columns = [quote(n) for n in names] + [quote(n) for n, _ in computed]
    values = [
        f"CAST(v.a{i} AS {table.c[n].type.compile(dialect=_DIALECT)})" for i, n in enumerate(names)
    ] + [expression for _, expression in computed]
    count = len(names)
    sources = ", ".join(f"jsonb_array_elements_text(d.j->'a{i}')" for i in range(count))
    aliases = ", ".join(f"a{i}" for i in range(count))
    # NOTE: names from the table's metadata and fragments from our own code, never input.
    sql = (
        f"WITH d AS (SELECT CAST(:columns AS jsonb) AS j)"  # noqa: S608
        f" INSERT INTO {quote(table.name)} ({', '.join(columns)})"
        f" SELECT {', '.join(values)}"
        f" FROM d, ROWS FROM ({sources}) WITH ORDINALITY AS v({aliases}, n) ORDER BY v.n"
        f" {on_conflict}"
    )
    if returning:
        sql += f" RETURNING {returning}"
    return text(sql)


def _converter(table: Table, name: str):
    column_type = table.c[name].type
    if isinstance(column_type, JSON):
        if getattr(column_type, "none_as_null", False):
            return lambda value: None if value is None else json.dumps(value)
        return json.dumps
    return _scalar


def _scalar(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds()} seconds"
    if isinstance(value, list | tuple | dict):
        raise TypeError("insert_many: only JSON columns take lists and dicts")
    return str(value)


__all__ = ["insert_many"]
