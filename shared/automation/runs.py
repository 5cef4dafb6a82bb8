"""Write runs: one prebuilt INSERT ... SELECT FROM json_to_recordset(...) per evaluation batch.

PERF: an event triggering 50 rules writes 50 runs. The ORM bulk insert sent them as
50 pipelined statements and JSON-encoded the same facts, changes and rule snapshots
50 times (~0.2 ms a run). Here the statement text never changes (no compile, no
cache-key work), the per-event values (facts, changes, tenant, event) are bound and
encoded once, and only the per-run decision is encoded per row. One round trip per
batch of events (the evaluator's); the same statement queues the batch's stats
figures, added up per rule (:mod:`shared.automation.stats`). (An ``unnest`` of per-column arrays was
measured 3x slower in Postgres than this for 200 runs: big text arrays are costly to
take apart. The runs and events are read as ``json``, not ``jsonb``: parsed once as
text, not first built into a binary document, ~20 % less to take apart.)

PERF: the facts and changes are stored once per event and evaluation
(``automation_run_contexts``) and a rule's snapshot once per content
(``automation_rule_snapshots``, ``ON CONFLICT DO NOTHING``, sent until this process has
seen it committed); a run
points at both. Copied into every run they were most of the bytes PostgreSQL parsed,
stored and logged per event.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.automation import stats
from shared.db import after_commit

_INSERT = text(
    """
    WITH stats AS (
        INSERT INTO automation_stats_pending (tenant_id, at, items)
        SELECT s.tenant_id, s.at, s.items
        FROM jsonb_to_recordset(CAST(:stats AS jsonb)) AS s(
            tenant_id uuid, at timestamptz, items jsonb
        )
    ), snapshots AS (
        INSERT INTO automation_rule_snapshots (digest, tenant_id, rule_id, snapshot)
        SELECT s.digest, s.tenant_id, s.rule_id, s.snapshot
        FROM jsonb_to_recordset(CAST(:snapshots AS jsonb)) AS s(
            digest text, tenant_id uuid, rule_id uuid, snapshot jsonb
        )
        ORDER BY s.digest  -- two batches storing the same snapshots wait in one order
        ON CONFLICT (digest) DO NOTHING
    ), events AS (
        SELECT * FROM json_to_recordset(CAST(:events AS json)) AS e(
            id uuid, context_id uuid, tenant_id uuid, facts jsonb, changes jsonb
        )
    ), contexts AS (
        INSERT INTO automation_run_contexts (id, tenant_id, automation_event_id, facts, changes)
        SELECT e.context_id, e.tenant_id, e.id, e.facts, e.changes FROM events AS e
    )
    INSERT INTO automation_runs (
        id, tenant_id, automation_event_id, rule_id, rule_version, context_id,
        snapshot_digest, matched, status, condition_outcomes, action_results, duration_ms,
        error, reprocess
    )
    SELECT gen_random_uuid(), e.tenant_id, e.id, r.rule_id, r.rule_version, e.context_id,
           r.digest, r.matched, r.status, r.outcomes, r.action_results,
           r.duration_ms, r.error, r.reprocess
    FROM json_to_recordset(CAST(:runs AS json)) AS r(
        event_id uuid, rule_id uuid, rule_version integer, digest text,
        matched boolean, status text, outcomes text, action_results jsonb,
        duration_ms double precision, error text, reprocess boolean
    )
    JOIN events AS e ON e.id = r.event_id
    """
)


#: Digests of the snapshots this process has seen committed: not sent again (a batch of one
#: event would otherwise send all its rules' snapshots, each an ``ON CONFLICT`` probe).
_STORED: set[str] = set()
#: Beyond this many, the set starts again (a re-send costs a probe, never a wrong answer).
_STORED_MAX = 100_000


def _remember(digests: list[str]) -> None:
    if len(_STORED) + len(digests) > _STORED_MAX:
        _STORED.clear()
    _STORED.update(digests)


def run_json(rule_id: uuid.UUID, version: int, digest: str) -> str:
    """A rule's members of its run rows' JSON (rule, version, snapshot digest)."""
    return to_json({"rule_id": rule_id, "rule_version": version, "digest": digest})[1:-1]


def snapshot_digest(snapshot_json: str) -> str:
    """The key a rule snapshot is stored under: a digest of its JSON (32 hex digits)."""
    return hashlib.blake2b(snapshot_json.encode(), digest_size=16).hexdigest()


def to_json(value: Any) -> str:
    """Compact JSON text of a JSON-ready value (UUIDs and datetimes as strings)."""
    return pydantic_core.to_json(value).decode()


@dataclass(slots=True)
class RunBatch:
    """The runs of one event, each already a JSON object, ready for :func:`insert_runs`."""

    tenant_id: uuid.UUID
    event_id: uuid.UUID
    facts: dict[str, Any]
    changes: dict[str, Any]
    #: The runs' flag unless :meth:`add` is told otherwise (a retry of a reprocess's rule).
    reprocess: bool
    #: The evaluator's instant: the stats buckets the runs count in.
    at: dt.datetime
    rows: list[str] = field(default_factory=list)
    #: digest -> (rule id, snapshot JSON) of the rules that ran.
    snapshots: dict[str, tuple[uuid.UUID, str]] = field(default_factory=dict)
    stats: list[list[Any]] = field(default_factory=list)
    failed: list[tuple[uuid.UUID, str | None]] = field(default_factory=list)
    _event_json: str | None = None

    def add(
        self,
        rule: Any,
        *,
        matched: bool,
        status: str,
        outcomes: str | None,
        action_results: list[dict[str, Any]],
        duration_ms: float,
        error: str | None,
        reprocess: bool | None = None,
    ) -> None:
        """One run of ``rule`` (a :class:`~shared.automation.compiled.CompiledRule`);
        ``outcomes``: its leaves' (None when it was skipped, no condition evaluated);
        ``reprocess``: the run's flag, the batch's when None."""
        if reprocess is None:
            reprocess = self.reprocess
        if self._event_json is None:
            self._event_json = f'{{"event_id":"{self.event_id}",'
        # PERF: written out (no dict, no encoder call per run): the status and outcome
        # characters are plain ASCII words, the duration a float; only an error is escaped.
        row = (
            f'{self._event_json}{rule.run_json},"matched":{"true" if matched else "false"},'
            f'"status":"{status}","duration_ms":{float(duration_ms)!r},'
            f'"reprocess":{"true" if reprocess else "false"}'
        )
        if error is not None:
            row += f',"error":{to_json(error)}'
        if outcomes is not None:
            row += f',"outcomes":"{outcomes}"'
        actions = to_json(action_results) if action_results else "[]"
        self.rows.append(f'{row},"action_results":{actions}}}')
        self.snapshots[rule.snapshot_digest] = (rule.id, rule.snapshot_json)
        self.stats.append(
            stats.item(rule.id_text, status, action_results, duration_ms)
            if action_results
            else [rule.id_text, status, 0, duration_ms]
        )
        if status == "failed":
            self.failed.append((rule.id, error))

    def __len__(self) -> int:
        return len(self.rows)


def insert_runs(session: Session, batches: Sequence[RunBatch]) -> None:
    """Insert every run of the batches (the events of one evaluation batch), and their
    stats figures (per tenant, added up per rule), in one statement (nothing when all
    are empty); the tenants' stats roll-ups are sent after commit."""
    batches = [batch for batch in batches if batch]
    if not batches:
        return
    events = [
        {
            "id": batch.event_id,
            "context_id": uuid.uuid4(),
            "tenant_id": batch.tenant_id,
            "facts": batch.facts,
            "changes": batch.changes,
        }
        for batch in batches
    ]
    by_instant: dict[tuple[uuid.UUID, dt.datetime], list[list[Any]]] = {}
    for batch in batches:  # one transaction's events share their instant
        by_instant.setdefault((batch.tenant_id, batch.at), []).extend(batch.stats)
    figures = [
        {"tenant_id": tenant_id, "at": at, "items": stats.fold(items)}
        for (tenant_id, at), items in by_instant.items()
    ]
    snapshots: dict[str, str] = {}
    for batch in batches:
        for digest, (rule_id, snapshot_json) in batch.snapshots.items():
            if digest not in snapshots and digest not in _STORED:
                head = to_json({"digest": digest, "tenant_id": batch.tenant_id, "rule_id": rule_id})
                snapshots[digest] = f'{head[:-1]},"snapshot":{snapshot_json}}}'
    session.execute(
        _INSERT,
        {
            "snapshots": f"[{','.join(snapshots.values())}]",
            "events": to_json(events),
            "runs": f"[{','.join(row for batch in batches for row in batch.rows)}]",
            "stats": to_json(figures),
        },
    )
    if snapshots:
        after_commit(session, lambda: _remember(list(snapshots)))
    for tenant_id in dict.fromkeys(batch.tenant_id for batch in batches):
        stats.queued(session, tenant_id)
