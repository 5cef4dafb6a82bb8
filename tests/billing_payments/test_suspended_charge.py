"""A suspended workspace's charge, dropped by the worker's gate, stays the platform's work.

``charge_invoice`` dead letters are the platform operator's (``workers.dead_letters``:
a tenant's admin must not requeue or delete a failed charge from its console). The
gate's record of a dropped charge must keep that rule too.
"""

from __future__ import annotations

from sqlalchemy import select

from shared.db import session_scope
from shared.models import DeadLetter
from tests.admin.conftest import root  # noqa: F401  (the super admin fixture)
from tests.waiting import wait_until
from workers import queues
from workers.tenant_gate import REASON


def _letters(invoice) -> list[DeadLetter]:
    with session_scope() as session:
        rows = list(
            session.scalars(
                select(DeadLetter).where(
                    DeadLetter.actor_name == "charge_invoice",
                    DeadLetter.args[0].astext == str(invoice),
                )
            )
        )
        session.expunge_all()
        return rows


def test_a_dropped_charge_is_the_platforms_dead_letter(billing, root, broker, worker):  # noqa: F811
    from workers.actors.billing import charge_invoice

    billing.add_method("pm_card_visa")
    invoice = billing.invoice(4900, subscription_id=billing.subscription(status="past_due"))
    tenant = billing.tenant_id
    assert root.call("DELETE", f"/api/admin/tenants/{tenant}").status_code == 204

    charge_invoice.send(str(invoice))
    [letter] = wait_until(lambda: _letters(invoice), "the dropped charge's dead letter", 20)
    assert letter.error == REASON
    assert letter.tenant_id is None  # the platform's, as a charge that failed is
    charge_invoice.send(str(invoice))  # billing_cycle's re-drive: dropped, not recorded again
    broker.join(queues.BILLING, timeout=20_000)
    assert len(_letters(invoice)) == 1
    assert billing.stripe.charged(invoice) == []
    assert billing.row(invoice).status == "open"

    back = root.call("PATCH", f"/api/admin/tenants/{tenant}", json={"status": "active"})
    assert back.status_code == 200
    ws = billing.ws
    listed = ws.call("GET", "/api/ops/dead-letters").json
    assert str(letter.id) not in {item["id"] for item in listed["items"]}
    requeue = ws.call("POST", f"/api/ops/dead-letters/{letter.id}/requeue")
    assert requeue.status_code == 404
    assert ws.call("DELETE", f"/api/ops/dead-letters/{letter.id}").status_code == 404
