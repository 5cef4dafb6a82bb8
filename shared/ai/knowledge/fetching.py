"""Fetch a URL knowledge source through the SSRF guard, within a size and a time limit.

The same guard as outgoing webhooks (:mod:`shared.webhooks.ssrf`): the URL is checked
when the source is created (422) and every address is vetted again at connect time
(:class:`shared.webhooks.transport.VettedTransport`), so DNS rebinding reaches
nothing inside. Redirects are followed by hand, each hop checked like the first.
The whole fetch has one deadline, so a server that drips a byte a second cannot hold
a worker past it, and the body is read in pieces up to the limit, never beyond.

Each failure says whether a retry may help (:attr:`FetchFailed.transient`): time-outs,
refused connections, 429 and 5xx may; 4xx, an unsafe address or a page too large do not.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from shared.config import get_settings
from shared.digits import ascii_digits
from shared.webhooks.ssrf import Policy, UnsafeUrl, check_url
from shared.webhooks.transport import VettedTransport

MAX_REDIRECTS = 5
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_ACCEPT = (
    "text/html,application/xhtml+xml,text/plain,text/markdown,text/csv,application/pdf,*/*;q=0.5"
)


class FetchFailed(Exception):
    """The URL gave no usable page; ``transient`` says whether trying later may help."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str
    content_type: str | None
    body: bytes


@functools.cache
def _client(policy: Policy) -> httpx.Client:
    return httpx.Client(
        transport=VettedTransport(
            policy, limits=httpx.Limits(max_connections=20, max_keepalive_connections=5)
        ),
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": "OmniStream-Knowledge/1", "accept": _ACCEPT},
    )


def check(url: str, policy: Policy | None = None) -> str:
    """The URL if the guard lets it be fetched, else :class:`UnsafeUrl` (the API's 422)."""
    return check_url(url, policy or Policy.from_settings())


def fetch(
    url: str,
    *,
    policy: Policy | None = None,
    timeout: float | None = None,
    max_bytes: int | None = None,
) -> Fetched:
    """GET ``url`` (following up to :data:`MAX_REDIRECTS` checked redirects)."""
    settings = get_settings()
    policy = policy or Policy.from_settings(settings)
    timeout = timeout or settings.knowledge_fetch_timeout_seconds
    max_bytes = max_bytes or settings.knowledge_fetch_max_bytes
    deadline = time.monotonic() + timeout
    for _hop in range(MAX_REDIRECTS + 1):
        try:
            check_url(url, policy)
        except UnsafeUrl as exc:
            raise FetchFailed(f"the URL is not allowed: {exc}", transient=False) from exc
        location, fetched = _get(_client(policy), url, deadline, max_bytes)
        if fetched is not None:
            return fetched
        url = urljoin(url, location)
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects", transient=False)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchFailed("the page took too long to arrive", transient=True)
    return left


def _get(
    client: httpx.Client, url: str, deadline: float, max_bytes: int
) -> tuple[str | None, Fetched | None]:
    """One request: ``(location, None)`` for a redirect, ``(None, page)`` for a page."""
    try:
        with client.stream("GET", url, timeout=_remaining(deadline)) as response:
            status = response.status_code
            if status in (301, 302, 303, 307, 308) and response.headers.get("location"):
                return response.headers["location"], None
            if status >= 400:
                raise FetchFailed(
                    f"the server answered HTTP {status}", transient=status in _TRANSIENT_STATUSES
                )
            if status != 200:
                raise FetchFailed(f"the server answered HTTP {status}", transient=False)
            declared = response.headers.get("content-length")
            if declared and ascii_digits(declared) and int(declared) > max_bytes:
                raise FetchFailed(_too_large(max_bytes), transient=False)
            body = bytearray()
            stream = (
                response.iter_bytes()
            )  # each piece as it arrives: the deadline is checked often
            while True:
                _remaining(deadline)
                piece = next(stream, None)
                if piece is None:
                    break
                body += piece
                if len(body) > max_bytes:
                    raise FetchFailed(_too_large(max_bytes), transient=False)
            return None, Fetched(url, response.headers.get("content-type"), bytes(body))
    except UnsafeUrl as exc:  # an address vetted at connect time (DNS changed since)
        raise FetchFailed(f"the URL is not allowed: {exc}", transient=False) from exc
    except httpx.TimeoutException as exc:
        raise FetchFailed("the page took too long to arrive", transient=True) from exc
    except (httpx.TransportError, OSError) as exc:
        raise FetchFailed(f"the page could not be fetched: {exc}"[:300], transient=True) from exc


def _too_large(max_bytes: int) -> str:
    return f"the page is larger than {max_bytes} bytes"
