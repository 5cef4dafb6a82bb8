"""The safety net's refusals, collected while a fuzzed request runs.

``api.errors.handle_constraint_error`` answers a value the database refused (409/422)
and logs "validate this earlier": each such line is a schema or service that let the
value through. A fuzz example that causes one fails, naming the database's error.
"""

from __future__ import annotations

import logging


class DatabaseRefusals(logging.Handler):
    """Collects the safety net's "validate this earlier" lines while a request runs."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "validate this earlier" in record.getMessage():
            error = record.exc_info[1] if record.exc_info else None
            self.seen.append(f"{record.getMessage()}: {getattr(error, 'orig', error)!r}")

    def __enter__(self) -> None:
        logging.getLogger("api.errors").addHandler(self)

    def __exit__(self, *exc) -> None:
        logging.getLogger("api.errors").removeHandler(self)
