"""A deadline for one whole HTTP call: its connection is shut down when due.

A per-step ``timeout`` (httpx's, ``http.client``'s) bounds each connect, write and read,
not the call: a media upload or a message POST whose answer (or whose body's acceptance)
trickled in, each read just in time, held its send past the bound the claim counts on.
:class:`UploadDeadline` is given the call's socket and shuts it down at the deadline,
whatever step the call is in; the call then fails and :attr:`expired` says why.

Through httpx, the socket comes from httpcore's ``trace`` extension as the connection
opens::

    with UploadDeadline(2.0) as deadline:
        client.post(url, files=..., extensions={"trace": deadline.trace})
    # an httpx.TransportError once the 2 s are up, with deadline.expired set

That call needs a fresh connection (a client that keeps none alive): a pooled one opens
no socket, so nothing would be watched. A caller that holds its connection
(:mod:`.json_post`) hands the socket over with :meth:`~UploadDeadline.watch` and takes it
back with :meth:`~UploadDeadline.release` before the connection is reused.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any

#: httpcore's trace event once a call's TCP connection is open (``info["return_value"]``).
CONNECTED = "connection.connect_tcp.complete"


class UploadDeadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        #: The call is over: the deadline coming due later does nothing.
        self._over = False

    def __enter__(self) -> UploadDeadline:
        _watchdog().add(time.monotonic() + self.seconds, self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._over = True
        self.release()  # NOTE: a call over is never shut down late

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` extension: watch the call's socket as it connects."""
        if event != CONNECTED:
            return
        stream = info.get("return_value")
        self.watch(stream.get_extra_info("socket") if stream is not None else None)

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` (the call's connection) down at the deadline; at once if it passed."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def release(self) -> bool:
        """Stop watching the call's socket (the call is over); whether it was left whole,
        so its connection may be reused."""
        with self._lock:
            self._sock = None
            return not self.expired

    def _expire(self) -> None:
        with self._lock:
            if self._over:
                return
            self.expired = True
            _shut(self._sock)


class _Watchdog:
    """The process's one thread that expires deadlines as they come due.

    PERF: a ``threading.Timer`` per call (a thread started and stopped) cost some 175 us
    of CPU, more than half of what a message POST costs (:mod:`.json_post`); a heap entry
    costs a few. A deadline whose call ended stays in the heap until it is due (popped
    then, doing nothing).
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, UploadDeadline]] = []
        self._order = itertools.count()
        threading.Thread(target=self._run, name="call-deadlines", daemon=True).start()

    def add(self, due: float, deadline: UploadDeadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._order), deadline))
            if self._heap[0][2] is deadline:  # sooner than what the thread waits for
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, due = heapq.heappop(self._heap)
            due._expire()


_current: _Watchdog | None = None
_current_lock = threading.Lock()


def _watchdog() -> _Watchdog:
    """This process's watchdog (a forked child starts its own: threads do not fork)."""
    global _current
    current = _current
    if current is not None and current.pid == os.getpid():
        return current
    with _current_lock:
        if _current is None or _current.pid != os.getpid():
            _current = _Watchdog()
        return _current


def _after_fork_in_child() -> None:
    global _current_lock, _current
    _current_lock, _current = threading.Lock(), None  # NOTE: the parent may have held it


os.register_at_fork(after_in_child=_after_fork_in_child)


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
