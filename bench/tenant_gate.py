"""The worker's suspension gate: what it costs per message, by how the tenant is found.

Every message a worker runs first passes :class:`workers.tenant_gate.TenantGate`. A
message with a ``tenant_id`` option costs the epoch-cached suspension check (one Redis
``MGET``). ``process_inbound`` and ``send_email`` messages name only a row, so their
tenant is read first (one primary-key query on a pooled connection), then checked the
same way. Measured in this process, against real PostgreSQL and Redis, rounds
interleaved so a busy machine weighs on all three alike:

- ``tenant_id option`` (baseline): the check alone;
- ``process_inbound``: a stored payload's tenant, then the check;
- ``send_email``: an invitation row's tenant, then the check;
- ``bare PK query``: the resolver's query alone, for scale.

Run (PostgreSQL and Redis on 127.0.0.1)::

    .venv/bin/python bench/tenant_gate.py --messages 2000

It creates and drops ``omnistream_bench_<random>`` and its Redis namespace. Exit status:
0 measured, 2 error. No target: the figures say what a resolver adds to a job that then
does a dozen queries of its own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per case")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    return parser.parse_args(argv)


def _rows() -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A tenant, one stored inbound payload and one invitation row of it."""
    from shared.db import session_scope
    from shared.identity.tenants import create_builtin_roles
    from shared.models import AgentInvitation, InboundEvent, Tenant, User

    with session_scope() as session:
        tenant = Tenant(name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}", status="active")
        session.add(tenant)
        session.flush()
        roles = create_builtin_roles(session, tenant)
        user = User(
            tenant_id=tenant.id, role=roles["agent"], email="a@bench.test", full_name="Bench"
        )
        event = InboundEvent(
            channel="whatsapp", provider_event_id="bench", tenant_id=tenant.id, payload={}
        )
        session.add_all([user, event])
        session.flush()
        invitation = AgentInvitation(tenant_id=tenant.id, user_id=user.id, email=user.email)
        session.add(invitation)
        session.flush()
        return tenant.id, event.id, invitation.id


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    with common.Bench("tenant_gate", env):
        import dramatiq
        from sqlalchemy import select

        from shared.db import session_scope
        from shared.identity import invitations
        from shared.models import InboundEvent
        from workers import queues
        from workers.actors.channels_inbound import process_inbound
        from workers.actors.platform_email import send_email
        from workers.broker import broker
        from workers.tenant_gate import TenantGate

        tenant_id, event_id, invitation_id = _rows()
        gate = TenantGate()

        def message(actor, args, **options):
            return dramatiq.Message(
                queue_name=queues.EVENTS,
                actor_name=actor,
                args=args,
                kwargs={},
                options=options,
            )

        def bare_query():
            with session_scope() as session:
                session.scalar(select(InboundEvent.tenant_id).where(InboundEvent.id == event_id))

        messages = {
            "tenant_id option": message(
                "dispatch_event", (str(uuid.uuid4()),), tenant_id=str(tenant_id)
            ),
            "process_inbound": message(process_inbound.actor_name, (str(event_id),)),
            "send_email": message(
                send_email.actor_name, (invitations.EMAIL_KIND, str(invitation_id))
            ),
        }

        def gated(m):
            return lambda: gate.before_process_message(broker, m)

        cases = {name: gated(m) for name, m in messages.items()} | {"bare PK query": bare_query}
        for call in cases.values():  # warm caches and the connection pool
            for _ in range(50):
                call()
        per_call: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, call in cases.items():
                started = time.perf_counter()
                for _ in range(args.messages):
                    call()
                per_call[name].append((time.perf_counter() - started) / args.messages * 1e6)
        base = statistics.median(per_call["tenant_id option"])
        rows = [
            [
                name,
                common.fmt(statistics.median(v)),
                common.fmt(min(v)),
                f"{statistics.median(v) / base:.1f}x",
            ]
            for name, v in per_call.items()
        ]
        common.print_table(
            f"Suspension gate per message ({args.messages} x {args.rounds} rounds)",
            ["case", "median µs", "best µs", "vs option"],
            rows,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
