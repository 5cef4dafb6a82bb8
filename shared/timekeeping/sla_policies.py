"""SLA policies (CRUD), their breaches, and a conversation's SLA status.

A policy applies to conversations opened after it was created (``sla.attach``). A change
of targets bumps ``version``: ``check_sla`` recomputes the clocks of open conversations
under the policy on its next run (their ``next_check_at`` is set to now). Deleting (or
deactivating) a policy stops its clocks; its breaches stay for the analytics rollups.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import activity
from shared.context import Ctx
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.inbox.access import get_conversation
from shared.models import ConversationSla, Division, SlaBreach, SlaPolicy
from shared.models.inbox import CHANNELS
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.sql import tenant_row
from shared.timekeeping.sla import KINDS, queue_retime

VIEW = "analytics.view"
MANAGE = "sla.manage"
#: Longest target: a year, in minutes.
MAX_TARGET_MINUTES = 525_600
#: Breaches a conversation's SLA status lists: its latest (each late answer to a customer
#: message is one, so a long conversation has no bound; the policy's list pages them all).
STATUS_BREACHES = 100
TARGETS = ("first_response_minutes", "next_response_minutes", "resolution_minutes")
#: Fields whose change moves due times (the clock is recomputed).
_CLOCK_FIELDS = (*TARGETS, "business_hours_only", "pause_on_pending", "pause_on_snoozed")
_FIELDS = (
    "name",
    "description",
    "is_active",
    "priority",
    "channels",
    "division_ids",
    "tags",
    *_CLOCK_FIELDS,
)


def policy_view(policy: SlaPolicy) -> dict[str, Any]:
    data = {name: getattr(policy, name) for name in _FIELDS}
    data["channels"] = list(policy.channels or [])
    data["division_ids"] = list(policy.division_ids or [])
    data["tags"] = list(policy.tags or [])
    return data | {
        "id": policy.id,
        "version": policy.version,
        "created_at": policy.created_at,
        "updated_at": policy.updated_at,
    }


def _json(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (
            str(v)
            if isinstance(v, uuid.UUID)
            else v.isoformat()
            if isinstance(v, dt.datetime)
            else [str(i) for i in v]
            if k == "division_ids"
            else v
        )
        for k, v in data.items()
    }


def _check(session: Session, ctx: Ctx, values: dict[str, Any]) -> None:
    """Refuse what the schema cannot see: targets, channels, another tenant's divisions."""
    for name in TARGETS:
        minutes = values.get(name)
        if minutes is not None and not 1 <= minutes <= MAX_TARGET_MINUTES:
            raise ValidationFailed.field(name, f"1 to {MAX_TARGET_MINUTES} minutes")
    for channel in values.get("channels") or []:
        if channel not in CHANNELS:
            raise ValidationFailed.field("channels", f"unknown channel '{channel}'")
    division_ids = set(values.get("division_ids") or [])
    if division_ids:
        found = _share_lock_divisions(session, ctx, division_ids)
        if missing := division_ids - found:
            raise ValidationFailed.field("division_ids", f"unknown division {sorted(missing)[0]}")


def _share_lock_divisions(
    session: Session, ctx: Ctx, division_ids: set[uuid.UUID]
) -> set[uuid.UUID]:
    """Those of ``division_ids`` that are the tenant's divisions, ``FOR SHARE`` until the
    caller commits (in id order).

    NOTE: ``division_ids`` has no foreign key. Read unlocked, a division being deleted
    (its ``forget_division`` done, uncommitted) was still found, and the policy saved
    kept its dead id. ``FOR SHARE`` conflicts with the deletion's ``FOR NO KEY UPDATE``
    (``FOR KEY SHARE`` would not): the save waits for the deletion and finds the division
    gone (422), or the deletion waits for the save and then takes the division off it.
    Lock order: divisions before policies, as the deletion (see :func:`update_policy`).
    """
    return set(
        session.scalars(
            select(Division.id)
            .where(Division.tenant_id == ctx.tenant_id, Division.id.in_(division_ids))
            .order_by(Division.id)
            .with_for_update(read=True)
        )
    )


def _require_a_target(policy_values: dict[str, Any]) -> None:
    if all(policy_values.get(name) is None for name in TARGETS):
        raise ValidationFailed.field("first_response_minutes", "set at least one target")


def _flush(session: Session, name: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"An SLA policy named '{name}' exists") from exc


def _get(session: Session, ctx: Ctx, policy_id: uuid.UUID, *, lock: bool = False) -> SlaPolicy:
    """The tenant's live policy (404 otherwise); with ``lock``, FOR NO KEY UPDATE.

    NOTE: not FOR UPDATE: every clock or breach inserted under the policy takes FOR KEY
    SHARE on it, which FOR UPDATE conflicts with. A change or deletion held it while it
    made the policy's clocks due; ``check_sla`` holding one of them and inserting its
    breach deadlocked with it. The id is never changed, so two changes still queue.
    """
    query = select(SlaPolicy).where(
        SlaPolicy.tenant_id == ctx.tenant_id,
        SlaPolicy.id == policy_id,
        SlaPolicy.deleted_at.is_(None),
    )
    policy = session.scalars(query.with_for_update(key_share=True) if lock else query).one_or_none()
    if policy is None:
        raise NotFound("SLA policy not found")
    return policy


def list_policies(
    session: Session, ctx: Ctx, *, limit: int, cursor: str | None = None
) -> Page[dict[str, Any]]:
    """The tenant's policies, newest first."""
    ctx.require(VIEW)
    query = select(SlaPolicy).where(
        SlaPolicy.tenant_id == ctx.tenant_id, SlaPolicy.deleted_at.is_(None)
    )
    if cursor:
        query = query.where(
            tuple_(SlaPolicy.created_at, SlaPolicy.id) < tuple_(*decode_cursor(cursor))
        )
    rows = session.scalars(
        query.order_by(SlaPolicy.created_at.desc(), SlaPolicy.id.desc()).limit(limit + 1)
    ).all()
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id)
    return Page([policy_view(p) for p in rows[:limit]], next_cursor)


def create_policy(session: Session, ctx: Ctx, values: dict[str, Any]) -> dict[str, Any]:
    """Create a policy; it applies to conversations opened from now on."""
    ctx.require(MANAGE)
    _check(session, ctx, values)
    _require_a_target(values)
    policy = SlaPolicy(tenant_id=ctx.tenant_id, **values)
    session.add(policy)
    _flush(session, values["name"])
    session.refresh(policy)
    data = policy_view(policy)
    activity.record(session, ctx, "sla_policy.created", "sla_policy", policy.id, after=_json(data))
    return data


def update_policy(
    session: Session, ctx: Ctx, policy_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    """Change the fields sent; new targets reach open conversations on ``check_sla``'s next run."""
    ctx.require(MANAGE)
    # NOTE (lock order): the divisions named (share-locked by _check) before the policy,
    # as a division's deletion takes its division, then the policies naming it: the other
    # way, a PATCH resending a division the policy names waited for that division's
    # deletion, which waited for the policy (a deadlock).
    _check(session, ctx, changes)
    policy = _get(session, ctx, policy_id, lock=True)
    before = policy_view(policy)
    _require_a_target({name: changes.get(name, before[name]) for name in TARGETS})
    clock_changed = any(name in changes and changes[name] != before[name] for name in _CLOCK_FIELDS)
    for name, value in changes.items():
        setattr(policy, name, value)
    if clock_changed:
        policy.version = SlaPolicy.version + 1
    policy.updated_at = func.now()
    _flush(session, changes.get("name", policy.name))
    if clock_changed or changes.get("is_active") is True:
        # NOTE: recomputed by check_sla (it holds the clock's lock), not here, and marked
        # by it too, a batch a run (sla.queue_retime): a policy may cover many open
        # conversations and this request stays short. Paused clocks too: a pause setting
        # turned off must restart them.
        queue_retime(session, ctx.tenant_id, policy_id=policy.id)
    return _record_update(session, ctx, policy, before)


def _record_update(
    session: Session, ctx: Ctx, policy: SlaPolicy, before: dict[str, Any]
) -> dict[str, Any]:
    """The policy as it now reads, written to the activity log beside ``before``."""
    session.refresh(policy)
    after = policy_view(policy)
    activity.record(
        session,
        ctx,
        "sla_policy.updated",
        "sla_policy",
        policy.id,
        before=_json(before),
        after=_json(after),
    )
    return after


def delete_policy(session: Session, ctx: Ctx, policy_id: uuid.UUID) -> None:
    """Stop tracking the policy's clocks; its breaches stay listed for reports."""
    ctx.require(MANAGE)
    policy = _get(session, ctx, policy_id, lock=True)
    before = policy_view(policy)
    policy.deleted_at = func.now()
    policy.is_active = False
    # NOTE: its clocks are not touched here (one UPDATE of every clock it ever had, inside
    # the request): check_sla stops each when it next comes due (a deleted or inactive
    # policy's clock is stopped, never judged), and the hooks leave it be (_settle).
    session.flush()
    activity.record(
        session, ctx, "sla_policy.deleted", "sla_policy", policy.id, before=_json(before)
    )


def forget_division(session: Session, ctx: Ctx, division_id: uuid.UUID) -> None:
    """Take a division being deleted off the policies naming it, in the delete's transaction.

    Kept, its id named nothing: the policy showed a division that answers 404, and saving
    the policy back as read was refused (422 unknown division). A live policy left with
    no division is switched off, not widened: an empty list matches every conversation,
    and a policy for one team must not start timing the whole inbox. Each live policy
    changed is written to the activity log; a deleted one only loses the id.
    """
    named = (
        SlaPolicy.tenant_id == ctx.tenant_id,
        SlaPolicy.division_ids.contains([division_id]),
    )
    # NOTE (lock order): FOR NO KEY UPDATE (key_share, not read), as no key changes here:
    # the deletion goes on to wait for the division's conversations, and FOR UPDATE held
    # back a clock's foreign key check on the policy (a clock started or moved under it) by
    # a transaction holding one of them: a deadlock. The deletion re-reads their clocks
    # once it has waited for them (divisions._release_conversations).
    policies = session.scalars(
        select(SlaPolicy).where(*named).order_by(SlaPolicy.id).with_for_update(key_share=True)
    ).all()
    for policy in policies:
        before = policy_view(policy)
        kept = [i for i in policy.division_ids if i != division_id]
        policy.division_ids = kept
        if policy.deleted_at is not None:
            continue
        if not kept:
            policy.is_active = False
        policy.updated_at = func.now()
        session.flush()
        _record_update(session, ctx, policy, before)
    session.flush()


def _breach_view(breach: SlaBreach) -> dict[str, Any]:
    return {
        "id": breach.id,
        "conversation_id": breach.conversation_id,
        "policy_id": breach.policy_id,
        "kind": breach.kind,
        "cycle_started_at": breach.cycle_started_at,
        "due_at": breach.due_at,
        "breached_at": breach.breached_at,
    }


def list_breaches(
    session: Session, ctx: Ctx, policy_id: uuid.UUID, *, limit: int, cursor: str | None = None
) -> Page[dict[str, Any]]:
    """The policy's breaches, newest first (``ix_sla_breaches_policy`` serves the keyset).

    A deleted policy's breaches stay listed, for reports.
    """
    ctx.require(VIEW)
    tenant_row(session, SlaPolicy, ctx.tenant_id, policy_id, missing="SLA policy not found")
    query = select(SlaBreach).where(
        SlaBreach.tenant_id == ctx.tenant_id, SlaBreach.policy_id == policy_id
    )
    if cursor:
        query = query.where(
            tuple_(SlaBreach.breached_at, SlaBreach.id) < tuple_(*decode_cursor(cursor))
        )
    rows = session.scalars(
        query.order_by(SlaBreach.breached_at.desc(), SlaBreach.id.desc()).limit(limit + 1)
    ).all()
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(rows[limit - 1].breached_at, rows[limit - 1].id)
    return Page([_breach_view(b) for b in rows[:limit]], next_cursor)


def conversation_sla(session: Session, ctx: Ctx, conversation_id: uuid.UUID) -> dict[str, Any]:
    """The conversation's policy, each target's due/met/breached times, and its breaches."""
    get_conversation(session, ctx, conversation_id)
    row = session.execute(
        select(ConversationSla, SlaPolicy)
        .join(SlaPolicy, SlaPolicy.id == ConversationSla.policy_id)
        .where(
            ConversationSla.tenant_id == ctx.tenant_id,
            ConversationSla.conversation_id == conversation_id,
        )
    ).one_or_none()
    latest = session.scalars(
        select(SlaBreach)
        .where(SlaBreach.tenant_id == ctx.tenant_id, SlaBreach.conversation_id == conversation_id)
        .order_by(SlaBreach.breached_at.desc(), SlaBreach.id.desc())
        .limit(STATUS_BREACHES)
    ).all()
    breaches = latest[::-1]
    if row is None:
        return {
            "policy": None,
            "started_at": None,
            "paused_at": None,
            "targets": [],
            "breaches": [_breach_view(b) for b in breaches],
        }
    sla, policy = row
    targets = []
    for kind in KINDS:
        minutes = getattr(policy, f"{kind}_minutes")
        if minutes is None:
            continue
        due = getattr(sla, f"{kind}_due_at")
        met = getattr(sla, f"{kind}_met_at")
        breached = getattr(sla, f"{kind}_breached_at")
        status = (
            "breached"
            if breached is not None
            else "met"
            if met is not None
            else "paused"
            if sla.paused_at is not None
            else "pending"
            if due is not None
            else "not_started"
        )
        targets.append(
            {
                "kind": kind,
                "target_minutes": minutes,
                "started_at": (
                    sla.next_response_started_at if kind == "next_response" else sla.started_at
                ),
                "due_at": due,
                "met_at": met,
                "breached_at": breached,
                "status": status,
            }
        )
    return {
        "policy": {
            "id": policy.id,
            "name": policy.name,
            "business_hours_only": policy.business_hours_only,
            "deleted": policy.deleted_at is not None,
        },
        "started_at": sla.started_at,
        "paused_at": sla.paused_at,
        "targets": targets,
        "breaches": [_breach_view(b) for b in breaches],
    }
