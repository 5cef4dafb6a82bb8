"""Rollup upkeep: a lost roll-up message is re-sent by the sweep; old minute buckets go."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select, update

from scheduler.jobs import purge_automation_stats, sweep_automation_stats
from shared.db import session_scope
from shared.models import AutomationStats, AutomationStatsPending, Tenant
from tests.automation.conftest import tid
from tests.automation_stats.conftest import STATS, stats, ts, wait_runs


def test_figures_whose_message_was_lost_are_rolled_up_by_the_sweep(ws, monkeypatch):
    from shared.automation import stats as automation_stats
    from workers.actors import automation  # noqa: F401  (installs the enqueuer)

    # NOTE: other tests' tenants may have stale rows in this database too: watch ours.
    resent: list = []
    enqueuer = automation_stats.QUEUE.enqueuer
    monkeypatch.setattr(
        automation_stats.QUEUE, "enqueuer", lambda items: (resent.extend(items), enqueuer(items))
    )
    rule_id = str(uuid.uuid4())
    with session_scope() as session:  # queued by an evaluation whose message never left
        session.add(
            AutomationStatsPending(
                tenant_id=tid(ws),
                at=func.now(),
                items=[[rule_id, "matched", 2, 3.0], [rule_id, "failed", 0, 700.0]],
            )
        )
    with session_scope() as session:
        sweep_automation_stats(session)
    assert tid(ws) not in resent  # not waiting long enough yet
    with session_scope() as session:
        session.execute(
            update(AutomationStatsPending)
            .where(AutomationStatsPending.tenant_id == tid(ws))
            .values(queued_at=func.now() - dt.timedelta(minutes=1))
        )
    with session_scope() as session:
        assert sweep_automation_stats(session) >= 1
    assert tid(ws) in resent
    body = wait_runs(ws, 2)
    totals = body["totals"]
    assert (totals["matches"], totals["failures"], totals["actions_executed"]) == (2, 1, 2)
    assert totals["p50_ms"] <= 5 and 500 < totals["p95_ms"] <= 1000  # from the histogram
    assert body["rules"][0]["rule_id"] == rule_id and body["rules"][0]["name"] is None


def test_a_rules_sums_and_single_runs_queued_before_them_add_up(ws):
    from workers.actors import automation  # noqa: F401  (installs the enqueuer)

    rule_id = str(uuid.uuid4())
    # Two runs added up (one matched with 2 actions in 3 ms, one skipped in 0.1 ms):
    # runs, matches, skipped, failures, actions, ms, then one count per latency bucket.
    latency = [1, 0, 0, 0, 1] + [0] * 9
    summed = [rule_id, [2, 1, 1, 0, 2, 3.1, *latency]]
    with session_scope() as session:
        session.add_all(
            [
                AutomationStatsPending(tenant_id=tid(ws), at=func.now(), items=[summed]),
                AutomationStatsPending(
                    tenant_id=tid(ws),
                    at=func.now(),
                    items=[[rule_id, "failed", 0, 700.0]],
                    queued_at=func.now() - dt.timedelta(minutes=1),
                ),
            ]
        )
    with session_scope() as session:
        assert sweep_automation_stats(session) >= 1
    body = wait_runs(ws, 3)
    totals = body["totals"]
    assert (totals["matches"], totals["failures"], totals["actions_executed"]) == (2, 1, 2)
    [rule] = body["rules"]
    assert rule["rule_id"] == rule_id and rule["runs"] == 3


def test_old_minute_buckets_are_purged_and_old_ranges_read_whole_hours(workspace):
    with session_scope() as session:
        now = session.scalar(select(func.now()))
    hour = (now - dt.timedelta(days=8)).replace(minute=0, second=0, microsecond=0)
    recent = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=5)
    # As the roll-up writes them: each run in its minute, its hour and its day.
    old_minute = ("minute", hour + dt.timedelta(minutes=17), 5)
    rows = [
        ("day", hour.replace(hour=0), 5),
        ("hour", hour, 5),
        old_minute,
        ("day", recent.replace(hour=0, minute=0), 1),
        ("hour", recent.replace(minute=0), 1),
        ("minute", recent, 1),
    ]
    with session_scope() as session:
        for granularity, start, runs in rows:
            session.add(
                AutomationStats(
                    tenant_id=tid(workspace),
                    granularity=granularity,
                    rule_id=uuid.UUID(int=0),
                    bucket_start=start,
                    runs=runs,
                    latency_03=runs,
                )
            )
    with session_scope() as session:
        assert purge_automation_stats(session) >= 1
        left = session.execute(
            select(AutomationStats.granularity, AutomationStats.bucket_start).where(
                AutomationStats.tenant_id == tid(workspace)
            )
        ).all()
    assert sorted(left) == sorted((g, s) for g, s, _ in rows if (g, s) != old_minute[:2])

    # From 10 minutes past that old hour: read from the whole hour (its minutes are gone).
    old = stats(workspace, STATS, **{"from": hour + dt.timedelta(minutes=10)})
    assert old["start"] == ts(hour) and old["totals"]["runs"] == 6
    assert stats(workspace, STATS, **{"from": recent})["totals"]["runs"] == 1  # minutes kept


def test_the_sweep_skips_suspended_tenants_so_active_ones_are_not_starved(
    ws, other_workspace, monkeypatch
):
    """A suspended tenant's roll-up is dropped by the tenant gate, so its rows stay: picked
    every 15 s, such tenants were sent a roll-up each run for the gate to drop, and enough
    of them filled the bounded batch, so an active tenant's lost roll-up was never re-sent."""
    from shared.automation import stats as automation_stats

    for tenant in (tid(ws), tid(other_workspace)):
        with session_scope() as session:
            session.add(
                AutomationStatsPending(
                    tenant_id=tenant,
                    at=func.now(),
                    items=[[str(uuid.uuid4()), "matched", 0, 1.0]],
                    queued_at=func.now() - dt.timedelta(minutes=1),
                )
            )
    with session_scope() as session:
        session.execute(
            update(Tenant).where(Tenant.id == tid(other_workspace)).values(status="suspended")
        )
    sent: list = []
    monkeypatch.setattr(
        automation_stats.QUEUE, "enqueue_after_commit", lambda _s, tenants: sent.extend(tenants)
    )
    with session_scope() as session:
        sweep_automation_stats(session)
    assert tid(ws) in sent
    assert tid(other_workspace) not in sent
