"""Embeddings for knowledge and questions, through the agent's model provider.

The knowledge package ranks by vectors when an agent has an ``embedding_model`` but knows
nothing of providers; this module is the one bridge (installed by the workers and the API
at import of :mod:`shared.ai.generation`). Calls run on the providers' event loop.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Sequence

from shared.ai import providers
from shared.ai.knowledge import embedding
from shared.ai.providers import loop
from shared.models.ai import AiAgent

log = logging.getLogger(__name__)

#: Seconds a reply waits for its questions' embeddings in all. WHY: the provider retries
#: a 429/5xx honouring Retry-After, so a struggling endpoint could hold the reply's job
#: for minutes (30 s a request, 20 s a wait, 3 tries), past its time limit: each retry
#: of the job died the same way and the contact was handed off unanswered.
QUESTION_EMBEDDING_SECONDS = 10.0


class ProviderEmbedder:
    """A synchronous ``embed`` over an asynchronous provider (knowledge's Embedder)."""

    def __init__(self, provider: providers.Provider):
        self.provider = provider

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_counted(texts)[0]

    def embed_counted(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """The vectors and the tokens they cost (the provider's count, else an estimate)."""
        result = loop.run(self.provider.embed(texts))
        return result.vectors, result.prompt_tokens


def embedder_for(agent: AiAgent) -> ProviderEmbedder | None:
    """The agent's embedder; None for the offline provider, which makes no vectors."""
    provider = providers.for_agent(agent)
    if provider.name == "offline":
        return None
    return ProviderEmbedder(provider)


def question_deadline() -> float:
    """The monotonic time a reply's question embeddings must be done by."""
    return time.monotonic() + QUESTION_EMBEDDING_SECONDS


def question_vector(
    agent: AiAgent, question: str, *, deadline: float | None = None
) -> tuple[list[float] | None, int]:
    """The question's embedding when the agent ranks by vectors (None otherwise, on
    failure or past ``deadline``) and the tokens it cost, for the agent's usage.

    A failing or slow embeddings endpoint must not cost the contact an answer: text
    ranking alone still works, so the error is logged and the reply goes on without a
    vector; a call still running at the deadline is cancelled.
    """
    if not agent.embedding_model:
        return None, 0
    embedder = embedder_for(agent)
    if embedder is None:
        return None, 0
    deadline = question_deadline() if deadline is None else deadline
    left = deadline - time.monotonic()
    if left <= 0:
        return None, 0
    call = loop.submit(embedder.provider.embed([question]))
    try:
        result = call.result(left)
        return result.vectors[0], result.prompt_tokens
    except concurrent.futures.TimeoutError:
        call.cancel()
        log.warning(
            "question embedding for AI agent %s took over %g s; ranking by text",
            agent.id,
            QUESTION_EMBEDDING_SECONDS,
        )
        return None, 0
    except Exception:
        log.warning("question embedding failed for AI agent %s; ranking by text", agent.id)
        return None, 0


embedding.set_embedder_factory(embedder_for)
