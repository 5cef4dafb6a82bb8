"""Template sync: make our copy of an account's templates what Meta lists, and keep it so.

``sync_wa_templates(account_id, job_id)`` (the actor) runs :func:`run`:

1. the account's ``wa_template_syncs`` row turns ``running`` (its own short transaction);
2. every page of ``GET /{waba}/message_templates`` is read, with no transaction open;
3. one transaction, under the account's lock (the one create takes), applies the listing:
   templates Meta lists are inserted or updated (by name and language, Meta's identity
   in a WABA); a template no longer listed is kept and marked ``DELETED`` (so sends of it
   are refused with a clear reason and its history stays readable; it comes back to
   life if Meta lists it again); every status that changed emits ``template.status_changed``.
   Idempotent: applying the same listing twice changes nothing the second time.

Races, settled by time: a listing older than the one already applied is not applied; a
status the review webhook set after the listing began is kept; a template created
after the listing began is never marked ``DELETED`` by it.

Failures: Meta unreachable, throttled or failing (transient) raises :class:`SyncRetry`
and the actor retries with backoff; after its last retry :func:`mark_failed` makes the
row ``failed`` (unless another sync of the account started since). A refused token or
missing credentials fail at once, without retries.
Either way the row says why (``error``) and the job of the request, if any, is told.

The scheduler (:func:`claim_due`) re-syncs every active WhatsApp account every
:data:`SYNC_EVERY`, and re-sends a sync whose message was lost (queued or running past
:data:`STUCK_AFTER`).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from shared import dead_letters, events, jobs
from shared.channels import accounts, token_rejections
from shared.channels.graph_errors import IntegrationNotFound, is_token_invalid
from shared.channels.send_errors import SendFailed
from shared.channels.templates import catalogue, meta, sync_queue
from shared.context import Ctx
from shared.db import session_scope
from shared.errors import DomainError
from shared.events import Actor
from shared.json_encoding import objects_in
from shared.models import IntegrationAccount, Job, Tenant, WaTemplate, WaTemplateSync

log = logging.getLogger(__name__)

JOB_KIND = "wa_templates.sync"
#: How often the scheduler syncs each WhatsApp account (API.md: every 6 h).
SYNC_EVERY = dt.timedelta(hours=6)
#: A sync queued or running this long lost its message or its worker: sent again.
STUCK_AFTER = dt.timedelta(minutes=15)
#: Accounts the scheduler claims per run.
CLAIM_LIMIT = 500
#: The columns a listing sets on a template.
_SYNCED = (
    "meta_template_id",
    "category",
    "status",
    "components",
    "parameter_format",
    "rejected_reason",
    "quality_score",
)


class SyncRetry(Exception):
    """A transient failure (Meta down, throttled): the actor tries again later."""


@dataclass(frozen=True)
class SyncRequest:
    """One account to sync, and the job that asked (None: the scheduler)."""

    integration_account_id: uuid.UUID
    tenant_id: uuid.UUID
    job_id: uuid.UUID | None


# --- asking for syncs ---------------------------------------------------------------------------


def request_sync(
    session: Session, ctx: Ctx, integration_account_id: uuid.UUID | None
) -> tuple[Job, list[uuid.UUID]]:
    """``POST /api/wa-templates/sync``: a job, and one queued sync per WhatsApp account."""
    ctx.require(catalogue.MANAGE)
    if integration_account_id is not None:
        account_ids = [catalogue.whatsapp_account(session, ctx, integration_account_id).id]
    else:
        account_ids = list(
            session.scalars(
                select(IntegrationAccount.id)
                .where(
                    IntegrationAccount.tenant_id == ctx.tenant_id,
                    IntegrationAccount.channel == "whatsapp",
                    accounts.switched_on(),
                )
                .order_by(IntegrationAccount.created_at)
            )
        )
    if not account_ids:
        raise IntegrationNotFound("No WhatsApp integration account; connect one first")
    job = jobs.create(
        session, ctx, JOB_KIND, {"integration_account_ids": [str(a) for a in account_ids]}
    )
    _queue(session, ctx.tenant_id, account_ids, job.id)
    return job, account_ids


def _queue(
    session: Session,
    tenant_id: uuid.UUID,
    account_ids: list[uuid.UUID],
    job_id: uuid.UUID | None,
) -> None:
    """Mark the accounts' syncs queued and send them after commit.

    Synced now: the scheduler's next sync of these accounts is a period away.
    """
    next_due = func.now() + SYNC_EVERY
    statement = pg_insert(WaTemplateSync).values(
        [
            {
                "integration_account_id": a,
                "tenant_id": tenant_id,
                "job_id": job_id,
                "due_at": next_due,
            }
            for a in account_ids
        ]
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[WaTemplateSync.integration_account_id],
            set_={
                "status": "queued",
                "enqueued_at": func.now(),
                "job_id": job_id,
                "due_at": next_due,
            },
        )
    )
    sync_queue.enqueue_after_commit(
        session, [SyncRequest(a, tenant_id, job_id) for a in account_ids]
    )


def sync_connected_account(session: Session, ctx: Ctx, account_id: uuid.UUID) -> None:
    """A WhatsApp account just connected (or reconnected) by Embedded Signup: sync its
    templates now, in the transaction that connects it (API.md: the signup enqueues
    ``sync_wa_templates``), rather than at the scheduler's next claim."""
    _queue(session, ctx.tenant_id, [account_id], None)


def resync(session: Session, tenant_id: uuid.UUID, account_id: uuid.UUID) -> None:
    """Sync the account after this transaction commits (a review named a template we lack).

    The sync is recorded ``queued`` in the caller's transaction, so one whose message is
    lost is sent again by :func:`claim_due` after :data:`STUCK_AFTER`, not only at the
    account's next due time. A sync already queued is left as it is (it is owed and
    re-sent anyway), as is one running (its job, if any, keeps its report); the account's
    schedule is kept.
    """
    statement = pg_insert(WaTemplateSync).values(
        integration_account_id=account_id,
        tenant_id=tenant_id,
        status="queued",
        due_at=func.now() + SYNC_EVERY,
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[WaTemplateSync.integration_account_id],
            set_={"status": "queued", "enqueued_at": func.now(), "job_id": None},
            where=WaTemplateSync.status.not_in(("queued", "running")),
        )
    )
    sync_queue.enqueue_after_commit(session, [SyncRequest(account_id, tenant_id, None)])


def claim_due(session: Session, *, limit: int = CLAIM_LIMIT) -> list[SyncRequest]:
    """The scheduler's job: claim the accounts due a sync (or whose sync got lost), push
    their next due time 6 h on, and send their syncs after commit.

    Accounts without a row (new, or there before this table) get one, due now.
    """
    account = IntegrationAccount.__table__
    session.execute(
        pg_insert(WaTemplateSync)
        .from_select(
            ["integration_account_id", "tenant_id", "status", "job_id"],
            select(account.c.id, account.c.tenant_id, literal("succeeded"), null()).where(
                account.c.channel == "whatsapp",
                ~exists().where(WaTemplateSync.integration_account_id == account.c.id),
            ),
        )
        .on_conflict_do_nothing()
    )
    stuck = func.now() - STUCK_AFTER
    due = (
        select(WaTemplateSync.integration_account_id)
        .join(IntegrationAccount, IntegrationAccount.id == WaTemplateSync.integration_account_id)
        .join(Tenant, Tenant.id == WaTemplateSync.tenant_id)
        .where(
            IntegrationAccount.status == "active",
            accounts.switched_on(),
            Tenant.status == "active",
            or_(
                WaTemplateSync.due_at <= func.now(),
                and_(
                    WaTemplateSync.status.in_(("queued", "running")),
                    WaTemplateSync.enqueued_at < stuck,
                ),
            ),
        )
        .order_by(WaTemplateSync.due_at)
        .limit(limit)
        .with_for_update(of=WaTemplateSync, skip_locked=True)
        .scalar_subquery()
    )
    rows = session.execute(
        update(WaTemplateSync)
        .where(WaTemplateSync.integration_account_id.in_(due))
        .values(
            # A lost sync keeps its schedule; a due one is pushed a period on.
            due_at=case(
                (WaTemplateSync.due_at <= func.now(), func.now() + SYNC_EVERY),
                else_=WaTemplateSync.due_at,
            ),
            status="queued",
            enqueued_at=func.now(),
        )
        .returning(
            WaTemplateSync.integration_account_id, WaTemplateSync.tenant_id, WaTemplateSync.job_id
        )
    ).all()
    claimed = [SyncRequest(*row) for row in rows]
    sync_queue.enqueue_after_commit(session, claimed)
    return claimed


# --- running one ----------------------------------------------------------------------------


def run(
    integration_account_id: uuid.UUID,
    job_id: uuid.UUID | None,
    on_start: Callable[[int], None] | None = None,
) -> str:
    """Sync one account (see the module doc); its outcome, or :class:`SyncRetry`.

    ``on_start`` is given the sync row's ``attempts`` once this run is recorded running:
    the actor keeps it with its message for :func:`mark_failed`.
    """
    with session_scope() as session:
        started = _start(session, integration_account_id, job_id)
    if isinstance(started, str):
        return started
    waba_id, token, listed_at, attempt, credentials = started
    if on_start is not None:
        on_start(attempt)
    try:
        listing = meta.list_templates(waba_id, token)
    except SendFailed as exc:
        error = meta.failure_reason(exc)
        if is_token_invalid(exc):
            with session_scope() as session:
                _token_rejected(session, integration_account_id, exc.code, credentials)
        if exc.transient:
            with session_scope() as session:
                _note_error(session, integration_account_id, error)
            raise SyncRetry(error) from exc
        with session_scope() as session:
            _finish(session, integration_account_id, job_id, "failed", None, error)
        return "failed"
    with session_scope() as session:
        counts = apply_listing(session, integration_account_id, listing.templates, listed_at)
        counts["graph_calls"] = listing.graph_calls
        _finish(session, integration_account_id, job_id, "succeeded", counts, None)
    log.info("templates of account %s synced: %s", integration_account_id, counts)
    return "succeeded"


def _start(
    session: Session, account_id: uuid.UUID, job_id: uuid.UUID | None
) -> tuple[str, str, dt.datetime, int, str | None] | str:
    """Mark the sync running; the WABA id, token, listing time, the row's attempt count and
    the stored credentials the token came from; or the outcome when there is nothing to do
    (account gone or switched off) or it cannot start."""
    account = session.get(IntegrationAccount, account_id)
    if account is None or account.channel != "whatsapp":
        if job_id is not None:
            _report(session, job_id, account_id, {"status": "skipped", "error": "account gone"})
        return "skipped"
    session.execute(
        pg_insert(WaTemplateSync)
        .values(integration_account_id=account.id, tenant_id=account.tenant_id, job_id=job_id)
        .on_conflict_do_nothing()
    )
    sync = session.get(WaTemplateSync, account_id, with_for_update=True)
    off = accounts.switched_off(account)
    if off is not None:
        sync.status, sync.finished_at, sync.error = "succeeded", func.now(), off.message
        if job_id is not None:
            _report(session, job_id, account_id, {"status": "skipped", "error": off.message})
        return "skipped"
    sync.status, sync.started_at, sync.attempts = "running", func.now(), sync.attempts + 1
    if job_id is not None:
        _report(session, job_id, account_id, None)
    try:
        waba_id, token = catalogue.graph_credentials(account)
    except DomainError as exc:
        _finish(session, account_id, job_id, "failed", None, exc.message)
        return "failed"
    listed_at = session.scalar(select(func.clock_timestamp()))
    return waba_id, token, listed_at, sync.attempts, account.credentials_encrypted


def _token_rejected(
    session: Session, account_id: uuid.UUID, meta_code: str, credentials: str | None
) -> None:
    """Meta refused the account's token: the account is marked ``error`` (and audited),
    unless its credentials changed since the sync read them (a reconnect meanwhile)."""
    tenant_id = session.scalar(
        select(IntegrationAccount.tenant_id).where(IntegrationAccount.id == account_id)
    )
    if tenant_id is not None:
        token_rejections.mark_rejected(
            session,
            Ctx.system(tenant_id),
            account_id,
            meta_code,
            rejected_credentials=credentials,
        )


def _note_error(session: Session, account_id: uuid.UUID, error: str) -> None:
    session.execute(
        update(WaTemplateSync)
        .where(WaTemplateSync.integration_account_id == account_id)
        .values(error=error[:2000])
    )


def _finish(
    session: Session,
    account_id: uuid.UUID,
    job_id: uuid.UUID | None,
    status: str,
    counts: dict[str, Any] | None,
    error: str | None,
) -> None:
    if job_id is not None:
        # NOTE: the job first (lock order: the sync row, then the job, as in _start). A
        # second update of the sync row in one transaction (apply_listing wrote its
        # listed_at) makes PostgreSQL check its job_id reference, a KEY SHARE lock on the
        # job: two syncs of one job finishing together each held that lock and then
        # waited for the other's to lock the job for the report, a deadlock.
        jobs.lock(session, job_id)
    values: dict[str, Any] = {"status": status, "finished_at": func.now(), "error": error}
    if counts is not None:
        values["result"] = counts
    session.execute(
        update(WaTemplateSync)
        .where(WaTemplateSync.integration_account_id == account_id)
        .values(values)
    )
    if job_id is not None:
        outcome = {"status": status, **(counts or {})}
        if error:
            outcome["error"] = error
        _report(session, job_id, account_id, outcome)


def mark_failed(
    integration_account_id: uuid.UUID,
    job_id: uuid.UUID | None,
    error: str,
    attempt: int | None = None,
) -> None:
    """The actor gave up (retries exhausted): its sync is ``failed``, and says why.

    WHY: only while the row is still the run that gave up. Meanwhile (its retries wait
    minutes) another sync of the account may have been asked, started or finished: a
    newer request, the scheduler's claim, the re-send of a message that looked lost.
    Failing the row then overwrote a fresh success, or a run still going. ``attempt`` is
    the ``attempts`` count this message's last run set (None when it never recorded one:
    then the row must be running for the same job). The job, if any, is still told the
    account failed, unless it heard of the account already or another run of its own is
    owed or going (that one reports).
    """
    error = error[:2000]
    with session_scope() as session:
        # NOTE: the sync row, then the job: the order _start and _finish take them.
        row = session.get(WaTemplateSync, integration_account_id, with_for_update=True)
        if row is not None and _is_the_run(row, job_id, attempt):
            _finish(session, integration_account_id, job_id, "failed", None, error)
        elif job_id is not None and not _owed_to(row, job_id):
            _report_unless_told(
                session, job_id, integration_account_id, {"status": "failed", "error": error}
            )


def _is_the_run(row: WaTemplateSync, job_id: uuid.UUID | None, attempt: int | None) -> bool:
    """Whether the row is still the run a message started (``attempt``: its count)."""
    if row.status != "running":
        return False
    if attempt is not None:
        return row.attempts == attempt  # every start counts: a later one changed it
    return row.job_id == job_id


def _owed_to(row: WaTemplateSync | None, job_id: uuid.UUID) -> bool:
    """Whether another sync of the account for this job is queued or running."""
    return row is not None and row.job_id == job_id and row.status in ("queued", "running")


def _report_unless_told(
    session: Session, job_id: uuid.UUID, account_id: uuid.UUID, outcome: dict[str, Any]
) -> None:
    job = jobs.lock(session, job_id)
    if job is None or str(account_id) in ((job.result or {}).get("accounts") or {}):
        return
    _report(session, job_id, account_id, outcome)


def revive(session: Session, tenant_id: uuid.UUID | None, args: list[Any], **_options: Any) -> None:
    """Reopen the job of a ``sync_wa_templates`` dead letter, so the requeued sync reports to it.

    WHY: :func:`mark_failed` failed the sync and its job when the actor ran out of retries.
    The requeued sync ran, but :func:`_report` ignores a finished job: the job stayed
    failed, naming the account failed, however the sync ended. The account's outcome is
    taken off and the job reopened, under the sync row's lock then the job's (the order
    :func:`_finish` takes them), in the requeue's transaction.
    """
    account_id = dead_letters.row_id(args)
    if len(args) < 2 or not args[1]:
        return  # a scheduled sync: no job, and the sync runs whatever its status
    job_id = dead_letters.row_id(args[1:])
    statement = select(WaTemplateSync).where(WaTemplateSync.integration_account_id == account_id)
    if tenant_id is not None:
        statement = statement.where(WaTemplateSync.tenant_id == tenant_id)
    session.scalar(statement.with_for_update())
    job = jobs.locked_for_requeue(session, tenant_id, job_id, JOB_KIND)
    if job.status != "failed":
        return
    result = dict(job.result or {})
    result["accounts"] = {
        a: outcome for a, outcome in (result.get("accounts") or {}).items() if a != str(account_id)
    }
    job.result = result
    jobs.reopen(session, job)


def _report(
    session: Session, job_id: uuid.UUID, account_id: uuid.UUID, outcome: dict[str, Any] | None
) -> None:
    """Tell the request's job: ``None`` when the account's sync starts, else its outcome.

    The job succeeds when every account it asked for succeeded (or had nothing to do),
    and fails when one failed; until then it is ``running``.
    """
    job = jobs.lock(session, job_id)
    if job is None or job.status in ("succeeded", "failed"):
        return
    if job.started_at is None:
        job.started_at = func.now()
    job.status = "running"
    if outcome is None:
        return
    result = dict(job.result or {})
    per_account = dict(result.get("accounts") or {})
    per_account[str(account_id)] = outcome
    result["accounts"] = per_account
    job.result = result
    wanted = job.params.get("integration_account_ids") or []
    if all(a in per_account for a in wanted):
        failed = [a for a in wanted if per_account[a].get("status") == "failed"]
        job.status = "failed" if failed else "succeeded"
        job.error = f"{len(failed)} of {len(wanted)} account(s) failed" if failed else None
        job.finished_at = func.now()


def resume_job(job_id: uuid.UUID) -> list[SyncRequest]:
    """The syncs of a job still queued (its messages were lost): the ones not reported yet."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.kind != JOB_KIND or job.status not in ("queued", "running"):
            return []
        reported = (job.result or {}).get("accounts") or {}
        return [
            SyncRequest(uuid.UUID(a), job.tenant_id, job.id)
            for a in job.params.get("integration_account_ids") or []
            if a not in reported
        ]


# --- applying a listing -----------------------------------------------------------------------


def _meta_id(raw: dict[str, Any]) -> str | None:
    """The listed template's Meta id, or None when it is not one (a number, at most 64)."""
    value = raw.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not 0 < len(value) <= meta.MAX_ID:
        return None
    return value


def _clean(raw: dict[str, Any]) -> dict[str, Any]:
    """A listed template as the columns :data:`_SYNCED` hold."""
    reason = raw.get("rejected_reason")
    quality = raw.get("quality_score")
    if isinstance(quality, dict):
        quality = quality.get("score")
    # NOTE: only the objects: the API's view (and every send's check) reads components as
    # a list of objects, so a listed 1 or "BODY" made the template, and every list page
    # holding it, answer 500 for as long as the row lived.
    components = objects_in(raw.get("components"))
    return {
        "meta_template_id": _meta_id(raw),
        "category": str(raw.get("category") or "UTILITY").upper()[:32],
        "status": str(raw.get("status") or "PENDING").upper()[:32],
        "components": components,
        "parameter_format": str(raw.get("parameter_format") or "POSITIONAL").upper()[:16],
        "rejected_reason": None if reason in (None, "", "NONE") else str(reason),
        "quality_score": None if quality in (None, "", "UNKNOWN") else str(quality)[:32],
    }


_TABLE = WaTemplate.__table__
#: PERF: one prebuilt UPDATE run as executemany; ``status_updated_at`` moves only when the
#: status does (the SET's right side reads the row before the update).
_UPDATE = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("b_id"))
    .values(
        {
            **{name: bindparam(f"b_{name}", type_=_TABLE.c[name].type) for name in _SYNCED},
            "status_updated_at": case(
                (_TABLE.c.status != bindparam("b_status"), func.now()),
                else_=_TABLE.c.status_updated_at,
            ),
            "updated_at": func.now(),
        }
    )
)


def apply_listing(
    session: Session,
    integration_account_id: uuid.UUID,
    listed: list[dict[str, Any]],
    listed_at: dt.datetime,
) -> dict[str, Any]:
    """Apply Meta's listing of the account's templates, begun at ``listed_at``; counts."""
    catalogue.lock_account(session, integration_account_id)
    sync = session.get(WaTemplateSync, integration_account_id, with_for_update=True)
    counts = {"templates": len(listed), "created": 0, "updated": 0, "removed": 0, "stale": False}
    if sync is None:
        return counts  # the account is gone
    if sync.listed_at is not None and sync.listed_at > listed_at:
        counts["stale"] = True  # a newer listing was applied meanwhile
        return counts
    sync.listed_at = listed_at
    tenant_id = sync.tenant_id
    # NOTE: locked (after the account's lock and its sync row, the order every writer
    # of the account takes): a review committing between this read and the UPDATE below
    # had its newer status overwritten by the listing's whenever another column changed.
    existing = {
        (row.name, row.language): row
        for row in session.execute(
            select(
                WaTemplate.id,
                WaTemplate.name,
                WaTemplate.language,
                WaTemplate.created_at,
                WaTemplate.status_updated_at,
                *(getattr(WaTemplate, name) for name in _SYNCED),
            )
            .where(WaTemplate.integration_account_id == integration_account_id)
            .with_for_update()
        )
    }
    seen: set[tuple[str, str]] = set()
    listed_keys: set[tuple[str, str]] = set()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    changed: list[tuple[Any, str, dict[str, Any]]] = []
    for raw in listed:
        name, language = raw.get("name"), raw.get("language")
        if not isinstance(name, str) or not isinstance(language, str):
            continue  # not a template we could store: the others still sync
        key = (name[:512], language[:16])
        # Listed, so not gone from Meta (never marked DELETED) even when not storable.
        listed_keys.add(key)
        if key in seen or _meta_id(raw) is None:
            continue
        seen.add(key)
        values = _clean(raw)
        row = existing.get(key)
        if row is None:
            inserts.append(
                {
                    "id": uuid.uuid4(),
                    "tenant_id": tenant_id,
                    "integration_account_id": integration_account_id,
                    "name": key[0],
                    "language": key[1],
                    **values,
                }
            )
            continue
        if row.status_updated_at > listed_at:
            # The review webhook spoke after this listing began: its word stands.
            values["status"], values["rejected_reason"] = row.status, row.rejected_reason
        if all(getattr(row, name) == values[name] for name in _SYNCED):
            continue
        updates.append({"b_id": row.id, **{f"b_{k}": v for k, v in values.items()}})
        if values["status"] != row.status:
            changed.append((row, row.status, values))
    for key, row in existing.items():
        if key in listed_keys or row.status == "DELETED" or row.created_at > listed_at:
            continue
        values = {name: getattr(row, name) for name in _SYNCED} | {"status": "DELETED"}
        updates.append({"b_id": row.id, **{f"b_{k}": v for k, v in values.items()}})
        changed.append((row, row.status, values))
        counts["removed"] += 1
    if inserts:
        session.execute(insert(_TABLE), inserts)
    if updates:
        session.execute(_UPDATE, updates)
    counts["created"], counts["updated"] = len(inserts), len(updates) - counts["removed"]
    for row, previous, values in changed:
        emit_status_changed(
            session,
            tenant_id,
            {
                "id": row.id,
                "integration_account_id": integration_account_id,
                "meta_template_id": values["meta_template_id"],
                "name": row.name,
                "language": row.language,
            },
            status=values["status"],
            previous_status=previous,
            reason=values["rejected_reason"],
            source="sync",
        )
    return counts


def emit_status_changed(
    session: Session,
    tenant_id: uuid.UUID,
    template: dict[str, Any],
    *,
    status: str,
    previous_status: str,
    reason: str | None,
    source: str,
) -> None:
    """``template.status_changed``: the template's ids and names, the new and old status,
    Meta's reason (a rejection's), and ``source`` (``webhook`` or ``sync``)."""
    data = {
        "id": str(template["id"]),
        "integration_account_id": str(template["integration_account_id"]),
        "meta_template_id": template["meta_template_id"],
        "name": template["name"],
        "language": template["language"],
        "status": status,
        "previous_status": previous_status,
        "reason": reason,
        "source": source,
    }
    events.emit(session, "template.status_changed", data, tenant_id=tenant_id, actor=Actor.system())
