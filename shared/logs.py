"""One logging set-up for every process: timestamp, level, logger, request id, message."""

from __future__ import annotations

import contextvars
import logging
import os

#: The current request id (the API sets it per request; other processes leave "-").
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamp every record with the request id of the context that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure(level: str | None = None) -> None:
    """Log to stderr at ``LOG_LEVEL`` (default INFO); safe to call more than once."""
    root = logging.getLogger()
    if any(isinstance(f, RequestIdFilter) for h in root.handlers for f in h.filters):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel((level or os.environ.get("LOG_LEVEL", "INFO")).upper())
