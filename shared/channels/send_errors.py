"""What a provider said when a send failed, and whether trying again can help.

Both transports (:mod:`.graph`, :mod:`.smtp`) raise :class:`SendFailed`; the
outbound worker retries a transient one with backoff and fails the message at
once on a permanent one, keeping the provider's own code and message so agents
see *why* (``131047`` window closed, ``550`` unknown mailbox...).
"""

from __future__ import annotations


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
