"""``python -m workers [dramatiq options]``: ``dramatiq workers.main`` logging like every process.

Dramatiq's CLI logs its own lines (boot, signals, a worker process that died) in
its own text format before any of our code runs. Configured here first, the
parent and the worker processes it forks all log in ``LOG_FORMAT`` (Dramatiq's
``logging.basicConfig`` then finds a handler and changes nothing). Options and
extra actor modules are Dramatiq's own, e.g.::

    python -m workers --processes 2 --threads 8 -Q webhooks
"""

from __future__ import annotations

import sys

from dramatiq import cli

from shared import logs


def main(argv: list[str] | None = None) -> int:
    logs.configure()
    from shared.preflight import enforce_connection_budget

    # NOTE: once, in the parent, before Dramatiq forks the worker processes.
    enforce_connection_budget("the worker")
    args = cli.make_argument_parser().parse_args(["workers.main", *(argv or sys.argv[1:])])
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
