"""A suspended workspace's rows are kept: the daily purge skips it until it is reactivated.

API.md: a suspended tenant's data is kept and scheduler jobs skip it; the purge is one.
"""

from __future__ import annotations

from scheduler import jobs
from tests.admin.conftest import root  # noqa: F401  (a super admin, logged in)
from tests.retention.conftest import surviving
from workers import queues

PURGE_JOB = next(job for job in jobs.JOBS if job.name == "purge_old_rows")


def _purge(broker) -> None:
    assert jobs.run(PURGE_JOB, lambda _session: True) is True
    broker.join(queues.MAINTENANCE, timeout=30_000)


def test_the_purge_keeps_a_suspended_workspaces_rows_until_it_is_reactivated(
    seeder,
    broker,
    worker,
    root,  # noqa: F811
):
    seeder.delivery(status="succeeded", age_days=100)
    seeder.automation_event(status="done", age_days=100)
    seeder.outbox_event(status="processed", age_days=100)
    seeder.inbound_event(status="processed", age_days=100)
    seeder.dead_letter(age_days=100)
    seeded = {table: set(ids) for table, ids in seeder.ids.items()}
    tenant = f"/api/admin/tenants/{seeder.tenant_id}"
    assert root.call("DELETE", tenant).status_code == 204

    _purge(broker)
    assert surviving(seeder) == seeded

    back = root.call("PATCH", tenant, json={"status": "active"})
    assert back.status_code == 200, back.text
    _purge(broker)
    assert not any(surviving(seeder).values())
