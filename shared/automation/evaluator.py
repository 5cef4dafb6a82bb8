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
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, select, update
from sqlalchemy.orm import Session

from shared.automation import executors
from shared.automation.actions import render_action
from shared.automation.compiled import CACHE, CompiledRule
from shared.automation.engine import evaluate
from shared.automation.facts import changes_of, gather
from shared.automation.runs import RunBatch, insert_runs
from shared.config import get_settings
from shared.context import Ctx
from shared.db import session_scope
from shared.errors import DomainError
from shared.events import Causation
from shared.models import AutomationEvent, AutomationRun, AutomationSettings, OutboxEvent

log = logging.getLogger(__name__)


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


def _claim(event_id: uuid.UUID) -> bool:
    with session_scope() as session:
        claimed = session.scalar(
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
            .returning(AutomationEvent.id)
        )
    return claimed is not None


def _run_state_statement() -> Any:
    """The tenant's rules version, and this event's settled and failed runs (not
    reprocess ones): PERF: one round trip where two were, built once."""
    r = AutomationRun
    of_event = (r.automation_event_id == bindparam("event_id"), r.reprocess.is_(False))
    return select(
        select(AutomationSettings.rules_version)
        .where(AutomationSettings.tenant_id == bindparam("tenant_id"))
        .scalar_subquery()
        .label("rules_version"),
        select(func.array_agg(r.rule_id))
        .where(*of_event, r.status != "failed")
        .scalar_subquery()
        .label("settled"),
        exists().where(*of_event, r.status == "failed").label("any_failed"),
    )


_RUN_STATE = _run_state_statement()


def _run_state(session: Session, event: AutomationEvent) -> tuple[int, set[uuid.UUID]]:
    """The rules version, and the rules already decided for this event (a retry re-runs
    only the failed ones: their runs are deleted here). A reprocess decides every rule."""
    row = session.execute(_RUN_STATE, {"tenant_id": event.tenant_id, "event_id": event.id}).one()
    if event.reprocess:
        return row.rules_version or 0, set()
    if row.any_failed:
        session.execute(
            delete(AutomationRun).where(
                AutomationRun.automation_event_id == event.id,
                AutomationRun.status == "failed",
                AutomationRun.reprocess.is_(False),
            )
        )
    return row.rules_version or 0, set(row.settled or ())


def process(session: Session, event: AutomationEvent) -> tuple[str, str | None]:
    """Evaluate and apply, in the caller's transaction; return the event's status and note.

    ``failed`` when an action of some rule failed (its run says which): a retry then
    re-runs only those rules. Otherwise ``done``.
    """
    facts, mute = gather(session, event.tenant_id, event.event_type, event.payload)
    if mute is not None:
        until = mute.until.isoformat() if mute.until else "unmuted"
        return "done", f"conversation muted until {until}"
    causation = Causation.from_dict(event.causation)
    changes = changes_of(event.event_type, event.payload)
    version, settled = _run_state(session, event)
    rules = CACHE.rules_for(session, event.tenant_id, event.event_type, version=version)
    outbox = conversation = None
    loaded = False
    stopped_by = None
    runs = RunBatch(event.tenant_id, event.id, facts, changes, event.reprocess)
    for rule in rules:
        if rule.id in settled:
            continue
        started = time.perf_counter()
        decision = decide(rule, facts, changes, causation, stopped_by=stopped_by)
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
            if rule.stop_processing:
                stopped_by = rule.id
        runs.add(
            rule_id=rule.id,
            rule_version=rule.version,
            snapshot_json=rule.snapshot_json,
            matched=decision.matched,
            status=status,
            condition_results=decision.trace,
            action_results=results,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            error=decision.reason or _first_error(results),
        )
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
    """The worker's entry point; returns what happened (``done``, ``skipped``, ``retry``...)."""
    if not _claim(event_id):
        return "skipped"
    try:
        with session_scope() as session:
            event = session.scalar(
                select(AutomationEvent).where(AutomationEvent.id == event_id).with_for_update()
            )
            if event is None or event.status != "processing":
                return "skipped"
            event.status, event.error = process(session, event)
            event.reprocess = False
            event.finished_at = func.clock_timestamp()
        return "done"
    except Exception as exc:
        if _record_failure(event_id, exc):
            return "failed"
        raise


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
