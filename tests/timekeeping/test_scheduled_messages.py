"""Scheduled messages: the API, the scheduler's claim, the worker's send, and their failures.

Time is moved, never slept: ``claim_due(now=...)`` is handed the instant to act at, and
the WhatsApp window is closed by moving the contact's last message back 25 hours.
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
import uuid

import pytest
from sqlalchemy import event, func, select, text, update

from shared.db import get_sessionmaker, session_scope
from shared.models import (
    Contact,
    Conversation,
    DeadLetter,
    Message,
    OutboxEvent,
    ScheduledMessage,
)
from shared.timekeeping import scheduled_messages
from tests.admin.conftest import root  # noqa: F401
from tests.channels_api.conftest import ApiChannel
from tests.inbox_conversations.conftest import add_conversation, tid
from tests.scheduler.conftest import schedulers  # noqa: F401
from tests.scheduler.test_leader import led_by
from tests.waiting import wait_until
from tests.webhooks.conftest import path, receiver  # noqa: F401
from workers import queues

UTC = dt.UTC


def base(conversation_id: str) -> str:
    return f"/api/conversations/{conversation_id}/scheduled-messages"


def in_an_hour() -> str:
    return (dt.datetime.now(UTC) + dt.timedelta(hours=1)).isoformat()


def row(scheduled_id) -> ScheduledMessage:
    with session_scope() as session:
        found = session.get(ScheduledMessage, uuid.UUID(str(scheduled_id)))
        session.expunge(found)
        return found


def messages_in(session, conversation_id: str) -> int:
    return session.scalar(
        select(func.count())
        .select_from(Message)
        .where(Message.conversation_id == uuid.UUID(conversation_id))
    )


def claim(now: dt.datetime | None = None, *of: object) -> int:
    """One scheduler run at ``now``; how many of the rows ``of`` it handed out (other
    tests' rows may be due at ``now`` too)."""
    with session_scope() as session:
        ids = scheduled_messages.claim_due(session, now=now)
    return len({str(i) for i in ids} & {str(i) for i in of})


def schedule(workspace, conversation: str, body: str, *, token: str | None = None) -> str:
    """Schedule ``body`` an hour from now (as ``token``'s user); the scheduled message's id."""
    created = workspace.call(
        "POST", base(conversation), json={"body": body, "run_at": in_an_hour()}, token=token
    )
    assert created.status_code == 201, created.text
    return created.json["id"]


def send_due(scheduled_id: str, broker) -> ScheduledMessage:
    """Run the scheduler past ``scheduled_id``'s time and its send job; its row after."""
    assert claim(later(), scheduled_id) == 1
    broker.join(queues.CHANNELS)
    return row(scheduled_id)


def failed_events(workspace) -> list[str]:
    """The ids of the workspace's ``scheduled_message.failed`` events, oldest first."""
    with session_scope() as session:
        return session.scalars(
            select(OutboxEvent.data["id"].astext)
            .where(
                OutboxEvent.tenant_id == tid(workspace),
                OutboxEvent.type == "scheduled_message.failed",
            )
            .order_by(OutboxEvent.occurred_at, OutboxEvent.id)
        ).all()


def later(hours: float = 2) -> dt.datetime:
    with session_scope() as session:
        return session.scalar(select(func.now())) + dt.timedelta(hours=hours)


@pytest.fixture
def api(worker, workspace, receiver, path):  # noqa: F811
    return ApiChannel(workspace, receiver.url(path))


# --- the API --------------------------------------------------------------------------------


def test_schedule_list_and_cancel(workspace):
    conversation = add_conversation(workspace, channel="api")
    created = workspace.call(
        "POST", base(conversation), json={"body": "Your order ships today", "run_at": in_an_hour()}
    )
    assert created.status_code == 201, created.text
    data = created.json
    assert data["status"] == "pending" and data["timezone"] == "UTC"
    assert data["author_id"] == workspace.admin["id"]
    listed = workspace.call("GET", base(conversation))
    assert [item["id"] for item in listed.json["items"]] == [data["id"]]
    gone = workspace.call("DELETE", f"{base(conversation)}/{data['id']}")
    assert gone.status_code == 204, gone.text
    assert row(data["id"]).status == "cancelled"
    # cancelling again changes nothing; the list filters by status
    assert workspace.call("DELETE", f"{base(conversation)}/{data['id']}").status_code == 204
    assert (
        workspace.call("GET", base(conversation), params={"status": "pending"}).json["items"] == []
    )
    # a cancelled message is never claimed
    assert claim(later(), data["id"]) == 0


def test_a_repeat_with_the_same_idempotency_key_schedules_nothing_more(workspace):
    """API.md: POSTs that send messages accept ``Idempotency-Key``; a client retrying
    after a timeout scheduled (and later sent) the message twice."""
    conversation, other = (add_conversation(workspace, channel="api") for _ in range(2))
    body = {"body": "Your order ships today", "run_at": in_an_hour()}
    once = {"Idempotency-Key": "retry-1"}
    first = workspace.call("POST", base(conversation), json=body, headers=once)
    assert first.status_code == 201, first.text
    again = workspace.call("POST", base(conversation), json=body, headers=once)
    assert (again.status_code, again.json) == (201, first.json)
    assert [i["id"] for i in workspace.call("GET", base(conversation)).json["items"]] == [
        first.json["id"]
    ]
    # The key names that request: another body, or another conversation, is refused.
    changed = workspace.call("POST", base(conversation), json=body | {"body": "?"}, headers=once)
    elsewhere = workspace.call("POST", base(other), json=body, headers=once)
    for refused in (changed, elsewhere):
        assert refused.status_code == 422, refused.text
        assert refused.json["error"]["details"][0]["field"] == "Idempotency-Key"
    assert workspace.call("GET", base(other)).json["items"] == []
    # Another key is another request; a request refused with a key leaves the key free.
    late = workspace.call(
        "POST",
        base(conversation),
        json=body | {"run_at": "2000-01-01T00:00:00Z"},
        headers={"Idempotency-Key": "retry-2"},
    )
    assert late.status_code == 422, late.text
    fixed = workspace.call(
        "POST", base(conversation), json=body, headers={"Idempotency-Key": "retry-2"}
    )
    assert fixed.status_code == 201, fixed.text
    assert fixed.json["id"] != first.json["id"]


def test_a_local_run_at_uses_the_senders_or_the_tenants_timezone(workspace):
    conversation = add_conversation(workspace, channel="api")
    workspace.call("PUT", "/api/working-hours/timezone", json={"timezone": "Asia/Jakarta"})
    next_year = dt.datetime.now(UTC).year + 1
    tenant_local = workspace.call(
        "POST", base(conversation), json={"body": "hi", "run_at": f"{next_year}-01-05T09:00:00"}
    )
    assert tenant_local.status_code == 201, tenant_local.text
    assert tenant_local.json["run_at"].startswith(f"{next_year}-01-05T02:00:00")  # WIB = UTC+7
    assert tenant_local.json["timezone"] == "Asia/Jakarta"
    sender_local = workspace.call(
        "POST",
        base(conversation),
        json={"body": "hi", "run_at": f"{next_year}-07-05T09:00:00", "timezone": "Europe/Berlin"},
    )
    assert sender_local.status_code == 201, sender_local.text
    assert sender_local.json["run_at"].startswith(f"{next_year}-07-05T07:00:00")  # CEST
    # 02:30 on the day Berlin springs forward never happens
    skipped = workspace.call(
        "POST",
        base(conversation),
        json={"body": "hi", "run_at": "2027-03-28T02:30:00", "timezone": "Europe/Berlin"},
    )
    assert skipped.status_code == 422, skipped.text
    assert skipped.json["error"]["details"][0]["field"] == "run_at"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"body": "hi", "run_at": "2020-01-01T00:00:00Z"}, "run_at"),
        ({"body": "hi", "run_at": "2999-01-01T00:00:00Z"}, "run_at"),
        ({"body": "hi", "run_at": "tomorrow"}, "run_at"),
        ({"body": "hi", "run_at": "2030-01-01T09:00:00", "timezone": "Mars/Base"}, "timezone"),
        ({"run_at": "2030-01-01T09:00:00Z"}, None),
        ({"body": "", "run_at": "2030-01-01T09:00:00Z"}, "body"),
    ],
)
def test_bad_input_is_422_and_stores_nothing(workspace, body, field):
    conversation = add_conversation(workspace, channel="api")
    resp = workspace.call("POST", base(conversation), json=body)
    assert resp.status_code == 422, resp.text
    if field:
        assert field in [d["field"] for d in resp.json["error"]["details"]], resp.json
    assert workspace.call("GET", base(conversation)).json["items"] == []


@pytest.mark.parametrize("channel", ["email", "messenger", "instagram"])
def test_a_template_on_a_channel_that_cannot_send_one_is_422_at_once(workspace, channel):
    """As a reply is: stored, it would only fail when due (an empty email before)."""
    conversation = add_conversation(workspace, channel=channel)
    template = {"name": "order_update", "language": "en_US", "components": []}
    resp = workspace.call(
        "POST", base(conversation), json={"template": template, "run_at": in_an_hour()}
    )
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "template"
    assert workspace.call("GET", base(conversation)).json["items"] == []


def test_resolved_and_foreign_conversations_are_refused(workspace, other_workspace):
    resolved = add_conversation(workspace, channel="api", status="resolved")
    resp = workspace.call("POST", base(resolved), json={"body": "hi", "run_at": in_an_hour()})
    assert resp.status_code == 409, resp.text
    theirs = add_conversation(other_workspace, channel="api")
    for method, kwargs in (("POST", {"json": {"body": "hi", "run_at": in_an_hour()}}), ("GET", {})):
        assert workspace.call(method, base(theirs), **kwargs).status_code == 404
    mine = add_conversation(workspace, channel="api")
    created = workspace.call("POST", base(mine), json={"body": "hi", "run_at": in_an_hour()}).json
    assert other_workspace.call("DELETE", f"{base(mine)}/{created['id']}").status_code == 404
    assert workspace.call("DELETE", f"{base(mine)}/{uuid.uuid4()}").status_code == 404


def test_only_the_author_or_a_moderator_cancels(workspace):
    conversation = add_conversation(workspace, channel="api")  # unassigned: all agents see it
    _, author_token = workspace.create_agent("agent")
    _, other_token = workspace.create_agent("agent")
    created = workspace.call(
        "POST", base(conversation), json={"body": "hi", "run_at": in_an_hour()}, token=author_token
    )
    assert created.status_code == 201, created.text
    target = f"{base(conversation)}/{created.json['id']}"
    refused = workspace.call("DELETE", target, token=other_token)
    assert refused.status_code == 403, refused.text
    assert row(created.json["id"]).status == "pending"
    _, supervisor_token = workspace.create_agent("supervisor")
    assert workspace.call("DELETE", target, token=supervisor_token).status_code == 204


# --- the scheduler and the worker -----------------------------------------------------------


def test_a_due_message_is_sent_once_through_the_normal_reply_path(api, receiver, path, broker):  # noqa: F811
    inbound = api.inbound("Where is my parcel?")
    conversation = inbound["conversation_id"]
    created = api.ws.call(
        "POST", base(conversation), json={"body": "It ships today", "run_at": in_an_hour()}
    ).json
    assert claim(None, created["id"]) == 0  # not due yet
    assert claim(later(), created["id"]) == 1
    broker.join(queues.CHANNELS)
    sent = row(created["id"])
    assert sent.status == "sent" and sent.message_id is not None
    message = wait_until(
        lambda: [r for r in receiver.at(path) if b"It ships today" in r.body],
        "the callback received the scheduled reply",
    )
    assert len(message) == 1
    with session_scope() as session:
        stored = session.get(Message, sent.message_id)
        assert (stored.direction, stored.sender_type) == ("outbound", "user")
        assert str(stored.sender_id) == api.ws.admin["id"]
        events = session.scalars(
            select(OutboxEvent.type).where(
                OutboxEvent.tenant_id == tid(api.ws),
                OutboxEvent.data["id"].astext == str(sent.message_id),
            )
        ).all()
    assert events.count("message.created") == 1
    # the scheduler again (a second scheduler, a re-drive): nothing more is sent
    assert claim(later(3), created["id"]) == 0
    cancel = api.ws.call("DELETE", f"{base(conversation)}/{created['id']}")
    assert cancel.status_code == 409, cancel.text


def test_a_closed_whatsapp_window_fails_it_visibly_and_emits_an_event(workspace, worker, broker):
    conversation = add_conversation(workspace, channel="whatsapp")
    with session_scope() as session:
        contact_id = session.scalar(
            select(Conversation.contact_id).where(Conversation.id == uuid.UUID(conversation))
        )
        session.execute(
            update(Contact).where(Contact.id == contact_id).values(last_inbound_at=func.now())
        )
    created = workspace.call(
        "POST", base(conversation), json={"body": "Following up", "run_at": in_an_hour()}
    )
    assert created.status_code == 201, created.text
    # 25 hours pass without a word from the customer: the window closed
    with session_scope() as session:
        session.execute(
            update(Contact)
            .where(Contact.id == contact_id)
            .values(last_inbound_at=func.now() - dt.timedelta(hours=25))
        )
    assert claim(later(), created.json["id"]) == 1
    broker.join(queues.CHANNELS)
    failed = row(created.json["id"])
    assert (failed.status, failed.error_code) == ("failed", "window_closed")
    assert "24-hour window" in failed.error_message
    assert failed.message_id is None
    listed = workspace.call("GET", base(conversation)).json["items"][0]
    assert listed["status"] == "failed" and listed["error_code"] == "window_closed"
    with session_scope() as session:
        emitted = session.scalars(
            select(OutboxEvent).where(
                OutboxEvent.tenant_id == tid(workspace),
                OutboxEvent.type == "scheduled_message.failed",
            )
        ).all()
        assert [e.data["id"] for e in emitted] == [created.json["id"]]
        assert emitted[0].data["conversation_id"] == conversation
        assert messages_in(session, conversation) == 0


def test_a_conversation_resolved_meanwhile_fails_it_with_the_reason(workspace, worker, broker):
    conversation = add_conversation(workspace, channel="api")
    created = workspace.call(
        "POST", base(conversation), json={"body": "hi", "run_at": in_an_hour()}
    )
    workspace.call(
        "PATCH", f"/api/conversations/{conversation}/status", json={"status": "resolved"}
    )
    with session_scope() as session:
        session.execute(
            update(Conversation)
            .where(Conversation.id == uuid.UUID(conversation))
            .values(status="resolved", resolved_at=func.now())
        )
    claim(later())
    broker.join(queues.CHANNELS)
    assert row(created.json["id"]).error_code == "conversation_resolved"


# --- two schedulers, a leader killed mid-run ------------------------------------------------


def due_rows(workspace, count: int) -> tuple[str, list[uuid.UUID]]:
    """``count`` pending rows already due (inserted as if scheduled earlier)."""
    conversation = add_conversation(workspace, channel="api")
    ids = [uuid.uuid4() for _ in range(count)]
    with session_scope() as session:
        now = session.scalar(select(func.now()))
        for n, scheduled_id in enumerate(ids):
            session.add(
                ScheduledMessage(
                    id=scheduled_id,
                    tenant_id=tid(workspace),
                    conversation_id=uuid.UUID(conversation),
                    author_id=uuid.UUID(workspace.admin["id"]),
                    body=f"due {n}",
                    run_at=now - dt.timedelta(seconds=1),
                    due_at=now - dt.timedelta(seconds=1),
                    timezone="UTC",
                )
            )
    return conversation, ids


class Recorder:
    def __init__(self) -> None:
        self.ids: list[uuid.UUID] = []

    def __call__(self, ids) -> None:
        self.ids.extend(ids)


@pytest.fixture
def recorded(monkeypatch):
    """Record what the scheduler hands out instead of sending it."""
    recorder = Recorder()
    monkeypatch.setattr(scheduled_messages.QUEUE, "enqueuer", recorder)
    return recorder


def test_two_schedulers_at_once_split_the_due_rows(workspace, recorded):
    """While scheduler A holds its claim (paused just before commit), B takes the others."""
    claim(None)  # other tests' rows due now are out of the way (recorded, not sent)
    recorded.ids.clear()
    _, ids = due_rows(workspace, 10)
    a_holds, b_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    a_ids: list[uuid.UUID] = []

    def scheduler_a() -> None:
        session = get_sessionmaker()()

        @event.listens_for(session, "before_commit", once=True)
        def pause(_session):
            a_holds.set()
            b_done.wait(10)

        try:
            a_ids.extend(scheduled_messages.claim_due(session, batch=6))
            session.commit()
        except BaseException as exc:
            errors.append(exc)
        finally:
            a_holds.set()
            session.close()

    thread = threading.Thread(target=scheduler_a)
    thread.start()
    try:
        assert a_holds.wait(10)
        with session_scope() as session:
            session.execute(text("SET LOCAL lock_timeout = '3s'"))
            b_ids = scheduled_messages.claim_due(session)
    finally:
        b_done.set()
        thread.join(10)
    assert not errors
    assert not errors, errors
    assert len(a_ids) == 6 and len(b_ids) == 4
    assert sorted(a_ids + b_ids) == sorted(ids)  # each exactly once, between the two
    assert sorted(recorded.ids) == sorted(ids)
    assert claim(None, *ids) == 0


def test_a_leader_killed_mid_run_skips_nothing_and_sends_nothing_twice(
    workspace, recorded, worker, broker
):
    conversation, ids = due_rows(workspace, 5)
    # killed before its commit: the claim rolls back, every row is still due
    session = get_sessionmaker()()
    assert set(ids) <= set(scheduled_messages.claim_due(session))
    session.rollback()
    session.close()
    assert recorded.ids == []
    # killed after its commit, before the hand-off reached the broker
    scheduled_messages.QUEUE.enqueuer = None
    assert claim(None, *ids) == 5
    assert claim(None, *ids) == 0  # handed out: not due again until the re-drive delay
    # the next leader, once the re-drive delay passed, hands them out again
    scheduled_messages.QUEUE.enqueuer = recorded
    assert claim(later(hours=0.1), *ids) == 5
    assert set(ids) <= set(recorded.ids)
    # and the same ids delivered twice (a duplicate job) create one message each
    from workers.actors.timed import send_scheduled_messages

    for _ in range(2):
        send_scheduled_messages.send([str(i) for i in ids])
    broker.join(queues.CHANNELS)
    with session_scope() as session:
        bodies = session.scalars(
            select(Message.body).where(Message.conversation_id == uuid.UUID(conversation))
        ).all()
    assert sorted(bodies) == sorted(f"due {n}" for n in range(5))
    assert {row(i).status for i in ids} == {"sent"}


def test_one_job_sends_its_rows_together_and_a_refused_one_fails_alone(workspace, worker, broker):
    """A job's rows are written together, in the order they were scheduled for; a closed
    window fails its own row, a cancelled one is skipped, and each conversation counts
    exactly the messages it got."""
    conversation, ids = due_rows(workspace, 4)
    closed_conversation, [closed_id] = due_rows(workspace, 1)
    with session_scope() as session:
        session.execute(
            update(Conversation)
            .where(Conversation.id == uuid.UUID(closed_conversation))
            .values(channel="whatsapp")
        )
        session.execute(
            update(ScheduledMessage)
            .where(ScheduledMessage.id == ids[3])
            .values(status="cancelled", cancelled_at=func.now())
        )
        session.execute(  # scheduled for the latest time: sent last
            update(ScheduledMessage)
            .where(ScheduledMessage.id == ids[0])
            .values(run_at=ScheduledMessage.run_at + dt.timedelta(milliseconds=500))
        )
    from workers.actors.timed import send_scheduled_messages

    send_scheduled_messages.send([str(i) for i in [*ids, closed_id]])
    broker.join(queues.CHANNELS)
    assert [row(i).status for i in ids] == ["sent", "sent", "sent", "cancelled"]
    assert (row(closed_id).status, row(closed_id).error_code) == ("failed", "window_closed")
    with session_scope() as session:
        messages = session.execute(
            select(Message.id, Message.body)
            .where(Message.conversation_id == uuid.UUID(conversation))
            .order_by(Message.created_at)
        ).all()
        assert sorted(body for _, body in messages) == ["due 0", "due 1", "due 2"]
        counted = session.get(Conversation, uuid.UUID(conversation))
        assert counted.message_count == 3
        assert messages[-1].body == "due 0" == counted.last_message_preview
        assert counted.first_response_at is not None
        created = session.scalars(
            select(OutboxEvent.data["id"].astext).where(
                OutboxEvent.tenant_id == tid(workspace), OutboxEvent.type == "message.created"
            )
        ).all()
        assert sorted(created) == sorted(str(m.id) for m in messages)
        assert session.get(Conversation, uuid.UUID(closed_conversation)).message_count == 0


def test_each_hand_off_of_a_row_waits_twice_as_long_for_its_job(workspace, recorded):
    """A job that is only late (a backlog) is not handed out again every minute, and a
    backlog of minutes does not fail the rows as ``gave_up``."""
    _, [scheduled_id] = due_rows(workspace, 1)
    waits = []
    for _hand_off in range(7):
        with session_scope() as session:
            now = session.scalar(select(func.now()))
            session.execute(  # time passes: the row is due again
                update(ScheduledMessage)
                .where(ScheduledMessage.id == scheduled_id)
                .values(due_at=now - dt.timedelta(seconds=1))
            )
        assert claim(now, scheduled_id) == 1
        waits.append((row(scheduled_id).due_at - now).total_seconds())
    assert waits == [60, 120, 240, 480, 960, 1800, 1800]
    assert row(scheduled_id).status == "pending"


def test_a_row_that_never_completes_fails_after_the_last_hand_off(workspace, recorded):
    _, [scheduled_id] = due_rows(workspace, 1)
    with session_scope() as session:
        session.execute(
            update(ScheduledMessage)
            .where(ScheduledMessage.id == scheduled_id)
            .values(attempts=scheduled_messages.MAX_ATTEMPTS)
        )
    assert claim(None, scheduled_id) == 0
    gave_up = row(scheduled_id)
    assert (gave_up.status, gave_up.error_code) == ("failed", "gave_up")


def test_real_schedulers_a_killed_leader_and_every_due_message_sent_once(
    workspace,
    schedulers,  # noqa: F811
    worker,
    broker,
):
    """Two ``python -m scheduler`` processes; the leader is SIGKILLed; the standby's
    ``send_due_scheduled_messages`` (every 10 s) sends every due message exactly once."""
    conversation, ids = due_rows(workspace, 30)
    first = schedulers.start("first")
    schedulers.wait_for(led_by(first.pid), "the first scheduler leads", timeout=30)
    second = schedulers.start("second")
    schedulers.wait_for(lambda: "STANDBY" in second.log(), "the second stands by", timeout=30)
    first.send(signal.SIGKILL)
    schedulers.wait_for(led_by(second.pid), "the standby takes over", timeout=30)

    def all_sent():
        with session_scope() as session:
            return session.scalar(
                select(func.count())
                .select_from(ScheduledMessage)
                .where(ScheduledMessage.id.in_(ids), ScheduledMessage.status == "sent")
            ) == len(ids)

    schedulers.wait_for(all_sent, "every due message sent", timeout=120)
    broker.join(queues.CHANNELS)
    with session_scope() as session:
        bodies = session.scalars(
            select(Message.body).where(Message.conversation_id == uuid.UUID(conversation))
        ).all()
    assert sorted(bodies) == sorted(f"due {n}" for n in range(30))


# --- suspension -----------------------------------------------------------------------------


def test_a_suspended_authors_message_is_not_sent_in_their_name(workspace, root, worker, broker):  # noqa: F811
    """Suspension refuses the agent's login, tokens and keys: their queued replies too."""
    conversation = add_conversation(workspace, channel="api")  # unassigned: all agents see it
    agent, agent_token = workspace.create_agent("agent")
    scheduled = schedule(workspace, conversation, "From Ada", token=agent_token)
    suspended = root.call(
        "POST", f"/api/admin/tenants/{workspace.tenant['id']}/users/{agent['id']}/suspend"
    )
    assert suspended.status_code == 200, suspended.text
    refused = send_due(scheduled, broker)
    assert (refused.status, refused.error_code) == ("failed", "author_suspended")
    with session_scope() as session:
        assert messages_in(session, conversation) == 0


def test_a_job_claimed_before_its_tenant_was_suspended_sends_nothing_until_reactivated(
    workspace,
    root,  # noqa: F811
    recorded,
    worker,
    broker,
):
    """Suspension drops queued work with the reason on record; the rows stay pending."""
    from workers.actors.timed import send_scheduled_messages
    from workers.tenant_gate import REASON

    conversation, [scheduled_id] = due_rows(workspace, 1)
    assert claim(None, scheduled_id) == 1  # handed to a job that has not run yet
    tenant = workspace.tenant["id"]
    assert root.call("DELETE", f"/api/admin/tenants/{tenant}").status_code == 204
    for _ in range(2):  # the job, and a duplicate of it: one dead letter
        send_scheduled_messages.send([str(scheduled_id)])
    broker.join(queues.CHANNELS)
    held = row(scheduled_id)
    assert (held.status, held.message_id) == ("pending", None)
    with session_scope() as session:
        assert messages_in(session, conversation) == 0
        letters = session.scalars(
            select(DeadLetter).where(
                DeadLetter.tenant_id == uuid.UUID(tenant),
                DeadLetter.actor_name == send_scheduled_messages.actor_name,
            )
        ).all()
        assert [(letter.args, letter.error) for letter in letters] == [
            ([[str(scheduled_id)]], REASON)
        ]
    back = root.call("PATCH", f"/api/admin/tenants/{tenant}", json={"status": "active"})
    assert back.status_code == 200, back.text
    assert claim(later(hours=0.1), scheduled_id) == 1
    send_scheduled_messages.send([str(scheduled_id)])
    broker.join(queues.CHANNELS)
    assert row(scheduled_id).status == "sent"


# --- the author's access, re-checked when due ---------------------------------------------


def reassign(workspace, conversation: str, to: dict) -> None:
    moved = workspace.call(
        "PATCH", f"/api/conversations/{conversation}/assignment", json={"assignee_id": to["id"]}
    )
    assert moved.status_code == 200, moved.text


def test_a_message_whose_author_lost_the_conversation_fails_instead_of_being_sent(
    workspace, worker, broker
):
    """Reassigned away from an agent who sees only their own: not sent in their name."""
    agent, agent_token = workspace.create_agent("agent")
    colleague, _ = workspace.create_agent("agent")
    conversation = add_conversation(workspace, channel="api", assignee_id=uuid.UUID(agent["id"]))
    scheduled = schedule(workspace, conversation, "From Ada", token=agent_token)
    reassign(workspace, conversation, colleague)
    refused = send_due(scheduled, broker)
    assert (refused.status, refused.error_code) == ("failed", "author_lost_access")
    assert refused.message_id is None and refused.error_message
    listed = workspace.call("GET", base(conversation)).json["items"][0]
    assert (listed["status"], listed["error_code"]) == ("failed", "author_lost_access")
    with session_scope() as session:
        assert messages_in(session, conversation) == 0
        emitted = session.scalars(
            select(OutboxEvent.data).where(
                OutboxEvent.tenant_id == tid(workspace),
                OutboxEvent.type == "scheduled_message.failed",
            )
        ).all()
        assert [e["id"] for e in emitted] == [scheduled]


def test_a_message_whose_author_was_deleted_fails_instead_of_being_sent(workspace, worker, broker):
    conversation = add_conversation(workspace, channel="api")  # unassigned: all agents see it
    agent, agent_token = workspace.create_agent("agent")
    scheduled = schedule(workspace, conversation, "From Ada", token=agent_token)
    assert workspace.call("DELETE", f"/api/agents/{agent['id']}").status_code == 204
    refused = send_due(scheduled, broker)
    assert (refused.status, refused.error_code) == ("failed", "author_removed")
    with session_scope() as session:
        assert messages_in(session, conversation) == 0


def test_a_moderators_message_is_still_sent_on_a_conversation_assigned_to_another(
    workspace, worker, broker
):
    """Seeing every conversation (conversations.manage), the author keeps the right to send."""
    colleague, _ = workspace.create_agent("agent")
    conversation = add_conversation(workspace, channel="api")
    scheduled = schedule(workspace, conversation, "From the admin")
    reassign(workspace, conversation, colleague)
    assert send_due(scheduled, broker).status == "sent"


def test_a_dead_jobs_rows_that_gave_up_since_are_not_requeued_and_say_why(
    client, workspace, recorded
):
    """The job died (its dead letter); the scheduler handed its row out until it failed
    ``gave_up``: a requeue answered 200 and sent nothing."""
    from shared.config import get_settings
    from shared.dead_letters import record_dead_letter
    from shared.models import DeadLetter

    _, [scheduled_id] = due_rows(workspace, 1)
    message_id = str(uuid.uuid4())
    with session_scope() as session:  # what the worker's middleware wrote when it gave up
        record_dead_letter(
            session,
            message_id=message_id,
            queue_name="channels",
            actor_name="send_scheduled_messages",
            args=[[str(scheduled_id)]],
            kwargs={},
            options={},
            retries=3,
            error="ScheduledSendError: 1 of 1 scheduled messages failed",
        )
        session.execute(
            update(ScheduledMessage)
            .where(ScheduledMessage.id == scheduled_id)
            .values(attempts=scheduled_messages.MAX_ATTEMPTS)
        )
    assert claim(None, scheduled_id) == 0  # the last hand-off: it gives up
    with session_scope() as session:
        letter = session.scalar(select(DeadLetter.id).where(DeadLetter.message_id == message_id))
    operator = {"Authorization": f"Bearer {get_settings().metrics_token}"}

    resp = client.simulate_post(f"/api/ops/dead-letters/{letter}/requeue", headers=operator)

    assert resp.status_code == 409, resp.text
    error = resp.json["error"]
    assert error["code"] == "not_requeueable" and "failed (gave_up)" in error["message"]


def test_a_deleted_accounts_conversation_is_refused_and_its_pending_messages_fail(
    api,
    worker,
    broker,
):
    """As a reply is (409 ``account_deleted``): the default account is another number, page
    or address than the one the customer wrote to. A message scheduled before the deletion
    failed only at the channel, its scheduled row saying ``sent`` and no event telling why."""
    conversation = api.inbound("Where is my parcel?")["conversation_id"]
    created = api.ws.call(
        "POST", base(conversation), json={"body": "It ships today", "run_at": in_an_hour()}
    )
    assert created.status_code == 201, created.text
    deleted = api.ws.call("DELETE", f"/api/integration-accounts/{api.id}")
    assert deleted.status_code == 204, deleted.text

    refused = api.ws.call(
        "POST", base(conversation), json={"body": "And again", "run_at": in_an_hour()}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json["error"]["code"] == "account_deleted"

    failed = send_due(created.json["id"], broker)
    assert (failed.status, failed.error_code) == ("failed", "account_deleted")
    assert failed.message_id is None
    with session_scope() as session:
        assert messages_in(session, conversation) == 1  # the customer's only
    assert failed_events(api.ws) == [created.json["id"]]


def test_a_message_due_while_its_account_is_disabled_fails_with_the_reason(api, worker, broker):
    """A disabled account sends nothing: the send failed only at the channel while the
    scheduled row said ``sent`` and no ``scheduled_message.failed`` told a rule or a webhook."""
    conversation = api.inbound("Where is my parcel?")["conversation_id"]
    created = api.ws.call(
        "POST", base(conversation), json={"body": "It ships today", "run_at": in_an_hour()}
    )
    assert created.status_code == 201, created.text
    disabled = api.ws.call(
        "PATCH", f"/api/integration-accounts/{api.id}", json={"status": "disabled"}
    )
    assert disabled.status_code == 200, disabled.text

    failed = send_due(created.json["id"], broker)
    assert (failed.status, failed.error_code) == ("failed", "account_disabled")
    assert "disabled" in failed.error_message
    assert failed.message_id is None
    listed = api.ws.call("GET", base(conversation)).json["items"][0]
    assert (listed["status"], listed["error_code"]) == ("failed", "account_disabled")
    with session_scope() as session:
        assert messages_in(session, conversation) == 1  # the customer's only
    assert failed_events(api.ws) == [created.json["id"]]


def test_a_message_due_while_its_channel_is_switched_off_fails_with_the_reason(api, worker, broker):
    """A switched-off channel's accounts work as disabled ones: the send failed only at the
    channel (``channel_disabled``) while the scheduled row said ``sent``."""
    conversation = api.inbound("Where is my parcel?")["conversation_id"]
    created = api.ws.call(
        "POST", base(conversation), json={"body": "It ships today", "run_at": in_an_hour()}
    )
    assert created.status_code == 201, created.text
    off = api.ws.call("PUT", "/api/integrations/api", json={"enabled": False})
    assert off.status_code == 200, off.text

    failed = send_due(created.json["id"], broker)
    assert (failed.status, failed.error_code) == ("failed", "channel_disabled")
    assert "switched off" in failed.error_message
    assert failed.message_id is None
    with session_scope() as session:
        assert messages_in(session, conversation) == 1  # the customer's only
    assert failed_events(api.ws) == [created.json["id"]]
