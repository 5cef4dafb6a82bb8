"""Profile a campaign's batches in-process: CPU per recipient of ``run_campaign``, of the
dispatch of the events it wrote, of the sends and of the dispatch of their status events.

A diagnosis tool for ``bench/campaigns.py`` (not part of ``run_all.py``), whose wall rates
on a loaded machine say little: no broker, no worker process, one thread. ``--recipients``
contacts of one WhatsApp template campaign (as ``bench/campaigns.py`` sets it up) are
turned into messages by :func:`shared.campaigns.runner.run_batch`, ``--batch`` at a time,
then the outbox events those batches committed are dispatched to every registered target
(webhooks, automation, analytics, realtime, AI replies, campaign replies, outbound sends)
in chunks of 100, as ``dispatch_events`` takes them; then the queued messages are sent
to a fake Graph API (:func:`shared.channels.outbound_engine.send_batch`, 50 at a time, as
``send_outbound_batch``) and the ``message.status_updated`` events those records wrote are
dispatched the same way. Each stage is timed with ``time.process_time`` (this process's
CPU; the database's is not in it, the fake Graph API's of the send stage is) and wall
time; ``--top`` profiles the main thread (not the send threads).

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


def _print(profiler: cProfile.Profile | None, title: str, top: int, sort: str) -> None:
    if profiler is None or top <= 0:
        print(title, flush=True)
        return
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(top)
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


def _stage(title: str, work, args: argparse.Namespace, meter: common.CpuMeter) -> None:
    """Run ``work`` (which returns a note), timed and maybe profiled; print per recipient."""
    clock = time.perf_counter if args.wall else time.process_time
    profiler = cProfile.Profile(clock) if args.top else None
    before = meter.sample()
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    note = work()
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    postgres = common.CpuMeter.usage(before, meter.sample()).postgres_database
    per = 1000 / args.recipients
    _print(
        profiler,
        f"{title}: {cpu * per:.2f} ms CPU (+ PostgreSQL {postgres * per:.2f}),"
        f" {wall * per:.2f} ms wall per recipient ({note})",
        args.top,
        args.sort,
    )


def _dispatch(emitted: list[uuid.UUID]) -> str:
    """Dispatch (and forget) the events emitted so far, 100 a transaction."""
    from shared import dispatch
    from shared.db import session_scope

    ids = list(emitted)
    emitted.clear()
    for first in range(0, len(ids), 100):
        with session_scope() as session:
            dispatch.dispatch_many(session, ids[first : first + 100])
    return f"{len(ids)} events"


def _queued_messages(campaign_id: uuid.UUID) -> list[uuid.UUID]:
    from sqlalchemy import select

    from shared.db import session_scope
    from shared.models import CampaignRecipient

    with session_scope() as session:
        return list(
            session.scalars(
                select(CampaignRecipient.message_id)
                .where(
                    CampaignRecipient.campaign_id == campaign_id,
                    CampaignRecipient.message_id.is_not(None),
                )
                .order_by(CampaignRecipient.id)
            )
        )


def _send(message_ids: list[uuid.UUID]) -> str:
    """``send_outbound_batch``'s work for every message, 50 at a time (a fake Graph API)."""
    from shared.channels import outbound_engine
    from shared.channels.send_errors import Outcome

    sent = 0
    for chunk in outbound_engine.chunks(message_ids):
        results = outbound_engine.send_batch(chunk)
        sent += sum(1 for r in results.values() if r.outcome == Outcome.SENT)
    return f"{sent} of {len(message_ids)} sent"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--top", type=int, default=0, help="cProfile lines per stage (0: none)")
    parser.add_argument("--sort", default="cumulative", help="pstats order (e.g. tottime)")
    parser.add_argument(
        "--wall", action="store_true", help="profile wall time (waits included), not CPU"
    )
    args = parser.parse_args(argv)
    env = common.configure_environment()
    from tests.peers.graph import start_fake_graph

    graph, server = start_fake_graph()
    os.environ.update(META_GRAPH_BASE_URL=graph.base_url, META_GRAPH_VERSION="v21.0")
    # Nothing is sent here: the campaign must not wait for its queued messages.
    os.environ["CAMPAIGN_MAX_IN_FLIGHT"] = str(10 * args.recipients)
    from bench.campaigns import add_contacts, setup, start_campaign

    with common.Bench("profile_campaigns", env):
        from shared import events
        from shared.campaigns import runner
        from shared.db import session_scope

        _register_targets()
        emitted: list[uuid.UUID] = []
        events.set_publisher(lambda pending: emitted.extend(e.id for e in pending))
        tenant_id, account_id, _ = setup(env, args.batch)
        add_contacts(tenant_id, args.recipients, "spring")
        campaign_id = start_campaign(tenant_id, account_id, "spring")
        emitted.clear()

        step, outcome = 0, None

        def batches() -> str:
            nonlocal step, outcome
            while outcome not in (runner.Outcome.COMPLETED, runner.Outcome.FAILED):
                with session_scope() as session:
                    outcome = runner.run_batch(session, campaign_id, step)
                step += 1
            return f"{step} batches, {len(emitted)} events"

        # PostgreSQL: the CPU of this database's backends (10 ms ticks).
        meter = common.CpuMeter({}, env.database_url)
        _stage("run_batch", batches, args, meter)
        _stage("dispatch (created)", lambda: _dispatch(emitted), args, meter)
        queued = _queued_messages(campaign_id)
        _stage("send", lambda: _send(queued), args, meter)
        _stage("dispatch (status)", lambda: _dispatch(emitted), args, meter)
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
