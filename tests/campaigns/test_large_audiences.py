"""A large audience is built and cancelled in bounded statements, not one over every row.

WHY: each statement runs under ``DB_STATEMENT_TIMEOUT_MS`` (15 s). Measured on a 2-core
machine: a filter selecting 300,000 contacts took 6.9 s in its one ``INSERT ... SELECT``,
the cancel of their 300,000 pending recipients 3.7 s in its one ``UPDATE``; at a
million contacts either passes the timeout, so the audience cannot be built (500, none
added) and the running campaign cannot be cancelled (500, it goes on sending).
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event, update

from shared.campaigns import lifecycle, recipients, runner
from shared.db import get_engine, session_scope
from shared.models import WaTemplate
from tests.campaigns.conftest import Shop


@contextmanager
def recipient_writes():
    """The rows each INSERT or UPDATE of ``campaign_recipients`` wrote, in order."""
    seen: list[tuple[str, int]] = []

    def after(conn, cursor, statement, parameters, context, executemany):
        head = " ".join(statement.split()).upper()
        if head.startswith(("INSERT INTO CAMPAIGN_RECIPIENTS", "UPDATE CAMPAIGN_RECIPIENTS")):
            seen.append((head.split()[0], cursor.rowcount))

    engine = get_engine()
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(engine, "after_cursor_execute", after)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(recipients, "FILTER_CHUNK", 3)
    monkeypatch.setattr(lifecycle, "CANCEL_CHUNK", 3)
    monkeypatch.setattr(runner, "FAIL_CHUNK", 3)


def test_a_filter_adds_its_audience_in_bounded_statements(shop: Shop, small_chunks):
    shop.contacts(7, tags=["vip"])
    shop.contacts(2, tags=["other"])
    campaign = shop.create()
    already = shop.contacts(1, tags=["vip"])
    shop.add(campaign, already)
    with recipient_writes() as writes:
        resp = shop.ws.call(
            "POST",
            f"/api/campaigns/{campaign['id']}/recipients",
            json={"filter": {"tags": ["vip"]}},
        )
    assert resp.status_code == 200, resp.text
    assert resp.json == {"added": 7, "total": 8}
    inserts = [n for kind, n in writes if kind == "INSERT"]
    assert sum(inserts) == 7 and max(inserts) <= 3, inserts


def test_a_cancel_marks_a_large_audience_in_bounded_statements(shop: Shop, batches, small_chunks):
    campaign = shop.create()
    shop.add(campaign, shop.contacts(7))
    shop.send(campaign)
    with recipient_writes() as writes:
        resp = shop.ws.call("POST", f"/api/campaigns/{campaign['id']}/cancel")
    assert resp.status_code == 200, resp.text
    assert (resp.json["counts"]["cancelled"], resp.json["counts"]["pending"]) == (7, 0)
    updates = [n for kind, n in writes if kind == "UPDATE"]
    assert sum(updates) == 7 and max(updates) <= 3, updates


def test_a_failed_campaign_marks_its_pending_recipients_in_bounded_statements(
    shop: Shop, batches, small_chunks
):
    campaign = shop.create()
    shop.add(campaign, shop.contacts(7))
    shop.send(campaign)
    with session_scope() as session:
        session.execute(
            update(WaTemplate)
            .where(WaTemplate.tenant_id == shop.tenant_id)
            .values(status="DISABLED")
        )
    with recipient_writes() as writes:
        assert batches.run_next() == ["failed"]
    view = shop.get(campaign)
    assert (view["counts"]["failed"], view["counts"]["pending"]) == (7, 0)
    updates = [n for kind, n in writes if kind == "UPDATE"]
    assert sum(updates) == 7 and max(updates) <= 3, updates
