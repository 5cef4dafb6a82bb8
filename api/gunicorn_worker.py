"""The web process's gunicorn worker: gthread, with new connections waiting in the poller.

WHY: since gunicorn 24, gthread hands an accepted connection straight to a pool thread,
which then waits up to 5 s for the request's first bytes before giving the connection
back to the poller (gunicorn issues #3518 and #3634). A client that opens connections
before it has requests for them (a browser's preconnect, a pooling proxy or load
balancer keeping spare connections, a load generator replacing closed keep-alive
connections) so held one of a process's ``WEB_THREADS`` threads for 5 s per connection:
four such connections stopped a 4-thread process answering anyone for 5 s. Measured with
the inbox mix at 70 % of its peak: requests waiting 4-10 s behind them, every run.

Here a new connection with nothing to read yet waits in the worker's poller, as
keep-alive connections do (and as gunicorn 21-23 did); a thread takes it when its
first bytes arrive, and gunicorn's own sweep closes it if none come within the
keep-alive timeout. A connection whose request is already there goes to a thread at
once, as before.

A kept-alive connection goes back to the poller from the thread that answered it, not
through the main thread (:meth:`ThreadWorker._finished`). gthread queues that hand-back
for the main thread and wakes it through a pipe: below saturation, where a server spends
its life, that is one more thread wake-up per request, and a whole turn of the main
loop. Measured with ``bench/loadgen.py`` against the bare app (2 processes x 4 threads)
at 700 requests/s, open loop: 0.54 against 0.64-0.68 ms of server CPU per request.

Also: what gunicorn refuses before the app sees it (a URL over 4,094 bytes, too many
or too large headers, a malformed request line or chunk) is answered as every API
error is, ``{"error": {"code", "message", "details"}}``, not gunicorn's HTML page
(:func:`write_json_error`).
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time
from functools import partial

from gunicorn import util as gunicorn_util
from gunicorn.workers import gthread

from api.error_shape import STATUS_CODES, error_body

_NOT_ACCEPTED = (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK)


class ThreadWorker(gthread.ThreadWorker):
    """gunicorn's gthread worker; no thread waits for a new connection's request, and a
    kept-alive connection returns to the poller without waking the main thread."""

    def init_process(self) -> None:
        # Guards the kept-alive connections' deque and their poller registrations, which
        # the pool's threads now change too (gunicorn 23 had the same lock).
        # NOTE: reentrant: a request read ahead is submitted from finish_request, under
        # this lock, and if it is answered before add_done_callback, _finished runs at
        # once in this same thread and takes the lock again (a plain Lock hung the
        # main thread, and with it the whole process).
        self._kept_alive_lock = threading.RLock()
        super().init_process()

    def enqueue_req(self, conn) -> None:
        future = self.tpool.submit(self.handle, conn)
        future.add_done_callback(partial(self._finished, conn))

    def _finished(self, conn, future) -> None:
        """In the thread that answered: a kept-alive connection back into the poller.

        Everything else (a closed or failed connection, a deferred one, read-ahead bytes,
        a stopping worker) goes to gthread's ``finish_request`` on the main thread, as
        before: those change ``nr_conns`` or need the stop's shorter keep-alive, which
        only the main thread handles.
        """
        if (
            not future.cancelled()
            and future.exception() is None
            and future.result() is True
            and not conn.is_http2
            and not conn.parser.unreader.buf.getvalue()
            and self._keep_alive(conn)
        ):
            return
        self.method_queue.defer(self.finish_request, conn, future)

    def _keep_alive(self, conn) -> bool:
        """Register ``conn`` to wait for its next request; False when it must not be."""
        with self._kept_alive_lock:
            # NOTE: under the lock, so a stop's _cap_keepalive either sees this connection
            # or this sees the stop.
            if not self.alive:
                return False
            try:
                conn.sock.setblocking(False)
                self.poller.register(
                    conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn)
                )
            except (OSError, ValueError, KeyError):
                return False  # finish_request tries again, and closes it if that fails
            conn.set_timeout()  # under the lock: the deque stays in timeout order
            self.keepalived_conns.append(conn)
        return True

    def on_client_socket_readable(self, conn, client) -> None:
        with self._kept_alive_lock:
            self.poller.unregister(client)
            self.keepalived_conns.remove(conn)
        self.enqueue_req(conn)

    def murder_keepalived(self, force: bool = False) -> None:
        with self._kept_alive_lock:
            super().murder_keepalived(force)

    def finish_request(self, conn, fs) -> None:
        with self._kept_alive_lock:
            super().finish_request(conn, fs)

    def _cap_keepalive(self, deadline) -> None:
        with self._kept_alive_lock:
            super()._cap_keepalive(deadline)

    def accept(self, listener) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as error:
            if error.errno in _NOT_ACCEPTED:
                return
            raise
        self.nr_conns += 1
        # TConn makes the socket non-blocking; a thread sets it back to blocking.
        conn = gthread.TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        if _readable(client_sock):
            conn.data_ready = True
            self.enqueue_req(conn)
            return
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(
            client_sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )


def _readable(sock: socket.socket) -> bool:
    """Whether a read would not block: bytes are waiting, or the peer already closed."""
    try:
        sock.recv(1, socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True  # reset or similar: a thread finds out and closes it
    return True


#: Codes of the statuses gunicorn answers itself (``Worker.handle_error``).
_ERROR_CODES = {
    **STATUS_CODES,
    414: "uri_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error``, writing the API's error shape instead of HTML.

    NOTE: gunicorn looks ``util.write_error`` up when it answers, so the replacement
    below serves every error of this process (the web process: this module is its
    worker class). Same status line, ``Connection: close`` and length as gunicorn's.
    """
    body = error_body(_ERROR_CODES.get(status_int, "error"), mesg or reason).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


gunicorn_util.write_error = write_json_error
