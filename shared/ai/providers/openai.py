"""An OpenAI-compatible client (chat completions and embeddings), asynchronous.

Serves hosted APIs and local servers (Ollama, vLLM, llama.cpp's server) alike: only
``POST {base}/chat/completions`` and ``POST {base}/embeddings`` are used. Each request
is bounded by ``timeout`` as a whole; 429, 5xx and refused connections are retried up
to ``max_retries`` times, honouring ``Retry-After`` (a wait longer than
``max_retry_after`` is not waited for: the reply hands off instead). A 2xx body that
is not the documented JSON raises :class:`MalformedResponse`.

PERF: the HTTP client is aiohttp, as in the webhook engine (:mod:`shared.webhooks.sender`),
not httpx: measured here with 200 concurrent calls to a model taking 2 s, httpx's
AsyncClient needed 13-17 s (its connection pool and anyio cost CPU per request and
grow with concurrency), aiohttp 3.1 s, and 500 calls 4.2 s.

APPSEC: the key goes in the Authorization header only; it is scrubbed from every error
message, and requests are never logged. A base URL an agent configures (tenant input)
is connected through the SSRF guard (the webhook engine's vetted session,
:mod:`shared.webhooks.aio_transport`); the operator's ``AI_OPENAI_BASE_URL`` is
trusted, so a local model server works.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import math
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from shared import json_encoding
from shared.ai.providers.base import (
    RATE_LIMITED,
    REFUSED,
    SERVER_ERROR,
    TIMEOUT,
    UNREACHABLE,
    Completion,
    Embeddings,
    MalformedResponse,
    ModelRequest,
    ProviderError,
    describe,
    estimate_tokens,
)
from shared.sql import storable_text
from shared.webhooks import sender
from shared.webhooks.aio_transport import build_session, vet_literal
from shared.webhooks.sender import _blocked
from shared.webhooks.ssrf import Policy, UnsafeUrl, check_url

log = logging.getLogger(__name__)

#: First retry delay when the endpoint gives no Retry-After (doubles per retry).
RETRY_BASE_SECONDS = 0.25
#: Largest answer read (a completion or a batch of embeddings).
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Connections kept per process and loop, for every model endpoint together.
MAX_CONNECTIONS = 512
#: Largest token count believed from a server's ``usage`` (no context window is near it);
#: past it the count is estimated, so a buggy server cannot overflow the token columns.
MAX_REPORTED_TOKENS = 10_000_000

_sessions: dict[tuple[int, bool], aiohttp.ClientSession] = {}


def _session(vetted: bool) -> aiohttp.ClientSession:
    """The running loop's session: vetted (tenant URLs, SSRF guard) or trusted (settings)."""
    key = (id(asyncio.get_running_loop()), vetted)
    session = _sessions.get(key)
    if session is None or session.closed:
        if vetted:
            session = build_session(Policy.from_settings())
        else:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, limit_per_host=0),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None),
            )
        _sessions[key] = session
        runner = sender.loop_thread()
        if runner.loop is asyncio.get_running_loop():
            runner.adopt(session)  # closed with the loop when the process exits
    return session


@functools.lru_cache(maxsize=1024)
def _host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or odd."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAICompatible:
    """One agent's (or the settings') endpoint, model and key."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str,
        embedding_model: str,
        timeout: float,
        max_retries: int,
        max_retry_after: float,
        vetted: bool,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.model = model
        self.embedding_model = embedding_model
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.vetted = vetted

    def __repr__(self) -> str:  # APPSEC: never the key
        return f"OpenAICompatible({self.base_url!r}, model={self.model!r})"

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    async def complete(self, request: ModelRequest) -> Completion:
        payload = {
            "model": self.model,
            "messages": request.messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        data = await self._post("chat/completions", payload)
        try:
            message = data["choices"][0]["message"]
            text = message["content"]
            if not isinstance(text, str):
                raise TypeError("content is not text")
        except (KeyError, IndexError, TypeError) as exc:
            raise MalformedResponse(f"no answer in the completion ({exc})") from None
        prompt_tokens, completion_tokens = _usage(data)
        if prompt_tokens is None:
            prompt_tokens = sum(estimate_tokens(m.get("content", "")) for m in request.messages)
        if completion_tokens is None:
            completion_tokens = estimate_tokens(text)
        return Completion(
            text=storable_text(text.strip()),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=str(data.get("model") or self.model),
        )

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        if not texts:
            return Embeddings(vectors=[], model=self.embedding_model)
        data = await self._post("embeddings", {"model": self.embedding_model, "input": list(texts)})
        try:
            rows = sorted(data["data"], key=lambda row: row["index"])
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise MalformedResponse(f"no embeddings in the answer ({exc})") from None
        if len(vectors) != len(texts):
            raise MalformedResponse(f"{len(vectors)} embeddings for {len(texts)} inputs")
        _check_vectors(vectors)
        prompt_tokens, _ = _usage(data)
        if prompt_tokens is None:  # a server that reports no usage still charged for it
            prompt_tokens = sum(estimate_tokens(text) for text in texts)
        return Embeddings(vectors, prompt_tokens, str(data.get("model") or ""))

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST with retries; the parsed JSON object of a 2xx answer, else ProviderError."""
        url = f"{self.base_url}/{path}"
        headers = {"content-type": "application/json", "user-agent": "OmniStream-AI/1"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        if self.vetted:
            try:
                check_url(url, Policy.from_settings())
            except UnsafeUrl as exc:
                raise ProviderError(REFUSED, f"base URL refused: {exc}") from None
        attempt = 0
        while True:
            outcome = await self._attempt(url, headers, payload)
            if isinstance(outcome, dict):
                return outcome
            error = outcome
            if attempt >= self.max_retries or not _retryable(error):
                raise error
            wait = error.retry_after
            if wait is None:
                wait = RETRY_BASE_SECONDS * 2**attempt
            elif wait > self.max_retry_after:
                raise ProviderError(
                    error.kind, f"{error} (Retry-After {wait:g} s is longer than we wait)"
                )
            attempt += 1
            await asyncio.sleep(wait)

    async def _attempt(
        self, url: str, headers: dict[str, str], payload: dict[str, Any]
    ) -> dict[str, Any] | ProviderError:
        body = json.dumps(payload).encode()
        try:
            async with asyncio.timeout(self.timeout):
                if self.vetted:
                    vet_literal(_host_of(url), Policy.from_settings())
                async with _session(self.vetted).post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    content = await response.content.read(MAX_BODY_BYTES)
        except TimeoutError:
            return ProviderError(TIMEOUT, f"no answer within {self.timeout:g} s")
        except Exception as exc:
            blocked = _blocked(exc)
            if blocked is not None:
                return ProviderError(REFUSED, f"address refused: {blocked}")
            if isinstance(exc, aiohttp.ClientError | OSError):
                detail = f"{type(exc).__name__}: {exc}"
                return ProviderError(UNREACHABLE, self._scrub(detail)[:300])
            raise
        if status == 429:
            return ProviderError(RATE_LIMITED, "rate limited (429)", retry_after=retry_after)
        if status >= 500:
            detail = f"server error {status}: {describe(content)}"
            return ProviderError(SERVER_ERROR, self._scrub(detail), retry_after=retry_after)
        if status >= 300:
            return ProviderError(REFUSED, self._scrub(f"refused {status}: {describe(content)}"))
        try:
            data = json_encoding.loads(content)
        except ValueError:
            return MalformedResponse(f"not JSON: {describe(content, 80)}")
        if not isinstance(data, dict):
            return MalformedResponse("the answer is not a JSON object")
        return data


def _check_vectors(vectors: list[list[float]]) -> None:
    """Refuse vectors no ranking can use, as a malformed answer (retried, then given up).

    WHY: ``float()`` takes ``"NaN"`` and ``"Infinity"`` (numbers sent as strings, which the
    JSON parser's own refusal of them never sees); stored, every score computed with them
    was NaN, which no confidence threshold refuses. Vectors of several sizes in one answer
    (or of none) cannot all be the model's: compared, each counted as no similarity.
    """
    sizes = {len(vector) for vector in vectors}
    if len(sizes) > 1 or 0 in sizes:
        raise MalformedResponse(f"embeddings of sizes {sorted(sizes)[:5]} in one answer")
    if not all(math.isfinite(x) for vector in vectors for x in vector):
        raise MalformedResponse("embeddings with NaN or infinite numbers")


def _retryable(error: ProviderError) -> bool:
    return error.kind in (RATE_LIMITED, SERVER_ERROR, UNREACHABLE)


def _usage(data: dict[str, Any]) -> tuple[int | None, int | None]:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None, None

    def count(name: str) -> int | None:
        value = usage.get(name)
        plausible = isinstance(value, int) and not isinstance(value, bool)
        return value if plausible and 0 <= value <= MAX_REPORTED_TOKENS else None

    return count("prompt_tokens"), count("completion_tokens")
