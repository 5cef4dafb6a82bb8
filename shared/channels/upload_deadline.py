"""A deadline for one whole HTTP call through httpx: its connection is shut down when due.

httpx's ``timeout`` bounds each connect, write and read, not the call: a media upload
whose answer (or whose body's acceptance) trickled in, each read just in time, held its
send past the bound the claim counts on. :class:`UploadDeadline` learns the call's socket
from httpcore's ``trace`` extension as the connection opens and shuts it down at the
deadline, whatever step the call is in; the call then fails and :attr:`expired` says why.

Example::

    with UploadDeadline(2.0) as deadline:
        client.post(url, files=..., extensions={"trace": deadline.trace})
    # an httpx.TransportError once the 2 s are up, with deadline.expired set

The call needs a fresh connection (a client that keeps none alive): a pooled one opens
no socket, so nothing would be watched.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

#: httpcore's trace event once a call's TCP connection is open (``info["return_value"]``).
CONNECTED = "connection.connect_tcp.complete"


class UploadDeadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> UploadDeadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._sock = None  # NOTE: a call over is never shut down late

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` extension: keep the call's socket (shut at once if late)."""
        if event != CONNECTED:
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            _shut(self._sock)


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
