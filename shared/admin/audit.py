"""The platform audit log: one row per super-admin call, whatever its outcome.

Why its own transaction: a refused or failed call must be on record too, and those roll
back the request's session. The row is written right after the call's own commit (or
rollback), so what it says happened has happened.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.models import PlatformAuditLog

log = logging.getLogger(__name__)

_INSERT = insert(PlatformAuditLog.__table__)


def record(
    session: Session,
    *,
    super_admin_id: uuid.UUID | None,
    action: str,
    method: str,
    path: str,
    status: int,
    tenant_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
    ip: str | None = None,
) -> None:
    """Append one audit row in the caller's transaction."""
    session.execute(
        _INSERT,
        {
            "id": uuid.uuid4(),
            "super_admin_id": super_admin_id,
            "action": action[:200],
            "method": method[:8],
            "path": path[:2048],
            "status": status,
            "tenant_id": tenant_id,
            "details": details,
            "request_id": request_id,
            "ip_address": ip,
        },
    )


def record_now(**fields: Any) -> None:
    """Append one audit row in a transaction of its own; log (never raise) if it fails.

    A super admin deleted while their call ran (its work committed) fails the row's
    foreign key: the row is written again as ``ON DELETE SET NULL`` leaves the others,
    with the id kept in ``details``, so the call is never missing from the log.
    """
    try:
        _write(fields)
    except IntegrityError:
        admin_id = fields.get("super_admin_id")
        if admin_id is None:
            log.exception("platform audit row could not be written: %s", fields)
            return
        details = {**(fields.get("details") or {}), "super_admin_id": str(admin_id)}
        record_now(**{**fields, "super_admin_id": None, "details": details})
    except Exception:
        log.exception("platform audit row could not be written: %s", fields)


def _write(fields: dict[str, Any]) -> None:
    with session_scope() as session:
        record(session, **fields)


def recent(session: Session, *, limit: int = 100) -> list[PlatformAuditLog]:
    """The newest audit rows (operators and tests read them)."""
    return list(
        session.scalars(
            select(PlatformAuditLog)
            .order_by(PlatformAuditLog.created_at.desc(), PlatformAuditLog.id.desc())
            .limit(limit)
        )
    )
