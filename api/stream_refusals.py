"""What uvicorn refuses before the stream app sees it, answered in the API's error shape.

A request uvicorn cannot parse (a malformed request line, a bad header) was answered
``400 Invalid HTTP request received.`` in plain text: the one answer of the stream
process that was not ``{"error": {"code", "message", "details"}}``. The web process's
gunicorn refusals are answered the same way (:mod:`api.gunicorn_worker`).

NOTE: uvicorn builds that answer in its h11 protocol's ``send_400_response``; the
Procfile runs the stream with ``--http h11`` so it is the protocol in use even where
httptools is installed. Importing this module replaces the method for the process.
"""

from __future__ import annotations

import h11
from uvicorn.protocols.http import h11_impl

from api.error_shape import error_body


def send_json_400(self: h11_impl.H11Protocol, msg: str) -> None:
    """uvicorn's ``send_400_response``: the same status and ``Connection: close``, a JSON body."""
    body = error_body("bad_request", msg).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"connection", b"close"),
    ]
    for event in (
        h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
        h11.Data(data=body),
        h11.EndOfMessage(),
    ):
        self.transport.write(self.conn.send(event))
    self.transport.close()


h11_impl.H11Protocol.send_400_response = send_json_400
