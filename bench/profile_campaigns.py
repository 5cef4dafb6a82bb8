"""Profile a campaign's batches in-process: CPU per recipient of ``run_campaign`` and of the
dispatch of the events it wrote.

A diagnosis tool for ``bench/campaigns.py`` (not part of ``run_all.py``), whose wall rates
on a loaded machine say little: no broker, no worker process, one thread. ``--recipients``
contacts of one WhatsApp template campaign (as ``bench/campaigns.py`` sets it up) are
turned into messages by :func:`shared.campaigns.runner.run_batch`, ``--batch`` at a time,
then the outbox events those batches committed are dispatched to every registered target
(webhooks, automation, analytics, realtime, AI replies, campaign replies, outbound sends)
in chunks of 100, as ``dispatch_events`` takes them. Each stage is timed with
``time.process_time`` (this process's CPU; the database's is not in it) and wall time.

Run::

    .venv/bin/python bench/profile_campaigns.py --recipients 5000 --batch 500 --top 25
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common


def _print(profiler: cProfile.Profile | None, title: str, top: int) -> None:
    if profiler is None or top <= 0:
        print(title, flush=True)
        return
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    print(f"\n=== {title} ===\n{out.getvalue()}", flush=True)


def _register_targets() -> None:
    """The worker's dispatch targets, their after-commit enqueuers left uninstalled."""
    from shared import dispatch
    from shared.ai import replies
    from shared.analytics import intake
    from shared.automation import queue as automation_queue
    from shared.campaigns import tracking
    from shared.channels import outbound_queue
    from shared.realtime import feed
    from shared.webhooks import fanout

    for module in (automation_queue, tracking, fanout, replies):
        dispatch.register_target(module.TARGET_NAME, module.target)
    for module in (outbound_queue, feed, intake):
        dispatch.register_target(module.TARGET_NAME, module.target, batch=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--top", type=int, default=0, help="cProfile lines per stage (0: none)")
    args = parser.parse_args(argv)
    env = common.configure_environment()
    # Nothing is sent here: the campaign must not wait for its queued messages.
    os.environ["CAMPAIGN_MAX_IN_FLIGHT"] = str(10 * args.recipients)
    from bench.campaigns import add_contacts, setup, start_campaign

    with common.Bench("profile_campaigns", env):
        from shared import dispatch, events
        from shared.campaigns import runner
        from shared.db import session_scope

        _register_targets()
        emitted: list[uuid.UUID] = []
        events.set_publisher(lambda pending: emitted.extend(e.id for e in pending))
        tenant_id, account_id, _ = setup(env, args.batch)
        add_contacts(tenant_id, args.recipients, "spring")
        campaign_id = start_campaign(tenant_id, account_id, "spring")
        emitted.clear()

        profiler = cProfile.Profile(time.process_time) if args.top else None
        cpu, wall, step, outcome = time.process_time(), time.perf_counter(), 0, None
        if profiler:
            profiler.enable()
        while outcome not in (runner.Outcome.COMPLETED, runner.Outcome.FAILED):
            with session_scope() as session:
                outcome = runner.run_batch(session, campaign_id, step)
            step += 1
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        per = 1000 / args.recipients
        _print(
            profiler,
            f"run_batch: {cpu * per:.2f} ms CPU, {wall * per:.2f} ms wall per recipient"
            f" ({step} batches, {len(emitted)} events)",
            args.top,
        )

        profiler = cProfile.Profile(time.process_time) if args.top else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        ids = list(emitted)
        for first in range(0, len(ids), 100):
            with session_scope() as session:
                dispatch.dispatch_many(session, ids[first : first + 100])
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        _print(
            profiler,
            f"dispatch: {cpu * per:.2f} ms CPU, {wall * per:.2f} ms wall per recipient"
            f" ({len(ids)} events)",
            args.top,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
