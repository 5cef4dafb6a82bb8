"""The one provider interface: what a reply asks of a model, what comes back, how it fails.

A provider turns a :class:`ModelRequest` (the prompt's messages, plus the retrieved
knowledge and the contact's question for providers that answer without a model)
into a :class:`Completion`, or raises :class:`ProviderError`. Providers are
asynchronous: model calls run on the worker process's event loop, never one
worker thread per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.ai.retrieval import Hit

#: Failure kinds: the reply path hands the conversation off on every one of them.
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"
RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
MALFORMED = "malformed"
REFUSED = "refused"
#: The offline provider found nothing it may answer with (not a model failure).
NO_ANSWER = "no_answer"


class ProviderError(Exception):
    """A model call that gave no usable answer; ``kind`` says why, ``str()`` the detail.

    APPSEC: the message never holds the API key (requests are never echoed into it).
    """

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class MalformedResponse(ProviderError):
    """The endpoint answered 2xx with a body that is not the JSON the API defines."""

    def __init__(self, message: str) -> None:
        super().__init__(MALFORMED, message)


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """Everything a provider may use to answer one contact."""

    messages: list[dict[str, str]]
    hits: Sequence[Hit] = ()
    question: str = ""
    temperature: float = 0.3
    max_tokens: int = 512


@dataclass(frozen=True, slots=True)
class Completion:
    """A model's answer and what it cost, in tokens."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    #: The hits the answer was taken from (the offline provider's single source).
    used_hits: tuple[Hit, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int = 0
    model: str = ""


class Provider(Protocol):
    """What every model provider offers; ``name`` is stored on the agent (``provider``)."""

    name: str

    async def complete(self, request: ModelRequest) -> Completion: ...

    async def embed(self, texts: Sequence[str]) -> Embeddings: ...


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters a token) for providers that report none."""
    return max(1, (len(text) + 3) // 4) if text else 0


def describe(value: Any, limit: int = 200) -> str:
    """A short, printable excerpt of a peer's answer for an error message."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text[:limit].replace("\n", " ")
