"""Small SQL helpers every domain's queries share."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.errors import NotFound

T = TypeVar("T", bound=Any)


def contains_pattern(text: str) -> str:
    """An ILIKE pattern matching ``text`` anywhere, with its own ``\\``, ``%`` and ``_`` literal.

    APPSEC: without escaping, a search for ``%`` would match everything and a
    pattern of many wildcards could be made expensive on purpose.
    """
    escaped = text.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
    return f"%{escaped}%"


def storable_text(text: str) -> str:
    """``text`` as PostgreSQL can store it: NUL, which text and jsonb refuse, becomes U+FFFD.

    For text that comes from outside (an email's headers, a receiver's answer): storing
    it must not fail, or the whole row (and what it records) is lost.
    """
    return text.replace("\x00", "\ufffd")


def lock_key(session: Session, key: str, *, shared: bool = False) -> None:
    """Take the transaction-scoped advisory lock named ``key`` (freed at commit or rollback);
    ``shared``: alongside other shared holders, waiting only for an exclusive one.

    How a cap holds under concurrency: two creates that count, then insert, both pass the
    count unless each takes the same lock before counting. An advisory lock, not a row
    lock, so the rows the cap is about (an agent, a tenant) stay free for their other
    writers.
    """
    take = func.pg_advisory_xact_lock_shared if shared else func.pg_advisory_xact_lock
    session.execute(select(take(func.hashtextextended(key, 0))))


def count_under_lock(session: Session, key: str, counted: Select[Any]) -> int:
    """``counted`` (a ``SELECT count(*)``) after :func:`lock_key`: what a cap is checked on."""
    lock_key(session, key)
    return session.scalar(counted) or 0


def flush_unique(session: Session, index: str | tuple[str, ...], conflict: Exception) -> None:
    """Flush in a savepoint; a violation of the unique ``index`` (one of them, for a
    tuple) raises ``conflict``, the 409 naming the field, instead of the net's bare one.

    WHY: a check read before the insert cannot see a row another transaction inserted
    and has not committed yet; the unique index decides then. The savepoint keeps the
    caller's transaction usable (a retry with another value, as a free slug does).
    """
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        names = (index,) if isinstance(index, str) else index
        if getattr(exc.orig.diag, "constraint_name", None) in names:
            raise conflict from exc
        raise


def tenant_row(
    session: Session,
    model: type[T],
    tenant_id: uuid.UUID,
    row_id: uuid.UUID,
    *where: ColumnElement[bool],
    missing: str,
    lock: bool = False,
) -> T:
    """One tenant's ``model`` row by id (and ``where``), locked ``FOR UPDATE`` with ``lock``.

    Raises 404 ``missing`` when there is none: another tenant's row is absent alike,
    so an id never tells a caller that it exists elsewhere.

    Example::

        rule = tenant_row(session, AiHandoffRule, ctx.tenant_id, rule_id,
                          AiHandoffRule.ai_agent_id == agent_id,
                          missing="Handoff rule not found", lock=True)
    """
    query = select(model).where(model.tenant_id == tenant_id, model.id == row_id, *where)
    if lock:
        # NOTE: populate_existing: a row this session loaded before the lock keeps its
        # old values in the identity map otherwise; the lock is taken to act on the
        # row as it is now, which another transaction may have changed since.
        query = query.with_for_update().execution_options(populate_existing=True)
    row = session.scalars(query).one_or_none()
    if row is None:
        raise NotFound(missing)
    return row
