"""Rules ready to evaluate, cached per (tenant, event type) and checked against the rules version.

The evaluator asks for the active rules triggered by one event type; they are
loaded through the GIN index on ``trigger_event_types`` and compiled once. Each
lookup reads the tenant's ``rules_version`` (one primary-key read): any rule
change bumps it in its own transaction, so a stale entry is never used. The cost
of an event therefore follows the rules its type triggers, not the tenant's total.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.automation import rules as rule_service
from shared.automation.effective import Gate
from shared.automation.engine import compile_conditions
from shared.automation.runs import run_json, snapshot_digest, to_json
from shared.models import AutomationRule


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: uuid.UUID
    version: int
    priority: int
    stop_processing: bool
    is_active: bool
    created_by: uuid.UUID | None
    actions: list[dict[str, Any]]
    snapshot: dict[str, Any]
    compiled: Any
    #: The snapshot as JSON, encoded once per compile, and its digest: the runs of the
    #: rule point at the snapshot stored once under it.
    snapshot_json: str
    snapshot_digest: str
    #: PERF: this rule's part of every run row's JSON (:class:`RunBatch`), encoded once,
    #: and its id as text (loop checks, stats items).
    run_json: str
    id_text: str
    #: Whether it may run at all (snooze, schedule, rollout), prepared once per version.
    gate: Gate

    @classmethod
    def of(cls, rule: AutomationRule) -> CompiledRule:
        return cls.from_snapshot(
            rule_service.snapshot(rule), created_by=rule.created_by, gate=Gate.of(rule)
        )

    @classmethod
    def from_snapshot(
        cls,
        snapshot: dict[str, Any],
        *,
        created_by: uuid.UUID | None = None,
        gate: Gate | None = None,
    ) -> CompiledRule:
        """A rule as stored in a run (or an unsaved dry-run body), compiled.

        Without a ``gate`` only the snapshot's ``is_active`` limits it (a run's snapshot
        does not keep the snooze, schedule or rollout it ran under).
        """
        snapshot_json = to_json(snapshot)
        rule_id, version = uuid.UUID(str(snapshot["id"])), int(snapshot.get("version", 0))
        digest = snapshot_digest(snapshot_json)
        return cls(
            id=rule_id,
            version=version,
            priority=int(snapshot.get("priority", 100)),
            stop_processing=bool(snapshot.get("stop_processing")),
            is_active=bool(snapshot.get("is_active", True)),
            created_by=created_by,
            actions=list(snapshot.get("actions") or []),
            snapshot=snapshot,
            compiled=compile_conditions(snapshot["conditions"]),
            snapshot_json=snapshot_json,
            snapshot_digest=digest,
            run_json=run_json(rule_id, version, digest),
            id_text=str(rule_id),
            gate=gate or Gate(is_active=bool(snapshot.get("is_active", True))),
        )


class RuleCache:
    """Per-process cache: ``(tenant, event type) -> (rules version, [CompiledRule, ...])``."""

    def __init__(self) -> None:
        self._entries: dict[tuple[uuid.UUID, str], tuple[int, list[CompiledRule]]] = {}
        self._lock = threading.Lock()

    def rules_for(
        self,
        session: Session,
        tenant_id: uuid.UUID,
        event_type: str,
        *,
        version: int | None = None,
    ) -> list[CompiledRule]:
        """The tenant's active rules triggered by ``event_type``, in evaluation order.

        ``version``: the tenant's rules version when the caller already read it in this
        transaction (the evaluator reads it with the event's settled runs).
        """
        if version is None:
            version = rule_service.rules_version(session, tenant_id)
        key = (tenant_id, event_type)
        entry = self._entries.get(key)
        if entry is not None and entry[0] == version:
            return entry[1]
        compiled = load(session, tenant_id, event_type)
        with self._lock:
            self._entries[key] = (version, compiled)
        return compiled

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def load(session: Session, tenant_id: uuid.UUID, event_type: str) -> list[CompiledRule]:
    """Active rules triggered by ``event_type``: priority (lower first), then oldest first."""
    r = AutomationRule
    rows = session.scalars(
        select(r)
        .where(
            r.tenant_id == tenant_id,
            r.is_active.is_(True),
            r.trigger_event_types.contains([event_type]),
        )
        .order_by(r.priority, r.created_at, r.id)
    )
    return [CompiledRule.of(rule) for rule in rows]


#: The worker's cache (one per process).
CACHE = RuleCache()


@functools.lru_cache(maxsize=1024)
def _compiled_from_json(snapshot_json: str) -> CompiledRule:
    return CompiledRule.from_snapshot(json.loads(snapshot_json))


def compiled_rule(snapshot: dict[str, Any]) -> CompiledRule:
    """A saved rule's snapshot compiled once per process (dry-runs of the same rule).

    Keyed by the snapshot's JSON text (id and version included), so a changed rule
    is never served stale; entries are small and the cache is bounded.
    """
    return _compiled_from_json(to_json(snapshot))
