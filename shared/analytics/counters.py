"""Deltas to the rollup tables, summed per key in memory and written in one statement each.

PERF: a batch of events touches few keys (a tenant's day, its channels), so summing
first turns hundreds of events into a handful of multi-row upserts. Rows are written
in key order, so two writers never wait on each other in opposite orders.
"""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Table, TextClause, text
from sqlalchemy.orm import Session

from shared.models import (
    AnalyticsConversationCount,
    AnalyticsCsatDaily,
    AnalyticsDaily,
    AnalyticsHourly,
)

#: table -> (key columns after tenant_id, counter columns)
SHAPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "counts": (("channel", "assignee_key", "status"), ("count",)),
    "daily": (
        ("day", "channel"),
        ("conversations", "contacts", "inbound_messages", "outbound_messages"),
    ),
    "hourly": (("day", "hour"), ("conversations", "inbound_messages", "outbound_messages")),
    "csat": (
        ("day", "agent_key"),
        ("surveys", "rated", "rating_sum", *(f"rating_{n}" for n in range(1, 6))),
    ),
}
TABLES: dict[str, Table] = {
    "counts": AnalyticsConversationCount.__table__,
    "daily": AnalyticsDaily.__table__,
    "hourly": AnalyticsHourly.__table__,
    "csat": AnalyticsCsatDaily.__table__,
}


class Deltas:
    """Per rollup table: key tuple -> counter -> change."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[tuple, dict[str, int]]] = {
            name: defaultdict(lambda: defaultdict(int)) for name in SHAPES
        }

    def add(self, table: str, key: tuple, counter: str, amount: int = 1) -> None:
        self.tables[table][key][counter] += amount

    def write(self, session: Session, tenant_id: uuid.UUID) -> None:
        for name, changes in self.tables.items():
            rows = {key: c for key, c in changes.items() if any(c.values())}
            if rows:
                upsert(session, name, tenant_id, rows, mode="add")


@functools.cache
def _statement(name: str, mode: str) -> TextClause:
    """The upsert of one row of rollup ``name``, built once (run with executemany)."""
    keys, counters = SHAPES[name]
    table = TABLES[name].name
    columns = ("tenant_id", *keys, *counters)
    if mode == "add":
        assignments = ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in counters)
    else:
        assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in counters)
    return text(
        f"INSERT INTO {table} ({', '.join(columns)})"  # noqa: S608 (this module's constants)
        f" VALUES ({', '.join(':' + c for c in columns)})"
        f" ON CONFLICT (tenant_id, {', '.join(keys)}) DO UPDATE SET {assignments}"
    )


def upsert(
    session: Session,
    name: str,
    tenant_id: uuid.UUID,
    rows: Mapping[tuple, Mapping[str, int]],
    *,
    mode: str,
) -> None:
    """Write ``rows`` (key -> counters) into rollup ``name``: ``add`` to or ``set`` the counters.

    PERF: one prebuilt statement run as a pipelined executemany; a Core multi-row
    INSERT is compiled anew for every row count, which cost seconds for thousands.
    """
    keys, counters = SHAPES[name]
    values: list[dict[str, Any]] = [
        {"tenant_id": tenant_id, **dict(zip(keys, key, strict=True))}
        | {c: int(row.get(c, 0)) for c in counters}
        for key, row in sorted(rows.items(), key=lambda item: tuple(map(str, item[0])))
    ]
    session.execute(_statement(name, mode), values)


def key_columns(name: str) -> Iterable[str]:
    return SHAPES[name][0]
