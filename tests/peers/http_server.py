"""The HTTP server every test peer runs on: threaded, with room for bursts of connections.

socketserver listens with a backlog of 5. A burst of new connections (a worker
opening dozens at once) overflows it, and the kernel drops their SYNs: the client
tries again after 1, 3, 7, 15 s, so on a loaded machine a request can time out
before it is even accepted. Setting ``request_queue_size`` on a server already made
changes nothing (it listens in its constructor); it has to be the class's.
"""

from __future__ import annotations

import http.server
import sys


class PeerServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    #: The kernel caps it at ``net.core.somaxconn`` (4096 on current kernels).
    request_queue_size = 1024

    def handle_error(self, request, client_address) -> None:
        # NOTE: a client that gave up (a timeout, a killed worker) resets its connection
        # while we answer: expected in these tests, not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
