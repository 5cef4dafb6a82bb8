"""Which committed transactions wrote which watched tables, and for which tenants.

Why: per-process caches (:mod:`shared.epoch_cache`) must forget what a committed
change made stale, in this process and in every other. This module tells them,
after each commit, what was written to the tables they watch.

Detection sits on the engine, not on sessions, so every statement run through
SQLAlchemy is seen whoever built it: ORM flushes, ``session.execute`` of ORM or Core
DML, ``connection.execute`` on a session's or the engine's connection, and
``exec_driver_sql`` / ``text()`` SQL. Not seen: SQL run on a raw driver cursor
(``shared.db.fetch_rows``, which only reads; the demo's bulk ``COPY``), DML nested in
a CTE of a ``SELECT``, and other programs' SQL: the caches' TTL bounds those.

What a write is attributed to (:class:`Write`):

- an ORM flush: each flushed instance's tenant (``tenant_id``; a tenant's own ``id``)
  and the attributes that changed. The flush's statements themselves are not
  inspected one by one (an ``UPDATE ... WHERE id = ...`` does not name its tenant).
- a Core ``INSERT``: the ``tenant_id`` of every row;
- a Core ``UPDATE`` / ``DELETE``: a top-level ``tenant_id = value`` condition;
- anything else (SQL text, an ``UPDATE`` without that condition): any tenant
  (``tenant_id=None``), which subscribers treat as touching every tenant.

When writes are reported: once their transaction has committed, before its
connection goes back to the pool (inside ``session.commit()`` for a session); on an
autocommit connection, right after the statement. A rolled-back transaction reports
nothing; writes of a rolled-back savepoint are reported anyway (harmless: a cache
forgets a little more than it had to).
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, event, inspect
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool
from sqlalchemy.sql import operators
from sqlalchemy.sql.dml import Delete, Insert, Update, UpdateBase
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, BooleanClauseList, TextClause

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Write:
    """A committed write to ``table``: of ``tenant_id`` (None: unknown, so any tenant),
    to ``columns`` (ORM attribute names; None: unknown, so any column)."""

    table: str
    tenant_id: uuid.UUID | None
    columns: frozenset[str] | None = None


#: ``Connection.info`` keys (the pooled DBAPI connection's, so only one thread sees them).
_PENDING = "omnistream.writes.pending"
_COMMITTED = "omnistream.writes.committed"
_FLUSHING = "omnistream.writes.flushing"

#: An execution option of an ``UPDATE`` (Core or SQL text) that only writes some columns:
#: ``{table: column names}``. Its writes then name those columns, so a cache that ignores
#: them keeps its entries (the webhook engine's endpoint health stamps, on every delivery).
COLUMNS = "omnistream_written_columns"

_tables: set[str] = set()
_subscribers: list[Callable[[list[Write]], None]] = []
_text_write: re.Pattern[str] | None = None


def watch(tables: Iterable[str], callback: Callable[[list[Write]], None]) -> None:
    """Call ``callback`` after each commit that wrote one of ``tables`` (at import time)."""
    global _text_write
    _tables.update(tables)
    if callback not in _subscribers:
        _subscribers.append(callback)
    names = "|".join(sorted(map(re.escape, _tables)))
    _text_write = re.compile(
        rf"\b(?:insert\s+into|update|delete\s+from|truncate(?:\s+table)?|merge\s+into|copy)"
        rf"\s+(?:only\s+)?(?:\"?\w+\"?\.)?\"?({names})\b",
        re.IGNORECASE,
    )
    _sql_writes.cache_clear()


def _report(writes: list[Write]) -> None:
    for callback in _subscribers:
        try:
            callback(writes)
        except Exception:  # the commit happened: never fail the caller for a cache
            log.exception("a committed-writes subscriber failed")


def _is_autocommit(conn: Connection) -> bool:
    return bool(getattr(conn.connection.dbapi_connection, "autocommit", False))


def _add(conn: Connection, writes: list[Write]) -> None:
    """Keep ``writes`` until their transaction's end (report them now on autocommit)."""
    if not writes:
        return
    if _is_autocommit(conn):
        _report(writes)
    else:
        conn.info.setdefault(_PENDING, []).extend(writes)


def report_committed(conn: Connection) -> None:
    """Report what ``conn``'s last commit wrote now, on a connection kept after its commit
    (``shared.db.RequestWriteSession``; the pool's check-in does it otherwise)."""
    _flush_committed(conn.info)


def _flush_committed(info: dict) -> None:
    committed = info.pop(_COMMITTED, None)
    if committed:
        _report(committed)


# --- what a statement writes -----------------------------------------------------------------


def _as_tenant(value: Any) -> uuid.UUID | None:
    """A tenant id as the caches key it (a UUID), or None when it is not one."""
    if isinstance(value, uuid.UUID) or value is None:
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _param_sets(multiparams: Any, params: Any) -> list[dict]:
    sets = [p for p in (multiparams or ()) if isinstance(p, dict)]
    if isinstance(params, dict) and params:
        sets.append(params)
    return sets


def _inserted_tenants(statement: Insert, param_sets: list[dict]) -> set | None:
    """Every inserted row's tenant, or None when one of them cannot be told."""
    if param_sets:
        values = [p.get("tenant_id") for p in param_sets]
    else:
        compiled = statement.compile().params
        values = [v for k, v in compiled.items() if re.fullmatch(r"tenant_id(_m\d+)?", k)]
    tenants = {_as_tenant(v) for v in values}
    return None if not tenants or None in tenants else tenants


def _where_tenant(statement: Update | Delete, param_sets: list[dict]) -> set | None:
    """The tenant a top-level ``tenant_id = value`` condition pins, or None."""
    where = statement.whereclause
    terms = where.clauses if isinstance(where, BooleanClauseList) else [where]
    if isinstance(where, BooleanClauseList) and where.operator is not operators.and_:
        return None
    for term in terms:
        if not (isinstance(term, BinaryExpression) and term.operator is operators.eq):
            continue
        column, value = term.left, term.right
        if getattr(column, "name", None) != "tenant_id" or not isinstance(value, BindParameter):
            continue
        if getattr(getattr(column, "table", None), "name", None) != statement.table.name:
            continue
        if value.value is not None:
            return {_as_tenant(value.value)} - {None} or None
        tenants = {_as_tenant(p.get(value.key)) for p in param_sets}
        return None if not tenants or None in tenants else tenants
    return None


def _statement_writes(statement: Any, multiparams: Any, params: Any) -> list[Write]:
    if isinstance(statement, UpdateBase):
        table = getattr(getattr(statement, "table", None), "name", None)
        if table not in _tables:
            return []
        param_sets = _param_sets(multiparams, params)
        tenants = None
        if isinstance(statement, Insert):
            tenants = _inserted_tenants(statement, param_sets)
        elif isinstance(statement, (Update, Delete)):
            tenants = _where_tenant(statement, param_sets)
        return _with_columns(statement, [Write(table, tenant) for tenant in (tenants or (None,))])
    if isinstance(statement, TextClause):
        return _with_columns(statement, _sql_writes(statement.text))
    return []


def _with_columns(statement: Any, writes: list[Write]) -> list[Write]:
    """``writes`` narrowed to the columns the statement says it writes (:data:`COLUMNS`)."""
    named = statement.get_execution_options().get(COLUMNS) if writes else None
    if not named:
        return writes
    return [
        Write(w.table, w.tenant_id, frozenset(named[w.table])) if w.table in named else w
        for w in writes
    ]


@functools.lru_cache(maxsize=512)
def _sql_writes(sql: str) -> list[Write]:
    """Writes SQL text makes to watched tables (any tenant); cached: texts are templates."""
    if _text_write is None:
        return []
    return [Write(table.lower(), None) for table in sorted(set(_text_write.findall(sql)))]


def writes_watched(sql: str) -> bool:
    """Whether SQL text writes a table some cache watches (:func:`shared.db.write_rows`)."""
    return bool(_sql_writes(sql))


def _keep(conn: Connection, writes: list[Write]) -> None:
    info = conn.info
    flushing = info.get(_FLUSHING)
    if flushing is not None:  # the flush reports its instances (see _after_flush)
        flushing.update(write.table for write in writes)
        return
    info.setdefault(_PENDING, []).extend(writes)


@event.listens_for(Engine, "before_execute")
def _before_execute(conn, statement, multiparams, params, execution_options) -> None:
    if _tables and (writes := _statement_writes(statement, multiparams, params)):
        _keep(conn, writes)


@event.listens_for(Engine, "before_cursor_execute")
def _before_cursor_execute(conn, cursor, statement, parameters, context, executemany) -> None:
    info = conn.info
    if _COMMITTED in info:  # a committed transaction on a connection kept after its commit
        _flush_committed(info)
    # NOTE: exec_driver_sql() skips before_execute; its SQL is only seen here, uncompiled.
    if context is not None and context.compiled is None and (writes := _sql_writes(statement)):
        _keep(conn, writes)


@event.listens_for(Engine, "after_cursor_execute")
def _after_cursor_execute(conn, cursor, statement, parameters, context, executemany) -> None:
    info = conn.info
    if _PENDING in info and _is_autocommit(conn):
        _report(info.pop(_PENDING))


# --- transaction ends ------------------------------------------------------------------------


@event.listens_for(Engine, "commit")
def _on_commit(conn) -> None:
    # NOTE: fired just before the COMMIT: the writes are reported once the connection is
    # used again or returned to the pool, both after the COMMIT succeeded.
    pending = conn.info.pop(_PENDING, None)
    if pending:
        conn.info.setdefault(_COMMITTED, []).extend(pending)


@event.listens_for(Engine, "rollback")
def _on_rollback(conn) -> None:
    if conn.invalidated:  # its DBAPI connection is gone, and what it held with it
        return
    conn.info.pop(_PENDING, None)
    conn.info.pop(_FLUSHING, None)


@event.listens_for(Engine, "rollback_savepoint")
def _on_rollback_savepoint(conn, name, context) -> None:
    if not conn.invalidated:
        conn.info.pop(_FLUSHING, None)


@event.listens_for(Pool, "checkin")
def _on_checkin(dbapi_connection, record) -> None:
    record.info.pop(_PENDING, None)  # not committed: the pool rolls it back
    record.info.pop(_FLUSHING, None)
    _flush_committed(record.info)


# --- ORM flushes -----------------------------------------------------------------------------


def _table_of(instance: Any) -> str | None:
    table = getattr(type(instance), "__table__", None)
    name = getattr(table, "name", None)
    return name if name in _tables else None


def _tenant_of(instance: Any, table: str) -> uuid.UUID | None:
    return _as_tenant(instance.id if table == "tenants" else getattr(instance, "tenant_id", None))


def _flushed_writes(session: Session) -> list[Write]:
    writes = []
    for instance in (*session.new, *session.deleted):
        if table := _table_of(instance):
            writes.append(Write(table, _tenant_of(instance, table)))
    for instance in session.dirty:
        if table := _table_of(instance):
            changed = frozenset(
                attr.key for attr in inspect(instance).attrs if attr.history.has_changes()
            )
            if changed:
                writes.append(Write(table, _tenant_of(instance, table), changed))
    return writes


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    if not _tables:
        return
    if any(_table_of(i) for i in (*session.new, *session.deleted, *session.dirty)):
        session.connection().info[_FLUSHING] = set()


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context: Any) -> None:
    # NOTE: new / dirty / deleted still hold the flushed instances here (pre-flush state).
    writes = _flushed_writes(session) if _tables else []
    conn = session.connection()
    # A watched table the flush wrote without an instance of it pending (a relationship's
    # own UPDATE): its tenant is unknown.
    seen = conn.info.pop(_FLUSHING, None) or set()
    writes += [Write(table, None) for table in seen - {write.table for write in writes}]
    _add(conn, writes)
