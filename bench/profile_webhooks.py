"""Profile the webhook hot path in-process (cProfile, one thread): where a delivery's CPU goes.

A diagnosis tool for ``bench/webhooks.py`` (not part of ``run_all.py``): no broker,
no worker process. ``--events`` events are committed for a tenant with 3 endpoints
on 3 local receivers, then dispatched (the fan-out) and delivered by the same
functions the actors call, each stage under its own profile.

Run::

    .venv/bin/python bench/profile_webhooks.py --events 300 --top 25
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common


def _print(profiler: cProfile.Profile, title: str, top: int) -> None:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    print(f"\n=== {title} ===\n{out.getvalue()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    env = common.configure_environment()
    import os

    os.environ.update(WEBHOOK_ALLOW_HTTP="true", WEBHOOK_SSRF_ALLOWLIST="127.0.0.1/32")
    from bench.webhooks import EVENT_TYPE, Receiver, emit_events

    receivers = [Receiver() for _ in range(3)]
    with common.Bench("profile_webhooks", env):
        from shared import dispatch
        from shared.context import Ctx
        from shared.db import session_scope
        from shared.models import Tenant
        from shared.webhooks import endpoints, fanout, queue
        from shared.webhooks.engine import deliver_batch
        from shared.webhooks.limiter import Limiter

        with session_scope() as session:
            tenant = Tenant(name="Webhook profile", slug=f"webhook-profile-{env.run_id}")
            session.add(tenant)
            session.flush()
            tenant_id = tenant.id
            for r in receivers:
                endpoints.create_endpoint(
                    session, Ctx.system(tenant_id), url=r.url(), event_types=[EVENT_TYPE]
                )
        dispatch.register_target(fanout.TARGET_NAME, fanout.target)
        batches: list[list] = []
        queue.set_enqueuer(lambda items: batches.append([i for i, _ in items]))
        event_ids = list(emit_events(tenant_id, args.events, 100))
        profiler = cProfile.Profile(time.process_time)
        started = time.process_time()
        profiler.enable()
        for event_id in event_ids:
            with session_scope() as session:
                dispatch.dispatch(session, uuid.UUID(event_id))
        profiler.disable()
        fan = time.process_time() - started
        _print(profiler, f"dispatch: {fan / len(event_ids) * 1000:.2f} ms CPU per event", args.top)
        count = sum(len(ids) for ids in batches)
        limiter = Limiter()
        profiler = cProfile.Profile(time.process_time)
        started = time.process_time()
        profiler.enable()
        for ids in batches:
            deliver_batch(ids, limiter=limiter, default_timeout=15.0)
        profiler.disable()
        took = time.process_time() - started
        _print(profiler, f"deliver: {took / count * 1000:.2f} ms CPU per delivery", args.top)
    for r in receivers:
        r.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
