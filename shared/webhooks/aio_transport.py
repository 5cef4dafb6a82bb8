"""An aiohttp session that connects only to addresses the SSRF guard vetted, at send time.

The engine's counterpart of :mod:`shared.webhooks.transport` (which the blocking
test endpoint keeps using). Every new connection asks :class:`VettedResolver`,
which resolves the host and vets every address (:func:`shared.webhooks.ssrf.resolve`),
so only a vetted address is connected to; the DNS cache is off, so a re-pointed
name is vetted again. aiohttp connects to an IP-literal host without asking a
resolver, so :func:`vet_literal` is called for each attempt. The URL keeps its host
name: Host header, TLS SNI, certificate check and keep-alive pool are the name's.

PERF: aiohttp (its HTTP parser is C) costs a fraction of the CPU per request of
httpx/httpcore on anyio, and the engine's event loop thread is where a worker's
CPU went. Redirects are never followed, cookies never kept, proxies from the
environment never used (a proxy would connect on our behalf, past the guard).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from shared.webhooks.ssrf import Policy, UnsafeUrl, resolve, vet_address

#: Connections kept per process: every endpoint's keep-alive connections share these.
MAX_CONNECTIONS = 400
KEEPALIVE_SECONDS = 30.0


class VettedResolver(AbstractResolver):
    """Resolve off the loop and return vetted addresses only (raises UnsafeUrl otherwise)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        addresses = await loop.run_in_executor(None, resolve, host, port, self.policy)
        return [
            ResolveResult(
                hostname=host,
                host=sockaddr[0],
                port=sockaddr[1],
                family=found,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for found, sockaddr in addresses
        ]

    async def close(self) -> None:
        return None


@functools.lru_cache(maxsize=4096)
def _literal_verdict(host: str, policy: Policy) -> str | None:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None  # a name: the resolver vets it
    if policy.allows_host(host):
        return None
    try:
        vet_address(address, policy)
    except UnsafeUrl as exc:
        return str(exc)
    return None


def vet_literal(host: str, policy: Policy) -> None:
    """Raise :class:`UnsafeUrl` if ``host`` is an IP literal we may not connect to."""
    refused = _literal_verdict(host, policy)
    if refused is not None:
        raise UnsafeUrl(refused)


def build_session(policy: Policy) -> aiohttp.ClientSession:
    """A session for webhook attempts (create it on the loop that will use it)."""
    connector = aiohttp.TCPConnector(
        limit=MAX_CONNECTIONS,
        limit_per_host=0,
        resolver=VettedResolver(policy),
        use_dns_cache=False,
        keepalive_timeout=KEEPALIVE_SECONDS,
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers={"user-agent": "OmniStream-Webhooks/1", "content-type": "application/json"},
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None),
    )
