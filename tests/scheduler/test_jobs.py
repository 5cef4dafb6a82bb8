"""The job table and its runner: options chosen per job, failures logged, deposed leaders idle."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from scheduler import jobs
from scheduler.jobs import JOBS, Job
from tests.waiting import wait_until

OPTIONS = {"misfire_grace_time": None, "coalesce": True, "max_instances": 1}


def always(_session) -> bool:
    return True


def test_job_names_are_unique_and_each_job_chooses_its_apscheduler_options():
    assert len({job.name for job in JOBS}) == len(JOBS)
    for job in JOBS:
        assert {"misfire_grace_time", "coalesce", "max_instances"} <= set(job.options), job.name


def test_schedule_adds_each_job_with_its_trigger_and_options():
    scheduler = BackgroundScheduler(timezone=dt.UTC)
    jobs.schedule(scheduler, guard=always)
    added = {job.id: job for job in scheduler.get_jobs()}
    assert set(added) == {job.name for job in JOBS}
    sweep = added["sweep_outbox"]
    assert sweep.trigger.interval == dt.timedelta(seconds=5)
    assert (sweep.misfire_grace_time, sweep.coalesce, sweep.max_instances) == (None, True, 1)


def test_a_failing_job_is_logged_with_its_traceback_and_returns(caplog):
    def explode(_session):
        raise RuntimeError("boom from a job")

    with caplog.at_level(logging.ERROR, logger="scheduler.jobs"):
        assert (
            jobs.run(Job("explode", explode, IntervalTrigger(seconds=1), OPTIONS), always) is None
        )
    [record] = caplog.records
    assert record.getMessage() == "job explode failed"
    assert "boom from a job" in caplog.text and "Traceback" in caplog.text


def test_a_job_does_not_run_once_the_guard_says_we_no_longer_lead(caplog):
    ran = []
    job = Job("noted", lambda session: ran.append(session), IntervalTrigger(seconds=1), OPTIONS)
    with caplog.at_level(logging.WARNING, logger="scheduler.jobs"):
        jobs.run(job, lambda _session: False)
    assert ran == []
    assert "no longer leads" in caplog.text
    assert jobs.run(job, always) is None and len(ran) == 1


def test_the_scheduler_keeps_running_a_job_that_keeps_failing():
    calls = []
    enough = threading.Event()

    def flaky(_session):
        calls.append(1)
        if len(calls) >= 3:
            enough.set()
        raise RuntimeError("still failing")

    job = Job("flaky", flaky, IntervalTrigger(seconds=0.05, timezone=dt.UTC), OPTIONS)
    scheduler = BackgroundScheduler(timezone=dt.UTC)
    jobs.schedule(scheduler, guard=always, jobs=[job])
    scheduler.start()
    try:
        wait_until(enough.is_set, "three runs of a failing job", timeout=5)
        assert scheduler.running
    finally:
        scheduler.shutdown(wait=True)


_NEXT_RUNS = """
import datetime as dt, json, sys
from apscheduler.triggers.interval import IntervalTrigger
from scheduler.jobs import JOBS
now = dt.datetime.fromisoformat(sys.argv[1])
print(json.dumps({
    job.name: job.trigger.get_next_fire_time(None, now).isoformat()
    for job in JOBS if isinstance(job.trigger, IntervalTrigger)
}))
"""


def _next_runs_of_a_process_started_now(at: dt.datetime) -> dict[str, str]:
    """The first run of every interval job, as a scheduler process started now sees it at
    ``at``."""
    import json
    import subprocess
    import sys

    from tests.scheduler.conftest import REPO_ROOT

    done = subprocess.run(
        [sys.executable, "-c", _NEXT_RUNS, at.isoformat()],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_a_restarted_scheduler_keeps_the_interval_jobs_times_instead_of_postponing_them():
    """WHY: an interval counted from the process's start moved every run a restart later:
    a scheduler restarted (a deploy, a crash) more often than hourly never ran the hourly
    jobs (billing_cycle's renewals, rollup_usage, the webhook auto-disable)."""
    at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    first = _next_runs_of_a_process_started_now(at)
    time.sleep(1.5)  # the restart: a second process, started later
    second = _next_runs_of_a_process_started_now(at)
    assert first == second
    by_name = {job.name: job for job in JOBS}
    for name, when in first.items():
        wait = dt.datetime.fromisoformat(when) - at
        assert dt.timedelta(0) <= wait <= by_name[name].trigger.interval, name
