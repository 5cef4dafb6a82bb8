"""Scale-out, proven by killing a machine: the API, two worker hosts and two schedulers in
network namespaces of their own (bench/cluster.py), under steady load of real events.

What it does, per broker (``--brokers redis,rabbitmq``):

1. kill: API in ``api``, ``python -m workers`` plus a scheduler in each of ``host1``
   (leader) and ``host2`` (standby). Events (bench/scale_out_load.py: an inbound message
   that causes two webhooks, an automation rule's reply and tag, and the reply's send)
   go in at ``--rate`` per second. After ``--warmup`` + ``--steady`` s, at a moment an
   event is in flight, every process of ``host1`` is SIGKILLed at once
   (``ip netns pids | kill -9``); ``--down`` s later the host is started again; the
   load goes on ``--after`` s, then the run drains and checks that nothing was lost
   and nothing applied twice (receiver records against the database). Figures:
   **recovery** = from the kill until every event accepted before it is fully done;
   baseline = the accept-to-done p50/p99 of the steady window before the kill, in the
   same run.
2. throughput (``--processes 1,2,4``, on the first broker): one host with P worker
   processes (warmed by ``--warmup-events`` events first, run and not counted), paused
   (SIGSTOP) while ``--events`` events are posted, then resumed (the scheduler runs in
   the ``api`` namespace, never paused);
   events/s, webhook deliveries/s and automation events/s until all are done, and the
   CPU seconds of the worker processes (``/proc``, their whole tree) and of this
   database's PostgreSQL backends per 1,000 events. The ratio column compares with
   P = 1 in the same run. The machine has 2 cores, so past 2 processes more workers can
   only add concurrency for I/O waits, not CPU.

The relay standing in for the network (bench/tcp_forward.py) costs CPU of its own,
printed apart. Needs root and ``ip netns``. Everything it creates (namespaces, veths,
relay, processes, database ``omnistream_hosts_<id>``, Redis namespace, RabbitMQ vhost)
is removed on exit, also on failure or Ctrl-C.

Run::

    .venv/bin/python bench/scale_out.py                        # both brokers + throughput
    .venv/bin/python bench/scale_out.py --brokers redis --skip-throughput
    .venv/bin/python bench/scale_out.py --skip-kill --processes 1,2,4 --events 600

Exit status: 0 verified, 1 something lost or applied twice, 2 error.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common
from bench import scale_out_load as load
from bench.cluster import Cluster, ClusterConfig

#: Settings of every cluster process in the kill runs (defaults otherwise).
KILL_SETTINGS = {
    # NOTE: a killed worker's claimed sends wait for the claim to run out (default 300 s,
    # for Graph's slow calls); 30 s keeps recovery measurable. Every send's bound must stay
    # under half the claim (the settings are refused otherwise): the api channel's
    # callbacks (the sends here) get 7 s, and so do the unused Graph and SMTP calls.
    "OUTBOUND_CLAIM_SECONDS": "30",
    "WEBHOOK_TIMEOUT_SECONDS": "7",
    "GRAPH_TIMEOUT_SECONDS": "7",
    "SMTP_TIMEOUT_SECONDS": "3",
}


@dataclass
class KillResult:
    broker: str
    rate: float
    #: Events/s the API actually took before the kill (below ``rate`` when it lags).
    achieved_rate: float
    accepted_before_kill: int
    unfinished_at_kill: int
    killed_processes: int
    recovery_s: float | None
    baseline_p50_s: float
    baseline_p99_s: float
    restart_s: float
    #: Seconds after the kill at which each stage of the unfinished events was last done.
    stages_s: dict[str, float | None]
    events: int
    webhook_posts: int
    webhook_repeats: int
    send_posts: int
    send_repeats: int
    replies_in_db: int
    problems: list[str]
    #: What the run created (gone once it returns): namespaces and database name.
    namespaces: list[str]
    database: str


def kill_scenario(
    broker: str,
    *,
    rate: float,
    warmup: float,
    steady: float,
    down: float,
    after: float,
    processes: int = 2,
    recovery_timeout: float = 180.0,
    drain_timeout: float = 180.0,
    keep_logs: bool = False,
    settings: dict[str, str] | None = None,
    log=print,
) -> KillResult:
    """Run the kill-and-verify scenario once on ``broker``; the result says what was seen."""
    config = ClusterConfig(
        broker=broker,
        worker_processes=processes,
        settings=KILL_SETTINGS | (settings or {}),
        keep_logs=keep_logs,
    )
    with Cluster(config) as cluster:
        # NOTE: everything boots at once (importing the app costs seconds of CPU each);
        # host2's scheduler starts once host1's leads, so the kill takes the leader down
        # and the standby must take over.
        web = cluster.start_api(wait=False)
        workers = [
            cluster.start_host(role, scheduler=role == "host1", wait=False)
            for role in ("host1", "host2")
        ]
        cluster.wait_api(web)
        for worker in workers:
            cluster.wait_worker(worker)
        load.wait_scheduler_leader(cluster)
        cluster.start_scheduler("host2")
        tenant = load.setup_tenant(cluster)
        sender = load.Sender(cluster, tenant)
        log(f"[{broker}] load: {rate:g} events/s; kill host1 at +{warmup + steady:g} s")
        load_started = time.monotonic()
        sender.start(rate)
        try:
            time.sleep(warmup)
            window_start = time.monotonic()
            time.sleep(steady)
            # NOTE: kill while events are in flight (up to 5 s more), else it proves little.
            busy_until = time.monotonic() + 5.0
            while time.monotonic() < busy_until and not _in_flight(cluster, sender):
                time.sleep(0.02)
            killed_at = time.monotonic()
            killed = cluster.kill_host("host1")
            before = [a for a in sender.snapshot().values() if a.at < killed_at]
            state = load.progress(cluster)
            unfinished = [a for a in before if (state.done_at(a) or killed_at + 1) > killed_at]
            steady_events = [a for a in before if window_start <= a.at < killed_at - 2.0]
            baseline = load.latencies(cluster, steady_events)
            log(
                f"[{broker}] killed host1 ({len(killed)} processes); {len(before)} events"
                f" accepted before, {len(unfinished)} of them not done yet"
            )
            restarted: dict[str, object] = {"worker": None, "at": None}

            def restart_when_due() -> None:
                if restarted["worker"] is None and time.monotonic() >= killed_at + down:
                    restarted["began"] = time.monotonic()
                    restarted["worker"] = cluster.start_host("host1", wait=False)
                    log(f"[{broker}] host1 started again")

            done_at, pending = load.wait_done(
                cluster, before, recovery_timeout, tick=restart_when_due
            )
            recovery = None if done_at is None else max(done_at - killed_at, 0.0)
            stages = {
                name: None if at is None else round(max(at - killed_at, 0.0), 2)
                for name, at in load.stage_times(load.progress(cluster), unfinished).items()
            }
            log(
                f"[{broker}] recovery: "
                + (f"{recovery:.2f} s" if recovery is not None else f"{len(pending)} not done")
                + f" (last done after the kill, per stage: {stages})"
            )
            while restarted["worker"] is None:
                restart_when_due()
                time.sleep(0.1)
            cluster.wait_worker(restarted["worker"])
            restarted["at"] = time.monotonic() - restarted["began"]
            log(f"[{broker}] host1 ready again ({restarted['at']:.1f} s after its start)")
            time.sleep(after)
        finally:
            sender.stop()
        accepted = sender.snapshot()
        _done, pending = load.wait_done(cluster, accepted.values(), drain_timeout)
        load.wait_settled(cluster, tenant, 60.0)
        verdict = load.verify(cluster, tenant, accepted)
        if pending:
            verdict.problems.insert(
                0, f"{len(pending)} events not done {drain_timeout:.0f} s after the load"
            )
        if not verdict.ok:
            log(cluster.log_tail())
            log(f"[{broker}] PROBLEMS: {verdict.problems}")
        return KillResult(
            broker=broker,
            rate=rate,
            achieved_rate=len(before) / (killed_at - load_started),
            accepted_before_kill=len(before),
            unfinished_at_kill=len(unfinished),
            killed_processes=len(killed),
            recovery_s=recovery,
            baseline_p50_s=common.percentile(baseline, 50),
            baseline_p99_s=common.percentile(baseline, 99),
            restart_s=restarted["at"] or 0.0,
            stages_s=stages,
            events=verdict.events,
            webhook_posts=verdict.webhook_posts,
            webhook_repeats=verdict.webhook_repeats,
            send_posts=verdict.send_posts,
            send_repeats=verdict.send_repeats,
            replies_in_db=verdict.replies_in_db,
            problems=verdict.problems,
            namespaces=[h.namespace for h in cluster.net.hosts.values()],
            database=cluster.env.database_url.rsplit("/", 1)[1],
        )


def _in_flight(cluster: Cluster, sender: load.Sender) -> bool:
    state = load.progress(cluster)
    return any(state.done_at(a) is None for a in sender.snapshot().values())


@dataclass
class ThroughputResult:
    broker: str
    processes: int
    events: int
    seconds: float
    #: Seconds until 90 % of the events were done: the rate without the tail that
    #: waits for a sweeper (a parked webhook delivery, a send's retry).
    seconds_90: float
    events_per_s: float
    webhooks_per_s: float
    automation_per_s: float
    worker_cpu_s: float
    postgres_cpu_s: float
    relay_cpu_s: float
    machine_busy_pct: float
    problems: list[str]


def throughput_scenario(
    broker: str,
    processes: list[int],
    events: int,
    threads: int,
    drain_timeout: float,
    keep_logs: bool = False,
    warmup_events: int = 0,
    log=print,
) -> list[ThroughputResult]:
    """Per P in ``processes``: a paused host with P worker processes, a backlog, resumed."""
    config = ClusterConfig(
        broker=broker, hosts=("host1",), worker_threads=threads, keep_logs=keep_logs
    )
    results = []
    with Cluster(config) as cluster:
        cluster.start_api()
        # NOTE: the scheduler's sweepers are part of the pipeline (a parked webhook
        # delivery waits for one); it runs beside the API, never paused.
        cluster.start_scheduler("api")
        load.wait_scheduler_leader(cluster)
        tenant = load.setup_tenant(cluster)
        sender = load.Sender(cluster, tenant, threads=8)
        relay = cluster.bench.children[0]
        for count in processes:
            worker = cluster.start_host("host1", scheduler=False, processes=count)
            if warmup_events:
                # NOTE: each new process pays first-use costs (lazy imports, caches,
                # prepared statements) once; the figures are those of warm processes.
                warm = sender.burst(warmup_events)
                warmed = sender.snapshot()
                load.wait_done(cluster, [warmed[s] for s in warm], drain_timeout)
            pids = cluster.host_pids("host1")
            meter = common.CpuMeter(
                {"workers": worker.pid, "relay": relay.pid},
                database_url=cluster.env.database_url,
            )
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            try:
                seqs = sender.burst(events)
                start = meter.sample()
            finally:
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
            accepted = sender.snapshot()
            batch = [accepted[s] for s in seqs]
            done_at, pending = load.wait_done(cluster, batch, drain_timeout)
            end = meter.sample()
            usage = common.CpuMeter.usage(start, end)
            seconds = (done_at or time.monotonic()) - start.at
            state = load.progress(cluster)
            finished = sorted(t for t in (state.done_at(a) for a in batch) if t is not None)
            tenth = max(int(0.9 * len(batch)), 1)
            seconds_90 = finished[tenth - 1] - start.at if len(finished) >= tenth else seconds
            problems = [f"{len(pending)} events not done"] if pending else []
            cluster.stop_host("host1")
            result = ThroughputResult(
                broker=broker,
                processes=count,
                events=len(batch),
                seconds=seconds,
                seconds_90=seconds_90,
                events_per_s=len(batch) / seconds,
                webhooks_per_s=2 * len(batch) / seconds,
                automation_per_s=2 * len(batch) / seconds,
                worker_cpu_s=usage.trees["workers"],
                postgres_cpu_s=usage.postgres_database,
                relay_cpu_s=usage.trees["relay"],
                machine_busy_pct=usage.machine_busy_pct,
                problems=problems,
            )
            log(
                f"[{broker}] {count} worker processes: {result.events_per_s:.1f} events/s,"
                f" worker CPU {1000 * result.worker_cpu_s / len(batch):.1f} s per 1,000 events"
            )
            results.append(result)
        load.wait_settled(cluster, tenant, 60.0)
        verdict = load.verify(cluster, tenant, sender.snapshot())
        if not verdict.ok:
            results[-1].problems.extend(verdict.problems)
    return results


# --- figures -----------------------------------------------------------------------------------


def _s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else common.fmt(value, digits)


def print_kill(results: list[KillResult]) -> None:
    common.print_table(
        "Host kill under load (host1: its worker processes and the leading scheduler, SIGKILLed"
        " at once)",
        [
            "broker",
            "events/s (of asked)",
            "in flight at kill",
            "recovery s",
            "steady p50 s",
            "steady p99 s",
            "recovery / p99",
            "last hook / send / reply hook s",
            "restart s",
        ],
        [
            (
                r.broker,
                f"{common.fmt(r.achieved_rate, 1)} of {common.fmt(r.rate, 0)}",
                f"{r.unfinished_at_kill} of {r.accepted_before_kill}",
                _s(r.recovery_s),
                _s(r.baseline_p50_s),
                _s(r.baseline_p99_s),
                _s(
                    r.recovery_s / r.baseline_p99_s if r.recovery_s and r.baseline_p99_s else None,
                    1,
                ),
                " / ".join(_s(v, 1) for v in r.stages_s.values()),
                _s(r.restart_s, 1),
            )
            for r in results
        ],
    )
    common.print_table(
        "Nothing lost, nothing applied twice",
        [
            "broker",
            "events",
            "replies (DB)",
            "sends",
            "send repeats",
            "webhooks",
            "webhook repeats",
            "verdict",
        ],
        [
            (
                r.broker,
                r.events,
                r.replies_in_db,
                r.send_posts,
                r.send_repeats,
                r.webhook_posts,
                r.webhook_repeats,
                "OK" if not r.problems else "; ".join(r.problems),
            )
            for r in results
        ],
    )


def print_throughput(results: list[ThroughputResult]) -> None:
    base = results[0] if results else None
    common.print_table(
        "Throughput from a backlog (1 event = 2 webhook deliveries + 2 automation events + 1 send)",
        [
            "broker",
            "processes",
            "events",
            "events/s",
            "vs 1",
            "events/s to 90 %",
            "webhooks/s",
            "automation ev/s",
            "worker CPU s/1k ev",
            "PG CPU s/1k ev",
            "relay CPU s/1k ev",
            "machine busy %",
        ],
        [
            (
                r.broker,
                r.processes,
                r.events,
                common.fmt(r.events_per_s),
                common.fmt(r.events_per_s / base.events_per_s, 2),
                common.fmt(0.9 * r.events / r.seconds_90),
                common.fmt(r.webhooks_per_s),
                common.fmt(r.automation_per_s),
                common.fmt(1000 * r.worker_cpu_s / r.events, 1),
                common.fmt(1000 * r.postgres_cpu_s / r.events, 1),
                common.fmt(1000 * r.relay_cpu_s / r.events, 1),
                common.fmt(r.machine_busy_pct, 0),
            )
            for r in results
        ],
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default="redis,rabbitmq")
    parser.add_argument("--rate", type=float, default=15.0, help="events/s during the kill run")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--steady", type=float, default=15.0)
    parser.add_argument("--down", type=float, default=15.0, help="s between kill and restart")
    parser.add_argument("--after", type=float, default=10.0, help="s of load after the restart")
    parser.add_argument("--kill-processes", type=int, default=2, help="worker processes per host")
    parser.add_argument("--processes", default="1,2,4", help="throughput: worker processes")
    parser.add_argument("--events", type=int, default=400, help="throughput: events per round")
    parser.add_argument("--threads", type=int, default=8, help="throughput: threads per process")
    parser.add_argument(
        "--warmup-events",
        type=int,
        default=0,
        help="throughput: events each round runs and drains before its measured backlog",
    )
    parser.add_argument("--skip-kill", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--json-out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    kills: list[KillResult] = []
    rounds: list[ThroughputResult] = []
    try:
        if not args.skip_kill:
            for broker in brokers:
                kills.append(
                    kill_scenario(
                        broker,
                        rate=args.rate,
                        warmup=args.warmup,
                        steady=args.steady,
                        down=args.down,
                        after=args.after,
                        processes=args.kill_processes,
                        keep_logs=args.keep_logs,
                    )
                )
        if not args.skip_throughput:
            rounds = throughput_scenario(
                brokers[0],
                [int(p) for p in args.processes.split(",")],
                args.events,
                args.threads,
                drain_timeout=300.0,
                keep_logs=args.keep_logs,
                warmup_events=args.warmup_events,
            )
    except common.BenchError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr)
        return common.EXIT_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted (cleaned up)", file=sys.stderr)
        return 130
    if kills:
        print_kill(kills)
    if rounds:
        print_throughput(rounds)
    print(
        f"\nmachine: {os.cpu_count()} cores, shared with other work while measured; load"
        f" average now {os.getloadavg()[0]:.1f}"
    )
    common.write_json(
        args.json_out,
        {"kill": [asdict(k) for k in kills], "throughput": [asdict(r) for r in rounds]},
    )
    failed = any(k.problems for k in kills) or any(r.problems for r in rounds)
    return common.EXIT_FAIL if failed else common.EXIT_PASS


if __name__ == "__main__":
    sys.exit(main())
