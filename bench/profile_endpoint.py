"""Profile one API endpoint in-process (falcon.testing + cProfile): where a request's CPU goes.

A diagnosis tool for ``bench/http_api.py`` (not part of ``run_all.py``): no gunicorn,
no sockets, one thread, so the figures are the application's own cost per request.

``agents``
    ``GET /api/agents?limit=100`` as the tenant admin (100 agents), plus a stage
    breakdown timed outside Falcon: JWT decode, the principal query, the page query,
    pydantic validation and JSON dump of the page.
``health``
    ``GET /api/health`` (a fresh scheduler heartbeat row is inserted first).

Run::

    .venv/bin/python bench/profile_endpoint.py agents            # 300 requests profiled
    .venv/bin/python bench/profile_endpoint.py health -n 1000 --top 40

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
    """Wall and CPU ms per call: CPU is what counts when the machine is shared."""
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(n):
        func()
    cpu = (time.process_time() - cpu_started) * 1000 / n
    return label, (time.perf_counter() - started) * 1000 / n, cpu


def agents_stages(token: str, n: int) -> list[tuple[str, float]]:
    """Time the parts of GET /api/agents one by one (each in its own session)."""
    from pydantic import TypeAdapter

    from api.schemas.common import Page
    from shared import agents, auth
    from shared.db import get_sessionmaker
    from shared.schemas.identity import AgentView
    from shared.security import decode_access_token

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
    parser.add_argument("target", choices=("agents", "health"))
    parser.add_argument("-n", "--requests", type=int, default=300)
    parser.add_argument("--top", type=int, default=30, help="rows of each profile table")
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
        else:
            path, headers = "/api/health", {}
        check = client.simulate_get(path, headers=headers)
        assert check.status_code == 200, check.text

        def request() -> None:
            client.simulate_get(path, headers=headers)

        for _ in range(min(100, args.requests)):
            request()
        rows = [timed(f"whole request GET {path} (falcon.testing)", request, args.requests)]
        if args.target == "agents":
            rows += agents_stages(token, args.requests)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.requests):
            request()
        profiler.disable()

    common.print_table(
        f"Time per call, in-process, single thread ({args.requests} calls each)",
        ["stage", "wall ms per call", "CPU ms per call"],
        [(label, f"{ms:.3f}", f"{cpu:.3f}") for label, ms, cpu in rows],
    )
    for sort in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(sort)
        stats.print_stats(args.top)
        print(f"\ncProfile of {args.requests} x GET {path}, sorted by {sort}")
        print(out.getvalue().split("\n", 4)[-1] if sort == "tottime" else out.getvalue())
    return 0


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
