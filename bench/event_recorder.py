"""The scale-out harness's outside world: one HTTP receiver recording what the hosts sent.

Two paths on one threaded server (in the root namespace, on the service address):

- ``/hooks``: the tenant's outgoing webhook (``message.created``), one record per POST:
  its ``webhook-id``, the message id, direction and content;
- ``/callback``: the api channel's callback, i.e. the outbound *send* of a message:
  its ``webhook-id`` (the message id, the same on every attempt), content, conversation.

Every POST is kept, repeats included, with its arrival time: the harness counts
deliveries, repeats (allowed for webhooks) and the moment each event was fully done.
A callback answers with the receiver's own id for the message, as a real system would.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass

from tests.peers.http_server import PeerServer


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float
    webhook_id: str
    message_id: str
    direction: str
    content: str
    conversation_id: str


class Recorder:
    """A receiver on ``host`` (an ephemeral port) keeping every arrival per path."""

    def __init__(self, host: str) -> None:
        self.lock = threading.Lock()
        self.hooks: list[Arrival] = []
        self.callbacks: list[Arrival] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            #: NOTE: headers and body are two writes; Nagle held the body for the client's
            #: delayed ACK (40 ms an answer).
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.monotonic()
                webhook_id = self.headers.get("webhook-id", "")
                try:
                    data = json.loads(raw).get("data") or {}
                except ValueError:
                    data = {}
                arrival = Arrival(
                    now,
                    webhook_id,
                    str(data.get("id", "")),
                    str(data.get("direction", "")),
                    str(data.get("content") or data.get("text") or ""),
                    str(data.get("conversation_id", "")),
                )
                reply = b"{}"
                with outer.lock:
                    if self.path.startswith("/callback"):
                        outer.callbacks.append(arrival)
                        reply = json.dumps({"id": f"rcv-{webhook_id}"}).encode()
                    else:
                        outer.hooks.append(arrival)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = PeerServer((host, 0), Handler)
        self.host = host
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def snapshot(self) -> tuple[list[Arrival], list[Arrival]]:
        """Copies of (hooks, callbacks) so far."""
        with self.lock:
            return list(self.hooks), list(self.callbacks)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
