"""Fixtures for the scheduler tests: real ``python -m scheduler`` processes, tenants, polling."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import delete, select, text

from shared.config import get_settings
from shared.db import session_scope
from shared.models import SchedulerHeartbeat, Tenant
from shared.scheduler_status import HEARTBEAT_NAME
from tests.waiting import wait_until

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[2]


class SchedulerProcess:
    """One ``python -m scheduler`` child, its output in a log file printed on failure."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"scheduler-{name}.log"
        with self.log_path.open("wb") as out:
            # NOTE: the environment is inherited: conftest set DATABASE_URL and friends.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scheduler"], cwd=REPO_ROOT, stdout=out, stderr=out
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Stop the child if still running: SIGTERM, then SIGKILL; always reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Schedulers:
    """Start scheduler processes; :meth:`wait_for` fails with every child's log attached."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[SchedulerProcess] = []

    def start(self, name: str) -> SchedulerProcess:
        process = SchedulerProcess(name, self.log_dir)
        self.started.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(f"----- {p.name} (pid {p.pid})\n{p.log()}" for p in self.started)

    def wait_for(self, predicate: Callable[[], T], what: str, timeout: float = 10.0) -> T:
        return wait_until(predicate, what, timeout, details=self.logs)

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()
        # Shown by pytest only when the test failed.
        print(self.logs())


@pytest.fixture
def schedulers(tmp_path, database) -> Iterator[Schedulers]:
    """Scheduler processes for one test, all stopped (and reaped) at its end."""
    manager = Schedulers(tmp_path)
    yield manager
    manager.stop_all()


@pytest.fixture(scope="module")
def module_schedulers(tmp_path_factory, database) -> Iterator[Schedulers]:
    manager = Schedulers(tmp_path_factory.mktemp("schedulers"))
    yield manager
    manager.stop_all()


def heartbeat() -> SchedulerHeartbeat | None:
    with session_scope() as session:
        return session.scalar(
            select(SchedulerHeartbeat).where(SchedulerHeartbeat.name == HEARTBEAT_NAME)
        )


def lock_holders() -> list[int]:
    """Backend pids holding the scheduler lock in this run's database."""
    key = get_settings().scheduler_lock_id
    with session_scope() as session:
        return list(
            session.scalars(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND objid::bigint = :lo AND classid::bigint = :hi AND objsubid = 1"
                    " AND database = (SELECT oid FROM pg_database"
                    "                 WHERE datname = current_database())"
                ),
                {"lo": key & 0xFFFF_FFFF, "hi": (key & 0xFFFF_FFFF_FFFF_FFFF) >> 32},
            )
        )


def terminate_lock_backends() -> None:
    """Cut the leader's lock connection from the server side, as a database restart would."""
    with session_scope() as session:
        for pid in lock_holders():
            session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


@pytest.fixture
def clean_heartbeat(database) -> Iterator[None]:
    """Start (and end) the test without a heartbeat row."""
    with session_scope() as session:
        session.execute(delete(SchedulerHeartbeat))
    yield
    with session_scope() as session:
        session.execute(delete(SchedulerHeartbeat))


@pytest.fixture
def tenant_id(database) -> Iterator[uuid.UUID]:
    """A tenant of this test's own; deleting it at the end cascades to its outbox rows."""
    suffix = uuid.uuid4().hex[:12]
    with session_scope() as session:
        tenant = Tenant(name=f"Scheduler test {suffix}", slug=f"sched-{suffix}")
        session.add(tenant)
        session.flush()
        tid = tenant.id
    yield tid
    with session_scope() as session:
        session.execute(delete(Tenant).where(Tenant.id == tid))
