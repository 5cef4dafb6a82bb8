"""An OpenAI-compatible client (chat completions and embeddings) over httpx.

Serves hosted APIs and local servers (Ollama, vLLM, llama.cpp's server) alike: only
``POST {base}/chat/completions`` and ``POST {base}/embeddings`` are used. Each request
is bounded by ``timeout`` as a whole; 429, 5xx and refused connections are retried up
to ``max_retries`` times, honouring ``Retry-After`` (a wait longer than
``max_retry_after`` is not waited for: the reply hands off instead). A 2xx body that
is not the documented JSON raises :class:`MalformedResponse`.

APPSEC: the key goes in the Authorization header only; it is scrubbed from every error
message, and requests are never logged. A base URL an agent configures (tenant input)
is connected through the SSRF guard (:class:`VettedAsyncBackend`); the operator's
``AI_OPENAI_BASE_URL`` is trusted, so a local model server works.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Sequence
from typing import Any

import httpcore
import httpx
from httpcore._backends.auto import AutoBackend

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
from shared.webhooks.ssrf import Policy, UnsafeUrl, check_url, resolve

log = logging.getLogger(__name__)

#: First retry delay when the endpoint gives no Retry-After (doubles per retry).
RETRY_BASE_SECONDS = 0.25


class VettedAsyncBackend(httpcore.AsyncNetworkBackend):
    """httpcore's async backend, connecting only to addresses the SSRF guard vetted."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._inner = AutoBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        addresses = await loop.run_in_executor(None, resolve, host, port, self.policy)
        last: Exception | None = None
        for _family, sockaddr in addresses:
            try:
                # NOTE: TLS (started later by httpcore) still verifies the host name.
                return await self._inner.connect_tcp(
                    sockaddr[0],
                    sockaddr[1],
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last = exc
        raise httpcore.ConnectError(str(last))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


_clients: dict[tuple[int, bool], httpx.AsyncClient] = {}


def _client(vetted: bool) -> httpx.AsyncClient:
    """The running loop's client (one keep-alive pool per loop; vetted or trusted)."""
    key = (id(asyncio.get_running_loop()), vetted)
    client = _clients.get(key)
    if client is None:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
        if vetted:
            transport._pool = httpcore.AsyncConnectionPool(
                ssl_context=httpx.create_ssl_context(trust_env=False),
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=VettedAsyncBackend(Policy.from_settings()),
            )
        client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": "OmniStream-AI/1"},
        )
        _clients[key] = client
    return client


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
            text=text.strip(),
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
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedResponse(f"no embeddings in the answer ({exc})") from None
        if len(vectors) != len(texts):
            raise MalformedResponse(f"{len(vectors)} embeddings for {len(texts)} inputs")
        prompt_tokens, _ = _usage(data)
        return Embeddings(vectors, prompt_tokens or 0, str(data.get("model") or ""))

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST with retries; the parsed JSON object of a 2xx answer, else ProviderError."""
        url = f"{self.base_url}/{path}"
        headers = {"content-type": "application/json"}
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
        try:
            async with asyncio.timeout(self.timeout):
                response = await _client(self.vetted).post(url, json=payload, headers=headers)
        except TimeoutError:
            return ProviderError(TIMEOUT, f"no answer within {self.timeout:g} s")
        except httpx.TimeoutException:
            return ProviderError(TIMEOUT, f"no answer within {self.timeout:g} s")
        except UnsafeUrl as exc:
            return ProviderError(REFUSED, f"address refused: {exc}")
        except (httpx.HTTPError, OSError) as exc:
            return ProviderError(UNREACHABLE, self._scrub(f"{type(exc).__name__}: {exc}")[:300])
        status = response.status_code
        if status == 429:
            return ProviderError(
                RATE_LIMITED,
                "rate limited (429)",
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        if status >= 500:
            return ProviderError(
                SERVER_ERROR,
                self._scrub(f"server error {status}: {describe(response.content)}"),
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        if status >= 300:
            return ProviderError(
                REFUSED, self._scrub(f"refused {status}: {describe(response.content)}")
            )
        try:
            data = response.json()
        except ValueError:
            return MalformedResponse(f"not JSON: {describe(response.content, 80)}")
        if not isinstance(data, dict):
            return MalformedResponse("the answer is not a JSON object")
        return data


def _retryable(error: ProviderError) -> bool:
    return error.kind in (RATE_LIMITED, SERVER_ERROR, UNREACHABLE)


def _usage(data: dict[str, Any]) -> tuple[int | None, int | None]:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None, None

    def count(name: str) -> int | None:
        value = usage.get(name)
        return value if isinstance(value, int) and value >= 0 else None

    return count("prompt_tokens"), count("completion_tokens")
