"""The scheduler's jobs: one line each in :data:`JOBS`, thin functions of a session.

A job selects due rows, enqueues actors and returns; heavy work belongs in actors.
The runner (:func:`run`) opens the job's session with ``shared.db.session_scope``,
checks that this process still leads, and logs a failure with its traceback
instead of raising, so a failing job never stops the scheduler or the other jobs.

APScheduler's per-job options are chosen for each job, never left to its defaults:
``misfire_grace_time`` (how late a run may still start; ``None``: however late),
``coalesce`` (whether a backlog of missed runs collapses into one) and
``max_instances`` (how many runs of the job may overlap in this process).

Example (a job whose options differ from :data:`DRAIN` spells its own)::

    Job("reopen_snoozed", expiration.reopen_snoozed, _every(minutes=1), DRAIN),
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.orm import Session

from shared import db, events, outbox_sweeper
from shared import jobs as api_jobs
from shared.ai import product_import
from shared.ai.knowledge import queue as knowledge_queue
from shared.ai.knowledge import reembedding
from shared.analytics import intake as analytics_intake
from shared.automation import queue as automation_queue
from shared.channels import inbound_sweeper, media_prefetch, outbound_queue
from shared.channels.templates import sync as template_sync
from shared.config import get_settings
from shared.db import session_scope
from shared.identity import auth
from shared.inbox import bulk, expiration
from shared.ops import scheduler_runs
from shared.timekeeping import scheduled_messages, sla
from shared.webhooks import sweeper as webhook_sweeper

log = logging.getLogger(__name__)

#: ``(session) -> bool``: whether this process still leads (``Leadership.still_leads``).
Guard = Callable[[Session], bool]


class Job(NamedTuple):
    """One row of the job table: what runs, when, and with which APScheduler options."""

    name: str
    func: Callable[[Session], Any]
    trigger: BaseTrigger
    options: Mapping[str, Any]


def sweep_outbox(session: Session) -> int:
    """Re-enqueue outbox events the after-commit fast path missed."""
    return outbox_sweeper.sweep(session, publish=events.publish)


def redrive_queued_jobs(session: Session) -> int:
    """Send again the actor of every 202 job still queued long after it was sent, and of
    every resumable job left running with no progress as long (its worker and message lost)."""
    from workers.actors.ai_products import enqueue_import
    from workers.actors.inbox import enqueue_bulk
    from workers.actors.wa_templates import enqueue_sync_job

    # NOTE: one entry per job kind; a kind missing here would stay queued, so the
    # test of this job checks every kind a service creates.
    enqueuers = {bulk.KIND: enqueue_bulk, product_import.KIND: enqueue_import}
    enqueuers[template_sync.JOB_KIND] = enqueue_sync_job
    # Bulk jobs and product imports resume where they stopped, so a running one that went
    # idle is sent again.
    stale = api_jobs.claim_stale(session, resumable=(bulk.KIND, product_import.KIND))
    for job_id, tenant_id, kind in stale:
        db.after_commit(session, functools.partial(enqueuers[kind], job_id, tenant_id))
    if stale:
        log.warning("re-driving %d job(s) idle long after they were sent", len(stale))
    return len(stale)


def sweep_outbound_sends(session: Session) -> int:
    """Re-enqueue outbound sends whose job was lost (broker message or worker gone)."""
    import workers.actors.channels_outbound  # noqa: F401  (installs the enqueuer)

    return outbound_queue.sweep(session)


def expire_conversations(session: Session) -> dict[str, int]:
    """Apply every active tenant's chat expiration rules (same work as the expire endpoint)."""
    return expiration.expire_all(session).as_dict()


def sweep_inbound_events(session: Session) -> int:
    """Re-enqueue inbound payloads still pending long after they were received."""
    import workers.actors.channels_inbound  # noqa: F401  (installs the enqueuer)

    return inbound_sweeper.sweep(session)


def sweep_automation_events(session: Session) -> int:
    """Re-enqueue automation events stuck pending or processing (needs the enqueuer)."""
    from workers.actors import automation  # noqa: F401  (installs the enqueuer)

    return automation_queue.sweep(session)


def sweep_automation_stats(session: Session) -> int:
    """Re-send the stats roll-up of tenants whose run figures wait too long (needs the enqueuer)."""
    from shared.automation import stats as automation_stats
    from workers.actors import automation  # noqa: F401  (installs the enqueuer)

    return automation_stats.sweep(session)


def purge_automation_stats(session: Session) -> int:
    """Drop minute stats buckets past their keep (hours and days stay); committed in batches."""
    from shared.automation import stats as automation_stats

    return automation_stats.purge_minutes(session)


def evaluate_automation_alerts(session: Session) -> dict[str, int]:
    """Check the rules' alert thresholds against the stats rollups; open and resolve alerts."""
    from shared.automation import alerts as automation_alerts

    return automation_alerts.evaluate(session)


def sweep_ai_replies(session: Session) -> int:
    """Re-enqueue AI replies stuck pending past due or generating too long (needs the enqueuer)."""
    import workers.actors.ai_reply  # noqa: F401  (installs the enqueuer)
    from shared.ai import replies as ai_replies

    return ai_replies.sweep(session)


def sweep_analytics(session: Session) -> int:
    """Re-send the rollup of tenants whose counted events wait too long (needs the enqueuer)."""
    from workers.actors import analytics  # noqa: F401  (installs the enqueuer)

    return analytics_intake.sweep(session)


def reconcile_analytics(_session: Session) -> bool:
    """Send the nightly recount of the rollups (the actor does the counting)."""
    from workers.actors.analytics import reconcile_analytics as reconcile_actor

    reconcile_actor.send()
    return True


def send_due_scheduled_messages(session: Session) -> int:
    """Hand due scheduled messages to ``send_scheduled_messages`` (needs the enqueuer)."""
    import workers.actors.timed  # noqa: F401  (installs the enqueuer)

    return len(scheduled_messages.claim_due(session))


def start_due_campaigns(session: Session) -> dict[str, int]:
    """Start scheduled campaigns now due; re-send the batch of running ones whose job was lost."""
    import workers.actors.campaigns  # noqa: F401  (installs the enqueuer)
    from shared.campaigns import lifecycle as campaigns

    return campaigns.start_due(session)


def check_sla(session: Session) -> int:
    """Record the SLA breaches now due (once each) and emit ``sla.breached``."""
    return sla.check_due(session)


#: How often the media prefetch sweep runs (its re-drive marks are crossed within one).
MEDIA_PREFETCH_SWEEP_SECONDS = 60


def sweep_media_prefetch(session: Session) -> int:
    """Re-enqueue the background fetch of inbound files still without bytes."""
    from workers.actors import channels_inbound  # noqa: F401  (installs the enqueuer)

    return media_prefetch.sweep(session, every_seconds=MEDIA_PREFETCH_SWEEP_SECONDS)


def sweep_knowledge_sources(session: Session) -> int:
    """Re-enqueue knowledge sources whose ingestion message was lost or whose worker died."""
    from workers.actors import ai_knowledge  # noqa: F401  (installs the enqueuer)

    return knowledge_queue.sweep(session)


def sweep_knowledge_reembedding(session: Session) -> dict[str, int]:
    """Re-enqueue the items of re-embeddings (after a model change) whose messages were lost;
    give up the spent ones."""
    from workers.actors import ai_knowledge  # noqa: F401  (installs the enqueuer)

    return reembedding.sweep(session)


def sweep_knowledge_embeddings(session: Session) -> dict[str, int]:
    """Re-enqueue new items whose embed_items message was lost; give up the spent ones."""
    from shared.ai.knowledge import embedding_sweep
    from workers.actors import ai_knowledge  # noqa: F401  (installs the enqueuer)

    return embedding_sweep.sweep(session)


def sweep_read_receipts(session: Session) -> int:
    """Re-enqueue read receipts whose mark_read_upstream message was lost (needs the enqueuer)."""
    import workers.actors.read_receipts  # noqa: F401  (installs the enqueuer)
    from shared.channels import read_receipts

    return read_receipts.sweep(session)


def sweep_invitation_emails(session: Session) -> int:
    """Re-enqueue invitation emails whose send_email message was lost (needs the enqueuer)."""
    import workers.actors.platform_email  # noqa: F401  (installs the enqueuer)
    from shared.identity import invitations

    return invitations.sweep(session)


def sweep_early_statuses(session: Session) -> dict[str, int]:
    """Apply early Meta statuses whose message is known by now; drop the expired ones."""
    from shared.channels import early_statuses

    return early_statuses.sweep(session).as_dict()


def sync_wa_templates(session: Session) -> int:
    """Send the template sync of each WhatsApp account due one (every 6 h) or whose last
    sync was lost (needs the enqueuer)."""
    import workers.actors.wa_templates  # noqa: F401  (installs the enqueuer)

    return len(template_sync.claim_due(session))


def billing_cycle(session: Session) -> dict[str, int]:
    """Apply due period ends (renewals, trial ends, downgrades, cancellations), committed in
    batches, and re-drive overdue charges (needs the charge enqueuer)."""
    import workers.actors.billing  # noqa: F401  (installs the charge and refund enqueuers)
    from shared.billing import cycle, payments

    result = cycle.run(session).as_dict()
    result["refunds_redriven"] = payments.redrive_stale_refunds(session)
    return result


def rollup_usage(session: Session) -> int:
    """Recount this month's usage of billed workspaces; reset the plan-limit counters."""
    from shared.billing import usage

    return usage.rollup(session)


def purge_old_rows(_session: Session) -> bool:
    """Send the purge of old finished rows (the actor does the deleting); False when off."""
    from workers.actors.retention import purge_old_rows as purge_actor

    if not get_settings().retention_days:
        return False
    purge_actor.send()
    return True


#: The options every job here uses, each chosen on purpose (APScheduler's defaults differ):
#: ``misfire_grace_time=None``: a late run still finds due rows, so it always runs;
#: ``coalesce=True``: several missed runs would drain the same rows, one run does;
#: ``max_instances=1``: an overlapping run could only skip the rows the first holds
#: (SKIP LOCKED); APScheduler logs the skipped run, the sign a job outgrew its interval.
DRAIN = {"misfire_grace_time": None, "coalesce": True, "max_instances": 1}


#: Where every interval is counted from, so the runs fall at the same instants whenever
#: the process started.
INTERVAL_ANCHOR = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _every(**interval: float) -> IntervalTrigger:
    """An interval counted from :data:`INTERVAL_ANCHOR` (an hourly job runs on the hour).

    WHY: APScheduler counts an interval from the trigger's creation (the process's start)
    by default, so each restart put the next run a whole interval off: a scheduler
    restarted (a deploy, a crash loop) more often than hourly never ran the hourly jobs.
    """
    return IntervalTrigger(**interval, start_date=INTERVAL_ANCHOR, timezone=dt.UTC)


JOBS: tuple[Job, ...] = (
    Job("sweep_outbox", sweep_outbox, _every(seconds=5), DRAIN),
    Job("reopen_snoozed", expiration.reopen_snoozed, _every(minutes=1), DRAIN),
    Job("redrive_queued_jobs", redrive_queued_jobs, _every(minutes=1), DRAIN),
    Job("expire_conversations", expire_conversations, _every(minutes=5), DRAIN),
    # Webhooks: due retries and claims of killed workers as often as the outbox; the
    # five-day auto-disable needs no more than hourly.
    Job("sweep_webhook_deliveries", webhook_sweeper.sweep, _every(seconds=5), DRAIN),
    Job("disable_failing_webhooks", webhook_sweeper.disable_failing, _every(hours=1), DRAIN),
    # Channels: inbound payloads whose process_inbound message was lost, and outbound
    # sends whose send_outbound message was lost.
    Job("sweep_inbound_events", sweep_inbound_events, _every(seconds=10), DRAIN),
    # Automation: queue rows whose evaluate_rules message was lost or whose worker died.
    Job("sweep_automation_events", sweep_automation_events, _every(seconds=10), DRAIN),
    # Automation stats: tenants whose roll_up_automation_stats message was lost.
    Job("sweep_automation_stats", sweep_automation_stats, _every(seconds=15), DRAIN),
    # Automation alerts: thresholds read from the rollups; an incident fires once.
    Job("evaluate_automation_alerts", evaluate_automation_alerts, _every(minutes=5), DRAIN),
    Job("purge_automation_stats", purge_automation_stats, _every(hours=1), DRAIN),
    Job("sweep_outbound_sends", sweep_outbound_sends, _every(seconds=15), DRAIN),
    # AI replies: a lost ai_reply message, or a worker that died while the model wrote.
    Job("sweep_ai_replies", sweep_ai_replies, _every(seconds=5), DRAIN),
    # Analytics: tenants whose roll_up message was lost, and the nightly recount of the
    # previous days (after local midnight for most tenants; a settled day waits a run).
    Job("sweep_analytics", sweep_analytics, _every(seconds=15), DRAIN),
    Job(
        "reconcile_analytics",
        reconcile_analytics,
        CronTrigger(hour=2, minute=41, timezone=dt.UTC),
        DRAIN,
    ),
    # Time-driven work: scheduled sends go out within 30 s of their time, so the job runs
    # well inside that (API.md's table says every 30 s, which alone would spend the whole
    # budget waiting for the next run); a run with nothing due is one index probe.
    Job("send_due_scheduled_messages", send_due_scheduled_messages, _every(seconds=10), DRAIN),
    # Campaigns: scheduled ones start within 30 s of their time (API.md's interval); a
    # running one whose batch job was lost is sent again.
    Job("start_due_campaigns", start_due_campaigns, _every(seconds=30), DRAIN),
    Job("check_sla", check_sla, _every(minutes=1), DRAIN),
    # AI knowledge: sources left pending or processing by a lost message or a dead worker.
    Job("sweep_knowledge_sources", sweep_knowledge_sources, _every(seconds=30), DRAIN),
    Job(
        "sweep_media_prefetch",
        sweep_media_prefetch,
        _every(seconds=MEDIA_PREFETCH_SWEEP_SECONDS),
        DRAIN,
    ),
    # ...and re-embeddings after a model change whose embed_items messages were lost.
    Job("sweep_knowledge_reembedding", sweep_knowledge_reembedding, _every(minutes=1), DRAIN),
    # ...and new chunks, QnA pairs and products whose embed_items message was lost.
    Job("sweep_knowledge_embeddings", sweep_knowledge_embeddings, _every(minutes=1), DRAIN),
    # Retention: once a day at a quiet hour, a cron time so that restarts never postpone
    # it (an interval restarts its count with the process). A day missed while no
    # scheduler led is made up by the next day's run, which finds the same rows.
    Job(
        "purge_old_rows",
        purge_old_rows,
        CronTrigger(hour=3, minute=17, timezone=dt.UTC),
        DRAIN,
    ),
    # Channel gaps: read receipts and invitation emails whose message was lost, and Meta
    # statuses that came before their send committed (applied, or dropped when expired).
    Job("sweep_read_receipts", sweep_read_receipts, _every(seconds=15), DRAIN),
    Job("sweep_invitation_emails", sweep_invitation_emails, _every(seconds=30), DRAIN),
    Job("sweep_early_statuses", sweep_early_statuses, _every(seconds=30), DRAIN),
    # Logouts: a revocation is kept until its token would have expired anyway.
    Job("purge_expired_revocations", auth.purge_expired_revocations, _every(hours=1), DRAIN),
    # WhatsApp templates: each account is re-synced from Meta 6 h after its last claim
    # (a due time per account, so restarts never postpone it), and a sync whose message
    # or worker was lost is sent again; checked every 10 minutes.
    Job("sync_wa_templates", sync_wa_templates, _every(minutes=10), DRAIN),
    # Billing (API.md's intervals): period ends are applied within the hour (a renewal is
    # dated at its period end whenever it runs), and usage counters are recounted hourly.
    Job("billing_cycle", billing_cycle, _every(hours=1), DRAIN),
    Job("rollup_usage", rollup_usage, _every(hours=1), DRAIN),
)


def run(job: Job, guard: Guard) -> Any:
    """Run ``job`` in its own session unless this process no longer leads; never raise.

    Each run's outcome (``ok``, ``failed``, ``skipped``) is recorded for the console.
    """
    started = time.time()
    outcome, result, error = "ok", None, None
    try:
        with session_scope() as session:
            if not guard(session):
                log.warning("job %s skipped: this scheduler no longer leads", job.name)
                outcome = "skipped"
                return None
            result = job.func(session)
            return result
    except Exception as exc:
        log.exception("job %s failed", job.name)
        outcome, error = "failed", "".join(traceback.format_exception(exc)).strip()
        return None
    finally:
        _record(job, started, outcome, result, error)


def _record(job: Job, started: float, outcome: str, result: Any, error: str | None) -> None:
    """Record a run for the console; never raise (the run itself is what matters)."""
    try:
        upcoming = job.trigger.get_next_fire_time(None, dt.datetime.now(dt.UTC))
        scheduler_runs.record_run(
            job.name,
            started=started,
            finished=time.time(),
            outcome=outcome,
            result=result,
            error=error,
            next_run=upcoming.timestamp() if upcoming else None,
        )
    except Exception:
        log.exception("the run of job %s could not be recorded", job.name)


def schedule(scheduler: BaseScheduler, *, guard: Guard, jobs: Sequence[Job] = JOBS) -> None:
    """Add every job to ``scheduler``, each run through :func:`run` behind ``guard``."""
    scheduler_runs.record_jobs({job.name: str(job.trigger) for job in jobs})
    for job in jobs:
        scheduler.add_job(
            run, job.trigger, args=(job, guard), id=job.name, name=job.name, **job.options
        )
