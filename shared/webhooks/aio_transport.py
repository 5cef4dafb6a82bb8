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
import errno
import functools
import ipaddress
import socket
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from shared.webhooks.ssrf import Policy, UnsafeUrl, resolve, vet_address

#: Connections kept per process: every endpoint's keep-alive connections share these.
MAX_CONNECTIONS = 400
KEEPALIVE_SECONDS = 30.0
#: Threads resolving webhook hosts, per process: lookups that hang hold these, never the
#: loop's shared executor; with all of them held, an attempt fails at once (retried later).
RESOLVER_THREADS = 32
#: Lookups of one host at once: a name whose DNS never answers holds no more threads.
LOOKUPS_PER_HOST = 4


class VettedResolver(AbstractResolver):
    """Resolve off the loop and return vetted addresses only (raises UnsafeUrl otherwise).

    WHY bounded: an attempt's timeout stops waiting for a lookup, not the lookup's thread,
    which the OS holds until it gives up (tens of seconds for a name whose DNS never
    answers). On the loop's shared executor, one endpoint's such name filled every thread
    and every delivery of the process timed out waiting for its own lookup.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._executor = ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="webhook-dns")
        self._lock = threading.Lock()
        self._running: Counter[str] = Counter()

    def _claim(self, host: str) -> None:
        """Count a lookup of ``host``, or raise (an OSError: a connection failure, retried)."""
        with self._lock:
            if self._running[host] >= LOOKUPS_PER_HOST:
                raise OSError(errno.EAGAIN, f"too many lookups of {host} in progress")
            if self._running.total() >= RESOLVER_THREADS:
                raise OSError(errno.EAGAIN, "too many DNS lookups in progress")
            self._running[host] += 1

    def _release(self, host: str) -> None:
        with self._lock:
            self._running[host] -= 1
            if self._running[host] <= 0:
                del self._running[host]

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self._claim(host)
        try:
            lookup = self._executor.submit(resolve, host, port, self.policy)
        except BaseException:
            self._release(host)
            raise
        # NOTE: released when the thread is done, not when the attempt stops waiting.
        lookup.add_done_callback(lambda _: self._release(host))
        addresses = await asyncio.wrap_future(lookup)
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
        self._executor.shutdown(wait=False, cancel_futures=True)


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
