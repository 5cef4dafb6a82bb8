"""``make demo`` (``python -m shared.demo``): what a newcomer gets from it."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from shared import demo
from shared.db import get_engine
from tests.waiting import wait_until


@pytest.fixture
def demo_tenant(database, capsys):
    """Run the demo at a small volume under a slug of its own; (slug, what it printed)."""
    slug = f"demo-{uuid.uuid4().hex[:8]}"
    argv = ["--conversations", "400", "--messages", "2000", "--agents", "3", "--slug", slug]
    assert demo.main(argv) == 0
    return slug, capsys.readouterr().out


def _login(client, email: str) -> dict[str, str]:
    resp = client.simulate_post(
        "/api/auth/login", json={"email": email, "password": demo.DEMO_PASSWORD}
    )
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json['access_token']}"}


def test_demo_says_how_long_and_prints_every_login(client, demo_tenant):
    slug, out = demo_tenant
    assert out.splitlines()[0].startswith("Building 1 demo tenant(s)")
    assert "about" in out.splitlines()[0]
    assert "2,000 of 2,000 messages" in out or "2,000 messages" in out
    emails = [f"admin@{slug}.example.com"] + [f"agent0{i}@{slug}.example.com" for i in range(3)]
    for email in emails:
        assert f"{email}" in out and demo.DEMO_PASSWORD in out
        _login(client, email)  # every printed login works


def test_first_inbox_page_shows_open_work(client, demo_tenant):
    slug, _ = demo_tenant
    headers = _login(client, f"admin@{slug}.example.com")
    page = client.simulate_get("/api/conversations?limit=25", headers=headers)
    assert page.status_code == 200, page.text
    statuses = [item["status"] for item in page.json["items"]]
    assert len(statuses) == 25
    assert statuses.count("open") >= 10 and "resolved" not in statuses


def test_replying_to_a_demo_conversation_succeeds(client, demo_tenant, worker):

    slug, _ = demo_tenant
    headers = _login(client, f"agent00@{slug}.example.com")
    page = client.simulate_get(
        "/api/conversations?status=open&assignee_id=me&limit=5", headers=headers
    )
    assert page.status_code == 200 and page.json["items"], page.text
    conversation = page.json["items"][0]["id"]
    reply = client.simulate_post(
        f"/api/conversations/{conversation}/messages", headers=headers, json={"body": "On it!"}
    )
    assert reply.status_code == 201, reply.text

    def sent() -> bool:
        messages = client.simulate_get(
            f"/api/conversations/{conversation}/messages?limit=100", headers=headers
        ).json["items"]
        [mine] = [m for m in messages if m["id"] == reply.json["id"]]
        assert mine["status"] in ("queued", "pending", "sending", "sent"), mine
        return mine["status"] == "sent"

    wait_until(sent, "the reply to the demo conversation sent", 15, interval=0.1)


def test_demo_tables_come_out_vacuumed(database):
    """As autovacuum leaves a bulk load (a server may run without it, as this suite's does):
    otherwise the first read of every demo row rewrites its page, and index-only scans read
    the heap anyway."""
    with get_engine().connect() as conn:
        before = conn.execute(text("SELECT now()")).scalar_one()
    argv = ["--conversations", "40", "--messages", "200", "--agents", "1"]
    assert demo.main([*argv, "--slug", f"demo-{uuid.uuid4().hex[:8]}"]) == 0
    with get_engine().connect() as conn:
        vacuumed = conn.execute(
            text(
                "SELECT relname FROM pg_stat_user_tables WHERE last_vacuum >= :before"
                " AND relname IN ('contacts', 'conversations', 'messages')"
            ),
            {"before": before},
        ).scalars()
        assert sorted(vacuumed) == ["contacts", "conversations", "messages"]
