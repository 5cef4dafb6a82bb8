"""The analytics endpoints answer from rollups that match a direct count of the source rows."""

from __future__ import annotations

import datetime as dt
import json
import random
import time
import uuid

import pytest
from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlalchemy import text

from shared.analytics import intake, rollup
from shared.db import session_scope
from shared.models import OutboxEvent
from tests.analytics.conftest import (
    ApiChannel,
    assert_figures_match,
    backdate,
    set_timezone,
    wait_settled,
)
from tests.waiting import wait_until


def _run_cut_short(monkeypatch) -> dict:
    """The record of a reconcile run that Dramatiq's time limit stopped in its first tenant."""
    from shared.analytics import reconcile

    def interrupted(*args, **kwargs):
        raise TimeLimitExceeded()

    monkeypatch.setattr(reconcile, "reconcile_tenant", interrupted)
    with pytest.raises(TimeLimitExceeded):
        reconcile.reconcile_all()
    return _run_row(_newest_run_id())


def _waiting_since_a_minute(tenant_id) -> None:
    """An event of the tenant queued a minute ago and not counted: its roll_up was lost."""
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO analytics_events (event_id, tenant_id, type, data, occurred_at,"
                " queued_at) VALUES (gen_random_uuid(), :t, 'contact.created',"
                " '{\"channel\": \"email\"}', now(), now() - interval '1 minute')"
            ),
            {"t": tenant_id},
        )


def _counted_days_ago(tenant_id, count: int, days: int = 9) -> None:
    """``count`` events of the tenant counted ``days`` ago: processed keys the purge owes."""
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO analytics_events"
                " (event_id, tenant_id, type, data, occurred_at, queued_at, counted_at)"
                " SELECT gen_random_uuid(), :t, 'message.created', '{}', ago, ago, ago"
                "   FROM generate_series(1, :count),"
                " LATERAL (SELECT now() - make_interval(days => :days) AS ago) AS t"
            ),
            {"t": tenant_id, "count": count, "days": days},
        )


def _random_traffic(ws, seed: int, steps: int) -> None:
    """Inbound messages, replies, status changes, reassignments and an agent deleted."""
    rng = random.Random(seed)
    api = ApiChannel(ws)
    agents = [ws.create_agent("agent")[0]["id"] for _ in range(3)] + [ws.admin["id"]]
    conversations: list[str] = []
    deleted_one = False
    for step in range(steps):
        roll = rng.random()
        if roll < 0.35 or not conversations:
            message = api.inbound(f"cust-{rng.randrange(12)}", f"hello {step}")
            if message["conversation_id"] not in conversations:
                conversations.append(message["conversation_id"])
            continue
        conversation = rng.choice(conversations)
        if roll < 0.5:
            resp = ws.call(
                "POST", f"/api/conversations/{conversation}/messages", json={"body": "on it"}
            )
            assert resp.status_code in (201, 409, 422), resp.text
        elif roll < 0.75:
            status = rng.choice(["open", "pending", "resolved", "snoozed"])
            body = {"status": status}
            if status == "snoozed":
                body["snoozed_until"] = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
            resp = ws.call("PATCH", f"/api/conversations/{conversation}/status", json=body)
            assert resp.status_code in (200, 409, 422), resp.text
        elif roll < 0.95:
            assignee = rng.choice([*agents, None])
            resp = ws.call(
                "PATCH",
                f"/api/conversations/{conversation}/assignment",
                json={"assignee_id": assignee},
            )
            assert resp.status_code in (200, 404, 422), resp.text
        elif not deleted_one:
            doomed = agents.pop(0)
            assert ws.call("DELETE", f"/api/agents/{doomed}").status_code == 204
            deleted_one = True


def _reconcile() -> dict:
    """Run the scheduler's job (it sends the actor) and wait for the run it records.

    The wait is for a run row that did not exist before the job, read in one statement:
    reading "the newest run" and "how many runs" apart could pair a new, unfinished
    run's count with the previous, finished run's row.
    """
    from scheduler import jobs

    with session_scope() as session:
        before = list(session.scalars(text("SELECT id FROM analytics_reconcile_runs")))
        assert jobs.reconcile_analytics(session) is True

    def finished() -> dict | None:
        with session_scope() as session:
            row = session.execute(
                text(
                    "SELECT status, corrections, days_checked, details"
                    " FROM analytics_reconcile_runs"
                    " WHERE id <> ALL(CAST(:before AS uuid[])) AND status <> 'running'"
                    " ORDER BY started_at DESC LIMIT 1"
                ),
                {"before": before},
            ).one_or_none()
        return row._asdict() if row is not None else None

    return wait_until(finished, "the reconcile run finishes", 60, interval=0.1)


def test_random_traffic_figures_match_direct_counts_and_reconcile_corrects_drift(ws):
    set_timezone(ws, "Asia/Jakarta")
    _random_traffic(ws, seed=13, steps=120)
    wait_settled(ws)
    assert_figures_match(ws)

    # Drift: rows written without events on previous days, and rollups knocked off.
    backdate(ws, 1, messages=3)
    backdate(ws, 2, messages=1, channel="whatsapp")
    with session_scope() as session:
        t = ws.tenant["id"]
        session.execute(
            text("UPDATE analytics_conversation_counts SET count = count + 2 WHERE tenant_id = :t"),
            {"t": t},
        )
        session.execute(
            text("UPDATE analytics_daily SET contacts = contacts + 5 WHERE tenant_id = :t"),
            {"t": t},
        )
    run = _reconcile()
    assert run["status"] == "succeeded"
    assert run["corrections"] > 0
    assert run["details"]["corrections"]["conversation_facts"] >= 2
    assert run["details"]["tenants_corrected"][ws.tenant["id"]]["conversation_facts"] >= 2
    wait_settled(ws)
    # NOTE: today's contacts were knocked off too; today is not recounted, so put it back.
    with session_scope() as session:
        session.execute(
            text(
                "UPDATE analytics_daily SET contacts = contacts - 5 WHERE tenant_id = :t"
                " AND day = (now() AT TIME ZONE 'Asia/Jakarta')::date"
            ),
            {"t": ws.tenant["id"]},
        )
    assert_figures_match(ws)
    again = _reconcile()
    assert again["status"] == "succeeded"
    # The second run found nothing more to correct for this tenant. NOTE: the run covers
    # every tenant of the shared test database; others' drift is theirs.
    assert ws.tenant["id"] not in again["details"]["tenants_corrected"]


def test_an_event_queued_or_applied_twice_counts_once(ws):
    api = ApiChannel(ws)
    api.inbound("once", "hi")
    wait_settled(ws)
    before = ws.call("GET", "/api/analytics/overview").json
    with session_scope() as session:
        event = session.scalars(
            OutboxEvent.__table__.select()
            .with_only_columns(OutboxEvent.id)
            .where(
                OutboxEvent.tenant_id == uuid.UUID(ws.tenant["id"]),
                OutboxEvent.type == "message.created",
            )
        ).first()
        row = session.get(OutboxEvent, event)
        intake.target(session, [row])  # dispatched again after it was counted
        intake.target(session, [row])
    rollup.drain(uuid.UUID(ws.tenant["id"]))
    rollup.drain(uuid.UUID(ws.tenant["id"]))
    assert ws.call("GET", "/api/analytics/overview").json == before
    assert before["messages_today"] == 1 and before["total_contacts"] == 1


def test_reports_need_analytics_view_and_refuse_bad_periods(ws, other_workspace):
    _, agent_token = ws.create_agent("agent")
    _, supervisor_token = ws.create_agent("supervisor")
    for path in ("overview", "trends", "agents", "channels", "csat"):
        assert ws.call("GET", f"/api/analytics/{path}", token=agent_token).status_code == 403
        assert ws.call("GET", f"/api/analytics/{path}", token=supervisor_token).status_code == 200
    for path in ("trends", "csat"):
        for period in ("1y", "", "7"):
            resp = ws.call("GET", f"/api/analytics/{path}", params={"period": period})
            assert resp.status_code == 422, resp.text
            assert resp.json["error"]["details"][0]["field"] == "period"
    ApiChannel(ws).inbound("mine", "hi")
    wait_settled(ws)
    assert ws.call("GET", "/api/analytics/overview").json["total_conversations"] == 1
    theirs = other_workspace.call("GET", "/api/analytics/overview").json
    assert theirs["total_conversations"] == 0 and theirs["total_contacts"] == 0


def test_trends_are_zero_filled_local_days_and_csat_has_the_reference_shape(ws):
    set_timezone(ws, "America/Los_Angeles")
    trends = ws.call("GET", "/api/analytics/trends", params={"period": "30d"}).json
    assert trends["period"] == "30d" and trends["days"] == 30
    assert len(trends["conversation_trend"]) == 30 == len(trends["message_trend"])
    local_today = dt.datetime.now(dt.timezone(dt.timedelta(hours=-8))).date()
    assert trends["message_trend"][-1]["date"] in (
        local_today.isoformat(),
        (local_today + dt.timedelta(days=1)).isoformat(),  # daylight saving time
    )
    assert all(entry["count"] == 0 for entry in trends["conversation_trend"])
    default = ws.call("GET", "/api/analytics/trends").json
    assert default["period"] == "7d" and len(default["conversation_trend"]) == 7
    csat = ws.call("GET", "/api/analytics/csat").json
    assert csat == {
        "period": "30d",
        "summary": {
            "total_surveys": 0,
            "rated_count": 0,
            "average_rating": 0.0,
            **{f"rating_{n}": 0 for n in range(1, 6)},
        },
        "agents": [],
    }


def test_csat_events_feed_the_csat_rollup(ws):
    """CSAT is not built yet: its events, once emitted, are counted (survey sent, rating)."""
    from shared.events import Actor, emit

    tenant = uuid.UUID(ws.tenant["id"])
    agent = ws.admin["id"]
    with session_scope() as session:
        emit(
            session, "csat.survey_sent", {"agent_id": agent}, tenant_id=tenant, actor=Actor.system()
        )
        emit(
            session, "csat.survey_sent", {"agent_id": agent}, tenant_id=tenant, actor=Actor.system()
        )
        emit(
            session,
            "csat.submitted",
            {"agent_id": agent, "rating": 4},
            tenant_id=tenant,
            actor=Actor.system(),
        )
    wait_settled(ws)
    csat = ws.call("GET", "/api/analytics/csat", params={"period": "7d"}).json
    assert csat["summary"]["total_surveys"] == 2
    assert csat["summary"]["rated_count"] == 1 and csat["summary"]["rating_4"] == 1
    assert csat["summary"]["average_rating"] == 4.0
    assert csat["agents"] == [
        {
            "agent_id": agent,
            "agent_name": ws.admin["full_name"],
            "total_surveys": 2,
            "rated_count": 1,
            "average_rating": 4.0,
        }
    ]


def test_a_burst_is_counted_in_full_and_leaves_nothing_holding_off_the_next_event(ws):
    # Events committed while the tenant's roll_up drains send no message (its flag is kept
    # until the drain ends); the drainer looks again and sends a delayed one for them.
    api = ApiChannel(ws)
    for n in range(40):
        api.inbound(f"burst-{n % 8}", f"message {n}")
    wait_settled(ws, timeout=30)
    assert_figures_match(ws)
    # NOTE: no sweeper runs here: a flag left set with no roll_up to come would hold this
    # event off for good.
    api.inbound("after-the-burst", "one more")
    wait_settled(ws, timeout=4)
    assert_figures_match(ws)


def test_events_held_back_by_the_reconcile_lock_are_counted_once_it_is_done(ws):
    from workers.actors.analytics import enqueue_rollups

    api = ApiChannel(ws)
    tenant = uuid.UUID(ws.tenant["id"])
    with session_scope() as session:
        session.execute(rollup.XACT_LOCK, rollup.lock_key(tenant))  # as the reconcile holds it
        api.inbound("during-the-reconcile", "hi")
        time.sleep(1.0)  # the event dispatched, its roll_up refused by the lock
    enqueue_rollups([tenant])  # what the reconcile does once done with the tenant
    wait_settled(ws, timeout=4)
    assert_figures_match(ws)


def test_the_sweeper_resends_the_rollup_of_events_whose_message_was_lost(ws):
    from scheduler import jobs

    tenant = ws.tenant["id"]
    _waiting_since_a_minute(tenant)
    with session_scope() as session:
        assert jobs.sweep_analytics(session) >= 1
    wait_settled(ws)
    channels = ws.call("GET", "/api/analytics/channels").json["channels"]
    assert channels == [{"channel": "email", "contact_count": 1, "conversation_count": 0}]


def test_a_day_with_an_event_still_waiting_is_not_recounted(ws):
    from shared.analytics import reconcile

    tenant = uuid.UUID(ws.tenant["id"])
    backdate(ws, 1)
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO analytics_events (event_id, tenant_id, type, data, occurred_at)"
                " VALUES (gen_random_uuid(), :t, 'message.created', '{}',"
                " now() - interval '2 days')"
            ),
            {"t": tenant},
        )
    with session_scope() as session:
        waiting = reconcile.reconcile_tenant(session, tenant, days=3)
    # two days ago and yesterday wait for the event; three days ago is settled
    assert waiting.days_checked == 1 and waiting.days_skipped == 2
    rollup.drain(tenant)
    with session_scope() as session:
        settled = reconcile.reconcile_tenant(session, tenant, days=3)
    assert settled.days_checked == 3 and settled.corrections["daily_rows"] >= 1


def test_a_timezone_change_is_no_drift_for_the_reconcile(ws):
    """The rollup keeps a conversation's creation day and hour as first counted; the
    reconcile must too, or every run after a timezone change "corrects" every fact."""
    from shared.analytics import reconcile

    tenant = uuid.UUID(ws.tenant["id"])
    api = ApiChannel(ws)
    api.inbound("before-the-move", "hi")
    api.inbound("another-one", "hi")
    wait_settled(ws)
    set_timezone(ws, "Asia/Kathmandu")  # +05:45: every local hour moves
    for _ in range(2):
        with session_scope() as session:
            result = reconcile.reconcile_tenant(session, tenant, days=3)
        assert result.corrections["conversation_facts"] == 0
        assert result.corrections["conversation_counts"] == 0


def test_the_nightly_run_purges_every_old_processed_key_not_one_batch(ws):
    """A day of a busy deployment counts more events than one purge batch: the run
    must purge them all, or the processed keys pile up night after night."""
    t = ws.tenant["id"]
    _counted_days_ago(t, 50010)
    run = _reconcile()
    assert run["status"] == "succeeded"
    with session_scope() as session:
        left = session.scalar(
            text(
                "SELECT count(*) FROM analytics_events WHERE tenant_id = :t"
                " AND counted_at < now() - interval '8 days'"
            ),
            {"t": t},
        )
    assert left == 0


def _run_row(run_id: str) -> dict:
    with session_scope() as session:
        return (
            session.execute(
                text(
                    "SELECT status, finished_at, details FROM analytics_reconcile_runs"
                    " WHERE id = :id"
                ),
                {"id": run_id},
            )
            .one()
            ._asdict()
        )


def _newest_run_id() -> str:
    with session_scope() as session:
        return str(
            session.scalar(
                text("SELECT id FROM analytics_reconcile_runs ORDER BY started_at DESC LIMIT 1")
            )
        )


def test_a_reconcile_interrupted_by_its_time_limit_records_the_run_failed(ws, monkeypatch):
    """Dramatiq stops a job past its time limit (or at shutdown) with a BaseException:
    the run's record must not say ``running`` for good."""

    run = _run_cut_short(monkeypatch)
    assert run["status"] == "failed" and run["finished_at"] is not None
    assert "TimeLimitExceeded" in run["details"]["error"]


def test_one_tenant_failing_the_reconcile_does_not_stop_the_others_or_the_purge(
    ws, other_workspace, monkeypatch
):
    """A tenant whose recount fails every night (a statement timeout on a huge tenant)
    must not leave every tenant after it uncorrected, and the processed keys unpurged:
    the others are reconciled, the purge runs, and the run fails naming the tenant."""
    from shared.analytics import reconcile

    broken = uuid.UUID(ws.tenant["id"])
    real = reconcile.reconcile_tenant

    def failing_for_one(session, tenant_id, **kwargs):
        if tenant_id == broken:
            raise RuntimeError("canceling statement due to statement timeout")
        return real(session, tenant_id, **kwargs)

    backdate(other_workspace, 1)  # drift the reconcile corrects
    _counted_days_ago(other_workspace.tenant["id"], 1)
    monkeypatch.setattr(reconcile, "reconcile_tenant", failing_for_one)
    with pytest.raises(reconcile.ReconcileFailed):
        reconcile.reconcile_all()
    run = _run_row(_newest_run_id())
    assert run["status"] == "failed"
    assert str(broken) in run["details"]["tenants_failed"]
    assert other_workspace.tenant["id"] in run["details"]["tenants_corrected"]
    assert run["details"]["purged_event_keys"] >= 1


def test_a_broker_blip_sending_the_held_back_rollups_does_not_fail_the_reconcile(ws, monkeypatch):
    """The run sends each tenant's ``roll_up`` once done with it (the events its lock held
    back); the sweeper re-sends any lost one, so a failed send must not end the run."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from workers.actors import analytics as actors

    def broker_down(*args, **kwargs):
        raise RedisConnectionError("the broker is restarting")

    monkeypatch.setattr(actors.roll_up, "send_with_options", broker_down)
    actors.reconcile_analytics.fn()
    assert _run_row(_newest_run_id())["status"] == "succeeded"


@pytest.mark.parametrize("days", ["0", "-3", "three"])
def test_the_backfill_refuses_a_number_of_days_that_counts_nothing(days, capsys):
    """``--days 0`` crashed on an empty span (``min([])``) after opening every tenant."""
    from shared.analytics import reconcile

    with pytest.raises(SystemExit) as exited:
        reconcile.main(["--days", days])
    assert exited.value.code == 2
    assert "--days" in capsys.readouterr().err


def _failed_inbound_yesterday(ws) -> tuple[uuid.UUID, uuid.UUID]:
    """(tenant, event id): an inbound message of yesterday whose ``message.created``
    event's dispatch gave up (``failed``, a dead letter an operator may revive)."""
    tenant = uuid.UUID(ws.tenant["id"])
    conversation = backdate(ws, 1, messages=0)
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO messages (id, tenant_id, conversation_id, channel, direction,"
                " sender_type, status, body, created_at, updated_at) VALUES"
                " (gen_random_uuid(), :t, :c, 'api', 'inbound', 'contact', 'received', 'x',"
                " :at, :at)"
            ),
            {"t": tenant, "c": conversation, "at": at},
        )
        event_id = session.scalar(
            text(
                "INSERT INTO outbox_events (id, tenant_id, type, actor_type, data, occurred_at,"
                " status) VALUES (gen_random_uuid(), :t, 'message.created', 'contact',"
                " CAST(:data AS jsonb), :at, 'failed') RETURNING id"
            ),
            {
                "t": tenant,
                "at": at,
                "data": json.dumps(
                    {"channel": "api", "direction": "inbound", "created_at": at.isoformat()}
                ),
            },
        )
    return tenant, event_id


def _inbound_messages(tenant: uuid.UUID) -> int:
    with session_scope() as session:
        return session.scalar(
            text(
                "SELECT coalesce(sum(inbound_messages), 0) FROM analytics_daily"
                " WHERE tenant_id = :t"
            ),
            {"t": tenant},
        )


def _revive(ws, event_id: uuid.UUID) -> None:
    """The operator requeues the dead letter: the event is pending again and dispatched."""
    from workers.actors.events import dispatch_event

    with session_scope() as session:
        session.execute(
            text("UPDATE outbox_events SET status = 'pending' WHERE id = :id"), {"id": event_id}
        )
    dispatch_event.send(str(event_id))
    wait_until(
        lambda: _outbox_status(event_id) == "processed" or None, "the event is dispatched", 10
    )
    wait_settled(ws)


def test_an_event_revived_after_the_reconcile_recounted_its_day_counts_once(ws):
    """A dispatch that gave up leaves its event ``failed``: not waiting, so the reconcile
    recounts its day with the message in it. Reviving the dead letter then dispatches
    the event: it must not count the message a second time."""
    from shared.analytics import reconcile

    tenant, event_id = _failed_inbound_yesterday(ws)
    with session_scope() as session:
        result = reconcile.reconcile_tenant(session, tenant, days=3)
    assert result.days_checked == 3
    assert _inbound_messages(tenant) == 1
    _revive(ws, event_id)
    assert _inbound_messages(tenant) == 1


def test_an_event_revived_a_week_after_the_reconcile_recounted_its_day_counts_once(ws, monkeypatch):
    """Dead letters wait for an operator with no time limit, but the processed key the
    recount wrote for a failed event was purged with the others after a week: revived
    then, the event counted its message a second time, into a day no reconcile looks
    at again. The key stays while its event is failed (and so can still be revived)."""
    from shared.analytics import reconcile

    tenant, event_id = _failed_inbound_yesterday(ws)
    with session_scope() as session:
        assert reconcile.reconcile_tenant(session, tenant, days=3).days_checked == 3
    # A week and more goes by (the day long out of the recount's window) and the nightly
    # run purges the processed keys counted before it.
    monkeypatch.setattr(intake, "KEEP_COUNTED_DAYS", 0)
    with session_scope() as session:
        intake.purge_counted(session)
    monkeypatch.undo()
    assert _inbound_messages(tenant) == 1
    _revive(ws, event_id)
    assert _inbound_messages(tenant) == 1


def _outbox_status(event_id) -> str:
    with session_scope() as session:
        return session.scalar(
            text("SELECT status FROM outbox_events WHERE id = :id"), {"id": event_id}
        )


def test_the_reconcile_diffs_a_tenant_s_conversations_a_bounded_batch_at_a_time(ws, monkeypatch):
    """A tenant's conversations are diffed against their facts a batch per transaction
    (each holding the tenant's lock), never all of them in one: memory and the time the
    roll_up is locked out stay bounded on a tenant with millions of conversations."""
    from shared.analytics import reconcile

    tenant = uuid.UUID(ws.tenant["id"])
    api = ApiChannel(ws)
    for n in range(3):
        api.inbound(f"counted-{n}", "hi")
    wait_settled(ws)
    # a conversation counted, then gone: its fact is left behind
    gone = backdate(ws, 1, messages=0)
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO analytics_events (event_id, tenant_id, type, data, occurred_at)"
                " VALUES (gen_random_uuid(), :t, 'conversation.created',"
                " jsonb_build_object('conversation_id', CAST(:c AS text)), now())"
            ),
            {"t": tenant, "c": gone},
        )
    rollup.drain(tenant)
    with session_scope() as session:
        session.execute(text("DELETE FROM conversations WHERE id = :c"), {"c": gone})
    for days_ago in (1, 1, 2, 3, 3):
        backdate(ws, days_ago)  # conversations no event counted
    seen: list[int] = []
    real = reconcile.apply_fact_changes

    def spy(session, tenant_id, facts, source, deltas):
        seen.append(len(facts.keys() | source.keys()))
        return real(session, tenant_id, facts, source, deltas)

    monkeypatch.setattr(reconcile, "apply_fact_changes", spy)
    monkeypatch.setattr(reconcile, "FACTS_BATCH", 2, raising=False)
    with session_scope() as session:
        result = reconcile.reconcile_tenant(session, tenant, days=3)
    assert seen and max(seen) <= 2, seen
    assert result.corrections["conversation_facts"] == 6
    with session_scope() as session:
        again = reconcile.reconcile_tenant(session, tenant, days=3)
    assert again.corrections["conversation_facts"] == 0
    assert again.corrections["conversation_counts"] == 0
    assert_figures_match(ws)


def test_a_run_cut_short_by_its_time_limit_has_purged_the_processed_keys_first(ws, monkeypatch):
    """The actor's time limit ends a run over many tenants, every retry starting over from
    the first: the purge, after the tenants, then never ran and the keys piled up."""

    t = ws.tenant["id"]
    _counted_days_ago(t, 1)

    run = _run_cut_short(monkeypatch)
    assert run["status"] == "failed" and run["details"]["purged_event_keys"] == 1


def test_the_sweeper_skips_suspended_tenants_so_active_ones_are_not_starved(
    ws, other_workspace, monkeypatch
):
    """A suspended tenant's roll_up is dropped by the tenant gate, so its waiting events
    stay: the sweeper must not pick it every 15 seconds, filling its bounded batch of
    tenants and leaving an active tenant's lost roll_up never re-sent."""
    from scheduler import jobs

    for workspace in (ws, other_workspace):
        _waiting_since_a_minute(workspace.tenant["id"])
    with session_scope() as session:
        session.execute(
            text("UPDATE tenants SET status = 'suspended' WHERE id = :t"),
            {"t": other_workspace.tenant["id"]},
        )
    sent: list = []
    monkeypatch.setattr(
        intake.QUEUE, "enqueue_after_commit", lambda session, tenants: sent.extend(tenants)
    )
    with session_scope() as session:
        jobs.sweep_analytics(session)
    assert uuid.UUID(ws.tenant["id"]) in set(sent)
    assert uuid.UUID(other_workspace.tenant["id"]) not in set(sent)
