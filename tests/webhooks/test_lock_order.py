"""Deleting an endpoint against what writes its deliveries: one lock order, no deadlock.

The delete locks the endpoint (FOR UPDATE) and then deletes its deliveries (the cascade).
A writer that locks a delivery first (an attempt's insert: FOR KEY SHARE on it) and then
waits for the endpoint (its health, a resend's foreign key) met the delete the other way
round: "deadlock detected" on ``webhook_endpoints``. Each test holds the delete's first
step, lets the writer run until it waits, then finishes the delete.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError, IntegrityError

from shared.context import Ctx
from shared.db import get_engine, get_sessionmaker, session_scope
from shared.models import WebhookDelivery, WebhookEndpoint
from shared.webhooks import delivery, endpoints, engine
from tests.lock_races import race
from tests.webhooks.test_api import BASE, create


def _delivery(ws, hook, **values) -> uuid.UUID:
    """A delivery of the endpoint written as the fan-out does (no message: nobody sends it)."""
    delivery_id = uuid.uuid4()
    with session_scope() as session:
        session.execute(
            insert(WebhookDelivery).values(
                id=delivery_id,
                tenant_id=uuid.UUID(ws.tenant["id"]),
                endpoint_id=uuid.UUID(hook["id"]),
                event_id=uuid.uuid4(),
                event_type="agent.created",
                payload={"type": "agent.created", "data": {}},
                sweep_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
                **values,
            )
        )
    return delivery_id


def _claimed(ws, hook) -> delivery.Claimed:
    """A delivery of the endpoint claimed for its first attempt, as the engine claims it."""
    delivery_id = _delivery(ws, hook)
    with get_engine().connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        [claimed] = engine.claim_many(connection, [delivery_id], 15.0)
    return claimed


def _result(status_code: int) -> delivery.Result:
    return delivery.Result(
        started_at=dt.datetime.now(dt.UTC),
        duration_ms=12,
        request_headers={},
        request_body="{}",
        status_code=status_code,
        error_kind=None if status_code < 300 else "status",
        error=None if status_code < 300 else f"HTTP {status_code}",
    )


class DeleteHolding:
    """``delete_endpoint`` pulled apart: on creation the endpoint is locked (its first step);
    ``finish()`` deletes it (the cascade); a database error there (a deadlock) lands in
    ``failures`` and rolls the holder back."""

    def __init__(self, ws, hook) -> None:
        self.ctx = Ctx.system(uuid.UUID(ws.tenant["id"]))
        self.endpoint_id = uuid.UUID(hook["id"])
        self.holder = get_sessionmaker()()
        endpoints.get_endpoint(self.holder, self.ctx, self.endpoint_id, for_update=True)
        self.failures: list[str] = []

    def finish(self) -> None:
        try:
            endpoints.delete_endpoint(self.holder, self.ctx, self.endpoint_id)
            self.holder.flush()
        except DBAPIError as exc:
            self.failures.append(str(exc.orig))
            self.holder.rollback()


def _gone(hook) -> bool:
    with session_scope() as session:
        return session.get(WebhookEndpoint, uuid.UUID(hook["id"])) is None


def _recorded(claimed: delivery.Claimed, result: delivery.Result, failures: list[str]):
    """Record as the engine does: a failure in one transaction, gone on a foreign key."""

    def call():
        try:
            if result.ok:
                return engine.record([(engine.Attempt(claimed, None), result, False)])[
                    claimed.id
                ].kind
            with session_scope() as session:
                return delivery.record(session, claimed, result).kind
        except IntegrityError:
            return "gone"
        except DBAPIError as exc:
            failures.append(str(exc.orig))
            return None

    return call


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(500, id="failure: stamps the endpoint's failure streak"),
        pytest.param(410, id="410: disables the endpoint"),
        pytest.param(200, id="success: stamps last_success_at"),
    ],
)
def test_an_outcome_recorded_while_its_endpoint_is_deleted_never_deadlocks(
    ws, receiver, path, status
):
    """Each outcome writes the endpoint as well as the delivery: the delete goes first."""
    hook = create(ws, receiver.url(path))
    claimed = _claimed(ws, hook)
    delete = DeleteHolding(ws, hook)
    failures: list[str] = []

    outcome = race(delete.holder, _recorded(claimed, _result(status), failures), then=delete.finish)

    assert delete.failures + failures == []
    assert outcome == "gone" and _gone(hook)


def test_a_resend_while_its_endpoint_is_deleted_never_deadlocks(ws, receiver, path):
    """The resend locks its original (FOR KEY SHARE) and inserts a delivery of the endpoint."""
    hook = create(ws, receiver.url(path))
    original = _delivery(
        ws, hook, status="failed", attempt_count=1, finished_at=dt.datetime.now(dt.UTC)
    )
    delete = DeleteHolding(ws, hook)

    resp = race(
        delete.holder,
        lambda: ws.call("POST", f"{BASE}/{hook['id']}/deliveries/{original}/resend"),
        then=delete.finish,
    )

    assert delete.failures == []
    assert resp.status_code == 404, resp.text
    assert _gone(hook)


def test_a_test_event_sent_while_its_endpoint_is_deleted_is_a_404_and_sends_nothing(
    ws, receiver, path
):
    """The test event read the endpoint unlocked and inserted its delivery: the foreign key
    waited for the delete, then failed (the net's bare 409, "conflicts with existing data")."""
    hook = create(ws, receiver.url(path))
    delete = DeleteHolding(ws, hook)
    delete.finish()  # deleted, not committed: the test event meets it

    resp = race(delete.holder, lambda: ws.call("POST", f"{BASE}/{hook['id']}/test"))

    assert resp.status_code == 404, resp.text
    assert resp.json["error"]["message"] == "Webhook not found"
    assert receiver.at(path) == []
    assert _gone(hook)
