"""Evaluate automation events in batches: a run per trigger-matching rule, actions applied once.

``evaluate_rules`` (the worker, one message per batch of queue rows) calls
:func:`evaluate_events`:

1. *claim* (own transaction, :mod:`shared.automation.claims`): ``pending``/``processing``
   -> ``processing``, attempts + 1; a row already ``done`` or ``failed`` is left alone
   (a duplicate message is a no-op).
2. *evaluate* (one transaction for the batch, :func:`process_many`): lock the rows, read
   their run states and facts, decide the rules in priority order, apply the matched
   rules' actions event by event, insert the runs, mark the rows ``done``. A worker
   killed here leaves nothing half-applied: the rows stay ``processing`` and the
   sweeper re-drives them. Two workers on one row serialize on its lock; the second
   finds it ``done``. The unique (event, rule) index is the last guard.
3. on an unexpected error the batch is rolled back and each row evaluated alone; a row
   that fails alone records it (own transaction): ``failed`` after
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
ceiling on actions per minute the event is not evaluated and waits for the next
minute (:mod:`shared.automation.ceiling`); neither counts as an attempt.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from psycopg.errors import LockNotAvailable
from sqlalchemy import Uuid, any_, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import ARRAY, distinct_on
from sqlalchemy.orm import Session

from shared.admin import tenant_state
from shared.automation import ceiling, claims, clock, control, executors, stats
from shared.automation.actions import render_action
from shared.automation.compiled import CACHE, CompiledRule
from shared.automation.effective import Control, Moment, blocked, subject_of
from shared.automation.engine import evaluate
from shared.automation.engine import outcomes as leaf_outcomes
from shared.automation.facts import changes_of, gather, gather_many
from shared.automation.rules import hold_rules_shared
from shared.automation.runs import RunBatch, insert_runs
from shared.config import get_settings
from shared.context import Ctx
from shared.db import session_scope
from shared.errors import DomainError
from shared.events import Causation
from shared.models import (
    AutomationEvent,
    AutomationRun,
    AutomationSettings,
    Conversation,
    Message,
    OutboxEvent,
    Tenant,
)

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
    #: Each leaf's outcome, one character each (:func:`engine.outcomes`), when decided
    #: without a trace: the run stores it and its trace is rebuilt on read.
    outcomes: str | None = None


def decide(
    rule: CompiledRule,
    facts: dict[str, Any],
    changes: dict[str, Any],
    causation: Causation,
    *,
    stopped_by: uuid.UUID | None = None,
    trace: bool = True,
) -> Decision:
    """The rule's decision: skipped for a loop, a too-deep chain or a stop, else the engine's.

    ``trace=False`` (the worker) keeps the leaves' outcomes instead of the trace, and
    takes ``changes`` already as ``(before, after)`` tuples.
    """
    max_depth = get_settings().automation_max_chain_depth
    if causation.depth >= max_depth:
        reason = f"causation chain depth {causation.depth} reached the bound of {max_depth}"
        return Decision("skipped", False, [], reason)
    if causation.rule_ids and rule.id_text in causation.rule_ids:
        return Decision("skipped", False, [], "loop: this rule's actions caused this event")
    if stopped_by is not None:
        return Decision("skipped", False, [], f"stopped by rule {stopped_by} (stop_processing)")
    if not trace:
        matched, codes = leaf_outcomes(rule.compiled, facts, changes)
        return Decision("matched" if matched else "not_matched", matched, [], outcomes=codes)
    evaluation = evaluate(rule.compiled, facts, _as_tuples(changes), trace=True)
    status = "matched" if evaluation.matched else "not_matched"
    return Decision(status, evaluation.matched, list(evaluation.trace))


def causation_of(
    session: Session,
    tenant_id: uuid.UUID,
    event_type: str,
    payload: dict[str, Any],
    stored: dict[str, Any] | None,
) -> Causation:
    """The causation chain of an event: its own, or for a delivery status of a message
    an action sent, the chain of the run that sent it.

    NOTE: the channel reports statuses as the system's events; without this, a rule
    replying to ``message.status_updated`` fired on its own reply's statuses forever.
    """
    if stored or event_type != "message.status_updated":
        return Causation.from_dict(stored)
    rule_id = payload.get("sender_id") if payload.get("sender_type") == "automation" else None
    message_id = payload.get("id")
    if not rule_id or not message_id:
        return Causation()
    try:
        message_id = uuid.UUID(str(message_id))
    except ValueError:
        return Causation()
    kept = session.scalar(
        select(Message.metadata_[executors.CAUSATION_KEY]).where(
            Message.tenant_id == tenant_id, Message.id == message_id
        )
    )
    if isinstance(kept, dict):
        return Causation.from_dict(kept)
    return Causation((str(rule_id),), 1)  # sent before chains were kept: its rule at least


def _as_tuples(changes: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {name: (pair[0], pair[1]) for name, pair in changes.items()}


def rendered_params(action: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """The action's params with template variables rendered from the facts."""
    return render_action(action, facts)["params"]


def _apply(
    session: Session,
    rule: CompiledRule,
    target: executors.Target,
    done: dict[int, dict[str, Any]],
) -> tuple[list[dict[str, Any]], bool]:
    """Run the rule's actions in order, each in a savepoint; return the results and success.

    ``done``: the results of the actions a retried rule already applied
    (:meth:`FailedRun.already_done`), listed in their place instead of running again.
    """
    results, ok = [], True
    for index, action in enumerate(rule.actions):
        if index in done:
            results.append(done[index])
            continue
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


def _run_state_statement() -> Any:
    """Per event of a batch: the tenant's rules version and control, its timezone, the
    database clock, and each rule's latest run on the event: settled, or failed.

    A rule's latest run is what it last did for the event, in an evaluation, a retry or
    a reprocess: a rule that acted in a reprocess is settled, one that failed there is
    what a retry re-runs.

    PERF: one round trip per batch for all of it, built once: the effective-state
    inputs that depend only on the event ride along with the rules version read. The
    runs are one index scan by the batch's ids, grouped per event (a subquery per
    event was planned as a scan of the runs table once it held many).
    """
    r = AutomationRun
    s = AutomationSettings
    e = AutomationEvent
    event_ids = bindparam("event_ids", type_=ARRAY(Uuid))
    latest = (
        select(r.automation_event_id, r.rule_id, r.id, r.status, r.reprocess, r.action_results)
        .where(r.automation_event_id == any_(event_ids))
        .ext(distinct_on(r.automation_event_id, r.rule_id))
        .order_by(r.automation_event_id, r.rule_id, r.created_at.desc(), r.id.desc())
        .subquery("latest")
    )
    failed = latest.c.status == "failed"
    runs = (
        select(
            latest.c.automation_event_id,
            func.array_agg(latest.c.rule_id).filter(~failed).label("settled"),
            func.json_agg(
                func.json_build_array(
                    latest.c.rule_id, latest.c.id, latest.c.reprocess, latest.c.action_results
                )
            )
            .filter(failed)
            .label("failed"),
        )
        .group_by(latest.c.automation_event_id)
        .subquery("runs")
    )
    return (
        select(
            e.id.label("event_id"),
            s.rules_version,
            s.paused,
            s.paused_event_types,
            s.max_actions_per_minute,
            s.pause_reason,
            Tenant.timezone.label("tenant_timezone"),
            func.now().label("now"),
            runs.c.settled,
            runs.c.failed,
        )
        .select_from(e)
        .join(Tenant, Tenant.id == e.tenant_id)
        .outerjoin(s, s.tenant_id == e.tenant_id)
        .outerjoin(runs, runs.c.automation_event_id == e.id)
        .where(e.id == any_(event_ids))
    )


_RUN_STATE = _run_state_statement()


@dataclasses.dataclass(frozen=True, slots=True)
class FailedRun:
    """A rule's latest run on an event, failed: the run a retry of the rule replaces."""

    id: uuid.UUID
    #: The retry's run keeps this flag: a rule that failed in a reprocess is retried as
    #: part of it (its evaluation's run of the rule, if any, stays as it was).
    reprocess: bool
    action_results: list[dict[str, Any]]

    def already_done(self, rule: CompiledRule) -> dict[int, dict[str, Any]]:
        """The rule's actions that succeeded in this run, by index, marked ``already_done``:
        a retry does not run them again and its run carries them on in their place, so it
        still lists every action. Matched by position and type (a rule edited since keeps
        the steps it still has)."""
        actions = rule.actions
        done = {}
        for entry in self.action_results:
            index = entry.get("index")
            if (
                entry.get("result") not in ("failed", None)
                and isinstance(index, int)
                and index < len(actions)
                and actions[index].get("type") == entry.get("type")
            ):
                done[index] = {**entry, "already_done": True}
        return done


@dataclasses.dataclass(frozen=True, slots=True)
class RunState:
    version: int
    #: Rules whose latest run on the event did not fail: not evaluated again.
    settled: set[uuid.UUID]
    #: Rules whose latest run failed, and that run: a retry re-runs them.
    failed: dict[uuid.UUID, FailedRun]
    moment: Moment


def _failed_runs(rows: list[list[Any]] | None) -> dict[uuid.UUID, FailedRun]:
    return {
        uuid.UUID(rule_id): FailedRun(uuid.UUID(run_id), reprocess, results or [])
        for rule_id, run_id, reprocess, results in rows or ()
    }


def _run_states(session: Session, events: list[AutomationEvent]) -> dict[uuid.UUID, RunState]:
    """Per event: the rules version, the rules already decided for it and those whose
    last run failed (a reprocess decides every rule again), and the moment the rules
    are checked at."""
    by_id = {event.id: event for event in events}
    states = {}
    for row in session.execute(_RUN_STATE, {"event_ids": list(by_id)}):
        event = by_id[row.event_id]
        moment = Moment(
            now=clock.now(row.now),
            tenant_timezone=row.tenant_timezone or "UTC",
            control=Control.of(row) if row.paused is not None else Control(),
            event_type=event.event_type,
            subject_id=subject_of(event.event_type, event.payload, event.conversation_id)
            or event.outbox_event_id,
        )
        version = row.rules_version or 0
        if event.reprocess:
            states[event.id] = RunState(version, set(), {}, moment)
        else:
            settled = set(row.settled or ())
            states[event.id] = RunState(version, settled, _failed_runs(row.failed), moment)
    return states


def _forget_failed_runs(session: Session, run_ids: list[uuid.UUID]) -> None:
    """The failed runs of the rules a retry re-ran: their new runs replace them, in the
    runs and in the stats rollups (a retried rule counts once, as its final run)."""
    if run_ids:
        r = AutomationRun
        replaced = session.execute(
            delete(r)
            .where(r.id.in_(run_ids))
            .returning(r.tenant_id, r.rule_id, r.created_at, r.status, r.duration_ms)
            .execution_options(synchronize_session=False)
        ).all()
        stats.withdraw(session, replaced)


Decided = list[tuple[CompiledRule, Decision, float]]


@dataclasses.dataclass(slots=True)
class _Evaluation:
    """One event of a batch: its inputs and its rules' decisions, before any action."""

    event: AutomationEvent
    state: RunState
    facts: dict[str, Any]
    changes: dict[str, Any]
    causation: Causation
    decided: Decided

    @property
    def acts(self) -> bool:
        return any(decision.matched for _, decision, _ in self.decided)

    @property
    def replaced(self) -> list[uuid.UUID]:
        """The failed runs of the rules decided again (a retry): their new runs replace them."""
        failed = self.state.failed
        return [failed[rule.id].id for rule, _, _ in self.decided if rule.id in failed]

    @property
    def actions_needed(self) -> int:
        failed = self.state.failed
        needed = 0
        for rule, decision, _ in self.decided:
            if decision.matched:
                retried = failed.get(rule.id) if failed else None
                needed += len(rule.actions) - (len(retried.already_done(rule)) if retried else 0)
        return needed


def _decide_rules(session: Session, event: AutomationEvent, state: RunState, facts: dict):
    """Every rule's decision on the event (facts are fixed for the event, so no action
    changes a decision); the rules come from the cache, compiled once per version."""
    causation = causation_of(
        session, event.tenant_id, event.event_type, event.payload, event.causation
    )
    changes = changes_of(event.event_type, event.payload)
    rules = CACHE.rules_for(session, event.tenant_id, event.event_type, version=state.version)
    pairs = _as_tuples(changes)  # once per event, not per rule
    decided: Decided = []
    stopped_by = None
    settled = state.settled
    # PERF: one clock read per rule; each decision's time runs from the previous read.
    last = time.perf_counter()
    for rule in rules:
        if settled and rule.id in settled:
            continue
        reason = blocked(rule.id, rule.gate, state.moment)
        if reason is not None:
            decision = Decision("skipped", False, [], reason)
        else:
            decision = decide(rule, facts, pairs, causation, stopped_by=stopped_by, trace=False)
            if decision.matched and rule.stop_processing:
                stopped_by = rule.id
        now = time.perf_counter()
        decided.append((rule, decision, now - last))
        last = now
    return _Evaluation(event, state, facts, changes, causation, decided)


def _muted(mute: Any) -> tuple[str, str]:
    until = mute.until.isoformat() if mute.until else "unmuted"
    return "done", f"conversation muted until {until}"


class _Targets:
    """The conversations (locked) and outbox events the batch's actions act on, read in
    one statement each; a conversation first acted on later is locked then.

    ``wait``: whether the actions may wait for a division's or agent's lock; not when
    the batch is about several conversations (:mod:`shared.automation.executors`' NOTE).
    """

    def __init__(self, session: Session, evaluations: list[_Evaluation]) -> None:
        self.session = session
        self.wait = len({e.event.conversation_id for e in evaluations}) <= 1
        self.conversations: dict[uuid.UUID, Conversation | None] = {}
        #: Each locked conversation's division and assignee when locked
        #: (executors.Target.locked_in, locked_to).
        self.locked_in: dict[uuid.UUID, uuid.UUID | None] = {}
        self.locked_to: dict[uuid.UUID, uuid.UUID | None] = {}
        acting = [e.event for e in evaluations if e.acts]
        #: None: read, and gone (the retention purge); absent: not read yet.
        self.outbox: dict[uuid.UUID, OutboxEvent | None] = {
            event.outbox_event_id: None for event in acting
        }
        if self.outbox:
            found = session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(self.outbox)))
            self.outbox.update({row.id: row for row in found})
        wanted: dict[uuid.UUID, set[uuid.UUID]] = {}
        for event in acting:
            if event.conversation_id is not None:
                wanted.setdefault(event.tenant_id, set()).add(event.conversation_id)
        for tenant_id, ids in wanted.items():
            # Locked in id order: two batches sharing conversations never deadlock.
            # NOTE: FOR NO KEY UPDATE: an action may move an SLA clock (a status change
            # pauses it), and check_sla holds a clock while inserting its breach, whose
            # foreign-key check (FOR KEY SHARE on the conversation) FOR UPDATE blocked:
            # a deadlock, the run retried. No action changes a conversation's id.
            found = session.scalars(
                select(Conversation)
                .where(Conversation.tenant_id == tenant_id, Conversation.id.in_(sorted(ids)))
                .order_by(Conversation.id)
                .with_for_update(key_share=True)
                .execution_options(populate_existing=True)
            ).all()
            self.conversations.update({c.id: c for c in found})
            self.locked_in.update({c.id: c.division_id for c in found})
            self.locked_to.update({c.id: c.assignee_id for c in found})
            self.conversations.update({i: None for i in ids if i not in self.conversations})

    def of(self, ctx: Ctx, event: AutomationEvent) -> tuple[Conversation | None, Any]:
        conversation_id = event.conversation_id
        if conversation_id is not None and conversation_id not in self.conversations:
            locked = executors.lock_conversation(self.session, ctx, conversation_id)
            self.conversations[conversation_id] = locked
            self.locked_in[conversation_id] = locked.division_id if locked else None
            self.locked_to[conversation_id] = locked.assignee_id if locked else None
        conversation = self.conversations.get(conversation_id) if conversation_id else None
        outbox_id = event.outbox_event_id
        if outbox_id not in self.outbox:
            self.outbox[outbox_id] = self.session.get(OutboxEvent, outbox_id)
        return conversation, self.outbox[outbox_id]


def _act(session: Session, evaluation: _Evaluation, targets: _Targets) -> RunBatch:
    """Apply the matched rules' actions in order; one run per decided rule."""
    event, facts, causation = evaluation.event, evaluation.facts, evaluation.causation
    at = evaluation.state.moment.now
    runs = RunBatch(event.tenant_id, event.id, facts, evaluation.changes, event.reprocess, at)
    loaded = None
    failed = evaluation.state.failed
    for rule, decision, deciding in evaluation.decided:
        retried = failed.get(rule.id) if failed else None
        reprocess = retried.reprocess if retried is not None else event.reprocess
        done = retried.already_done(rule) if retried is not None else {}
        if not decision.matched:  # PERF: most runs; nothing acted, nothing more to time
            runs.add(
                rule,
                matched=False,
                status=decision.status,
                outcomes=decision.outcomes,
                # A retried rule that no longer matches: what it did before stays on record.
                action_results=list(done.values()),
                duration_ms=round(deciding * 1000, 3),
                error=decision.reason,
                reprocess=reprocess,
            )
            continue
        started = time.perf_counter()
        ctx = Ctx.automation(
            event.tenant_id, rule.id, causation.extended(rule.id), user_id=rule.created_by
        )
        if loaded is None:  # read (and lock) once, and only when a rule acts
            loaded = targets.of(ctx, event)
        locked = event.conversation_id
        target = executors.Target(
            session,
            ctx,
            loaded[0],
            loaded[1],
            facts,
            targets.wait,
            targets.locked_in.get(locked),
            targets.locked_to.get(locked),
        )
        results, ok = _apply(session, rule, target, done)
        runs.add(
            rule,
            matched=True,
            status="matched" if ok else "failed",
            outcomes=decision.outcomes,
            action_results=results,
            duration_ms=round((deciding + time.perf_counter() - started) * 1000, 3),
            error=decision.reason or _first_error(results),
            reprocess=reprocess,
        )
    return runs


Outcome = tuple[str, str | None] | Held | Deferred


def _gather_all(session: Session, events: list[AutomationEvent]) -> list[tuple[dict, Any]]:
    """Each event's facts and mute, one read per tenant of the batch."""
    by_tenant: dict[uuid.UUID, list[int]] = {}
    for index, event in enumerate(events):
        by_tenant.setdefault(event.tenant_id, []).append(index)
    gathered: list[Any] = [None] * len(events)
    for tenant_id, indexes in by_tenant.items():
        items = [(events[i].event_type, events[i].payload) for i in indexes]
        for index, facts in zip(indexes, gather_many(session, tenant_id, items), strict=True):
            gathered[index] = facts
    return gathered


def process_many(session: Session, events: list[AutomationEvent]) -> list[Outcome]:
    """Evaluate and apply a batch in order, in the caller's transaction; one outcome each.

    ``("failed", note)`` when an action of some rule failed (its run says which): a
    retry then re-runs only those rules; ``("done", note)`` otherwise. A :class:`Held`
    event (the control pauses it) or a :class:`Deferred` one (past the action ceiling)
    has written nothing: the caller parks it after commit.

    PERF: the batch's run states, facts, targets and runs are one statement each; rules
    come from the cache and are decided in memory. An event whose conversation an
    earlier event of the batch acted on reads its facts again, so it sees those actions
    as it would have one transaction later.
    """
    outcomes: list[Outcome | None] = [None] * len(events)
    # Before the rules version is read: no rule changes until the actions are applied.
    hold_rules_shared(session, {event.tenant_id for event in events})
    states = _run_states(session, events)
    live = []
    for index, event in enumerate(events):
        if states[event.id].moment.control.blocks(event.event_type) is not None:
            outcomes[index] = Held()
        else:
            live.append(index)
    evaluations: dict[int, _Evaluation] = {}
    gathered = _gather_all(session, [events[i] for i in live])
    for index, (facts, mute) in zip(live, gathered, strict=True):
        event = events[index]
        if mute is not None:
            outcomes[index] = _muted(mute)
        else:
            evaluations[index] = _decide_rules(session, event, states[event.id], facts)
    targets = _Targets(session, list(evaluations.values()))
    acted_on: set[uuid.UUID] = set()
    waiting: set[uuid.UUID] = set()
    taken: list[tuple[uuid.UUID, int, dt.datetime]] = []
    batches, forget = [], []
    try:
        for index, evaluation in evaluations.items():
            event = evaluation.event
            if event.conversation_id in acted_on:
                facts, mute = gather(session, event.tenant_id, event.event_type, event.payload)
                if mute is not None:
                    outcomes[index] = _muted(mute)
                    continue
                evaluation = _decide_rules(session, event, evaluation.state, facts)
            moment = evaluation.state.moment
            limit, needed = moment.control.max_actions_per_minute, evaluation.actions_needed
            if limit is not None and needed:
                # An event that needs more than a minute's ceiling still runs, alone, in a
                # new minute (ceiling.take). Once one waits, the tenant's later ones of the
                # batch wait too: they do not overtake it.
                if event.tenant_id in waiting or not ceiling.take(
                    event.tenant_id, needed, limit, moment.now
                ):
                    waiting.add(event.tenant_id)
                    outcomes[index] = Deferred(ceiling.next_minute(moment.now), moment.now, limit)
                    continue
                taken.append((event.tenant_id, needed, moment.now))
            forget.extend(evaluation.replaced)
            runs = _act(session, evaluation, targets)
            if evaluation.acts and event.conversation_id is not None:
                acted_on.add(event.conversation_id)
            batches.append(runs)
            outcomes[index] = _status_of(runs)
        _forget_failed_runs(session, forget)
        insert_runs(session, batches)
    except BaseException:
        for tenant_id, count, at in taken:
            ceiling.give_back(tenant_id, count, at)
        raise
    return outcomes  # type: ignore[return-value]


def _status_of(runs: RunBatch) -> tuple[str, str | None]:
    failed = runs.failed
    if failed:
        rule_id, error = failed[0]
        note = f"{len(failed)} rule(s) failed; rule {rule_id}: {error}"
        return "failed", note[:4000]
    return "done", None


def process(session: Session, event: AutomationEvent) -> tuple[str, str | None]:
    """:func:`process_many` of one event; raises its :class:`Held` or :class:`Deferred`."""
    [outcome] = process_many(session, [event])
    if isinstance(outcome, Held | Deferred):
        raise outcome
    return outcome


def _first_error(results: list[dict[str, Any]]) -> str | None:
    return next((r["error"] for r in results if r.get("result") == "failed"), None)


def _evaluate_claimed(event_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Evaluate claimed rows in one transaction (in queue order); park the held and
    deferred ones after it. Rows no longer ``processing`` are skipped."""
    results = dict.fromkeys(event_ids, "skipped")
    parked: list[tuple[uuid.UUID, uuid.UUID, str, Held | Deferred]] = []
    with session_scope() as session:
        events = list(
            session.scalars(
                select(AutomationEvent)
                .where(AutomationEvent.id.in_(event_ids), AutomationEvent.status == "processing")
                .order_by(AutomationEvent.id)  # locked in id order: no deadlock between batches
                .with_for_update()
            )
        )
        # Queue order: a dispatch queues its rows a microsecond apart, in the order its
        # events occurred (shared.automation.queue); the outbox id only breaks older ties.
        events.sort(key=lambda event: (event.created_at, event.outbox_event_id))
        finished = []
        for event, outcome in zip(events, process_many(session, events), strict=True):
            if isinstance(outcome, Held | Deferred):
                parked.append((event.id, event.tenant_id, event.event_type, outcome))
            else:
                finished.append((event.id, *outcome))
                results[event.id] = "done"
        claims.finish(session, finished)
    for event_id, tenant_id, event_type, outcome in parked:
        if isinstance(outcome, Held):
            results[event_id] = control.hold(event_id, tenant_id, event_type)
        else:  # nothing was taken from the ceiling
            claims.defer(event_id, outcome.until, outcome.at, str(outcome))
            results[event_id] = "deferred"
    return results


def evaluate_events(event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The worker's entry point: what happened to each row (``done``, ``held``, ``retry``...).

    The batch is claimed in one statement and evaluated in one transaction. If that
    fails, each row is evaluated again alone, so an event that fails fails by itself; a
    row that may still be retried is raised for (the message is sent again: its finished
    rows are skipped then).
    """
    claimed = claims.claim(event_ids)
    outcomes = {event_id: "skipped" for event_id in event_ids if event_id not in claimed}
    live = []
    suspended = {t: tenant_state.is_suspended(t) for t in set(claimed.values())}
    for event_id, tenant_id in claimed.items():
        if suspended[tenant_id]:
            claims.hold_suspended(event_id, tenant_id)
            outcomes[event_id] = "suspended"
        else:
            live.append(event_id)
    if len(live) > 1:
        try:
            outcomes.update(_evaluate_claimed(live))
            return outcomes
        except Exception as exc:
            if isinstance(getattr(exc, "orig", None), LockNotAvailable):
                # Expected: a batch does not wait for a division's or agent's lock
                # (shared.automation.executors' NOTE); alone, each event waits for it.
                log.info("automation batch of %d met a held lock; one at a time", len(live))
            else:
                log.warning(
                    "automation batch of %d failed; one at a time", len(live), exc_info=True
                )
    retry = None
    for event_id in live:
        try:
            outcomes.update(_evaluate_claimed([event_id]))
        except Exception as exc:
            if claims.record_failure(event_id, exc, get_settings().automation_max_attempts):
                outcomes[event_id] = "failed"
            else:
                retry = retry or exc
    if retry is not None:
        raise retry
    return outcomes


def evaluate_event(event_id: uuid.UUID) -> str:
    """:func:`evaluate_events` of one row."""
    return evaluate_events([event_id])[event_id]
