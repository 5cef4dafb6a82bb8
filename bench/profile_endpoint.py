"""Profile one API endpoint in-process (falcon.testing + cProfile): where a request's CPU goes.

A diagnosis tool for ``bench/http_api.py`` (not part of ``run_all.py``): no gunicorn,
no sockets, one thread, so the figures are the application's own cost per request.

``agents``
    ``GET /api/agents?limit=100`` as the tenant admin (100 agents): nothing changes, so
    after the first request the principal and the page come from the process's caches.
    Plus a stage breakdown timed outside Falcon: the caches' epoch read (what every hit
    pays), and what a miss pays: JWT decode, the principal query, the page query,
    pydantic validation and JSON dump of the page.
``health``
    ``GET /api/health`` (a fresh scheduler heartbeat row is inserted first).
``inbound``
    ``POST /api/webhooks/meta``: signed WhatsApp text callbacks (``bench/channels_inbound.py``
    payloads, each with its own wamid) to one account with its own app secret: the ack
    path (verify, store, enqueue ``process_inbound`` on the real broker), no worker.
``inbound-process``
    What one ``process_inbound`` job does with such a stored payload (contact upsert,
    conversation, message, counters, events and their enqueue), called in-process.
``automation-dry-run``
    ``POST /api/automation/rules/{id}/dry-run`` with a real ``message.created`` event id
    (the three-leaf rule of ``bench/automation.py``).

Run::

    .venv/bin/python bench/profile_endpoint.py agents            # 300 requests profiled
    .venv/bin/python bench/profile_endpoint.py health -n 1000 --top 40
    .venv/bin/python bench/profile_endpoint.py inbound -n 1000 --cpu
    .venv/bin/python bench/profile_endpoint.py inbound-process -n 500 --cpu

It creates and drops ``omnistream_bench_<random>`` and deletes its Redis keys.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common


def timed(label: str, func, n: int) -> tuple[str, float, float]:
    """Wall and CPU (this process's) ms per call: the CPU one ignores waits on the servers."""
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(n):
        func()
    wall = (time.perf_counter() - started) * 1000 / n
    return label, wall, (time.process_time() - cpu_started) * 1000 / n


def agents_stages(token: str, n: int) -> list[tuple[str, float]]:
    """Time the parts of GET /api/agents one by one (each in its own session)."""
    from pydantic import TypeAdapter

    from api.schemas.common import Page
    from shared import epoch_cache
    from shared.db import get_sessionmaker
    from shared.identity import agents, auth
    from shared.identity.security import decode_access_token
    from shared.schemas.identity import AgentView

    sessions = get_sessionmaker()
    adapter = TypeAdapter(Page[AgentView])
    with sessions() as session:
        ctx = auth.authenticate_token(session, token)
        page = agents.list_agents(session, ctx, limit=100)
        session.commit()
    result = {"items": page.items, "next_cursor": page.next_cursor}
    validated = adapter.validate_python(result, from_attributes=True)

    def principal() -> None:
        with sessions() as session:
            auth.authenticate_token(session, token)
            session.commit()

    def page_query() -> None:
        with sessions() as session:
            agents.list_agents(session, ctx, limit=100)
            session.commit()

    def empty_transaction() -> None:
        with sessions() as session:
            session.connection()
            session.commit()

    return [
        timed(
            "epochs of the read caches (one Redis MGET)",
            lambda: epoch_cache.read(ctx.tenant_id),
            n,
        ),
        timed("JWT decode", lambda: decode_access_token(token), n),
        timed("session + empty transaction (pool checkout, BEGIN/COMMIT)", empty_transaction, n),
        timed("principal query (incl. its transaction)", principal, n),
        timed("page query, 101 agents + roles (incl. its transaction)", page_query, n),
        timed(
            "pydantic validate_python(from_attributes) of the page",
            lambda: adapter.validate_python(result, from_attributes=True),
            n,
        ),
        timed("pydantic dump_json of the page", lambda: adapter.dump_json(validated), n),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "target", choices=("agents", "health", "inbound", "inbound-process", "automation-dry-run")
    )
    parser.add_argument("-n", "--requests", type=int, default=300)
    parser.add_argument("--top", type=int, default=30, help="rows of each profile table")
    parser.add_argument(
        "--cpu", action="store_true", help="profile CPU time (process_time), not wall time"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100_000:
        parser.error("--requests must be within 1..100000")
    env = common.configure_environment()

    with common.Bench("profile", env):
        import falcon.testing

        from api.app import create_app
        from bench.http_api import HeartbeatKeeper

        HeartbeatKeeper().beat()
        client = falcon.testing.TestClient(create_app())
        resp = client.simulate_post(
            "/api/auth/register",
            json={
                "organization_name": "Profile Inc",
                "full_name": "Profile Admin",
                "email": "admin@profile.example.com",
                "password": "profile-password-0123456789",
            },
        )
        assert resp.status_code == 201, resp.text
        token = resp.json["access_token"]
        if args.target == "agents":
            _insert_agents(resp.json["tenant"]["id"], 99)
            path, headers = "/api/agents?limit=100", {"Authorization": f"Bearer {token}"}
        elif args.target == "inbound":
            path, headers = "/api/webhooks/meta", {}
            request = _inbound_poster(client, token)
        elif args.target == "inbound-process":
            path, headers = "process_inbound", {}
            request = _inbound_processor(client, token, min(100, args.requests) + 2 * args.requests)
        elif args.target == "automation-dry-run":
            headers = {"Authorization": f"Bearer {token}"}
            path, body = _dry_run_request(client, headers, resp.json["tenant"])

            def request() -> None:
                client.simulate_post(path, headers=headers, json=body)

            check = client.simulate_post(path, headers=headers, json=body)
            assert check.status_code == 200, check.text
        else:
            path, headers = "/api/health", {}
        if args.target in ("agents", "health"):

            def request() -> None:
                client.simulate_get(path, headers=headers)

            check = client.simulate_get(path, headers=headers)
            assert check.status_code == 200, check.text

        for _ in range(min(100, args.requests)):
            request()
        method = {"inbound": "POST", "inbound-process": "job", "automation-dry-run": "POST"}.get(
            args.target, "GET"
        )
        rows = [timed(f"whole request {method} {path} (falcon.testing)", request, args.requests)]
        if args.target == "agents":
            rows += agents_stages(token, args.requests)
        profiler = cProfile.Profile(time.process_time) if args.cpu else cProfile.Profile()
        profiler.enable()
        for _ in range(args.requests):
            request()
        profiler.disable()

    common.print_table(
        f"Wall time per call, in-process, single thread ({args.requests} calls each)",
        ["stage", "wall ms per call", "CPU ms per call"],
        [(label, f"{ms:.3f}", f"{cpu:.3f}") for label, ms, cpu in rows],
    )
    for sort in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(sort)
        stats.print_stats(args.top)
        clock = "CPU" if args.cpu else "wall"
        print(f"\ncProfile ({clock}) of {args.requests} x {method} {path}, sorted by {sort}")
        print(out.getvalue().split("\n", 4)[-1] if sort == "tottime" else out.getvalue())
    return 0


def _inbound_poster(client, token: str):
    """A signed-callback POSTer to a fresh WhatsApp account; each call is a new message."""
    import itertools

    from bench.channels_inbound import APP_SECRET, account_body, whatsapp_body
    from shared.channels.signatures import meta_signature

    phone_number_id = "100000000000042"
    resp = client.simulate_post(
        "/api/integration-accounts",
        json=account_body(phone_number_id),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 201, resp.text
    counter = itertools.count()

    def request() -> None:
        body = whatsapp_body(phone_number_id, next(counter))
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_signature(APP_SECRET, body),
        }
        answer = client.simulate_post("/api/webhooks/meta", body=body, headers=headers)
        assert answer.status_code == 200 and answer.json["stored"] == 1, answer.text

    return request


def _inbound_processor(client, token: str, count: int):
    """Store ``count`` callbacks through the ack path; each call processes the next one."""
    from sqlalchemy import select

    from shared.channels import processing
    from shared.db import session_scope
    from shared.models import InboundEvent

    post = _inbound_poster(client, token)
    for _ in range(count):
        post()
    with session_scope() as session:
        ids = list(
            session.scalars(select(InboundEvent.id).order_by(InboundEvent.received_at).limit(count))
        )
    pending = iter(ids)

    def request() -> None:
        with session_scope() as session:
            outcome = processing.process(session, next(pending))
        assert outcome == "processed", outcome

    return request


def _dry_run_request(client, headers: dict, tenant: dict) -> tuple[str, dict]:
    """A saved rule and a committed message.created event: the dry-run's path and body."""
    import uuid

    from bench.automation import TRIGGER, add_conversations, message_data, rule_row
    from shared.db import session_scope
    from shared.events import Actor, emit

    rule = rule_row(uuid.UUID(tenant["id"]), 0, TRIGGER)
    fields = ("name", "trigger_event_types", "conditions", "actions", "priority")
    created = client.simulate_post(
        "/api/automation/rules", headers=headers, json={k: rule[k] for k in fields}
    )
    assert created.status_code == 201, created.text
    [conversation] = add_conversations(uuid.UUID(tenant["id"]), 1)
    with session_scope() as session:
        event_id = emit(
            session,
            TRIGGER,
            message_data(conversation, 0),
            tenant_id=uuid.UUID(tenant["id"]),
            actor=Actor.system(),
        )
    return f"/api/automation/rules/{created.json['id']}/dry-run", {"event_id": str(event_id)}


def _insert_agents(tenant_id: str, count: int) -> None:
    import datetime as dt

    from sqlalchemy import insert, select

    from shared.db import session_scope
    from shared.models import Role, User

    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with session_scope() as session:
        role_id = session.scalar(
            select(Role.id).where(Role.tenant_id == tenant_id, Role.name == "agent")
        )
        session.execute(
            insert(User),
            [
                {
                    "tenant_id": tenant_id,
                    "role_id": role_id,
                    "email": f"agent{i:03d}@profile.example.com",
                    "full_name": f"Profile Agent {i:03d}",
                    "created_at": start + dt.timedelta(seconds=i),
                    "updated_at": start + dt.timedelta(seconds=i),
                }
                for i in range(count)
            ],
        )


if __name__ == "__main__":
    sys.exit(main())
