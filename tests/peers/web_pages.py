"""A local web server for URL knowledge sources: pages, errors, redirects, slow and huge bodies.

Each path is scripted with :meth:`WebPages.serve`; every request is counted, so a test
can tell a retry from a single attempt. It listens on 127.0.0.1, which the test
settings' SSRF allowlist lets the fetcher reach.
"""

from __future__ import annotations

import collections
import http.server
import threading
import time
from dataclasses import dataclass

from tests.peers.http_server import PeerServer


@dataclass
class Page:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    #: Seconds to wait before answering at all.
    delay: float = 0.0
    #: Send the body in pieces this many seconds apart (a slow-drip server).
    drip: float = 0.0
    location: str | None = None
    #: Leave out Content-Length (a streamed body whose size is only known at the end).
    chunked: bool = False


class WebPages:
    """The scripted pages and the requests they received."""

    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self._server = PeerServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def serve(self, path: str, page: Page | None = None, **fields) -> str:
        self.pages[path] = page or Page(**fields)
        return self.base_url + path

    def start(self) -> WebPages:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        pages = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            #: NOTE: headers and body are two writes; Nagle held the body for the client's
            #: delayed ACK (40 ms an answer).
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                pages.hits[self.path] += 1
                page = pages.pages.get(self.path) or Page(b"not found", 404, "text/plain")
                if page.delay:
                    time.sleep(page.delay)
                try:
                    self.send_response(page.status)
                    self.send_header("Content-Type", page.content_type)
                    if page.location:
                        self.send_header("Location", page.location)
                    if page.chunked:
                        self.send_header("Connection", "close")
                    else:
                        self.send_header("Content-Length", str(len(page.body)))
                    self.end_headers()
                    if page.drip:
                        for start in range(0, len(page.body), 16):
                            self.wfile.write(page.body[start : start + 16])
                            self.wfile.flush()
                            time.sleep(page.drip)
                    else:
                        self.wfile.write(page.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the fetcher gave up (size or time limit): what the test wanted
                if page.chunked:
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        return Handler
