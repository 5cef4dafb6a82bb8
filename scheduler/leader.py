"""Leader election: one scheduler runs the jobs, any other waits as a hot standby.

The leader holds a session-level Postgres advisory lock (``SCHEDULER_LOCK_ID``) on
a connection of its own, outside the pooled engine, and Postgres frees the lock
the moment that session ends. With H = ``SCHEDULER_HEARTBEAT_SECONDS``, P =
``SCHEDULER_STANDBY_POLL_SECONDS`` and the lease L = max(4 H, 5 s):

- A leader that exits or is killed closes its socket; Postgres ends the session
  and a standby's next ``pg_try_advisory_lock`` (every P) wins.
- A hung leader, or one whose host vanished, stops talking: the lock session's
  ``idle_session_timeout`` (L) makes Postgres end it, and a standby wins within L + P.
- The leader writes its heartbeat *on the lock connection* every H, so each beat
  also proves the lock is still held. When a beat fails (database restart, cut
  connection, ended session) the leader stops its jobs and stands by again.
- Before each run a job asks :meth:`Leadership.still_leads`: the last beat is
  younger than L / 2 (so Postgres cannot have freed the lock for idleness yet) and
  ``pg_locks`` shows the lock held by our session. A deposed leader never starts a job.

Needs PostgreSQL 14+ (``idle_session_timeout``).

Example::

    leadership = Leadership()
    leadership.run(stop_event, on_elected=start_jobs, on_deposed=stop_jobs)
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Connection, Engine, create_engine, func, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from shared.config import Settings, get_settings
from shared.models import SchedulerHeartbeat
from shared.scheduler_status import HEARTBEAT_NAME

log = logging.getLogger(__name__)

#: The lease is this many heartbeats...
LEASE_BEATS = 4
#: ...but never shorter than this, so a slow beat or a GC pause does not cost the lead.
MIN_LEASE_SECONDS = 5.0

# NOTE: a bigint advisory key shows in pg_locks as classid (high 32 bits), objid
# (low 32 bits) and objsubid = 1.
_HOLDS_LOCK = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks"
    " WHERE locktype = 'advisory' AND granted AND pid = :pid AND objsubid = 1"
    " AND classid::bigint = :hi AND objid::bigint = :lo"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
)


class LeadershipLost(Exception):
    """The lock connection failed, so this process can no longer prove it holds the lock."""


def _first_line(exc: BaseException) -> str:
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [repr(exc)])[0]


class Leadership:
    """Take, prove and give up the scheduler lead; see the module docstring for timings."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.lock_id = self.settings.scheduler_lock_id
        self.lease = max(LEASE_BEATS * self.settings.scheduler_heartbeat_seconds, MIN_LEASE_SECONDS)
        self.hostname = socket.gethostname()
        self.instance_id = f"{self.hostname}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._engine = self._lock_engine()
        self._conn: Connection | None = None
        self._backend_pid: int | None = None
        self._since: dt.datetime | None = None
        #: ``time.monotonic()`` of the last beat that succeeded while leading.
        self._confirmed_at: float | None = None
        self._db_down = False

    @property
    def leading(self) -> bool:
        return self._since is not None

    def _lock_engine(self) -> Engine:
        lease_ms = int(self.lease * 1000)
        return create_engine(
            # NOTE: the lock is session-level: never through PgBouncer in transaction mode
            # (the next transaction may land on another server session).
            self.settings.direct_database_url,
            poolclass=NullPool,
            # NOTE: autocommit, so the session is never "idle in transaction" and
            # idle_session_timeout applies; the advisory lock outlives transactions.
            isolation_level="AUTOCOMMIT",
            connect_args={
                "application_name": "omnistream-scheduler-lock",
                "connect_timeout": max(2, math.ceil(self.lease)),
                # The leader notices a vanished server within about a lease: keepalives
                # probe an idle socket, tcp_user_timeout bounds unacknowledged writes,
                # statement_timeout bounds a beat stuck in the server.
                "keepalives": 1,
                "keepalives_idle": max(1, int(self.settings.scheduler_heartbeat_seconds)),
                "keepalives_interval": 1,
                "keepalives_count": 3,
                "tcp_user_timeout": lease_ms,
                "options": f"-c statement_timeout={lease_ms}",
            },
        )

    def try_acquire(self) -> bool:
        """Try once to take the lock; return whether this process now leads."""
        try:
            if self._conn is None:
                self._conn = self._engine.connect()
                self._backend_pid = self._conn.execute(text("SELECT pg_backend_pid()")).scalar()
            got, now = self._conn.execute(
                text("SELECT pg_try_advisory_lock(:id), now()"), {"id": self.lock_id}
            ).one()
            if got:
                # Postgres ends this session, freeing the lock, once it idles past the
                # lease: that is how a hung leader is replaced.
                self._conn.execute(
                    text("SELECT set_config('idle_session_timeout', :ms, false)"),
                    {"ms": str(int(self.lease * 1000))},
                )
        except SQLAlchemyError as exc:
            self._drop()
            if not self._db_down:
                log.warning("scheduler lock: connection failed (%s); retrying", _first_line(exc))
            self._db_down = True
            return False
        if self._db_down:
            log.info("scheduler lock: connected again")
            self._db_down = False
        if not got:
            return False
        self._since = now
        log.info(
            "LEADER: instance %s (pid %d) took scheduler lock %d; jobs start now",
            self.instance_id,
            os.getpid(),
            self.lock_id,
        )
        return True

    def beat(self) -> None:
        """Upsert the heartbeat on the lock connection; raise :class:`LeadershipLost` on failure."""
        if self._conn is None or self._since is None:
            raise LeadershipLost("not leading")
        values = {
            "name": HEARTBEAT_NAME,
            "instance_id": self.instance_id,
            "hostname": self.hostname,
            "pid": os.getpid(),
            "leader_since": self._since,
            "beat_at": func.now(),
        }
        stmt = insert(SchedulerHeartbeat).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[SchedulerHeartbeat.name],
            set_={key: stmt.excluded[key] for key in values if key != "name"},
        )
        try:
            self._conn.execute(stmt)
        except SQLAlchemyError as exc:
            self._depose()
            raise LeadershipLost(_first_line(exc)) from exc
        self._confirmed_at = time.monotonic()

    def still_leads(self, session: Session) -> bool:
        """Return whether a job may run now: a fresh beat and the lock seen in ``pg_locks``."""
        confirmed, backend_pid = self._confirmed_at, self._backend_pid
        if confirmed is None or backend_pid is None:
            return False
        if time.monotonic() - confirmed > self.lease / 2:
            return False
        key = self.lock_id & 0xFFFF_FFFF_FFFF_FFFF
        params = {"pid": backend_pid, "hi": key >> 32, "lo": key & 0xFFFF_FFFF}
        return bool(session.scalar(_HOLDS_LOCK, params))

    def release(self) -> None:
        """Give up the lock if held and close the lock connection."""
        if self._conn is not None and self.leading:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": self.lock_id})
            except SQLAlchemyError:
                log.debug("unlock failed; closing the connection frees the lock", exc_info=True)
            log.info(
                "LEADER: instance %s released scheduler lock %d", self.instance_id, self.lock_id
            )
        self._depose()

    def run(
        self,
        stop: threading.Event,
        *,
        on_elected: Callable[[], None],
        on_deposed: Callable[[bool], None],
    ) -> None:
        """Stand by or lead until ``stop`` is set, then release the lock.

        ``on_elected()`` starts the jobs after the first beat; ``on_deposed(graceful)``
        stops them, ``graceful`` being false when the lead was lost rather than given up.
        """
        announced = False
        try:
            while not stop.is_set():
                if self.try_acquire():
                    announced = False
                    self._lead(stop, on_elected, on_deposed)
                    continue
                if not announced and not self._db_down:
                    log.info(
                        "STANDBY: instance %s waits for the lead (%s)",
                        self.instance_id,
                        self._who_leads(),
                    )
                    announced = True
                stop.wait(self.settings.scheduler_standby_poll_seconds)
        finally:
            self.release()

    def _lead(
        self,
        stop: threading.Event,
        on_elected: Callable[[], None],
        on_deposed: Callable[[bool], None],
    ) -> None:
        try:
            self.beat()
            on_elected()
            try:
                while not stop.wait(self.settings.scheduler_heartbeat_seconds):
                    self.beat()
            finally:
                on_deposed(stop.is_set())
        except LeadershipLost as exc:
            log.error(
                "LEADER LOST: instance %s stopped its jobs (%s); standing by", self.instance_id, exc
            )
            stop.wait(self.settings.scheduler_standby_poll_seconds)

    def _who_leads(self) -> str:
        if self._conn is None:
            return "leader unknown"
        try:
            row = self._conn.execute(
                text("SELECT instance_id FROM scheduler_heartbeats WHERE name = :name"),
                {"name": HEARTBEAT_NAME},
            ).one_or_none()
        except SQLAlchemyError:
            return "leader unknown"
        return f"last leader {row.instance_id}" if row else "no leader yet"

    def _depose(self) -> None:
        self._since = None
        self._confirmed_at = None
        self._drop()

    def _drop(self) -> None:
        conn, self._conn, self._backend_pid = self._conn, None, None
        if conn is not None:
            try:
                # NOTE: invalidate, not close: close would first try a rollback on a
                # connection that may be dead or hung.
                conn.invalidate()
            except SQLAlchemyError:
                log.debug("closing the lock connection failed", exc_info=True)
