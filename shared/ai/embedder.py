"""Embeddings for knowledge and questions, through the agent's model provider.

The knowledge package ranks by vectors when an agent has an ``embedding_model`` but knows
nothing of providers; this module is the one bridge (installed by the workers and the API
at import of :mod:`shared.ai.generation`). Calls run on the providers' event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from shared.ai import providers
from shared.ai.knowledge import embedding
from shared.ai.providers import loop
from shared.models.ai import AiAgent

log = logging.getLogger(__name__)


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


def question_vector(agent: AiAgent, question: str) -> tuple[list[float] | None, int]:
    """The question's embedding when the agent ranks by vectors (None otherwise or on
    failure) and the tokens it cost, for the agent's usage.

    A failing embeddings endpoint must not cost the contact an answer: text ranking alone
    still works, so the error is logged and the reply goes on without a vector.
    """
    if not agent.embedding_model:
        return None, 0
    embedder = embedder_for(agent)
    if embedder is None:
        return None, 0
    try:
        vectors, tokens = embedder.embed_counted([question])
        return vectors[0], tokens
    except Exception:
        log.warning("question embedding failed for AI agent %s; ranking by text", agent.id)
        return None, 0


embedding.set_embedder_factory(embedder_for)
