"""Plan limits on the write paths they limit: 402 ``plan_limit_reached`` naming the limit,
its value and the usage, and nothing half-written."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import uuid

import pytest
from sqlalchemy import func, select, update

from shared.billing import usage
from shared.db import session_scope
from shared.errors import PlanLimitReached
from shared.models import KnowledgeSource, MediaFile, Message, User
from shared.models.billing import BillingUsage
from shared.redis_client import get_redis
from tests.admin.conftest import root  # noqa: F401
from tests.ai_knowledge.agents import add_ai_agent
from tests.billing_subscriptions.conftest import (
    make_add_on,
    on_plan,
    subscription_of,
)
from tests.inbox_messages.conftest import Inbox
from tests.multipart import form
from tests.peers.environment import environment


def refused(resp, limit: str, value: int, used: int) -> None:
    assert resp.status_code == 402, resp.text
    error = resp.json["error"]
    assert error["code"] == "plan_limit_reached"
    assert error["details"] == [{"limit": limit, "value": value, "usage": used}]


def users_of(workspace) -> int:
    with session_scope() as session:
        return session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.tenant_id == uuid.UUID(workspace.tenant["id"]), User.deleted_at.is_(None))
        )


def agent_body() -> dict:
    return {
        "email": f"a-{uuid.uuid4().hex[:8]}@example.com",
        "full_name": "Ada Agent",
        "role": "agent",
        "password": "correct horse battery",
    }


def test_seats_limit_agent_creation_and_an_add_on_raises_it(workspace):
    on_plan(workspace, seat_limit=2)  # the admin holds one seat
    assert workspace.call("POST", "/api/agents", json=agent_body()).status_code == 201
    before = users_of(workspace)
    resp = workspace.call("POST", "/api/agents", json=agent_body())
    refused(resp, "seats", 2, 2)
    # An invitation (no password) is a seat too.
    invite = agent_body() | {"password": None}
    refused(workspace.call("POST", "/api/agents", json=invite), "seats", 2, 2)
    assert users_of(workspace) == before
    add_on = make_add_on(0, extra_seats=1)
    resp = workspace.call(
        "POST", "/api/billing/subscription/add-ons", json={"add_on_id": str(add_on)}
    )
    assert resp.status_code == 201, resp.text
    assert workspace.call("GET", "/api/billing/usage").json["limits"]["seats"] == 3
    assert workspace.call("POST", "/api/agents", json=agent_body()).status_code == 201


def test_the_largest_add_ons_the_catalogue_allows_raise_limits_without_overflowing(workspace):
    """``extra_*`` times the quantity can pass the columns' integer types (a million seats
    times 10,000): the limits must still load, or every seat, message and usage check of
    the workspace fails."""
    on_plan(workspace, seat_limit=2, storage_limit_bytes=1000)
    add_on = make_add_on(0, extra_seats=1_000_000, extra_storage_bytes=2**53)
    resp = workspace.call(
        "POST",
        "/api/billing/subscription/add-ons",
        json={"add_on_id": str(add_on), "quantity": 10_000},
    )
    assert resp.status_code == 201, resp.text
    resp = workspace.call("GET", "/api/billing/usage")
    assert resp.status_code == 200, resp.text
    limits = resp.json["limits"]
    assert limits["seats"] == 2 + 1_000_000 * 10_000
    assert limits["storage_bytes"] == 1000 + 2**53 * 10_000
    assert workspace.call("POST", "/api/agents", json=agent_body()).status_code == 201


def test_reactivating_a_suspended_user_needs_a_free_seat(workspace, root):  # noqa: F811
    on_plan(workspace, seat_limit=2)
    agent, _token = workspace.create_agent()
    base = f"/api/admin/tenants/{workspace.tenant['id']}/users/{agent['id']}"
    assert root.call("POST", f"{base}/suspend").status_code == 200
    assert workspace.call("POST", "/api/agents", json=agent_body()).status_code == 201
    refused(root.call("POST", f"{base}/activate"), "seats", 2, 2)
    with session_scope() as session:
        assert session.get(User, uuid.UUID(agent["id"])).suspended_at is not None


def test_a_provisioned_workspace_starts_a_trial(root, trial_plan):  # noqa: F811
    body = {
        "name": f"Globex {uuid.uuid4().hex[:6]}",
        "admin_email": f"boss-{uuid.uuid4().hex[:8]}@globex.example",
        "admin_full_name": "Hank Scorpio",
    }
    resp = root.call("POST", "/api/admin/tenants", json=body)
    assert resp.status_code == 201, resp.text
    sub = subscription_of(resp.json["tenant"]["id"] if "tenant" in resp.json else resp.json["id"])
    assert (sub.status, sub.plan_id) == ("trialing", trial_plan)


def send(workspace, conversation) -> object:
    return workspace.call(
        "POST", f"/api/conversations/{conversation['id']}/messages", json={"body": "hello"}
    )


def outbound_count(workspace) -> int:
    with session_scope() as session:
        return session.scalar(
            select(func.count())
            .select_from(Message)
            .where(
                Message.tenant_id == uuid.UUID(workspace.tenant["id"]),
                Message.direction == "outbound",
            )
        )


def test_monthly_messages_limit_sends_and_nothing_is_written(workspace):
    on_plan(workspace, monthly_message_limit=3)
    conversation = Inbox(workspace.tenant["id"]).conversation()
    for _ in range(3):
        assert send(workspace, conversation).status_code == 201
    refused(send(workspace, conversation), "messages", 3, 3)
    assert outbound_count(workspace) == 3
    report = workspace.call("GET", "/api/billing/usage").json
    assert report["usage"]["messages"] == 3 and report["limits"]["messages"] == 3


def test_concurrent_sends_never_pass_the_limit(workspace):
    on_plan(workspace, monthly_message_limit=5)
    conversation = Inbox(workspace.tenant["id"]).conversation()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(lambda _: send(workspace, conversation).status_code, range(14)))
    assert statuses == [201] * 5 + [402] * 9
    assert outbound_count(workspace) == 5


def _another_send_while_counting(monkeypatch, workspace, conversation) -> list:
    """The first count of the month's committed messages waits while another request sends
    and commits; its answer is the returned list's one item, once it is there."""
    count_messages = usage._COUNTERS["messages"]
    meanwhile: list = []

    def count_after_another_send(session, tenant_id, month):
        if not meanwhile:
            meanwhile.append(None)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                meanwhile[0] = pool.submit(send, workspace, conversation).result()
        return count_messages(session, tenant_id, month)

    monkeypatch.setitem(usage._COUNTERS, "messages", count_after_another_send)
    return meanwhile


def test_a_send_committed_while_the_counter_is_seeded_is_counted_once(workspace, monkeypatch):
    """The month's first send seeds the counter from what is committed; another send that
    reserves and commits meanwhile must not be counted twice (it was: a burst at the start
    of a month was refused one slot early)."""
    on_plan(workspace, monthly_message_limit=2)
    conversation = Inbox(workspace.tenant["id"]).conversation()
    meanwhile = _another_send_while_counting(monkeypatch, workspace, conversation)
    first = send(workspace, conversation)
    assert [first.status_code, meanwhile[0].status_code] == [201, 201], first.text
    refused(send(workspace, conversation), "messages", 2, 2)
    assert outbound_count(workspace) == 2


def test_a_counter_another_process_just_seeded_at_zero_is_not_seeded_again(workspace, monkeypatch):
    """Another process seeded the month's counter (0: nothing committed yet) and has not
    taken its slot. This send's INCRBY then answers 1, the answer a counter Redis lost
    gives too: it was taken for one and the committed messages were added again, counting
    the other send twice (a burst at the start of a month refused one slot early)."""
    on_plan(workspace, monthly_message_limit=3)
    tenant = uuid.UUID(workspace.tenant["id"])
    counter = usage._counter_key(tenant, usage.month_of(dt.datetime.now(dt.UTC)), "messages")
    get_redis().set(counter, 0)  # seeded by another process, its own INCRBY still to come
    conversation = Inbox(workspace.tenant["id"]).conversation()
    meanwhile = _another_send_while_counting(monkeypatch, workspace, conversation)
    first = send(workspace, conversation)
    if not meanwhile:  # the committed sends were not read: the other send comes after
        meanwhile.append(send(workspace, conversation))
    third = send(workspace, conversation)
    statuses = [first.status_code, meanwhile[0].status_code, third.status_code]
    assert statuses == [201] * 3, third.text
    refused(send(workspace, conversation), "messages", 3, 3)
    assert outbound_count(workspace) == 3


def test_a_rolled_back_send_gives_its_reservation_back(workspace):
    on_plan(workspace, monthly_message_limit=1)
    tenant = uuid.UUID(workspace.tenant["id"])
    with pytest.raises(RuntimeError), session_scope() as session:
        usage.check_message_send(session, tenant)
        raise RuntimeError("the send failed after its check")
    conversation = Inbox(workspace.tenant["id"]).conversation()
    assert send(workspace, conversation).status_code == 201


def test_unlimited_plans_and_other_tenants_are_not_limited(workspace, other_workspace):
    on_plan(workspace, monthly_message_limit=1)
    conversation = Inbox(other_workspace.tenant["id"]).conversation()
    for _ in range(3):  # the trial plan is unlimited
        assert send(other_workspace, conversation).status_code == 201


def test_rollup_usage_recounts_and_resets_the_live_counters(workspace):
    on_plan(workspace, monthly_message_limit=3)
    tenant = uuid.UUID(workspace.tenant["id"])
    conversation = Inbox(workspace.tenant["id"]).conversation()
    assert send(workspace, conversation).status_code == 201
    month = usage.month_of(dt.datetime.now(dt.UTC))
    counter = usage._counter_key(tenant, month, "messages")
    get_redis().set(counter, 99)  # drifted (say, reservations of killed processes)
    refused(send(workspace, conversation), "messages", 3, 99)
    with session_scope() as session:
        assert usage.rollup(session) >= 1
    with session_scope() as session:
        row = session.get(BillingUsage, (tenant, month))
        assert (row.seats, row.messages, row.ai_replies) == (1, 1, 0)
    assert int(get_redis().get(counter)) == 1
    assert send(workspace, conversation).status_code == 201


def test_ai_replies_are_reserved_until_the_plan_is_spent(workspace):
    on_plan(workspace, monthly_ai_reply_limit=2)
    tenant = uuid.UUID(workspace.tenant["id"])
    with session_scope() as session:
        allowed = [usage.ai_reply_allowed(session, tenant) for _ in range(3)]
    assert allowed == [True, True, False]


def test_the_ai_hands_off_when_the_plan_is_spent():
    from shared.ai import handoff
    from shared.models.ai import AiAgent

    agent = AiAgent(tenant_id=uuid.uuid4(), handoff_message="A colleague will answer.")
    decision = handoff.plan_limit(agent, [], "spent")
    assert (decision.reason, decision.message) == (handoff.USAGE_LIMIT, "A colleague will answer.")


@pytest.fixture
def media_root(tmp_path):
    with environment(MEDIA_ROOT=str(tmp_path)):
        yield tmp_path


def upload(
    workspace,
    content: bytes,
    path: str = "/api/media",
    filename: str = "photo.png",
    mime: str = "image/png",
):
    """POST ``content`` as the multipart field ``file``."""
    body, headers = form(content, filename=filename, content_type=mime)
    return workspace.call("POST", path, body=body, headers=headers)


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR"


def test_storage_limits_uploads_and_nothing_is_stored(workspace, media_root):
    on_plan(workspace, storage_limit_bytes=1000)
    first = upload(workspace, PNG + os.urandom(600))
    assert first.status_code == 201, first.text
    stored = list(media_root.rglob("*"))
    refused(upload(workspace, PNG + os.urandom(600)), "storage_bytes", 1000, first.json["size"])
    assert list(media_root.rglob("*")) == stored
    with session_scope() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(MediaFile)
                .where(MediaFile.tenant_id == uuid.UUID(workspace.tenant["id"]))
            )
            == 1
        )


def test_a_knowledge_file_is_stored_media_and_the_storage_limit_refuses_it_too(
    workspace, media_root
):
    """Knowledge files count toward storage (they are media rows), so their upload is
    limited like any other: 402, and no file, media row or source written."""
    on_plan(workspace, storage_limit_bytes=1000)
    first = upload(workspace, PNG + os.urandom(600))
    assert first.status_code == 201, first.text
    stored = list(media_root.rglob("*"))
    agent_id = add_ai_agent(workspace)
    sources = f"/api/ai-agents/{agent_id}/knowledge-sources"
    faq = b"We open at nine and close at five, Monday to Friday.\n" * 10
    resp = upload(workspace, faq, sources, filename="faq.txt", mime="text/plain")
    refused(resp, "storage_bytes", 1000, first.json["size"])
    assert list(media_root.rglob("*")) == stored
    tenant_id = uuid.UUID(workspace.tenant["id"])
    with session_scope() as session:
        media = select(func.count()).select_from(MediaFile).where(MediaFile.tenant_id == tenant_id)
        assert session.scalar(media) == 1
        added = select(func.count()).select_from(KnowledgeSource)
        assert session.scalar(added.where(KnowledgeSource.tenant_id == tenant_id)) == 0
    # With room added, the same file is accepted, and counted.
    add_on = make_add_on(0, extra_storage_bytes=10_000)
    resp = workspace.call(
        "POST", "/api/billing/subscription/add-ons", json={"add_on_id": str(add_on)}
    )
    assert resp.status_code == 201, resp.text
    accepted = upload(workspace, faq, sources, filename="faq.txt", mime="text/plain")
    assert accepted.status_code == 201, accepted.text
    with session_scope() as session:
        assert usage.storage_used(session, tenant_id) == first.json["size"] + len(faq)


def test_plan_limit_reached_is_documented_on_the_limited_routes(client):
    document = client.simulate_get("/api/openapi.json").json
    for path, method in (
        ("/api/agents", "post"),
        ("/api/media", "post"),
        ("/api/ai-agents/{id}/knowledge-sources", "post"),
        ("/api/conversations/{id}/messages", "post"),
    ):
        assert "402" in document["paths"][path][method]["responses"], path


class Process:
    """One process's leases: the module's in-process state, swapped in and out."""

    def __init__(self) -> None:
        self.leases: dict = {}
        self.seen: dict = {}

    def reserve(self, tenant: uuid.UUID) -> bool:
        usage._leases, usage._last_seen = self.leases, self.seen
        try:
            with session_scope() as session:
                usage.check_message_send(session, tenant)
            return True
        except PlanLimitReached:
            return False


def test_leases_of_several_processes_never_pass_the_limit(workspace):
    saved = usage._leases, usage._last_seen
    on_plan(workspace, monthly_message_limit=300)
    tenant = uuid.UUID(workspace.tenant["id"])
    first, second = Process(), Process()
    try:
        taken = [first.reserve(tenant) for _ in range(3)]  # leases a block
        assert sum(first.leases.values()) > 0
        while second.reserve(tenant):
            taken.append(True)
        while first.reserve(tenant):  # the first process's lease is still its own
            taken.append(True)
        assert len(taken) == 300 and all(taken)
        assert not second.reserve(tenant) and not first.reserve(tenant)
        month = usage.month_of(dt.datetime.now(dt.UTC))
        assert int(get_redis().get(usage._counter_key(tenant, month, "messages"))) == 300
    finally:
        usage._leases, usage._last_seen = saved


def test_the_first_rollups_of_a_month_finish_the_month_before(workspace):
    """The hourly rollup counted only the current month, so what the last hour of a month
    sent (after that month's last run) was never in its ``billing_usage`` row."""
    on_plan(workspace, monthly_message_limit=100)
    tenant = uuid.UUID(workspace.tenant["id"])
    conversation = Inbox(workspace.tenant["id"]).conversation()
    assert send(workspace, conversation).status_code == 201
    sent_at = dt.datetime(2026, 10, 31, 23, 30, tzinfo=dt.UTC)
    with session_scope() as session:
        session.execute(  # the message went out in October's last hour
            update(Message)
            .where(Message.conversation_id == conversation["id"])
            .values(created_at=sent_at)
        )
        usage.rollup(session, now=sent_at - dt.timedelta(minutes=40))  # October's last run
        session.execute(  # ... which ran before the message
            update(BillingUsage)
            .where(BillingUsage.tenant_id == tenant, BillingUsage.month == dt.date(2026, 10, 1))
            .values(messages=0, seats=7)
        )
    with session_scope() as session:
        usage.rollup(session, now=dt.datetime(2026, 11, 1, 0, 20, tzinfo=dt.UTC))
    with session_scope() as session:
        october = session.get(BillingUsage, (tenant, dt.date(2026, 10, 1)))
        assert october.messages == 1
        assert october.seats == 7  # a point in time: October's, not November's
