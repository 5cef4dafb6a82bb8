"""Leader election with real ``python -m scheduler`` processes and in-process Leadership objects.

Settings from the suite's conftest: heartbeat 0.5 s, standby poll 0.25 s, so the
lease (a hung leader's limit) is the 5 s minimum.
"""

from __future__ import annotations

import signal
import time

import pytest

from scheduler.leader import Leadership, LeadershipLost
from shared.db import session_scope
from tests.scheduler.conftest import heartbeat, lock_holders, terminate_lock_backends
from tests.waiting import wait_until

#: Seconds a scheduler process may take to start (import the app, connect): generous, since
#: the suite runs one process per core; the takeover waits below measure behaviour instead.
STARTUP = 45


def led_by(pid: int, *, after=None):
    """A predicate: the heartbeat names ``pid`` (and beat after ``after``, if given)."""

    def check():
        beat = heartbeat()
        if beat is None or beat.pid != pid or (after is not None and beat.beat_at <= after):
            return None
        return beat

    return check


def test_one_leader_a_killed_leader_is_replaced_and_sigterm_exits_cleanly(schedulers):
    first = schedulers.start("first")
    first_beat = schedulers.wait_for(
        led_by(first.pid), "the first scheduler leads", timeout=STARTUP
    )
    second = schedulers.start("second")
    schedulers.wait_for(
        lambda: "STANDBY" in second.log(), "the second one stands by", timeout=STARTUP
    )
    assert len(lock_holders()) == 1
    assert heartbeat().pid == first.pid

    first.send(signal.SIGKILL)
    killed_at = time.monotonic()
    new_beat = schedulers.wait_for(
        led_by(second.pid, after=first_beat.beat_at), "the standby takes over", timeout=10
    )
    assert time.monotonic() - killed_at < 10
    assert new_beat.leader_since > first_beat.leader_since
    assert new_beat.instance_id != first_beat.instance_id
    assert len(lock_holders()) == 1

    second.send(signal.SIGTERM)
    assert second.wait(timeout=10) == 0
    assert "released scheduler lock" in second.log()
    assert lock_holders() == []


def test_a_hung_leader_loses_the_lock_and_steps_down_when_it_wakes(schedulers):
    hung = schedulers.start("hung")
    hung_beat = schedulers.wait_for(led_by(hung.pid), "the first scheduler leads", timeout=STARTUP)
    standby = schedulers.start("standby")
    schedulers.wait_for(
        lambda: "STANDBY" in standby.log(), "the second one stands by", timeout=STARTUP
    )

    hung.send(signal.SIGSTOP)
    try:
        # Postgres ends the silent lock session after the lease (5 s here).
        schedulers.wait_for(
            led_by(standby.pid, after=hung_beat.beat_at), "the standby takes over", timeout=10
        )
    finally:
        hung.send(signal.SIGCONT)

    schedulers.wait_for(lambda: "LEADER LOST" in hung.log(), "the woken leader steps down")
    schedulers.wait_for(
        lambda: "STANDBY" in hung.log().split("LEADER LOST", 1)[1], "it stands by again"
    )
    assert len(lock_holders()) == 1
    assert heartbeat().pid == standby.pid


def test_a_leader_whose_lock_connection_is_cut_stops_and_leads_again(schedulers):
    scheduler = schedulers.start("cut")
    before = schedulers.wait_for(led_by(scheduler.pid), "the scheduler leads", timeout=STARTUP)

    terminate_lock_backends()  # what a database restart does to the lock session

    schedulers.wait_for(lambda: "LEADER LOST" in scheduler.log(), "the leader notices")
    again = schedulers.wait_for(
        led_by(scheduler.pid, after=before.beat_at), "it is elected again", timeout=10
    )
    assert again.leader_since > before.leader_since
    scheduler.send(signal.SIGINT)
    assert scheduler.wait(timeout=10) == 0


@pytest.fixture
def leaderships(database):
    made: list[Leadership] = []
    yield lambda: made.append(Leadership()) or made[-1]
    for leadership in made:
        leadership.release()


def test_only_one_leadership_takes_the_lock_and_jobs_check_pg_locks(leaderships):
    a, b = leaderships(), leaderships()
    assert a.try_acquire() and a.leading
    a.beat()
    assert not b.try_acquire() and not b.leading
    with session_scope() as session:
        assert a.still_leads(session)
        assert not b.still_leads(session)

    terminate_lock_backends()
    wait_until(lambda: not lock_holders(), "the lock session ends")
    with session_scope() as session:
        # The job guard sees the loss before the leader's next beat does.
        assert not a.still_leads(session)
    with pytest.raises(LeadershipLost):
        a.beat()
    assert not a.leading
    assert wait_until(b.try_acquire, "the other one takes the lock", timeout=5)
    b.beat()
    assert not a.try_acquire()


def test_a_stale_beat_stops_jobs_even_while_the_lock_is_held(leaderships, monkeypatch):
    a = leaderships()
    assert a.try_acquire()
    a.beat()
    later = time.monotonic() + a.lease
    monkeypatch.setattr("scheduler.leader.time.monotonic", lambda: later)
    with session_scope() as session:
        assert not a.still_leads(session)


def test_release_gives_the_lock_up(leaderships):
    a = leaderships()
    assert a.try_acquire()
    assert len(lock_holders()) == 1
    a.release()
    assert not a.leading
    assert lock_holders() == []
