"""``python -m workers.top``: the operators' console in a terminal, refreshed in place.

The same figures as ``/ops`` and ``/api/ops/overview`` (:func:`shared.ops.console.snapshot`),
platform-wide, drawn with plain ANSI escapes (no curses: it works over any ssh session
and in a CI log). ``--once`` prints one frame without escapes and exits: 0, or 2 when
Redis or PostgreSQL cannot be read.

Example::

    python -m workers.top                 # refresh every 2 s until Ctrl-C
    python -m workers.top --once --minutes 15
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from shared import logs
from shared.db import session_scope
from shared.errors import DomainError
from shared.ops import console
from workers.queues import ALL as QUEUES

#: What "cannot read the figures now" raises: Redis (a 503 DomainError), PostgreSQL, the OS.
UNAVAILABLE = (DomainError, SQLAlchemyError, OSError)

#: Clear the screen and go home; hide and show the cursor.
CLEAR, HIDE, SHOW = "\x1b[H\x1b[2J", "\x1b[?25l", "\x1b[?25h"


class Style:
    """ANSI styles, or nothing when colours are off (``--once``, a pipe, ``NO_COLOR``)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        return self(text, "1")

    def red(self, text: str) -> str:
        return self(text, "31")

    def green(self, text: str) -> str:
        return self(text, "32")

    def yellow(self, text: str) -> str:
        return self(text, "33")

    def dim(self, text: str) -> str:
        return self(text, "2")


def _n(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> list[str]:
    """Left-aligned first column, right-aligned numbers, cut to the terminal's width."""
    if not rows:
        return []
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = []
    for row in (headers, *rows):
        cells = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells)[:width])
    return lines


def render(view: dict[str, Any], *, style: Style, width: int = 120, rows: int = 10) -> str:
    """One frame of text for ``view`` (a console snapshot)."""
    s = view["summary"]
    sched = view["scheduler"]
    out = [
        style.bold("OmniStream workers")
        + style.dim(f"  {view['generated_at']}  window {view['window']['minutes']} min"),
        (
            f"processed {style.green(_n(s['processed']))}  "
            f"failed {style.red(_n(s['failed'])) if s['failed'] else '0'}  "
            f"busy {_n(s['busy'])}/{_n(s['threads'])} threads in {_n(s['processes'])} processes  "
            f"ready {_n(s['ready'])}  delayed {_n(s['delayed'])}  "
            f"dead letters {style.red(_n(s['dead_letters'])) if s['dead_letters'] else '0'}"
        ),
        (
            f"outbox pending {_n(s['outbox_pending'])} "
            f"(oldest {_n(s['outbox_oldest_pending_age_seconds'])} s)  "
            f"scheduler {style.green('ok') if sched['healthy'] else style.red('DOWN')} "
            f"heartbeat {_n(sched['heartbeat_age_seconds'], 2)} s"
            + (f" leader {sched['leader']['instance_id']}" if sched.get("leader") else "")
        ),
        "",
    ]
    queue_rows = [
        [
            q["queue"] + (" (paused)" if q["paused"] else ""),
            _n(q["ready"]),
            _n(q["in_progress"]),
            _n(q["delayed"]),
            _n(q["dead"]),
            _n(q["latency_seconds"]),
        ]
        for q in view["queues"]
    ]
    out += [style.bold("QUEUES")]
    out += _table(["queue", "ready", "running", "delayed", "dead", "latency s"], queue_rows, width)
    if view["broker_error"]:
        out.append(style.red(view["broker_error"]))
    busy_rows = [
        [
            f"{item['actor']}",
            item["queue"],
            (item["process"] or "")[-24:],
            item["thread"],
            _n(item["running_seconds"]),
        ]
        for item in view["busy"][:rows]
    ]
    out += ["", style.bold(f"BUSY ({len(view['busy'])})")]
    out += _table(["actor", "queue", "process", "thread", "running s"], busy_rows, width) or [
        style.dim("nothing running")
    ]
    actors = sorted(view["actors"], key=lambda a: (-a["processed"], a["actor"]))[:rows]
    actor_rows = [
        [
            a["actor"],
            _n(a["processed"]),
            _n(a["failed"]),
            _n(a["dead_lettered"]),
            _n(a["p50_ms"]),
            _n(a["p95_ms"]),
            _n(a["p99_ms"]),
        ]
        for a in actors
    ]
    out += ["", style.bold("ACTORS")]
    out += _table(
        ["actor", "processed", "failed", "dead", "p50 ms", "p95 ms", "p99 ms"], actor_rows, width
    ) or [style.dim("nothing ran in this window")]
    jobs = sched.get("jobs", [])
    job_rows = []
    for job in jobs:
        run = job["last_run"] or {}
        outcome = run.get("outcome") or "never"
        colour = {"ok": style.green, "failed": style.red, "skipped": style.yellow}.get(
            outcome, style.dim
        )
        job_rows.append(
            [job["job"], (run.get("finished_at") or "")[11:19], outcome, _n(run.get("duration_ms"))]
        )
        job_rows[-1][2] = colour(outcome) if style.enabled else outcome
    if job_rows:
        out += ["", style.bold("SCHEDULER JOBS")]
        out += _table(["job", "last run", "outcome", "ms"], job_rows, width)
    return "\n".join(out) + "\n"


def frame(minutes: int) -> dict[str, Any]:
    with session_scope() as session:
        return console.snapshot(session, QUEUES, tenant_id=None, minutes=minutes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workers.top", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between frames")
    parser.add_argument("--minutes", type=int, default=15, help="window of the counts (1..1440)")
    parser.add_argument("--rows", type=int, default=10, help="busy threads and actors shown")
    args = parser.parse_args(argv)
    if not 1 <= args.minutes <= 24 * 60:
        parser.error("--minutes must be within 1..1440")
    logs.configure()
    colour = not args.once and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    style = Style(colour)
    if args.once:
        try:
            sys.stdout.write(render(frame(args.minutes), style=style, rows=args.rows))
        except UNAVAILABLE as exc:
            print(f"workers.top: {getattr(exc, 'message', exc)}", file=sys.stderr)
            return 2
        return 0
    sys.stdout.write(HIDE)
    try:
        while True:
            size = shutil.get_terminal_size()
            try:
                text = render(frame(args.minutes), style=style, width=size.columns, rows=args.rows)
            except UNAVAILABLE as exc:  # keep watching through an outage
                text = style.red(f"unavailable: {getattr(exc, 'message', exc)}") + "\n"
            sys.stdout.write(CLEAR + text)
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        sys.stdout.write(SHOW)
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
