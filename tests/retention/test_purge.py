"""The daily purge: the scheduler job sends it, the actor deletes exactly the old final rows."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter

import pytest
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select, update

from scheduler import jobs
from shared.config import get_settings
from shared.db import session_scope
from shared.models import AutomationRunContext, MediaFile, WebhookDelivery
from shared.retention import purge
from tests.retention.conftest import Seeder, surviving
from tests.waiting import wait_until
from workers import queues
from workers.actors import retention as retention_actor

ACTOR = "purge_old_rows"
PURGE_JOB = next(job for job in jobs.JOBS if job.name == ACTOR)


def _metrics(client) -> dict:
    token = get_settings().metrics_token
    result = client.simulate_get(
        "/api/automation/worker-metrics",
        params={"minutes": 10},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert result.status_code == 200, result.text
    return result.json["actors"].get(ACTOR, {}).get("totals", {})


def _items(client) -> Counter:
    return Counter(_metrics(client).get("items", {}))


def _run_job_and_wait(broker) -> object:
    outcome = jobs.run(PURGE_JOB, lambda _session: True)
    broker.join(queues.MAINTENANCE, timeout=30_000)
    return outcome


def _seed_everything(seeder: Seeder) -> dict[str, set]:
    """Old final rows (to go) and recent or in-flight rows (to stay); return those to go."""
    doomed = {
        "webhook_deliveries": {
            seeder.delivery(status="succeeded", age_days=91, attempts=1),
            seeder.delivery(status="failed", age_days=200, attempts=3),
            seeder.delivery(status="disabled", age_days=95, attempts=0),
        },
        "automation_events": {
            seeder.automation_event(status="done", age_days=91),
            seeder.automation_event(status="failed", age_days=120),
        },
        "inbound_events": {
            seeder.inbound_event(status=status, age_days=100)
            for status in ("processed", "failed", "dropped")
        },
        "outbox_events": {
            seeder.outbox_event(status="processed", age_days=91),
            seeder.outbox_event(status="failed", age_days=120),
        },
        "dead_letters": {seeder.dead_letter(age_days=91)},
    }
    # An old processed event stays while an automation event still kept refers to it.
    kept_event = seeder.outbox_event(status="processed", age_days=300)
    seeder.automation_event(status="pending", age_days=300, outbox_event_id=kept_event)
    seeder.outbox_event(status="processed", age_days=89)
    seeder.outbox_event(status="pending", age_days=300)
    # Recent rows, and rows still in flight however old: all stay.
    seeder.delivery(status="succeeded", age_days=89)
    seeder.delivery(status="pending", age_days=300)
    seeder.delivery(status="in_flight", age_days=300)
    seeder.automation_event(status="done", age_days=10)
    seeder.automation_event(status="pending", age_days=300)
    seeder.automation_event(status="processing", age_days=300)
    seeder.inbound_event(status="processed", age_days=89)
    seeder.inbound_event(status="pending", age_days=300)
    seeder.dead_letter(age_days=89)
    return doomed


def test_the_daily_job_sends_the_purge_that_deletes_only_old_final_rows(
    seeder, broker, worker, client
):
    doomed = _seed_everything(seeder)
    seeded = {table: set(ids) for table, ids in seeder.ids.items()}
    items_before = _items(client)
    enqueued_before = _metrics(client).get("enqueued", 0)

    assert _run_job_and_wait(broker) is True

    left = surviving(seeder)
    for table in (
        "webhook_deliveries",
        "automation_events",
        "outbox_events",
        "inbound_events",
        "dead_letters",
    ):
        assert left[table] == seeded[table] - doomed[table], table
    # Attempts and runs went with their deliveries and events, and only those.
    assert len(seeded["webhook_attempts"]) - len(left["webhook_attempts"]) == 1 + 3 + 0
    assert len(seeded["automation_runs"]) - len(left["automation_runs"]) == 2 * 2
    expected = Counter(
        webhook_deliveries=3,
        webhook_attempts=4,
        automation_events=2,
        automation_runs=4,
        outbox_events=2,
        inbound_events=3,
        dead_letters=1,
    )
    wait_until(lambda: _items(client) - items_before == expected, timeout=15)
    wait_until(lambda: _metrics(client).get("enqueued", 0) - enqueued_before == 1, timeout=5)
    scrape = client.simulate_get(
        "/metrics", headers={"Authorization": f"Bearer {get_settings().metrics_token}"}
    ).text
    assert (
        'omnistream_worker_items_total{actor="purge_old_rows",item="webhook_attempts",'
        'queue="maintenance"}' in scrape
    )


def test_the_job_runs_daily_at_a_fixed_time():
    assert isinstance(PURGE_JOB.trigger, CronTrigger)
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    first = PURGE_JOB.trigger.get_next_fire_time(None, now)
    assert first - now < dt.timedelta(days=1)
    assert PURGE_JOB.trigger.get_next_fire_time(first, first) - first == dt.timedelta(days=1)


def test_a_backlog_is_deleted_in_batches_by_a_chain_of_jobs(
    seeder, broker, worker, client, retention_env, monkeypatch
):
    retention_env(RETENTION_BATCH_SIZE="2")
    # Every job gets one batch per kind before it hands over to the next one.
    monkeypatch.setattr(retention_actor, "SLICE_SECONDS", 0.0)
    old = {seeder.delivery(status="succeeded", age_days=100) for _ in range(5)}
    recent = seeder.delivery(status="succeeded", age_days=1)
    enqueued_before = _metrics(client).get("enqueued", 0)
    items_before = _items(client)

    retention_actor.purge_old_rows.send()
    wait_until(lambda: not (surviving(seeder)["webhook_deliveries"] & old), timeout=20)
    broker.join(queues.MAINTENANCE, timeout=30_000)

    assert surviving(seeder)["webhook_deliveries"] == {recent}
    # 5 rows, 2 a batch: full, full, then a short batch ends the chain (1 + 2 re-sends).
    # Counts reach Redis from a flusher thread: until its first write the actor has no entry.
    wait_until(lambda: _metrics(client).get("enqueued", 0) - enqueued_before == 3, timeout=5)
    wait_until(lambda: (_items(client) - items_before)["webhook_deliveries"] == 5, timeout=5)


def test_a_row_another_transaction_holds_is_skipped_not_waited_for(seeder, broker, worker):
    held = seeder.delivery(status="failed", age_days=100)
    free = seeder.delivery(status="failed", age_days=100)
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        with session_scope() as session:
            session.get(WebhookDelivery, held, with_for_update=True)
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(5)
        retention_actor.purge_old_rows.send()
        broker.join(queues.MAINTENANCE, timeout=10_000)
        assert surviving(seeder)["webhook_deliveries"] == {held}
    finally:
        release.set()
        holder.join(10)
    retention_actor.purge_old_rows.send()
    broker.join(queues.MAINTENANCE, timeout=10_000)
    assert surviving(seeder)["webhook_deliveries"] == set()
    assert free not in surviving(seeder)["webhook_deliveries"]


def test_the_retention_setting_is_honoured(seeder, broker, worker, retention_env):
    forty = seeder.delivery(status="succeeded", age_days=40)
    twenty = seeder.delivery(status="succeeded", age_days=20)
    forty_dead = seeder.dead_letter(age_days=40)

    _run_job_and_wait(broker)  # the default, 90 days
    assert surviving(seeder)["webhook_deliveries"] == {forty, twenty}

    retention_env(RETENTION_DAYS="30")
    _run_job_and_wait(broker)
    assert surviving(seeder)["webhook_deliveries"] == {twenty}
    assert surviving(seeder)["dead_letters"] == set()
    assert forty_dead in seeder.ids["dead_letters"]

    retention_env(RETENTION_DAYS="0")  # 0 keeps everything: the job sends nothing
    seeder.delivery(status="succeeded", age_days=4000)
    assert _run_job_and_wait(broker) is False
    assert len(surviving(seeder)["webhook_deliveries"]) == 2


def test_running_twice_deletes_once(seeder, broker, worker, client):
    _seed_everything(seeder)
    _run_job_and_wait(broker)
    after_first = surviving(seeder)
    processed, items = _settled_counts(client)
    assert processed >= 1

    _run_job_and_wait(broker)

    assert surviving(seeder) == after_first
    assert _settled_counts(client) == (processed + 1, items)


def _settled_counts(client) -> tuple[int, dict]:
    """The purge's processed count and items once every process has flushed them.

    NOTE: each process adds its counts every METRICS_FLUSH_SECONDS (0.1 s here), so a
    read right after the job may miss the last flush: wait until three reads agree.
    """
    reads: list[tuple[int, dict]] = []

    def settled() -> bool:
        reads.append((_metrics(client).get("processed", 0), _items(client)))
        return len(reads) >= 3 and reads[-1] == reads[-2] == reads[-3] and reads[-1][0] > 0

    def settled_slowly() -> bool:
        time.sleep(0.2)
        return settled()

    wait_until(settled_slowly, timeout=20)
    return reads[-1]


def test_a_delivery_waits_for_the_purge_of_its_resends(seeder, broker, worker, retention_env):
    original = seeder.delivery(status="failed", age_days=120)
    first = seeder.delivery(status="succeeded", age_days=100, resend_of=original)
    second = seeder.delivery(status="succeeded", age_days=10, resend_of=original)

    _run_job_and_wait(broker)
    # The old resend went; the original stays while the recent resend points to it.
    assert surviving(seeder)["webhook_deliveries"] == {original, second}

    retention_env(RETENTION_DAYS="5")
    _run_job_and_wait(broker)
    _run_job_and_wait(broker)
    assert surviving(seeder)["webhook_deliveries"] == set()
    assert first not in surviving(seeder)["webhook_deliveries"]


@pytest.mark.parametrize("days", ["-1", "ninety", "10000000", "3000000000"])
def test_a_bad_retention_setting_is_refused_at_start(retention_env, days):
    """Days past what a cutoff can be (PostgreSQL's timestamps, make_interval's integer)
    would fail every daily purge, retried and dead-lettered: refused at start instead."""
    with pytest.raises(ValueError, match="retention_days"):
        retention_env(RETENTION_DAYS=days)
        get_settings()


def test_the_longest_retention_purges_without_error(seeder, broker, worker, retention_env):
    retention_env(RETENTION_DAYS="36500")
    kept = seeder.delivery(status="succeeded", age_days=4000)

    assert _run_job_and_wait(broker) is True

    assert surviving(seeder)["webhook_deliveries"] == {kept}
    assert purge.purge(days=36_500, batch_size=10, budget_seconds=5).finished


def test_an_outbox_event_goes_in_the_same_run_as_its_old_automation_event(seeder, broker, worker):
    event = seeder.outbox_event(status="processed", age_days=95)
    seeder.automation_event(status="done", age_days=91, outbox_event_id=event)

    _run_job_and_wait(broker)

    left = surviving(seeder)
    assert left["automation_events"] == set()
    assert left["outbox_events"] == set()


def _email_file(seeder: Seeder, event_id, *, stored: bool) -> None:
    """An inbound email's attachment, part 0 of the MIME that inbound event holds."""
    with session_scope() as session:
        session.add(
            MediaFile(
                tenant_id=seeder.tenant_id,
                source="inbound",
                channel="email",
                provider_media_id=f"email:{event_id}:0",
                storage_backend="local" if stored else None,
                storage_key="k/stored" if stored else None,
            )
        )


def test_an_email_whose_attachment_was_never_fetched_is_kept(seeder, broker, worker):
    """An email's files are fetched from its stored payload (shared.channels.media): one
    nobody fetched yet (prefetch off, or failed) was lost with its purged email, while
    its message still listed it. The email goes once its files are stored."""
    owed = seeder.inbound_event(status="processed", age_days=100, channel="email")
    _email_file(seeder, owed, stored=False)
    fetched = seeder.inbound_event(status="processed", age_days=100, channel="email")
    _email_file(seeder, fetched, stored=True)

    _run_job_and_wait(broker)

    assert surviving(seeder)["inbound_events"] == {owed}
    with session_scope() as session:
        session.execute(
            update(MediaFile)
            .where(MediaFile.provider_media_id == f"email:{owed}:0")
            .values(storage_backend="local", storage_key="k/stored")
        )
    _run_job_and_wait(broker)
    assert surviving(seeder)["inbound_events"] == set()


def test_an_events_run_contexts_are_purged_and_counted_with_it(seeder, broker, worker, client):
    """Runs share their evaluation's facts in a context row (migration 0026): the purge
    removed them through the foreign key's cascade, so its counts left them out."""
    event = seeder.automation_event(status="done", age_days=91, runs=1)
    with session_scope() as session:
        session.add(
            AutomationRunContext(tenant_id=seeder.tenant_id, automation_event_id=event, facts={})
        )
    items_before = _items(client)

    _run_job_and_wait(broker)

    assert surviving(seeder)["automation_events"] == set()
    with session_scope() as session:
        assert (
            session.scalars(
                select(AutomationRunContext).where(
                    AutomationRunContext.automation_event_id == event
                )
            ).all()
            == []
        )
    expected = Counter(automation_events=1, automation_runs=1, automation_run_contexts=1)
    wait_until(lambda: _items(client) - items_before == expected, timeout=15)
