"""Dead letters: messages that failed for good, kept in Postgres until an operator acts.

Dramatiq also keeps a failed message in its own dead-letter queue (``{queue}.XQ``),
but only for a week and out of sight; the ``dead_letters`` row is what lists,
counts and alerts read. :class:`workers.dead_letters.DeadLetters` writes it.

Example::

    with session_scope() as session:
        record_dead_letter(session, message_id="...", queue_name="events",
                           actor_name="dispatch_event", args=["..."], kwargs={},
                           options={"tenant_id": "..."}, retries=8, error="Traceback ...")
"""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, select, true, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.errors import Conflict, NotFound
from shared.models import DeadLetter
from shared.ops.resend import Resend, Sender, clean_options
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.worker_metrics import tenant_id_from_options

#: Longest error text kept; the tail is kept, because a traceback ends with the exception.
MAX_ERROR_CHARS = 16_000

#: Message options not copied into the row (the traceback is in ``error``).
_DROPPED_OPTIONS = frozenset({"traceback"})

#: The option a row carries when its arguments held NUL characters, stored escaped.
NUL_ESCAPED_OPTION = "omnistream_nul_escaped"

#: Actors whose dead letters stay the platform operator's, whatever tenant they concern.
#: WHY: billing is the platform's work on a tenant's account: a tenant's admin must not
#: delete or requeue a failed (or, while suspended, dropped) charge from its console.
PLATFORM_ACTORS = frozenset({"charge_invoice", "refund_invoice"})


def listed_for(actor_name: str, tenant_id: uuid.UUID | None) -> uuid.UUID | None:
    """The tenant whose console lists a dead letter of ``actor_name`` (None: the platform's)."""
    return None if actor_name in PLATFORM_ACTORS else tenant_id


def _without_nul(value: Any) -> Any:
    """``value`` with every NUL character written ``\\x00``, in strings and JSON keys.

    WHY: PostgreSQL's text and jsonb cannot hold NUL; a failure whose message or
    arguments named one (a parse error quoting a payload) made the insert fail and the
    dead letter was lost, logged but never listed.
    """
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, Mapping):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_without_nul(item) for item in value)
    return value


def record_dead_letter(
    session: Session,
    *,
    message_id: str,
    queue_name: str,
    actor_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    options: Mapping[str, Any],
    retries: int,
    error: str | None,
    tenant_id: uuid.UUID | None = None,
) -> bool:
    """Insert the dead letter of a message, in the caller's transaction; return whether written.

    ``tenant_id`` defaults to the message's ``tenant_id`` option. Recording the
    same message twice (Dramatiq delivers at least once) is a no-op, unless the
    earlier row was requeued: a message that dies again after an operator
    requeued it is shown again, with its new error.
    """
    if error is not None and len(error) > MAX_ERROR_CHARS:
        error = "...\n" + error[-MAX_ERROR_CHARS:]
    message = {
        "args": list(args),
        "kwargs": dict(kwargs),
        "options": {k: v for k, v in options.items() if k not in _DROPPED_OPTIONS},
    }
    escaped = _without_nul(message)
    if escaped != message:
        escaped["options"][NUL_ESCAPED_OPTION] = True
    values = {
        "message_id": message_id[:64],
        "queue_name": queue_name[:128],
        "actor_name": actor_name[:128],
        **escaped,
        "tenant_id": tenant_id or tenant_id_from_options(options),
        "retries": retries,
        "error": _without_nul(error),
    }
    stmt = insert(DeadLetter).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[DeadLetter.message_id],
        set_={
            "retries": stmt.excluded.retries,
            "error": stmt.excluded.error,
            "options": stmt.excluded.options,
            "failed_at": func.now(),
            "requeued_at": None,
        },
        where=DeadLetter.requeued_at.is_not(None),
    ).returning(DeadLetter.id)
    return session.execute(stmt).scalar_one_or_none() is not None


def _filtered(statement, tenant_id: uuid.UUID | None, include_requeued: bool):
    if tenant_id is not None:
        statement = statement.where(DeadLetter.tenant_id == tenant_id)
    if not include_requeued:
        statement = statement.where(DeadLetter.requeued_at.is_(None))
    return statement


def list_dead_letters(
    session: Session,
    *,
    tenant_id: uuid.UUID | None = None,
    limit: int = 50,
    before: tuple[dt.datetime, uuid.UUID] | None = None,
    include_requeued: bool = False,
) -> list[DeadLetter]:
    """Return dead letters, newest first: one tenant's, or with ``tenant_id=None`` everyone's.

    ``before`` is the keyset cursor ``(failed_at, id)`` of the last row of the
    previous page. Requeued rows are left out unless ``include_requeued``.
    """
    statement = _filtered(select(DeadLetter), tenant_id, include_requeued)
    if before is not None:
        statement = statement.where(tuple_(DeadLetter.failed_at, DeadLetter.id) < tuple_(*before))
    statement = statement.order_by(DeadLetter.failed_at.desc(), DeadLetter.id.desc()).limit(limit)
    return list(session.scalars(statement))


def page_dead_letters(
    session: Session,
    *,
    tenant_id: uuid.UUID | None = None,
    limit: int = 50,
    cursor: str | None = None,
    include_requeued: bool = False,
) -> Page[DeadLetter]:
    """One page of :func:`list_dead_letters`, newest first; ``next_cursor`` continues it
    (None on the last page). A malformed cursor is a 400."""
    rows = list_dead_letters(
        session,
        tenant_id=tenant_id,
        limit=limit + 1,
        before=decode_cursor(cursor) if cursor else None,
        include_requeued=include_requeued,
    )
    if len(rows) <= limit:
        return Page(rows, None)
    last = rows[limit - 1]
    return Page(rows[:limit], encode_cursor(last.failed_at, last.id))


def count_dead_letters(
    session: Session, *, tenant_id: uuid.UUID | None = None, include_requeued: bool = False
) -> int:
    """Count dead letters (of one tenant, or all); requeued rows only with ``include_requeued``."""
    statement = _filtered(select(func.count()).select_from(DeadLetter), tenant_id, include_requeued)
    return session.scalar(statement) or 0


def get_dead_letter(session: Session, dead_letter_id: uuid.UUID, *, tenant_id: uuid.UUID | None):
    """Return one dead letter (one tenant's, or any with ``tenant_id=None``); 404 otherwise."""
    statement = select(DeadLetter).where(DeadLetter.id == dead_letter_id)
    if tenant_id is not None:
        statement = statement.where(DeadLetter.tenant_id == tenant_id)
    row = session.scalar(statement)
    if row is None:
        raise NotFound("Dead letter not found")
    return row


def requeue_dead_letter(
    session: Session,
    dead_letter_id: uuid.UUID,
    *,
    tenant_id: uuid.UUID | None,
    send: Sender,
    accept_duplicate: bool = False,
) -> DeadLetter:
    """Send a dead letter's message again, with a fresh retry budget, and mark it requeued.

    A row its actor's retries-exhausted handler failed is first put back to what the
    actor processes (a send's message to queued, an inbound payload to pending...), or
    the requeue answers 409 saying why it cannot run again: see :func:`_prepare_requeue`.
    A send in doubt (the customer may have it already) goes out again only with
    ``accept_duplicate``.
    It keeps its message id, so if it dies again :func:`record_dead_letter` shows the
    row again with the new error. The row is locked and marked first and the message
    sent inside the caller's transaction: a send that fails leaves the row as it was
    (the caller rolls back); a commit that fails after the send can only cost a
    second requeue, never a lost message. A row requeued already answers 409.
    """
    row = session.scalar(
        select(DeadLetter)
        .where(DeadLetter.id == dead_letter_id)
        .where(DeadLetter.tenant_id == tenant_id if tenant_id is not None else true())
        .with_for_update()
    )
    if row is None:
        raise NotFound("Dead letter not found")
    if row.requeued_at is not None:
        raise Conflict("This dead letter was requeued already")
    if row.options.get(NUL_ESCAPED_OPTION):
        # NOTE: its stored arguments are not the message's: sent again, they would be a
        # different job.
        raise Conflict("This dead letter's arguments held NUL characters; it cannot be requeued")
    _prepare_requeue(session, row, accept_duplicate=accept_duplicate)
    row.requeued_at = func.now()
    session.flush()
    send(
        Resend(
            queue=row.queue_name,
            actor=row.actor_name,
            args=list(row.args),
            kwargs=dict(row.kwargs),
            options=clean_options(row.options, keep_retries=False),
            message_id=row.message_id,
        )
    )
    session.refresh(row)
    return row


#: The actor a send's dead letter names (:mod:`shared.channels.outbound` writes them).
SEND_ACTOR = "send_outbound"

#: Actor -> ``"module:function"`` that puts back, in the requeue's transaction, the row a
#: retries-exhausted handler failed (or answers 409 saying why it cannot). Each is called
#: ``(session, tenant_id, args, accept_duplicate=...)``; only sends use the consent.
#: NOTE: named, imported when used: the areas record their dead letters through this module.
REVIVERS = {
    SEND_ACTOR: "shared.channels.send_revival:revive",
    "process_inbound": "shared.channels.processing:revive",
    "bulk_conversation_action": "shared.inbox.bulk:revive",
    "import_products": "shared.ai.product_import:revive",
    "dispatch_event": "shared.dispatch:revive",
    "mark_read_upstream": "shared.channels.read_receipts:revive",
    "send_email": "shared.identity.invitation_emails:revive",
    "sync_wa_templates": "shared.channels.templates.sync:revive",
    "evaluate_rules": "shared.automation.retries:revive",
    "ai_reply": "shared.ai.generation:revive",
    "ingest_knowledge_source": "shared.ai.knowledge.sources:revive",
    "send_scheduled_messages": "shared.timekeeping.scheduled_messages:revive",
}


def _prepare_requeue(session: Session, row: DeadLetter, *, accept_duplicate: bool) -> None:
    """What a requeue must undo before the job runs again.

    WHY: an actor that ran out of retries had its row failed (a send, an inbound payload,
    a job...), so the requeued job found nothing to do and the operator's requeue did
    nothing, while the console said "requeued".
    """
    target = REVIVERS.get(row.actor_name)
    if target is None:
        return
    module, name = target.split(":")
    revive = getattr(importlib.import_module(module), name)
    revive(session, row.tenant_id, row.args, accept_duplicate=accept_duplicate)


class NotRequeueable(Conflict):
    """A dead letter whose work cannot run again as it is; the message says what to do."""

    code = "not_requeueable"

    def __init__(self, reason: str, message: str):
        super().__init__(message, details=[{"field": "id", "reason": reason}])
        self.reason = reason


def locked_row(
    session: Session,
    model: Any,
    tenant_id: uuid.UUID | None,
    row_id: uuid.UUID,
    *,
    gone: tuple[str, str],
    key: Any = None,
) -> Any:
    """The ``model`` row a dead letter names (by ``key``, else its id), locked for the
    requeue's transaction, ``tenant_id``'s unless None (the platform operator); or 409
    ``gone`` (reason, message): deleted since, there is nothing to run."""
    statement = select(model).where((model.id if key is None else key) == row_id)
    if tenant_id is not None:
        statement = statement.where(model.tenant_id == tenant_id)
    row = session.scalar(statement.with_for_update())
    if row is None:
        raise NotRequeueable(*gone)
    return row


def row_id(args: Sequence[Any]) -> uuid.UUID:
    """The row id a dead letter's first argument names, or 409 (arguments not an id)."""
    try:
        return uuid.UUID(str(args[0]))
    except (IndexError, ValueError) as exc:
        raise NotRequeueable("bad_arguments", "This dead letter names no row") from exc


def delete_dead_letter(
    session: Session, dead_letter_id: uuid.UUID, *, tenant_id: uuid.UUID | None
) -> None:
    """Forget a dead letter (Dramatiq's own copy in ``{queue}.XQ`` expires by itself).

    One statement that says whether it deleted: two deletions at once both found the row
    and both answered 204, the second having deleted nothing.
    """
    statement = delete(DeadLetter).where(DeadLetter.id == dead_letter_id)
    if tenant_id is not None:
        statement = statement.where(DeadLetter.tenant_id == tenant_id)
    if session.execute(statement.returning(DeadLetter.id)).first() is None:
        raise NotFound("Dead letter not found")


def dead_letter_view(row: DeadLetter, *, full: bool = False) -> dict[str, Any]:
    """The JSON shape of a dead letter; ``full`` adds arguments, options and the whole error."""
    view: dict[str, Any] = {
        "id": str(row.id),
        "message_id": row.message_id,
        "queue": row.queue_name,
        "actor": row.actor_name,
        "tenant_id": str(row.tenant_id) if row.tenant_id else None,
        "retries": row.retries,
        "error": row.error if full else _last_line(row.error),
        "failed_at": rfc3339(row.failed_at),
        "requeued_at": rfc3339(row.requeued_at) if row.requeued_at else None,
    }
    if full:
        view.update(args=row.args, kwargs=row.kwargs, options=row.options)
    return view


def rfc3339(value: dt.datetime) -> str:
    """API.md's form of a time: RFC 3339 in UTC with ``Z`` (``isoformat`` says ``+00:00``)."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _last_line(text: str | None) -> str | None:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None
