"""An httpx client that connects only to addresses the SSRF guard vetted, at send time.

httpcore resolves and connects in its network backend; :class:`VettedBackend`
replaces that step: it resolves the host itself, vets every address
(:func:`shared.webhooks.ssrf.resolve`) and connects to a vetted address only. The
URL keeps its host name, so the Host header, TLS SNI and certificate check are
those of the name, and the connection pool is keyed by the name too: keep-alive
connections are reused across deliveries to the same receiver.

Redirects are never followed and proxies from the environment are ignored (a
proxy would connect on our behalf, past the guard). Inside :func:`deadline` every
connect, read and write also stops at the attempt's deadline.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import socket
import ssl
import time
from collections.abc import Iterable, Iterator

import httpcore
import httpx
from httpcore._backends.sync import SyncBackend, SyncStream

from shared.webhooks.ssrf import Policy, resolve

#: When (``time.monotonic()``) the attempt this thread is making must be over; None: no bound.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "webhook_attempt_deadline", default=None
)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound the connects, reads and writes of the requests made inside to ``seconds`` in all.

    APPSEC: httpx's timeouts are per operation: a receiver dripping a header byte now and
    then kept an attempt (and the request or worker thread making it) going for ever.
    """
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _bounded(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` cut to what is left of the deadline; ``expired`` raised when none is."""
    end = _DEADLINE.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise expired("the attempt's time is up")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(SyncStream):
    """httpcore's blocking stream, each operation also bounded by the attempt's deadline."""

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return super().read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        super().write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = super().start_tls(ssl_context, server_hostname, bounded)
        sock = stream.get_extra_info("socket")
        return DeadlineStream(sock) if isinstance(stream, SyncStream) and sock else stream


class VettedBackend(SyncBackend):
    """httpcore's blocking backend, with resolution and vetting before every connect."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable | None = None,
    ) -> httpcore.NetworkStream:
        # NOTE: UnsafeUrl is not an httpcore error, so it reaches the caller as itself
        # and the attempt is logged as "blocked", not as a connection error.
        addresses = resolve(host, port, self.policy)
        last_error: OSError | None = None
        for family, sockaddr in addresses:
            bounded = _bounded(timeout, httpcore.ConnectTimeout)
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(bounded)
                sock.connect(sockaddr)
            except TimeoutError as exc:
                sock.close()
                raise httpcore.ConnectTimeout(str(exc)) from exc
            except OSError as exc:
                sock.close()
                last_error = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
            return DeadlineStream(sock)
        raise httpcore.ConnectError(str(last_error))


class VettedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connection pool uses :class:`VettedBackend`."""

    def __init__(self, policy: Policy, *, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits(max_connections=200, max_keepalive_connections=100)
        super().__init__(trust_env=False, limits=limits)
        # NOTE: httpx 0.28 has no public parameter for the network backend; the pool
        # is rebuilt with the same arguments HTTPTransport.__init__ uses, plus ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=VettedBackend(policy),
        )


def build_client(policy: Policy | None = None) -> httpx.Client:
    """A thread-safe client for webhook attempts (the caller passes each attempt's timeout)."""
    return httpx.Client(
        transport=VettedTransport(policy or Policy.from_settings()),
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": "OmniStream-Webhooks/1", "content-type": "application/json"},
    )


@functools.cache
def shared_client() -> httpx.Client:
    """This process's client: one connection pool for every endpoint and thread."""
    return build_client()
