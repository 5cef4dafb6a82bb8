"""What a provider said when a send failed, and whether trying again can help.

Both transports (:mod:`.graph`, :mod:`.smtp`) raise :class:`SendFailed`; the
outbound worker retries a transient one with backoff and fails the message at
once on a permanent one, keeping the provider's own code and message so agents
see *why* (``131047`` window closed, ``550`` unknown mailbox...).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

log = logging.getLogger(__name__)


class SendFailed(Exception):
    """A provider refused or could not take a message.

    ``code`` is the provider's code as a string (Meta's ``error.code``, an SMTP reply
    code, or ``timeout`` / ``connection_error`` for transport failures).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        transient: bool,
        http_status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.transient = transient
        self.http_status = http_status
        self.retry_after = retry_after
        #: Tries made before giving up (set by a retrying :meth:`GraphClient.request`).
        self.attempts = 1

    @property
    def permanent(self) -> bool:
        return not self.transient


class Outcome(StrEnum):
    """What one attempt at a durable send (a message, a read receipt, an email) did."""

    SENT = "sent"
    FAILED = "failed"
    RETRY = "retry"  # transient failure recorded; the job should be retried
    BUSY = "busy"  # another copy of the job holds the claim
    DONE = "already_done"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    error: SendFailed | None = None
    provider_message_id: str | None = None
    #: With :data:`Outcome.RETRY`: seconds until the next attempt is due.
    retry_in: float | None = None


def as_failure(exc: Exception, what: str) -> SendFailed:
    """A provider's failure as is; anything else (a bug, a broken row) is logged and
    retried, then fails, so a row never waits for its sweeper forever."""
    if isinstance(exc, SendFailed):
        return exc
    log.exception("%s: unexpected error", what)
    return SendFailed("internal_error", f"{type(exc).__name__}: {exc}", transient=True)
