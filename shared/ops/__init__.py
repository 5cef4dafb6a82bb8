"""The operators' console: the figures behind ``/ops``, ``/api/ops/...`` and ``workers.top``.

Every figure is computed here, once, so the page, the JSON API, the Prometheus scrape
and the terminal view cannot disagree. Workers publish what only they know (which
thread runs which message, the delayed messages they hold, which queues they have
paused) to Redis under ``{namespace}:ops:`` (see :mod:`shared.ops.keys`); the rest is
read from the broker's own keys, the worker-metric counters and PostgreSQL.
"""
