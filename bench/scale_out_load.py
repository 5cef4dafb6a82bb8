"""Real events for the scale-out harness: a tenant wired for work, a paced sender, the ledger.

Each event is one inbound message posted to an api-channel account (``ping <seq>``). It
fans out into the work the issue names:

- outgoing webhooks: ``message.created`` for the inbound message, and again for the reply;
- automation: a rule (inbound and containing "ping") whose actions send the reply
  ``pong ping <seq>`` and add a tag;
- an outbound send: the reply goes out through the api channel's callback.

The event is *done* when the receiver has the inbound message's webhook, the reply's
send and the reply's webhook. :class:`Ledger` tells, from the receiver's records, which
events are done and when; :func:`verify` checks the end state against the database.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench import common
from bench.cluster import Cluster

_PONG = re.compile(r"^pong ping (\d+)$")
_CONTACTS = 40


@dataclass
class Tenant:
    token: str
    tenant_id: str
    account_id: str
    rule_id: str


def setup_tenant(cluster: Cluster) -> Tenant:
    """Register a tenant over HTTP and wire its webhook, api account and rule."""
    recorder = cluster.recorder
    status, body = cluster.request(
        "POST",
        "/api/auth/register",
        {
            "organization_name": f"Hosts {uuid.uuid4().hex[:6]}",
            "full_name": "Grace Admin",
            "email": f"admin-{uuid.uuid4().hex[:10]}@example.com",
            "password": "correct horse battery",
        },
    )
    _expect(status, 201, "register", body)
    token, tenant_id = body["access_token"], body["tenant"]["id"]
    status, body = cluster.request(
        "POST",
        "/api/outgoing-webhooks",
        {"url": recorder.url("/hooks"), "event_types": ["message.created"], "is_active": True},
        token,
    )
    _expect(status, 201, "create the outgoing webhook", body)
    status, body = cluster.request(
        "POST",
        "/api/integration-accounts",
        {"channel": "api", "name": "Shop", "settings": {"callback_url": recorder.url("/callback")}},
        token,
    )
    _expect(status, 201, "create the api account", body)
    account_id = body["id"]
    rule = {
        "name": "Answer pings",
        "trigger_event_types": ["message.created"],
        "conditions": {
            "match": "all",
            "conditions": [
                {"attribute": "message.direction", "operator": "equal_to", "value": "inbound"},
                {"attribute": "message.content", "operator": "contains", "value": "ping"},
            ],
        },
        "actions": [
            {"type": "send_message", "params": {"body": "pong {{message.content}}"}},
            {"type": "add_tags", "params": {"tags": ["pinged"]}},
        ],
    }
    status, body = cluster.request("POST", "/api/automation/rules", rule, token)
    _expect(status, 201, "create the rule", body)
    return Tenant(token, tenant_id, account_id, body["id"])


def _expect(status: int, wanted: int, what: str, body) -> None:
    if status != wanted:
        raise common.BenchError(f"{what}: {status} {body}")


# --- sending ---------------------------------------------------------------------------------


@dataclass
class Accepted:
    seq: int
    message_id: str
    at: float


class Sender:
    """Posts ``ping <seq>`` messages: paced (``rate`` per second) or as fast as it can.

    A post that fails (timeout, 5xx) is retried with the same ``external_message_id``,
    which the API stores once; the event counts from the answer that accepted it.
    """

    def __init__(self, cluster: Cluster, tenant: Tenant, threads: int = 4) -> None:
        self.cluster = cluster
        self.tenant = tenant
        self.threads = threads
        self.accepted: dict[int, Accepted] = {}
        self.failures = 0
        self.lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def _claim_seq(self) -> int:
        with self.lock:
            seq = self._next
            self._next += 1
            return seq

    def post(self, seq: int) -> None:
        path = f"/api/integration-accounts/{self.tenant.account_id}/api/messages"
        body = {
            "contact": {"source_id": f"c{seq % _CONTACTS}", "name": f"Customer {seq % _CONTACTS}"},
            "content": f"ping {seq}",
            "external_message_id": f"m{seq}",
        }
        for _attempt in range(20):
            try:
                status, answer = self.cluster.request("POST", path, body, self.tenant.token)
            except OSError:
                status, answer = 0, None
            if status in (200, 201) and isinstance(answer, dict):
                with self.lock:
                    self.accepted[seq] = Accepted(seq, answer["id"], time.monotonic())
                return
            with self.lock:
                self.failures += 1
            time.sleep(0.2)
        raise common.BenchError(f"ping {seq} was never accepted (last: {status} {answer})")

    def start(self, rate: float) -> None:
        """Send ``rate`` events per second in the background until :meth:`stop`."""
        self._stop.clear()
        interval = self.threads / rate
        started = time.monotonic()

        def run(offset: int) -> None:
            due = started + offset * interval / self.threads
            while not self._stop.is_set():
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                self.post(self._claim_seq())
                due += interval

        self._workers = [
            threading.Thread(target=run, args=(i,), daemon=True) for i in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def burst(self, count: int) -> list[int]:
        """Send ``count`` events as fast as the API takes them; return their seqs."""
        seqs = [self._claim_seq() for _ in range(count)]
        chunks = [seqs[i :: self.threads] for i in range(self.threads)]
        workers = [
            threading.Thread(target=lambda c=c: [self.post(s) for s in c], daemon=True)
            for c in chunks
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return seqs

    def snapshot(self) -> dict[int, Accepted]:
        with self.lock:
            return dict(self.accepted)


# --- the ledger ------------------------------------------------------------------------------


@dataclass
class Progress:
    """What the receiver has seen: first arrivals and repeats."""

    hook_first: dict[str, float] = field(default_factory=dict)
    hook_posts: int = 0
    #: seq -> (reply message id, first send arrival)
    sends: dict[int, tuple[str, float]] = field(default_factory=dict)
    send_posts: dict[str, int] = field(default_factory=dict)

    def done_at(self, accepted: Accepted) -> float | None:
        """When the event was fully processed (None: not yet)."""
        inbound = self.hook_first.get(accepted.message_id)
        send = self.sends.get(accepted.seq)
        if inbound is None or send is None:
            return None
        reply_hook = self.hook_first.get(send[0])
        if reply_hook is None:
            return None
        return max(inbound, send[1], reply_hook)


def stage_times(state: Progress, events: Iterable[Accepted]) -> dict[str, float | None]:
    """The last first-arrival of each stage over ``events``: which step finished last."""
    inbound, sends, replies = [], [], []
    for event in events:
        inbound.append(state.hook_first.get(event.message_id))
        send = state.sends.get(event.seq)
        sends.append(send[1] if send else None)
        replies.append(state.hook_first.get(send[0]) if send else None)

    def last(values: list[float | None]) -> float | None:
        return None if not values or None in values else max(values)

    return {"inbound webhook": last(inbound), "send": last(sends), "reply webhook": last(replies)}


def progress(cluster: Cluster) -> Progress:
    hooks, callbacks = cluster.recorder.snapshot()
    result = Progress(hook_posts=len(hooks))
    for arrival in hooks:
        result.hook_first.setdefault(arrival.message_id, arrival.at)
    for arrival in callbacks:
        result.send_posts[arrival.webhook_id] = result.send_posts.get(arrival.webhook_id, 0) + 1
        match = _PONG.match(arrival.content)
        if match:
            result.sends.setdefault(int(match.group(1)), (arrival.webhook_id, arrival.at))
    return result


def wait_done(
    cluster: Cluster, events: Iterable[Accepted], timeout: float, tick=None
) -> tuple[float | None, list[Accepted]]:
    """Poll until every event is done: (when the last one was, those still not done)."""
    events = list(events)
    deadline = time.monotonic() + timeout
    while True:
        if tick is not None:
            tick()
        state = progress(cluster)
        pending = [e for e in events if state.done_at(e) is None]
        if not pending:
            return max((state.done_at(e) for e in events), default=time.monotonic()), []
        if time.monotonic() >= deadline:
            return None, pending
        time.sleep(0.1)


def latencies(cluster: Cluster, events: Iterable[Accepted]) -> list[float]:
    """Accept-to-done seconds of the events that are done, ascending."""
    state = progress(cluster)
    out = []
    for event in events:
        done = state.done_at(event)
        if done is not None:
            out.append(done - event.at)
    return sorted(out)


# --- the end state ---------------------------------------------------------------------------


_UNSETTLED = """
SELECT (SELECT count(*) FROM messages
         WHERE tenant_id = %(t)s AND direction = 'outbound' AND status = 'queued')
     + (SELECT count(*) FROM outbox_events WHERE tenant_id = %(t)s AND status = 'pending')
     + (SELECT count(*) FROM automation_events
         WHERE tenant_id = %(t)s AND status IN ('pending', 'processing'))
     + (SELECT count(*) FROM webhook_deliveries
         WHERE tenant_id = %(t)s AND status IN ('pending', 'in_flight'))
"""


def wait_settled(cluster: Cluster, tenant: Tenant, timeout: float) -> int:
    """Wait until the database has recorded everything the receiver saw; return what is left.

    NOTE: a send or delivery is recorded after the receiver answered, so the receiver
    seeing everything does not yet mean the rows say so.
    """
    import psycopg

    url = cluster.env.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            left = conn.execute(_UNSETTLED, {"t": tenant.tenant_id}).fetchone()[0]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.2)


@dataclass
class Verdict:
    events: int
    problems: list[str]
    webhook_posts: int
    webhook_repeats: int
    send_posts: int
    send_repeats: int
    replies_in_db: int

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(cluster: Cluster, tenant: Tenant, accepted: dict[int, Accepted]) -> Verdict:
    """Nothing lost, nothing applied twice: the receiver's records against the database.

    - every accepted event has its inbound webhook, exactly one reply row in the database
      (automation applied once), that reply sent (``sent``) and received once by the
      callback receiver (deduplicated by ``webhook-id``, as the api channel's contract
      says), and the reply's webhook;
    - webhooks may arrive more than once (Standard Webhooks): repeats are counted only.
    """
    import psycopg

    state = progress(cluster)
    problems: list[str] = []
    url = cluster.env.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id::text, body, status FROM messages"
            " WHERE tenant_id = %s AND direction = 'outbound'",
            (tenant.tenant_id,),
        ).fetchall()
        failed = conn.execute(
            "SELECT 'webhook deliveries ' || status, count(*) FROM webhook_deliveries"
            " WHERE tenant_id = %(t)s AND status <> 'succeeded' GROUP BY status"
            " UNION ALL SELECT 'automation events ' || status, count(*) FROM automation_events"
            " WHERE tenant_id = %(t)s AND status <> 'done' GROUP BY status",
            {"t": tenant.tenant_id},
        ).fetchall()
        untagged = conn.execute(
            "SELECT count(*) FROM conversations WHERE tenant_id = %s"
            " AND NOT ('pinged' = ANY(tags))",
            (tenant.tenant_id,),
        ).fetchone()[0]
    replies: dict[int, list[tuple[str, str]]] = {}
    for message_id, text, status in rows:
        match = _PONG.match(text or "")
        if match:
            replies.setdefault(int(match.group(1)), []).append((message_id, status))
    lost_inbound_hooks = [a.seq for a in accepted.values() if a.message_id not in state.hook_first]
    missing_replies = [s for s in accepted if s not in replies]
    twice = {s: len(r) for s, r in replies.items() if len(r) > 1}
    unsent = [s for s, r in replies.items() if any(status != "sent" for _i, status in r)]
    reply_ids = {i for r in replies.values() for i, _status in r}
    not_received = sorted(i for i in reply_ids if i not in state.send_posts)
    lost_reply_hooks = sorted(i for i in reply_ids if i not in state.hook_first)
    unknown = [s for s in replies if s not in accepted]
    for label, items in (
        ("events without their inbound webhook", lost_inbound_hooks),
        ("events without a reply (automation lost)", missing_replies),
        ("events answered more than once (automation applied twice)", sorted(twice)),
        ("replies not marked sent", unsent),
        ("replies the receiver never got (send lost)", not_received),
        ("replies without their webhook", lost_reply_hooks),
        ("replies to events never accepted", unknown),
    ):
        if items:
            problems.append(f"{len(items)} {label}: {items[:10]}")
    for label, count in failed:
        problems.append(f"{count} {label} (not finished)")
    if untagged:
        problems.append(f"{untagged} conversations without the rule's tag")
    send_posts = sum(state.send_posts.values())
    return Verdict(
        events=len(accepted),
        problems=problems,
        webhook_posts=state.hook_posts,
        webhook_repeats=state.hook_posts - len(state.hook_first),
        send_posts=send_posts,
        send_repeats=send_posts - len(state.send_posts),
        replies_in_db=len(reply_ids),
    )


def wait_scheduler_leader(cluster: Cluster, timeout: float = 60.0) -> None:
    """Wait until ``/api/health`` sees a scheduler leading (its heartbeat is fresh)."""

    def leading() -> bool:
        _status, body = cluster.request("GET", "/api/health", timeout=5)
        return isinstance(body, dict) and body.get("checks", {}).get("scheduler", {}).get("ok")

    common.wait_until(leading, "a scheduler leads", timeout=timeout, interval=0.2)
