"""A callback receiver that prints what arrives: your system's side of the api channel.

Run it beside the platform to watch replies and outgoing webhooks arrive, signed::

    .venv/bin/python -m tests.peers.print_receiver --port 9000 [--secret whsec_...]

Every POST is answered 200 with ``{"id": "<n>"}`` (the id the api channel records as
your side's message id) and printed as one line: the path, the ``webhook-id``, whether
the signature verifies with ``--secret`` (or the ``RECEIVER_SECRET`` variable), and
the JSON body. The README's quick start and its test use it.
"""

from __future__ import annotations

import argparse
import http.server
import itertools
import json
import os
import sys

from shared.webhooks.signing import verify
from tests.peers.http_server import PeerServer


def make_handler(secret: str | None) -> type[http.server.BaseHTTPRequestHandler]:
    counter = itertools.count(1)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if secret is None:
                signature = "unchecked"
            else:
                signature = "valid" if verify(secret, self.headers, body) else "INVALID"
            try:
                shown = json.dumps(json.loads(body), sort_keys=True)
            except ValueError:
                shown = body.decode("utf-8", "replace")
            print(
                f"POST {self.path} webhook-id={self.headers.get('webhook-id')}"
                f" signature={signature} body={shown}",
                flush=True,
            )
            answer = json.dumps({"id": f"recv-{next(counter)}"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:  # the line above says it all
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--secret", default=os.environ.get("RECEIVER_SECRET"))
    args = parser.parse_args(argv)
    server = PeerServer((args.host, args.port), make_handler(args.secret))
    print(f"listening on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
