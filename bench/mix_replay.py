"""One side of ``bench/inbox_mix.py --profile-ab``: replay mix slices in-process, on request.

Run by the bench, not by hand::

    python bench/mix_replay.py --code DIR --specs mix.jsonl

imports the application from ``DIR`` (another checkout: the code to compare with), builds
the WSGI environs of every request in ``specs`` once, warms up, prints ``ready``, then for
each ``START COUNT`` line on stdin replays those requests (cycling) and prints one JSON line:
the process CPU seconds spent per request kind. An empty line ends it.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--code", required=True, help="the checkout whose api.app to run")
    parser.add_argument("--specs", required=True)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, args.code)

    import falcon.testing

    import shared.epoch_cache
    from api.app import create_app

    # NOTE: as --profile does: a slow replay must not see entries expire a server would hit.
    shared.epoch_cache.TTL_SECONDS = 120.0
    app = create_app()
    with open(args.specs) as f:
        specs = [json.loads(line) for line in f if line.strip()]
    environs = []
    for spec in specs:
        body = json.dumps(spec["body"]).encode() if spec["body"] is not None else b""
        path, _, query = spec["target"].partition("?")
        headers = dict(spec["headers"], **({"Content-Type": "application/json"} if body else {}))
        environ = falcon.testing.create_environ(
            path=path, query_string=query, method=spec["method"], headers=headers
        )
        environs.append((spec["kind"], environ, body))

    def replay(index: int) -> tuple[str, float]:
        kind, environ, body = environs[index % len(environs)]
        environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        statuses: list[str] = []
        started = time.process_time()
        b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
        spent = time.process_time() - started
        if not statuses[0].startswith("2"):
            raise SystemExit(f"{kind} answered {statuses[0]}")
        return kind, spent

    for index in range(args.warmup):
        replay(index)
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        start, count = map(int, line.split())
        spent: dict[str, list[float]] = {}
        for index in range(start, start + count):
            kind, cpu = replay(index)
            spent.setdefault(kind, []).append(cpu)
        print(json.dumps(spent), flush=True)
    report_plans()
    return 0


def report_plans() -> None:
    """To stderr: the prepared statements of this thread's read connection that PostgreSQL
    planned for each execution (custom plans), a cost paid on every call."""
    from shared import db

    connection = db._held.connection
    if connection is None:
        return
    rows = connection.connection.driver_connection.execute(
        "SELECT generic_plans, custom_plans, regexp_replace(statement, '\\s+', ' ', 'g')"
        " FROM pg_prepared_statements ORDER BY custom_plans DESC"
    ).fetchall()
    for generic, custom, statement in rows:
        shown = statement if len(statement) < 240 else f"{statement[:100]} ... {statement[-140:]}"
        print(f"plans generic {generic} custom {custom}: {shown}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
