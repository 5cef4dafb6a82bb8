"""Model providers behind one interface (:mod:`.base`): ``offline`` (the default) and ``openai``.

:func:`for_agent` builds the provider an agent names, with its own base URL, model and
key (decrypted here, kept in memory only) or the settings' defaults.
"""

from __future__ import annotations

from shared import crypto
from shared.ai.providers.base import (
    Completion,
    Embeddings,
    MalformedResponse,
    ModelRequest,
    Provider,
    ProviderError,
)
from shared.ai.providers.offline import OfflineProvider
from shared.ai.providers.openai import OpenAICompatible
from shared.config import get_settings
from shared.models.ai import AiAgent

__all__ = [
    "Completion",
    "Embeddings",
    "MalformedResponse",
    "ModelRequest",
    "Provider",
    "ProviderError",
    "for_agent",
]

_OFFLINE = OfflineProvider()


def for_agent(agent: AiAgent) -> Provider:
    """The provider ``agent`` is configured for (``offline`` unless it says ``openai``)."""
    if agent.provider != "openai":
        return _OFFLINE
    settings = get_settings()
    api_key = (
        crypto.decrypt(agent.api_key_encrypted)
        if agent.api_key_encrypted
        else settings.ai_openai_api_key
    )
    return OpenAICompatible(
        base_url=agent.base_url or settings.ai_openai_base_url,
        api_key=api_key,
        model=agent.model or settings.ai_default_model,
        embedding_model=agent.embedding_model or settings.ai_default_embedding_model,
        timeout=settings.ai_model_timeout_seconds,
        max_retries=settings.ai_model_max_retries,
        max_retry_after=settings.ai_model_max_retry_after_seconds,
        # APPSEC: a tenant's own base URL goes through the SSRF guard; the operator's does not.
        vetted=bool(agent.base_url),
    )
