"""Evaluate one automation event: a run per trigger-matching rule, actions applied exactly once.

``evaluate_rules`` (the worker) calls :func:`evaluate_event`:

1. *claim* (own transaction): ``pending``/``processing`` -> ``processing``, attempts + 1;
   a row already ``done`` or ``failed`` is left alone (a duplicate message is a no-op).
2. *evaluate* (one transaction): lock the row, build the facts, evaluate the rules in
   priority order, apply the matched rules' actions, insert the runs, mark ``done``.
   A worker killed here leaves nothing half-applied: the row stays ``processing`` and
   the sweeper re-drives it. Two workers on one row serialize on its lock; the
   second finds it ``done``. The unique (event, rule) index is the last guard.
3. on an unexpected error (own transaction): record it; ``failed`` after
   ``AUTOMATION_MAX_ATTEMPTS``, otherwise back to ``pending`` and the job retries.

An action refused by the domain (an illegal transition, a closed WhatsApp window)
is that action's failure, recorded on the run (status ``failed``); it is not retried.
Loops: a rule is skipped on an event whose causation chain it is part of, and an
event deeper than ``AUTOMATION_MAX_CHAIN_DEPTH`` evaluates no rule; both leave a run
saying why.

Operations (:mod:`shared.automation.effective`): a rule that is snoozed, outside its
schedule windows or outside its rollout is skipped with a run saying why. An event
the tenant's global control pauses is not evaluated at all: it waits, held, until
the control lets it run (:func:`shared.automation.control.hold`). Past the tenant's
ceiling on actions per minute the evaluation is rolled back and the event waits for
the next minute (:mod:`shared.automation.ceiling`); neither counts as an attempt.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, literal_column, select, update
from sqlalchemy.orm import Session

from shared.admin import dropped_work, tenant_state
from shared.automation import ceiling, clock, control, executors
from shared.automation.actions import render_action
from shared.automation.compiled import CACHE, CompiledRule
from shared.automation.effective import Control, Moment, blocked, subject_of
from shared.automation.engine import evaluate
from shared.automation.facts import changes_of, gather
from shared.automation.runs import RunBatch, insert_runs
from shared.config import get_settings
from shared.context import Ctx
from shared.db import session_scope
from shared.errors import DomainError
from shared.events import Causation
from shared.models import AutomationEvent, AutomationRun, AutomationSettings, OutboxEvent, Tenant

log = logging.getLogger(__name__)


class Held(Exception):
    """The tenant's control pauses this event: it waits, not evaluated."""


class Deferred(Exception):
    """The tenant's action ceiling is reached for this minute: evaluate again after it."""

    def __init__(self, until: dt.datetime, at: dt.datetime, ceiling: int) -> None:
        super().__init__(f"action ceiling of {ceiling}/min reached")
        self.until, self.at = until, at


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What one rule decides on one event, before any action runs."""

    status: str  # matched | not_matched | skipped
    matched: bool
    trace: list[dict[str, Any]]
    reason: str | None = None


def decide(
    rule: CompiledRule,
    facts: dict[str, Any],
    changes: dict[str, Any],
    causation: Causation,
    *,
    stopped_by: uuid.UUID | None = None,
) -> Decision:
    """The rule's decision: skipped for a loop, a too-deep chain or a stop, else the engine's."""
    max_depth = get_settings().automation_max_chain_depth
    if causation.depth >= max_depth:
        reason = f"causation chain depth {causation.depth} reached the bound of {max_depth}"
        return Decision("skipped", False, [], reason)
    if str(rule.id) in causation.rule_ids:
        return Decision("skipped", False, [], "loop: this rule's actions caused this event")
    if stopped_by is not None:
        return Decision("skipped", False, [], f"stopped by rule {stopped_by} (stop_processing)")
    evaluation = evaluate(rule.compiled, facts, _as_tuples(changes), trace=True)
    status = "matched" if evaluation.matched else "not_matched"
    return Decision(status, evaluation.matched, list(evaluation.trace))


def _as_tuples(changes: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {name: (pair[0], pair[1]) for name, pair in changes.items()}


def rendered_params(action: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """The action's params with template variables rendered from the facts."""
    return render_action(action, facts)["params"]


def _apply(
    session: Session, rule: CompiledRule, target: executors.Target
) -> tuple[list[dict[str, Any]], bool]:
    """Run the rule's actions in order, each in a savepoint; return the results and success."""
    results, ok = [], True
    for index, action in enumerate(rule.actions):
        started = time.perf_counter()
        entry: dict[str, Any] = {"index": index, "type": action.get("type")}
        try:
            params = rendered_params(action, target.facts)
            entry["params"] = params
            with session.begin_nested():
                entry.update(executors.EXECUTORS[action["type"]](target, params))
        except DomainError as exc:
            ok = False
            entry.update(result="failed", error=exc.message, code=exc.code)
        entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        results.append(entry)
    return results, ok


def _claim(event_id: uuid.UUID) -> uuid.UUID | None:
    """Take the event (``processing``, one more attempt); its tenant, or None if done."""
    with session_scope() as session:
        return session.scalar(
            update(AutomationEvent)
            .where(
                AutomationEvent.id == event_id,
                AutomationEvent.status.in_(("pending", "processing")),
            )
            .values(
                status="processing",
                attempts=AutomationEvent.attempts + 1,
                started_at=func.now(),
            )
            .returning(AutomationEvent.tenant_id)
        )


#: ``evaluate_rules``'s queue, for the dead letter that redoes it (shared code does not
#: import the workers' queue names).
QUEUE_NAME = "automation"


def _hold_suspended(event_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
    """A suspended workspace's evaluation: back to pending (no attempt), on record once.

    The sweeper leaves it alone until the workspace is reactivated, then sends it again.
    """
    with session_scope() as session:
        session.execute(
            update(AutomationEvent)
            .where(AutomationEvent.id == event_id, AutomationEvent.status == "processing")
            .values(status="pending", attempts=AutomationEvent.attempts - 1)
        )
        dropped_work.record(
            session,
            tenant_id=tenant_id,
            queue_name=QUEUE_NAME,
            actor_name="evaluate_rules",
            args=[str(event_id)],
            options={"tenant_id": str(tenant_id)},
        )


def _run_state_statement() -> Any:
    """The tenant's rules version and control, its timezone, the database clock, and this
    event's settled and failed runs (not reprocess ones).

    PERF: one round trip per event for all of it, built once: the effective-state
    inputs that depend only on the event ride along with the rules version read.
    """
    r = AutomationRun
    s = AutomationSettings
    of_event = (r.automation_event_id == bindparam("event_id"), r.reprocess.is_(False))
    return (
        select(
            s.rules_version,
            s.paused,
            s.paused_event_types,
            s.max_actions_per_minute,
            s.pause_reason,
            Tenant.timezone.label("tenant_timezone"),
            func.now().label("now"),
            select(func.array_agg(r.rule_id))
            .where(*of_event, r.status != "failed")
            .scalar_subquery()
            .label("settled"),
            exists().where(*of_event, r.status == "failed").label("any_failed"),
        )
        .select_from(Tenant)
        .outerjoin(s, s.tenant_id == Tenant.id)
        .where(Tenant.id == bindparam("tenant_id"))
    )


_RUN_STATE = _run_state_statement()


@dataclasses.dataclass(frozen=True, slots=True)
class RunState:
    version: int
    settled: set[uuid.UUID]
    any_failed: bool
    moment: Moment


def _run_state(session: Session, event: AutomationEvent) -> RunState:
    """The rules version, the rules already decided for this event (a reprocess decides
    every rule again) and the moment the rules are checked at."""
    row = session.execute(_RUN_STATE, {"tenant_id": event.tenant_id, "event_id": event.id}).one()
    moment = Moment(
        now=clock.now(row.now),
        tenant_timezone=row.tenant_timezone or "UTC",
        control=Control.of(row) if row.paused is not None else Control(),
        event_type=event.event_type,
        subject_id=subject_of(event.event_type, event.payload, event.conversation_id)
        or event.outbox_event_id,
    )
    if event.reprocess:
        return RunState(row.rules_version or 0, set(), False, moment)
    return RunState(row.rules_version or 0, set(row.settled or ()), row.any_failed, moment)


def _forget_failed_runs(session: Session, event: AutomationEvent) -> None:
    """A retry re-runs only the failed rules: their runs are deleted here."""
    session.execute(
        delete(AutomationRun).where(
            AutomationRun.automation_event_id == event.id,
            AutomationRun.status == "failed",
            AutomationRun.reprocess.is_(False),
        )
    )


def _act(
    session: Session,
    event: AutomationEvent,
    causation: Causation,
    facts: dict[str, Any],
    changes: dict[str, Any],
    decided: list[tuple[CompiledRule, Decision, float]],
    at: dt.datetime,
) -> RunBatch:
    """Apply the matched rules' actions in order; one run per decided rule."""
    outbox = conversation = None
    loaded = False
    runs = RunBatch(event.tenant_id, event.id, facts, changes, event.reprocess, at)
    for rule, decision, deciding in decided:
        started = time.perf_counter()
        results, status = [], decision.status
        if decision.matched:
            ctx = Ctx.automation(
                event.tenant_id, rule.id, causation.extended(rule.id), user_id=rule.created_by
            )
            if not loaded:  # read (and lock) once, and only when a rule acts
                loaded = True
                outbox = session.get(OutboxEvent, event.outbox_event_id)
                conversation = executors.lock_conversation(session, ctx, event.conversation_id)
            target = executors.Target(session, ctx, conversation, outbox, facts)
            results, ok = _apply(session, rule, target)
            status = "matched" if ok else "failed"
        runs.add(
            rule_id=rule.id,
            rule_version=rule.version,
            snapshot_json=rule.snapshot_json,
            matched=decision.matched,
            status=status,
            condition_results=decision.trace,
            action_results=results,
            duration_ms=round((deciding + time.perf_counter() - started) * 1000, 3),
            error=decision.reason or _first_error(results),
        )
    return runs


def process(session: Session, event: AutomationEvent) -> tuple[str, str | None]:
    """Evaluate and apply, in the caller's transaction; return the event's status and note.

    ``failed`` when an action of some rule failed (its run says which): a retry then
    re-runs only those rules. Otherwise ``done``. Raises :class:`Held` when the control
    pauses the event and :class:`Deferred` past the action ceiling (the caller rolls back).
    """
    state = _run_state(session, event)
    moment = state.moment
    if moment.control.blocks(event.event_type) is not None:
        raise Held()
    facts, mute = gather(session, event.tenant_id, event.event_type, event.payload)
    if mute is not None:
        until = mute.until.isoformat() if mute.until else "unmuted"
        return "done", f"conversation muted until {until}"
    if state.any_failed:
        _forget_failed_runs(session, event)
    causation = Causation.from_dict(event.causation)
    changes = changes_of(event.event_type, event.payload)
    rules = CACHE.rules_for(session, event.tenant_id, event.event_type, version=state.version)
    # Decide every rule first (facts are fixed for the event, so no action changes a
    # decision), then take the actions of the matched ones from the ceiling at once:
    # an event that needs more than a minute's ceiling still runs, alone, in a new one.
    decided: list[tuple[CompiledRule, Decision, float]] = []
    stopped_by = None
    for rule in rules:
        if rule.id in state.settled:
            continue
        started = time.perf_counter()
        reason = blocked(rule.id, rule.gate, moment)
        if reason is not None:
            decision = Decision("skipped", False, [], reason)
        else:
            decision = decide(rule, facts, changes, causation, stopped_by=stopped_by)
            if decision.matched and rule.stop_processing:
                stopped_by = rule.id
        decided.append((rule, decision, time.perf_counter() - started))
    limit = moment.control.max_actions_per_minute
    needed = sum(len(rule.actions) for rule, decision, _ in decided if decision.matched)
    if limit is not None and needed:
        if not ceiling.take(event.tenant_id, needed, limit, moment.now):
            raise Deferred(ceiling.next_minute(moment.now), moment.now, limit)
        try:
            runs = _act(session, event, causation, facts, changes, decided, moment.now)
        except BaseException:
            ceiling.give_back(event.tenant_id, needed, moment.now)
            raise
    else:
        runs = _act(session, event, causation, facts, changes, decided, moment.now)
    insert_runs(session, runs)
    failed = runs.failed
    if failed:
        rule_id, error = failed[0]
        note = f"{len(failed)} rule(s) failed; rule {rule_id}: {error}"
        return "failed", note[:4000]
    return "done", None


def _first_error(results: list[dict[str, Any]]) -> str | None:
    return next((r["error"] for r in results if r.get("result") == "failed"), None)


def evaluate_event(event_id: uuid.UUID) -> str:
    """The worker's entry point; returns what happened (``done``, ``held``, ``retry``...)."""
    tenant_id = _claim(event_id)
    if tenant_id is None:
        return "skipped"
    if tenant_state.is_suspended(tenant_id):
        _hold_suspended(event_id, tenant_id)
        return "suspended"
    event_type = None
    try:
        with session_scope() as session:
            event = session.scalar(
                select(AutomationEvent).where(AutomationEvent.id == event_id).with_for_update()
            )
            if event is None or event.status != "processing":
                return "skipped"
            tenant_id, event_type = event.tenant_id, event.event_type
            event.status, event.error = process(session, event)
            event.reprocess = False
            event.finished_at = func.clock_timestamp()
        return "done"
    except Held:
        return control.hold(event_id, tenant_id, event_type)
    except Deferred as deferred:  # nothing was taken from the ceiling
        _defer(event_id, deferred)
        return "deferred"
    except Exception as exc:
        if _record_failure(event_id, exc):
            return "failed"
        raise


def _defer(event_id: uuid.UUID, deferred: Deferred) -> None:
    """Back to ``pending`` until the next minute (the sweeper sends it then); no attempt."""
    wait = max((deferred.until - deferred.at).total_seconds(), 0.0)
    with session_scope() as session:
        session.execute(
            update(AutomationEvent)
            .where(AutomationEvent.id == event_id, AutomationEvent.status == "processing")
            .values(
                status="pending",
                attempts=AutomationEvent.attempts - 1,
                # NOTE: the wait is measured on the judged clock, the due time on the database's.
                sweep_at=func.now() + literal_column("interval '1 second'") * wait,
                error=f"deferred: {deferred}",
            )
        )


def _record_failure(event_id: uuid.UUID, exc: Exception) -> bool:
    """Keep the error on the row; mark it failed once out of attempts (True), else pending."""
    error = f"{type(exc).__name__}: {exc}"[:4000]
    with session_scope() as session:
        event = session.get(AutomationEvent, event_id, with_for_update=True)
        if event is None:
            return True
        out_of_attempts = event.attempts >= get_settings().automation_max_attempts
        event.status = "failed" if out_of_attempts else "pending"
        event.error = error
        if out_of_attempts:
            event.finished_at = func.now()
    log.warning("automation event %s: %s", event_id, error, exc_info=not out_of_attempts)
    return out_of_attempts
