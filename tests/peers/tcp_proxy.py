"""A TCP forwarder that can be stopped and started again on the same port.

Why: to take a real server (RabbitMQ, PostgreSQL, Redis) away from a client and give
it back without touching the server, which other tests and helpers share. Stopping
closes the listening socket and every forwarded connection, as a crash would.

Black-holing is the other outage: a NAT or load balancer that forgets a flow, a
failover to a dead host. No FIN, no RST, no error: both sides keep their sockets
open and nothing arrives any more. Only a timeout of the client's own notices it.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        #: Sockets whose bytes are read and dropped: their flow is gone for good.
        self._holed: set[socket.socket] = set()
        self._black_holing = False

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
            self._holed = set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def black_hole(self) -> None:
        """Forward nothing more on the open connections, nor on those opened until
        :meth:`restore`, and close none of them: a half-open outage."""
        with self._lock:
            self._black_holing = True
            self._holed |= self._sockets

    def restore(self) -> None:
        """Forward new connections again. The black-holed ones stay silent: a flow the
        network forgot does not come back, its client must notice and reconnect."""
        with self._lock:
            self._black_holing = False

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
                if self._black_holing:
                    self._holed |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if source not in self._holed:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
