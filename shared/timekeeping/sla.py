"""SLA clocks: each conversation's due times under the policy attached when it opened.

Targets (minutes, each optional on the policy):

- ``first_response``: from the conversation opening to the first human reply;
- ``next_response``: from a customer message (after the first response) to the next human
  reply; a new cycle starts with the customer's next message once the previous one ended;
- ``resolution``: from opening to resolved.

Working time: with ``business_hours_only`` a due time counts only the working hours that
apply to the conversation (:func:`shared.timekeeping.schedules.effective`: its division's
override, else the tenant's, else always open), via :mod:`.business_time`.

Pauses: while the conversation is ``pending`` (``snoozed``) and the policy says
``pause_on_pending`` (``pause_on_snoozed``) the clock stops: ``next_check_at`` is NULL and,
on resuming, the paused time (working time under ``business_hours_only``) is added to
``paused_seconds``, which pushes every due time. A pending conversation stays pending when
the customer writes, but it no longer waits on the customer: the clock runs until an agent
replies. A resolved conversation that reopens starts a fresh clock under the policy that
matches it then; a change of tags or division moves the clock to the policy that matches.

The hooks (:func:`attach`, :func:`customer_wrote`, :func:`agent_replied`,
:func:`status_changed`, :func:`conditions_changed`) run in the transaction of the change
they follow, so the clock can never disagree with the conversation. :func:`check_due` is
the scheduler's ``check_sla``: it reads only clocks whose ``next_check_at`` passed (a
partial index), records each breach once (a unique index per target cycle) and emits
``sla.breached``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import String, Uuid, any_, bindparam, func, literal, or_, select, update
from sqlalchemy.orm import Session

from shared import bulk_insert
from shared.db import fetch_rows
from shared.events import Actor, emit_many
from shared.models import Conversation, ConversationSla, Job, SlaBreach, SlaPolicy, Tenant
from shared.timekeeping import schedules
from shared.timekeeping.business_time import add_working_time, working_time_between

KINDS = ("first_response", "next_response", "resolution")
#: Clocks one ``check_sla`` run handles (the rest are still due for the next run).
CHECK_BATCH = 5_000
#: Far enough that "never opens again" is still a due time a person can read.
_NEVER = dt.timedelta(days=3650)


# --- the policy that applies ---------------------------------------------------------------


def matching_policy(session: Session, conversation: Conversation) -> SlaPolicy | None:
    """The first active policy (priority, then age) whose conditions the conversation meets.

    Empty conditions match anything; ``tags`` match when the conversation has any of them.
    """
    tags = list(conversation.tags or [])
    division = func.cardinality(SlaPolicy.division_ids) == 0
    if conversation.division_id is not None:
        division = or_(
            division, literal(conversation.division_id, Uuid()) == any_(SlaPolicy.division_ids)
        )
    return session.scalars(
        select(SlaPolicy)
        .where(
            SlaPolicy.tenant_id == conversation.tenant_id,
            SlaPolicy.is_active.is_(True),
            SlaPolicy.deleted_at.is_(None),
            or_(
                func.cardinality(SlaPolicy.channels) == 0,
                literal(conversation.channel, String()) == any_(SlaPolicy.channels),
            ),
            division,
            or_(func.cardinality(SlaPolicy.tags) == 0, SlaPolicy.tags.overlap(tags)),
        )
        .order_by(SlaPolicy.priority, SlaPolicy.created_at, SlaPolicy.id)
        .limit(1)
    ).first()


# --- due times -----------------------------------------------------------------------------


class _Clock:
    """Due-time arithmetic for one conversation under one policy (schedule read once)."""

    def __init__(self, session: Session, policy: SlaPolicy, conversation: Any) -> None:
        self.policy = policy
        if policy.business_hours_only:
            self.schedule, self.timezone = schedules.effective(
                session, conversation.tenant_id, conversation.division_id
            )
        else:
            self.schedule, self.timezone = None, "UTC"

    def due(self, start: dt.datetime, minutes: int | None, paused: float) -> dt.datetime | None:
        if minutes is None:
            return None
        span = dt.timedelta(minutes=minutes, seconds=paused)
        due = add_working_time(self.schedule, self.timezone, start, span, horizon=_NEVER)
        return due or start + _NEVER

    def elapsed(self, start: dt.datetime, end: dt.datetime) -> float:
        """Seconds of counted time in ``[start, end)`` (working time when business hours only)."""
        return working_time_between(self.schedule, self.timezone, start, end).total_seconds()


def _recompute(sla: ConversationSla, clock: _Clock) -> None:
    """Every due time from the policy's current targets and the pauses so far."""
    policy = clock.policy
    sla.policy_version = policy.version
    sla.first_response_due_at = clock.due(
        sla.started_at, policy.first_response_minutes, sla.paused_seconds
    )
    sla.resolution_due_at = clock.due(sla.started_at, policy.resolution_minutes, sla.paused_seconds)
    if sla.next_response_started_at is not None and policy.next_response_minutes is not None:
        sla.next_response_due_at = clock.due(
            sla.next_response_started_at,
            policy.next_response_minutes,
            sla.paused_seconds - sla.next_response_paused_base,
        )
    else:
        sla.next_response_due_at = None
    _refresh_next_check(sla)


def _outstanding(sla: ConversationSla) -> Iterator[tuple[str, dt.datetime]]:
    """(kind, due) of each target neither met nor breached yet."""
    for kind in KINDS:
        due = getattr(sla, f"{kind}_due_at")
        met = getattr(sla, f"{kind}_met_at")
        breached = getattr(sla, f"{kind}_breached_at")
        if due is not None and met is None and breached is None:
            yield kind, due


def _refresh_next_check(sla: ConversationSla, policy: SlaPolicy | None = None) -> None:
    if policy is not None and sla.policy_version != policy.version:
        # The policy changed and check_sla has not applied it yet (update_policy made the
        # clock due for that): keep it due, else its old due times would hide the new ones.
        return
    if sla.paused_at is not None or sla.resolution_met_at is not None:
        sla.next_check_at = None
        return
    sla.next_check_at = min((due for _, due in _outstanding(sla)), default=None)


def _pauses(policy: SlaPolicy, status: str) -> bool:
    return (status == "pending" and policy.pause_on_pending) or (
        status == "snoozed" and policy.pause_on_snoozed
    )


# --- hooks ---------------------------------------------------------------------------------


def _settle(session: Session, sla: ConversationSla, policy: SlaPolicy, at: dt.datetime) -> None:
    """Record the targets the running clock already missed at ``at``, before a hook meets,
    pauses or ends them.

    NOTE: ``check_sla`` runs once a minute (later after a scheduler outage): a reply, a
    resolve or a pause in between used to take the target out of its reach, and the
    breach was never recorded. The clock is locked here, as in ``check_sla``; the unique
    cycle index keeps each breach once. A clock awaiting a changed policy is left to
    ``check_sla`` (its due times are stale), as is one whose policy is gone.
    """
    if sla.paused_at is not None or sla.resolution_met_at is not None:
        return
    if policy.deleted_at is not None or not policy.is_active:
        return
    if sla.policy_version != policy.version:
        return
    due = [(sla, policy, kind, due_at) for kind, due_at in _outstanding(sla) if due_at <= at]
    for _, _, kind, due_at in due:
        setattr(sla, f"{kind}_breached_at", due_at)
    _record(session, due, at)


# PERF: built once; run on the driver by :func:`_locked` before the ORM's query.
_HAS_CLOCK = select(ConversationSla.conversation_id).where(
    ConversationSla.conversation_id == bindparam("conversation_id")
)


def _locked(
    session: Session, conversation_id: uuid.UUID
) -> tuple[ConversationSla, SlaPolicy, str] | None:
    """The conversation's clock (locked), its policy and the conversation's status.

    PERF: every reply and status change asks, and most conversations have no clock (no
    policy matched them): a prebuilt probe on the driver says so without the ORM's
    two-entity query, which cost ~0.5 ms CPU of a ~4.7 ms reply even when it found
    nothing. Pending changes are flushed first, as that query's autoflush would; a
    clock found is then loaded and locked as before. Finding none locks nothing either
    way.
    """
    session.flush()
    if not fetch_rows(session.connection(), _HAS_CLOCK, {"conversation_id": conversation_id}):
        return None
    row = session.execute(
        select(ConversationSla, SlaPolicy, Conversation.status)
        .join(SlaPolicy, SlaPolicy.id == ConversationSla.policy_id)
        .join(Conversation, Conversation.id == ConversationSla.conversation_id)
        .where(ConversationSla.conversation_id == conversation_id)
        .with_for_update(of=ConversationSla)
    ).one_or_none()
    return None if row is None else (row[0], row[1], row[2])


def _resume(
    session: Session, sla: ConversationSla, policy: SlaPolicy, conversation: Any, now: dt.datetime
) -> None:
    """End a pause: its counted time pushes every due time."""
    clock = _Clock(session, policy, conversation)
    sla.paused_seconds += clock.elapsed(sla.paused_at, now)
    sla.paused_at = None
    _recompute(sla, clock)


def _apply_policy(
    session: Session, sla: ConversationSla, policy: SlaPolicy, conversation: Any, now: dt.datetime
) -> None:
    """Recompute the clock under ``policy`` (a new one, or new settings), pauses included.

    A clock paused on a status the policy does not pause on resumes now. A snoozed
    conversation's running clock pauses if the policy pauses on snoozed. A pending one's
    running clock keeps running: whether it is the customer's turn is not known here
    (a customer's message restarts a pending clock), and the next agent reply or status
    change pauses it.
    """
    if sla.resolution_met_at is None:
        pauses = _pauses(policy, conversation.status)
        if sla.paused_at is not None and not pauses:
            _resume(session, sla, policy, conversation, now)
            return
        if sla.paused_at is None and pauses and conversation.status == "snoozed":
            sla.paused_at = now
    _recompute(sla, _Clock(session, policy, conversation))


def attach(session: Session, conversation: Conversation, *, now: dt.datetime | None = None) -> None:
    """Start the conversation's clock under the first matching policy (none: no clock).

    Called when a conversation opens, and when a resolved one reopens (a fresh clock).
    """
    policy = matching_policy(session, conversation)
    now = now or schedules.db_now(session)
    existing = session.get(ConversationSla, conversation.id, with_for_update=True)
    if policy is None:
        if existing is not None:
            session.delete(existing)
        return
    sla = existing or ConversationSla(conversation_id=conversation.id)
    sla.tenant_id = conversation.tenant_id
    sla.policy_id = policy.id
    sla.started_at = now
    sla.paused_at = now if _pauses(policy, conversation.status) else None
    sla.paused_seconds = 0.0
    sla.next_response_paused_base = 0.0
    for kind in KINDS:
        setattr(sla, f"{kind}_met_at", None)
        setattr(sla, f"{kind}_breached_at", None)
    sla.next_response_started_at = None
    sla.updated_at = now
    _recompute(sla, _Clock(session, policy, conversation))
    if existing is None:
        session.add(sla)
    session.flush()


def agent_replied(
    session: Session, tenant_id: uuid.UUID, conversation_id: uuid.UUID, at: dt.datetime
) -> None:
    """A human reply meets the first response, and the open next-response cycle.

    On a ``pending`` conversation whose policy pauses there, the reply hands the turn back
    to the customer, so the clock stops again (:func:`customer_wrote` restarted it).
    """
    found = _locked(session, conversation_id)
    if found is None:
        return
    sla, policy, status = found
    _settle(session, sla, policy, at)
    changed = False
    if sla.first_response_met_at is None:
        sla.first_response_met_at = at
        changed = True
    if sla.next_response_started_at is not None and sla.next_response_met_at is None:
        sla.next_response_met_at = at
        changed = True
    if sla.paused_at is None and sla.resolution_met_at is None and _pauses(policy, status):
        sla.paused_at = at
        changed = True
    if changed:
        sla.updated_at = at
        _refresh_next_check(sla, policy)
        session.flush()


def customer_wrote(
    session: Session, tenant_id: uuid.UUID, conversation_id: uuid.UUID, at: dt.datetime
) -> None:
    """The customer's message ends a wait on the customer and, after the first response,
    starts a next-response cycle (if none is running: the first unanswered message sets
    the clock).

    A ``snoozed`` conversation reopens on the message (:func:`status_changed` resumes
    its clock); a ``pending`` one stays pending, so its pause ends here.
    """
    found = _locked(session, conversation_id)
    if found is None:
        return
    sla, policy, _ = found
    conversation = session.get(Conversation, conversation_id)
    changed = False
    if sla.paused_at is not None:
        _resume(session, sla, policy, conversation, at)
        changed = True
    answered = sla.next_response_started_at is None or sla.next_response_met_at is not None
    if (
        policy.next_response_minutes is not None
        and sla.first_response_met_at is not None
        and answered  # else the first unanswered message keeps the clock
    ):
        sla.next_response_started_at = at
        sla.next_response_met_at = None
        sla.next_response_breached_at = None
        sla.next_response_paused_base = sla.paused_seconds
        _recompute(sla, _Clock(session, policy, conversation))
        changed = True
    if changed:
        sla.updated_at = at
        session.flush()


def status_changed(
    session: Session,
    conversation: Conversation,
    previous: str,
    status: str,
    *,
    now: dt.datetime,
) -> None:
    """Resolve, reopen, pause or resume the conversation's clock."""
    if previous == "resolved" and status != "resolved":
        attach(session, conversation, now=now)
        return
    found = _locked(session, conversation.id)
    if found is None:
        return
    sla, policy, _ = found
    _settle(session, sla, policy, now)
    if status == "resolved":
        sla.resolution_met_at = now
        if sla.paused_at is not None:
            sla.paused_at = None
    elif _pauses(policy, status):
        if sla.paused_at is None:
            sla.paused_at = now
    elif sla.paused_at is not None:
        _resume(session, sla, policy, conversation, now)
    sla.updated_at = now
    _refresh_next_check(sla, policy)
    session.flush()


def conditions_changed(
    session: Session, conversation: Conversation, *, now: dt.datetime | None = None
) -> None:
    """Tags or division changed: the clock follows the policy that matches now.

    Moving to another policy keeps the clock's history (its start, pauses, met and
    breached targets) and recomputes the due times under the new targets, so a
    conversation tagged ``vip`` an hour in owes the VIP first response an hour sooner. A
    conversation that starts matching a policy gets a clock from this moment; one that no
    longer matches any loses its clock (its recorded breaches stay). Either way the
    targets already missed are recorded first (:func:`_settle`). Resolved
    conversations keep what they had. The new policy's pause rules apply from now
    (:func:`_apply_policy`). Under the same policy, a business-hours clock is recomputed
    too: a transfer may have brought the conversation under its division's hours.
    """
    if conversation.status == "resolved":
        return
    policy = matching_policy(session, conversation)
    existing = session.get(ConversationSla, conversation.id, with_for_update=True)
    if existing is None:
        if policy is not None:
            attach(session, conversation, now=now)
        return
    now = now or schedules.db_now(session)
    # The targets missed under the policy it was on are breaches before it moves (the
    # new due times may be later, or gone): check_sla may not have run since.
    _settle(session, existing, session.get(SlaPolicy, existing.policy_id), now)
    if policy is None:
        session.delete(existing)
        session.flush()
        return
    if policy.id == existing.policy_id:
        if existing.policy_version != policy.version:
            return  # due for check_sla, which applies the changed policy (pauses too)
        if policy.business_hours_only:
            _recompute(existing, _Clock(session, policy, conversation))
            session.flush()
        return
    existing.policy_id = policy.id
    existing.updated_at = now
    _apply_policy(session, existing, policy, conversation, now)
    session.flush()


# --- the scheduler's check -----------------------------------------------------------------


def _breach_data(breach: Any, policy: SlaPolicy) -> dict[str, Any]:
    return {
        "id": str(breach.id),
        "conversation_id": str(breach.conversation_id),
        "policy_id": str(policy.id),
        "policy_name": policy.name,
        "kind": breach.kind,
        "cycle_started_at": breach.cycle_started_at.isoformat(),
        "due_at": breach.due_at.isoformat(),
        "breached_at": breach.breached_at.isoformat(),
    }


def _cycle_start(sla: ConversationSla, kind: str) -> dt.datetime:
    return sla.next_response_started_at if kind == "next_response" else sla.started_at


# --- re-timing many clocks: queued by a change, done by check_sla in batches --------------

#: The job kind of a queued re-time (a ``jobs`` row: its status, params and progress).
RETIME_KIND = "sla.retime"


def queue_retime(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    division_id: uuid.UUID | None = None,
    policy_id: uuid.UUID | None = None,
) -> None:
    """Have ``check_sla`` re-time the tenant's running clocks (those under ``policy_id``;
    else the business-hours ones, of ``division_id``'s conversations when given) by the
    settings that apply now, a batch a run.

    NOTE: the change used to mark every such clock in one UPDATE inside its request: on a
    big tenant that locked every open conversation's clock (replies and check_sla waited)
    for as long as the request ran, and a timeout lost the whole change. The job row is
    written in the change's transaction, so the re-time is never lost; it is ``running``
    from the start (nothing to send: ``check_sla`` picks it up, and ``redrive_queued_jobs``
    leaves it alone).
    """
    params = {
        "division_id": None if division_id is None else str(division_id),
        "policy_id": None if policy_id is None else str(policy_id),
        "after": None,
    }
    # The same re-time queued and not begun yet covers this change too (a run taking it
    # now holds its lock and is skipped: a new one follows it).
    queued = session.scalar(
        select(Job.id)
        .where(
            Job.status.in_(("queued", "running")),
            Job.kind == RETIME_KIND,
            Job.tenant_id == tenant_id,
            Job.params == params,
        )
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if queued is not None:
        return
    session.add(
        Job(
            tenant_id=tenant_id,
            kind=RETIME_KIND,
            status="running",
            params=params,
            started_at=func.now(),
        )
    )
    session.flush()


def _retime_scope(tenant_id: uuid.UUID, params: dict[str, Any]) -> list[Any]:
    scope = [
        ConversationSla.tenant_id == tenant_id,
        ConversationSla.resolution_met_at.is_(None),
    ]
    if params.get("policy_id"):
        return [*scope, ConversationSla.policy_id == uuid.UUID(params["policy_id"])]
    scope.append(
        ConversationSla.policy_id.in_(
            select(SlaPolicy.id).where(
                SlaPolicy.tenant_id == tenant_id, SlaPolicy.business_hours_only.is_(True)
            )
        )
    )
    if params.get("division_id"):
        scope.append(
            ConversationSla.conversation_id.in_(
                select(Conversation.id).where(
                    Conversation.tenant_id == tenant_id,
                    Conversation.division_id == uuid.UUID(params["division_id"]),
                )
            )
        )
    return scope


def drain_retimes(session: Session, now: dt.datetime, *, batch: int = CHECK_BATCH) -> int:
    """Mark up to ``batch`` clocks of the queued re-times due now with a stale policy
    version (the check that follows re-times them); the number marked.

    Each job walks its clocks in ``conversation_id`` order from where the last run
    stopped (``params.after``), and succeeds once a batch comes back short. The job
    served longest ago goes first (``enqueued_at``, stamped at each turn): taken oldest
    first, a big tenant's walk (or several, one per change of its hours) had every batch
    until it was done, and every other tenant's clocks kept their old hours meanwhile.
    """
    jobs = session.scalars(
        select(Job)
        .where(Job.status.in_(("queued", "running")), Job.kind == RETIME_KIND)
        .order_by(Job.enqueued_at, Job.created_at, Job.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    marked = 0
    for job in jobs:
        room = batch - marked
        if room <= 0:
            break
        params = dict(job.params)
        query = select(ConversationSla.conversation_id).where(*_retime_scope(job.tenant_id, params))
        if params.get("after"):
            query = query.where(ConversationSla.conversation_id > uuid.UUID(params["after"]))
        ids = list(
            session.scalars(
                query.order_by(ConversationSla.conversation_id).limit(room).with_for_update()
            )
        )
        if ids:
            session.execute(
                update(ConversationSla)
                .where(ConversationSla.conversation_id.in_(ids))
                .values(policy_version=0, next_check_at=now)
            )
            marked += len(ids)
            params["after"] = str(ids[-1])
        job.params = params
        job.enqueued_at = func.now()
        if len(ids) < room:
            job.status = "succeeded"
            job.finished_at = func.now()
            job.result = {"done": True}
    session.flush()
    return marked


def check_due(session: Session, *, now: dt.datetime | None = None, batch: int = CHECK_BATCH) -> int:
    """Record every breach due by ``now`` once and emit ``sla.breached``; the breach count.

    Claims clocks with ``next_check_at <= now`` (``FOR UPDATE SKIP LOCKED``: a second
    scheduler, or a run overlapping a hook's transaction, takes the others). A policy
    changed since the clock was computed is applied first; a deleted or deactivated one
    stops the clock.
    """
    now = now or schedules.db_now(session)
    drain_retimes(session, now, batch=batch)
    # PERF: only the clock and its policy: joining conversations here made the planner
    # hash-join (scan) every conversation even when nothing was due.
    rows = session.execute(
        select(ConversationSla, SlaPolicy)
        .join(SlaPolicy, SlaPolicy.id == ConversationSla.policy_id)
        .where(
            ConversationSla.next_check_at <= now,
            ConversationSla.tenant_id.in_(select(Tenant.id).where(Tenant.status == "active")),
        )
        .order_by(ConversationSla.next_check_at)
        .limit(batch)
        .with_for_update(of=ConversationSla, skip_locked=True)
    ).all()
    due: list[tuple[ConversationSla, SlaPolicy, str, dt.datetime]] = []
    for sla, policy in rows:
        if policy.deleted_at is not None or not policy.is_active:
            sla.next_check_at = None
            continue
        if sla.policy_version != policy.version:
            _apply_policy(session, sla, policy, _conversation_ref(session, sla), now)
        # A paused clock is here only to take its policy's new settings; its due times
        # leave out the pause still running, so they are not breaches.
        running = sla.paused_at is None and sla.resolution_met_at is None
        for kind, due_at in list(_outstanding(sla)) if running else ():
            if due_at <= now:
                setattr(sla, f"{kind}_breached_at", due_at)
                due.append((sla, policy, kind, due_at))
        _refresh_next_check(sla)
        sla.updated_at = now
    session.flush()
    return _record(session, due, now)


def _conversation_ref(session: Session, sla: ConversationSla) -> Any:
    """What the clock needs of the conversation (tenant, division, status), for a recompute."""
    return session.execute(
        select(Conversation.tenant_id, Conversation.division_id, Conversation.status).where(
            Conversation.id == sla.conversation_id
        )
    ).one()


def _record(
    session: Session,
    due: list[tuple[ConversationSla, SlaPolicy, str, dt.datetime]],
    now: dt.datetime,
) -> int:
    """Insert the breaches not recorded yet (one per target cycle) and emit ``sla.breached``
    for those only; the number recorded.

    PERF: one INSERT and one batched outbox write per run, not one per breach. The rows
    travel as one parameter (:func:`shared.bulk_insert.insert_many`): a multi-row VALUES
    of a backlog (thousands of clocks overdue on several targets after an outage) passed
    PostgreSQL's 65,535 parameters a statement and failed every run.
    """
    if not due:
        return 0
    policies = {policy.id: policy for _, policy, _, _ in due}
    inserted = bulk_insert.insert_many(
        session,
        SlaBreach.__table__,
        [
            {
                "id": uuid.uuid4(),
                "tenant_id": sla.tenant_id,
                "conversation_id": sla.conversation_id,
                "policy_id": policy.id,
                "kind": kind,
                "cycle_started_at": _cycle_start(sla, kind),
                "due_at": due_at,
                "breached_at": now,
            }
            for sla, policy, kind, due_at in due
        ],
        on_conflict="ON CONFLICT DO NOTHING",
        returning="*",
    )
    emit_many(
        session,
        "sla.breached",
        [(row.tenant_id, _breach_data(row, policies[row.policy_id])) for row in inserted],
        actor=Actor.system(),
    )
    return len(inserted)
