"""One logging set-up for every process: plain text by default, JSON lines with ``LOG_FORMAT=json``.

Every record carries the request id and the tenant of the context that logged it
(``request_id_var``, ``tenant_id_var``): the API sets both per request, workers
set the tenant from a message's ``tenant_id`` option; elsewhere they are unknown
("-" in text, null in JSON).

``LOG_FORMAT=json`` writes one JSON object a line for log aggregators::

    {"time": "2026-12-04T05:40:00.123Z", "level": "ERROR", "logger": "api.errors",
     "process": 4242, "thread": "ThreadPoolExecutor-0_0", "request_id": "9f0c...",
     "tenant_id": "0b4e...", "message": "unhandled error on GET /api/x",
     "exception": "Traceback (most recent call last): ..."}

NOTE: a Formatter of our own rather than python-json-logger: the record is eight
fixed keys and ``json.dumps``; the library's value is configurable key renaming
and extra-field merging, which nothing here needs.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import uuid
from typing import Any

#: The current request id (the API sets it per request; other processes leave "-").
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

#: The tenant the current request or job works for, None when unknown or platform-wide.
tenant_id_var: contextvars.ContextVar[uuid.UUID | str | None] = contextvars.ContextVar(
    "tenant_id", default=None
)

#: Libraries whose INFO lines are noise: pika logs half a dozen per AMQP connection
#: and channel (the worker's broker, every RabbitMQ queue-depth probe); httpx one per
#: request (every provider call: a 100,000-recipient campaign wrote 100,000 lines, each
#: formatted in the worker process and written again by Dramatiq's parent). Their
#: warnings and errors still come through.
CHATTY_LOGGERS = ("pika", "httpx")
for _name in CHATTY_LOGGERS:
    logging.getLogger(_name).setLevel(logging.WARNING)

FORMAT = (
    "%(asctime)s %(levelname)s [%(process)d] %(name)s [%(request_id)s %(tenant_id)s] %(message)s"
)

#: ``LOG_FORMAT`` values.
TEXT, JSON = "text", "json"


class ContextFilter(logging.Filter):
    """Stamp every record with the request id and tenant of the context that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        tenant_id = tenant_id_var.get()
        record.tenant_id = str(tenant_id) if tenant_id is not None else "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (tracebacks are a string field)."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", "-")
        tenant_id = getattr(record, "tenant_id", "-")
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "thread": record.threadName,
            "request_id": None if request_id == "-" else request_id,
            "tenant_id": None if tenant_id == "-" else tenant_id,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_format() -> str:
    """``LOG_FORMAT`` (``text`` or ``json``); anything else is refused at start."""
    value = os.environ.get("LOG_FORMAT", TEXT).strip().lower() or TEXT
    if value not in (TEXT, JSON):
        raise ValueError(f"LOG_FORMAT must be 'text' or 'json', not {value!r}")
    return value


def formatter() -> logging.Formatter:
    """The formatter ``LOG_FORMAT`` asks for."""
    return JsonFormatter() if log_format() == JSON else logging.Formatter(FORMAT)


def _ours(handler: logging.Handler) -> bool:
    return any(isinstance(f, ContextFilter) for f in handler.filters)


def configure(level: str | None = None) -> None:
    """Log to stderr at ``LOG_LEVEL`` (default INFO) in ``LOG_FORMAT``; safe to call again."""
    root = logging.getLogger()
    if any(_ours(h) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(formatter())
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel((level or os.environ.get("LOG_LEVEL", "INFO")).upper())


def adopt(handlers: list[logging.Handler]) -> None:
    """Give handlers another library installed (Dramatiq's CLI) our format and context.

    Their streams stay theirs (a Dramatiq worker process logs through a pipe its
    parent serialises); only what a line looks like changes.
    """
    for handler in handlers:
        if not _ours(handler):
            handler.setFormatter(formatter())
            handler.addFilter(ContextFilter())


def gunicorn_logconfig() -> dict[str, Any]:
    """Gunicorn's ``logconfig_dict``: its own loggers in JSON too, or {} for its defaults.

    The app's records go through the root handler :func:`configure` installs in
    each worker; gunicorn's (boot, worker exits, the access log) through these,
    without propagating, so no line is written twice.
    """
    if log_format() != JSON:
        return {}
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["context"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "error": {**handler, "stream": "ext://sys.stderr"},
            "access": {**handler, "stream": "ext://sys.stdout"},
        },
        "root": {"level": "INFO", "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["error"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
        },
    }
