"""JSON POSTs to one origin over kept-alive ``http.client`` connections: the send path's
HTTP, at a third of httpx's CPU.

Every outbound WhatsApp, Messenger and Instagram message is one ``POST`` of a small JSON
document to the Graph API. Through ``httpx`` that call costs about 0.9 ms of CPU on our
hosts (some 1,800 Python calls: URL model, header validation, h11 events, pool
bookkeeping), half of a campaign's worker CPU per recipient; ``http.client`` does the same
request in about 0.3 ms. :class:`JsonPoster` keeps that one kind of request cheap and
leaves everything else (forms, downloads, retried reads, proxies) to httpx.

What it keeps of httpx's behaviour: the same timeout on connect, each write and each read
(and a whole-call deadline, :mod:`.upload_deadline`, when the caller gives one);
idle connections reused, one whose peer closed it (readable while idle) opened afresh
before the request is written, never after, so a POST is never sent twice by this layer;
a response read to its end (or the connection dropped); no redirects followed; the
``httpx`` logger's request line (off by default, redacted by its filter) for operators
who turn it on. Certificates are checked with httpx's own SSL context (certifi, or
``SSL_CERT_FILE``).
"""

from __future__ import annotations

import http.client
import json
import logging
import select
import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared.channels.upload_deadline import UploadDeadline

#: The request line goes to httpx's logger, where its redaction filter and level apply.
_httpx_log = logging.getLogger("httpx")
#: Idle connections kept per origin at most (the rest are closed when returned).
MAX_IDLE = 32


class PostTimeout(Exception):
    """Connect, write or read took longer than the timeout."""


class PostFailed(Exception):
    """The connection failed or the peer broke the HTTP exchange."""


class BodyLost(PostFailed):
    """The peer answered ``status``, then its body could not be read (a timeout, a
    connection cut off): for a 2xx, the request was taken."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(f"the {status} answer's body was lost: {why}")
        self.status = status


@dataclass(frozen=True, slots=True)
class Answer:
    """The response: status, headers (lower-case names) and the whole body."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    def as_httpx(self, method: str, url: str) -> httpx.Response:
        """The same answer as an :class:`httpx.Response` (for the error classifier)."""
        return httpx.Response(
            self.status,
            headers=self.headers,
            content=self.body,
            request=httpx.Request(method, url),
        )


class JsonPoster:
    """Thread-safe; POSTs JSON to paths under ``root`` (``http`` or ``https``)."""

    def __init__(self, root: str, *, timeout: float) -> None:
        parts = urlsplit(root)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {root!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        #: ``netloc`` keeps an IPv6 address's brackets and a non-default port.
        self._host_header = parts.netloc.rpartition("@")[2]
        self._timeout = timeout
        self._ssl = httpx.create_ssl_context() if self._https else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def post(
        self,
        url: str,
        headers: dict[str, str],
        payload: Any,
        *,
        deadline: UploadDeadline | None = None,
    ) -> Answer:
        """POST ``payload`` as JSON to ``url`` (under this poster's origin); ``deadline``
        shuts the connection down when the whole call outlasts it (then it fails)."""
        if not url.startswith(self._origin):
            raise ValueError(f"{url!r} is not under {self._origin}")
        target = url[len(self._origin) :] or "/"
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Host": self._host_header,
            "Accept": "*/*",
            "User-Agent": "omnistream",
            **headers,
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
        }
        conn = self._checkout()
        if deadline is not None:
            deadline.watch(conn.sock)
        try:
            # NOTE: http.client writes headers and body apart (two sendall calls); it sets
            # TCP_NODELAY on connect, so the body does not wait for the headers' ACK.
            conn.putrequest("POST", target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders(body)
            response = conn.getresponse()
        except TimeoutError as exc:
            conn.close()
            raise PostTimeout(f"timed out after {self._timeout}s: {exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise PostFailed(f"{type(exc).__name__}: {exc}") from exc
        data = _body(conn, response)
        answer = Answer(
            response.status,
            response.reason,
            {name.lower(): value for name, value in response.getheaders()},
            data,
        )
        whole = deadline is None or deadline.release()
        if response.will_close or not whole:
            conn.close()
        else:
            self._checkin(conn)
        if _httpx_log.isEnabledFor(logging.INFO):
            line = 'HTTP Request: POST %s "HTTP/1.1 %d %s"'
            _httpx_log.info(line, url, answer.status, answer.reason)
        return answer

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _checkout(self) -> http.client.HTTPConnection:
        """An idle connection still open, else a new one (connected on first use)."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect()
            if not _closed_by_peer(conn):
                return conn
            conn.close()

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError as exc:
            conn.close()
            raise PostTimeout(f"connect timed out after {self._timeout}s: {exc}") from exc
        except OSError as exc:
            conn.close()
            raise PostFailed(f"{type(exc).__name__}: {exc}") from exc
        return conn


def _body(conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> bytes:
    """The answer's whole body; :class:`BodyLost` (the connection closed) when it cannot be
    read. WHY apart: after a 2xx status the peer took the request, which a caller must not
    take for a request that may never have arrived."""
    try:
        return response.read()
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        conn.close()
        raise BodyLost(response.status, f"{type(exc).__name__}: {exc}") from exc


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection with something to read: the peer closed it (or broke
    the protocol). Either way it must not carry a request."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        poller = select.poll()  # NOTE: not select(): descriptors past 1024 are fine
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True
