"""An asyncio connection pool that connects only to addresses the SSRF guard vetted, at send time.

The engine's counterpart of :mod:`shared.webhooks.transport` (which the blocking
test endpoint keeps using): httpcore's ``AsyncConnectionPool`` with a network
backend that resolves the host itself, vets every address
(:func:`shared.webhooks.ssrf.resolve`) and connects to a vetted one only. The
URL keeps its host name, so the Host header, TLS SNI, the certificate check and
the keep-alive pool key are those of the name.

PERF: the engine talks to httpcore directly: httpx's client layer (URL merging,
cookies, auth and redirect hooks) cost more CPU per attempt than the HTTP/1.1
exchange itself, and the engine needs none of it (redirects are never followed).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

import anyio
import httpcore
import httpx
from httpcore._backends.anyio import AnyIOBackend, AnyIOStream

from shared.webhooks.ssrf import Policy, resolve

#: Connections kept per process: every endpoint's keep-alive connections share these.
MAX_CONNECTIONS = 400
MAX_KEEPALIVE = 200


class VettedAsyncBackend(AnyIOBackend):
    """httpcore's anyio backend, with resolution and vetting before every connect."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # NOTE: UnsafeUrl is not an httpcore error, so it reaches the caller as itself
        # and the attempt is logged as "blocked". Resolution blocks (getaddrinfo), so it
        # runs off the loop; it happens once per new connection, not per attempt.
        addresses = await anyio.to_thread.run_sync(resolve, host, port, self.policy)
        last_error: OSError | None = None
        for _family, sockaddr in addresses:
            try:
                with anyio.fail_after(timeout):
                    stream = await anyio.connect_tcp(sockaddr[0], sockaddr[1])
            except TimeoutError as exc:
                raise httpcore.ConnectTimeout(str(exc)) from exc
            except OSError as exc:
                last_error = exc
                continue
            return AnyIOStream(stream)
        raise httpcore.ConnectError(str(last_error))


def build_pool(policy: Policy | None = None) -> httpcore.AsyncConnectionPool:
    """A keep-alive pool for webhook attempts (create it on the loop that will use it)."""
    context: ssl.SSLContext = httpx.create_ssl_context(trust_env=False)
    return httpcore.AsyncConnectionPool(
        ssl_context=context,
        max_connections=MAX_CONNECTIONS,
        max_keepalive_connections=MAX_KEEPALIVE,
        keepalive_expiry=30.0,
        network_backend=VettedAsyncBackend(policy or Policy.from_settings()),
    )
