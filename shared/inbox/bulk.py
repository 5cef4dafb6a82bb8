"""Bulk conversation actions: small batches inline and all-or-nothing, large ones as a job.

Up to :data:`INLINE_LIMIT` ids run in the request's one transaction: every id is
checked first, and if any is unknown, invisible or illegal for the action nothing
is written and the error lists a result per id. Up to :data:`MAX_IDS` ids become
a ``jobs`` row and the ``bulk_conversation_action`` actor, which works in chunks
of :data:`CHUNK` (one transaction each, results recorded with the changes) and
skips ids already recorded, so a re-delivered message changes nothing twice.
Each changed conversation emits its own events, through the same ``apply_*``
functions as the single-conversation endpoints; but a large ``set_priority`` job tells the
streams once per chunk (:func:`announced_one_by_one`).
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import activity, db, dead_letters, jobs
from shared.context import Ctx
from shared.db import session_scope
from shared.errors import Conflict, DomainError, ValidationFailed
from shared.events import Actor
from shared.inbox import conversations as convs
from shared.inbox import states
from shared.inbox.access import visible
from shared.inbox.divisions import ANNOUNCED_ONE_BY_ONE
from shared.models import Conversation
from shared.realtime import feed

INLINE_LIMIT = 100
MAX_IDS = 5000
#: Conversations per transaction in the job (locks held briefly, progress visible).
CHUNK = 200
KIND = "conversations.bulk"
ACTIONS = (
    "assign",
    "unassign",
    "set_status",
    "add_tags",
    "remove_tags",
    "set_division",
    "set_priority",
)

#: The parameters each action takes; any other is refused, never silently ignored.
PARAMETERS: dict[str, frozenset[str]] = {
    "assign": frozenset({"assignee_id"}),
    "unassign": frozenset(),
    "set_status": frozenset({"status", "snoozed_until"}),
    "add_tags": frozenset({"tags"}),
    "remove_tags": frozenset({"tags"}),
    "set_division": frozenset({"division_id"}),
    "set_priority": frozenset({"priority"}),
}

#: ``enqueue(job_id, tenant_id)``: sends the actor; given by the caller (shared imports no workers).
Enqueue = Callable[[uuid.UUID, uuid.UUID], None]


class BulkConflict(Conflict):
    """Some conversations cannot take the action; ``details`` has a result per id."""


class BulkInvalid(ValidationFailed):
    """Some ids are unknown (or another tenant's); ``details`` has a result per id."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """Inline: ``results`` and ``counts``. Queued: ``job_id``."""

    results: list[dict[str, Any]] | None = None
    counts: dict[str, int] | None = None
    job_id: uuid.UUID | None = None


def dedupe(ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(ids))


# ---------------------------------------------------------------- parameters


def to_json(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as stored in ``jobs.params``."""
    out = {}
    for key, value in params.items():
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, dt.datetime):
            value = value.isoformat()
        out[key] = value
    return out


def _from_json(params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    for key in ("assignee_id", "division_id"):
        if out.get(key):
            out[key] = uuid.UUID(out[key])
    if out.get("snoozed_until"):
        out["snoozed_until"] = dt.datetime.fromisoformat(out["snoozed_until"])
    return out


def validate(session: Session, ctx: Ctx, action: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check the action's parameters once for all ids; 422 naming the field otherwise."""
    if action not in ACTIONS:
        raise ValidationFailed.field("action", f"unknown action '{action}'")
    stray = sorted(set(params) - PARAMETERS[action])
    if stray:
        raise ValidationFailed.field(stray[0], f"not a parameter of {action}")
    if action == "assign":
        if not params.get("assignee_id"):
            raise ValidationFailed.field("assignee_id", "required for assign")
        convs.live_agent(session, ctx, params["assignee_id"], "assignee_id")
        return {"assignee_id": params["assignee_id"]}
    if action == "set_status":
        status = params.get("status")
        if status not in states.STATUSES:
            raise ValidationFailed.field("status", "one of " + ", ".join(states.STATUSES))
        until = params.get("snoozed_until")
        if status == "snoozed" and (until is None or until <= states.db_now(session)):
            raise ValidationFailed.field("snoozed_until", "a future time is required to snooze")
        if status != "snoozed" and until is not None:
            raise ValidationFailed.field("snoozed_until", "only allowed with status 'snoozed'")
        return {"status": status, "snoozed_until": until}
    if action in ("add_tags", "remove_tags"):
        tags = params.get("tags") or []
        if not tags:
            raise ValidationFailed.field("tags", f"required for {action}")
        return {"tags": list(dict.fromkeys(convs.normalize_tag(t) for t in tags))}
    if action == "set_division":
        if "division_id" not in params:
            raise ValidationFailed.field("division_id", "required for set_division (or null)")
        if params["division_id"] is not None:
            convs.division(session, ctx, params["division_id"], "division_id")
        return {"division_id": params["division_id"]}
    if action == "set_priority":
        if params.get("priority") not in convs.PRIORITIES:
            raise ValidationFailed.field("priority", "one of " + ", ".join(convs.PRIORITIES))
        return {"priority": params["priority"]}
    return {}


# ---------------------------------------------------------------- one conversation


def _check(conversation: Conversation, action: str, params: dict[str, Any], now) -> None:
    """Raise a DomainError when ``action`` is illegal for this conversation; write nothing."""
    if action == "set_status":
        states.check(conversation, params["status"], snoozed_until=params["snoozed_until"], now=now)
    elif action == "add_tags":
        convs.merged_tags(list(conversation.tags), add=params["tags"])


def _apply(
    session: Session, ctx: Ctx, conversation, action: str, params, now, *, announce: bool = True
) -> bool:
    if action == "assign":
        return convs.apply_assignment(session, ctx, conversation, params["assignee_id"])
    if action == "unassign":
        return convs.apply_assignment(session, ctx, conversation, None)
    if action == "set_status":
        return states.transition(
            session,
            ctx,
            conversation,
            params["status"],
            snoozed_until=params["snoozed_until"],
            now=now,
        )
    if action in ("add_tags", "remove_tags"):
        key = "add" if action == "add_tags" else "remove"
        new, added, removed = convs.merged_tags(list(conversation.tags), **{key: params["tags"]})
        return convs.apply_tags(session, ctx, conversation, new, added, removed)
    field = "division_id" if action == "set_division" else "priority"
    return convs.apply_fields(session, ctx, conversation, {field: params[field]}, announce=announce)


def _lock(session: Session, ctx: Ctx, ids: list[uuid.UUID]) -> dict[uuid.UUID, Conversation]:
    # NOTE: locked in id order, so two bulk requests over the same rows cannot deadlock.
    rows = session.scalars(
        select(Conversation)
        .where(visible(ctx), Conversation.id.in_(ids))
        .order_by(Conversation.id)
        # NOTE: FOR NO KEY UPDATE, as get_conversation: each one's SLA clock is locked
        # next, and check_sla holding it inserts a breach referencing the conversation.
        .with_for_update(of=Conversation, key_share=True)
    ).all()
    return {row.id: row for row in rows}


def _counts(results: list[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(("updated", "unchanged", "not_found", "conflict"), 0)
    for result in results:
        counts[result["result"]] += 1
    return counts


# ---------------------------------------------------------------- entry points


def run(
    session: Session,
    ctx: Ctx,
    *,
    ids: list[uuid.UUID],
    action: str,
    params: dict[str, Any],
    enqueue: Enqueue,
) -> Outcome:
    """Apply ``action`` to ``ids`` inline (<= 100) or queue a job (<= 5000)."""
    ctx.require(convs.MANAGE)
    # Each id's first position in the request: what a refusal's ``field`` names.
    positions = {i: n for n, i in reversed(list(enumerate(ids)))}
    ids = dedupe(ids)
    if not 1 <= len(ids) <= MAX_IDS:
        raise ValidationFailed.field("ids", f"between 1 and {MAX_IDS} distinct ids")
    params = validate(session, ctx, action, params)
    if len(ids) <= INLINE_LIMIT:
        return _run_inline(session, ctx, ids, action, params, positions)
    job = jobs.create(
        session,
        ctx,
        KIND,
        {
            "ids": [str(i) for i in ids],
            "action": action,
            "params": to_json(params),
            "actor": ctx.actor.as_dict(),
        },
    )
    activity.record(
        session,
        ctx,
        "job.created",
        "job",
        job.id,
        after={"kind": KIND, "action": action, "count": len(ids)},
    )
    job_id, tenant_id = job.id, ctx.tenant_id
    db.after_commit(session, lambda: enqueue(job_id, tenant_id))
    return Outcome(job_id=job.id)


def _run_inline(session, ctx, ids, action, params, positions) -> Outcome:
    found = _lock(session, ctx, ids)
    now = states.db_now(session)
    problems: dict[uuid.UUID, dict[str, Any]] = {}
    for conversation_id in ids:
        conversation = found.get(conversation_id)
        if conversation is None:
            problems[conversation_id] = {"result": "not_found", "message": "Conversation not found"}
            continue
        try:
            _check(conversation, action, params, now)
        except DomainError as exc:
            problems[conversation_id] = {"result": "conflict", "message": exc.message}
    if problems:
        # NOTE: each entry names its field (API.md's 422 shape), as ``ids[0]`` does for a
        # malformed id: without it a client reading ``field`` found nothing to point at.
        details = [
            {
                "field": f"ids[{positions[i]}]",
                "id": str(i),
                **problems.get(i, {"result": "skipped", "message": "not changed"}),
            }
            for i in ids
        ]
        if any(p["result"] == "not_found" for p in problems.values()):
            raise BulkInvalid(
                f"{len(problems)} of {len(ids)} conversations cannot be changed; nothing was",
                details=details,
            )
        raise BulkConflict(
            f"{len(problems)} of {len(ids)} conversations cannot be changed; nothing was",
            details=details,
        )
    results = []
    for conversation_id in ids:
        changed = _apply(session, ctx, found[conversation_id], action, params, now)
        results.append(
            {"id": str(conversation_id), "result": "updated" if changed else "unchanged"}
        )
    return Outcome(results=results, counts=_counts(results))


def process_job(job_id: uuid.UUID, *, chunk: int = CHUNK) -> str:
    """Run (or resume) a bulk job; returns its final status. Safe to call again.

    Each chunk locks the job row first, so a duplicate delivery running at the
    same time waits, then finds those ids recorded and skips them. Each chunk also
    stamps the job as progressing: a job idle while ``running`` lost its worker and its
    message, and the scheduler's ``redrive_queued_jobs`` sends it again.
    """
    while True:
        with session_scope() as session:
            job = jobs.lock(session, job_id)
            if job is None:
                return "unknown"
            if job.status in ("succeeded", "failed"):
                return job.status
            spec = job.params
            ids = [uuid.UUID(i) for i in spec["ids"]]
            actor = Actor.from_dict(spec["actor"])
            ctx = Ctx.system(job.tenant_id, actor=actor)
            # NOTE: a deep copy: mutating the loaded JSON in place would make the new
            # value equal the "old" one, and SQLAlchemy would skip the UPDATE.
            result = copy.deepcopy(job.result) or {"total": len(ids), "processed": 0, "results": []}
            if job.status == "queued":
                job.status, job.started_at = "running", func.now()
            try:
                params = validate(session, ctx, spec["action"], _from_json(spec["params"]))
            except DomainError as exc:
                # A target vanished since the request (agent or division deleted): no
                # retry can fix that, so the job fails at once with the reason.
                job.status, job.error, job.finished_at = "failed", exc.message, func.now()
                return "failed"
            done = {r["id"] for r in result["results"]}
            todo = [i for i in ids if str(i) not in done][:chunk]
            if not todo:
                job.status, job.finished_at = "succeeded", func.now()
                job.result = result | {"counts": _counts(result["results"])}
                return "succeeded"
            found = _lock(session, ctx, todo)
            now = states.db_now(session)
            one_by_one = announced_one_by_one(spec["action"], len(ids))
            chunk_results = []
            for conversation_id in todo:
                conversation = found.get(conversation_id)
                chunk_results.append(
                    _job_one(
                        session, ctx, conversation, conversation_id, spec, params, now, one_by_one
                    )
                )
            result["results"].extend(chunk_results)
            result["processed"] = len(result["results"])
            if not one_by_one:
                _announce_chunk(session, ctx, job.id, params, chunk_results)
            result["counts"] = _counts(result["results"])
            job.result = result
            jobs.progressed(job)


def announced_one_by_one(action: str, total: int) -> bool:
    """Whether a job's changes reach the streams one conversation at a time.

    NOTE: a ``set_priority`` of more than ``divisions.ANNOUNCED_ONE_BY_ONE`` conversations
    is told with one entry per chunk (:func:`_announce_chunk`), not one per conversation, as
    a large division's deletion is told with one: thousands of entries trimmed the tenant's
    backlog and overflowed slow managers' streams. ``set_division`` stays one by one: its
    entries tell each agent whether they still see the conversation.
    """
    return action != "set_priority" or total <= ANNOUNCED_ONE_BY_ONE


def _announce_chunk(session: Session, ctx: Ctx, job_id: uuid.UUID, params, chunk_results) -> None:
    """The ``conversations.priority_changed`` of one chunk of a job too large to announce one
    by one (none if the chunk changed nothing), written in the chunk's own transaction.

    NOTE: per chunk, not once at the end: a job that fails after some chunks committed (retries
    exhausted, a target vanished) kept those changes but never told the streams, and a job of
    100k conversations showed nothing for minutes. Written with the chunk, the entry is
    published exactly when its changes commit (none on rollback), and a re-delivered chunk,
    whose ids are already recorded, changes and announces nothing again.
    """
    if not any(r["result"] == "updated" for r in chunk_results):
        return
    # NOTE: no counts: an agent may not see every conversation the chunk changed.
    data = {"priority": params["priority"], "job_id": str(job_id)}
    now = states.db_now(session)
    feed.announce(session, ctx.tenant_id, feed.PRIORITIES_CHANGED, data, ctx.actor.as_dict(), now)


def _job_one(
    session, ctx, conversation, conversation_id, spec, params, now, announce
) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": str(conversation_id)}
    if conversation is None:
        return entry | {"result": "not_found", "message": "Conversation not found"}
    try:
        _check(conversation, spec["action"], params, now)
    except DomainError as exc:
        return entry | {"result": "conflict", "message": exc.message}
    changed = _apply(session, ctx, conversation, spec["action"], params, now, announce=announce)
    return entry | {"result": "updated" if changed else "unchanged"}


def revive(session: Session, tenant_id: uuid.UUID | None, args: list[Any], **_options: Any) -> None:
    """Reopen the job of a ``bulk_conversation_action`` dead letter, or 409 saying why not.

    WHY: ``mark_bulk_job_failed`` failed the job when its retries ran out, so the
    requeued job found it finished and changed nothing. Reopened under its row lock, in
    the requeue's transaction: the requeued job waits for that lock, then resumes after
    the conversations already done.
    """
    job = jobs.locked_for_requeue(session, tenant_id, dead_letters.row_id(args), KIND)
    if job.status == "failed":
        jobs.reopen(session, job)
