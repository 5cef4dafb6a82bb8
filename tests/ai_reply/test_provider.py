"""The OpenAI-compatible client against the fake model server: embeddings, tokens, errors."""

from __future__ import annotations

import email.utils
import json
import time

import pytest

from shared.ai.providers import ModelRequest, ProviderError
from shared.ai.providers.loop import run
from shared.ai.providers.openai import OpenAICompatible, retry_after_seconds


def _client(fake_llm, **overrides) -> OpenAICompatible:
    options = {
        "base_url": fake_llm.base_url,
        "api_key": "sk-provider-test",
        "model": "chat-model",
        "embedding_model": "embed-model",
        "timeout": 1.0,
        "max_retries": 1,
        "max_retry_after": 2.0,
        "vetted": False,
    } | overrides
    return OpenAICompatible(**options)


def test_embeddings_come_back_in_input_order_with_their_tokens(fake_llm):
    embeddings = run(_client(fake_llm).embed(["first text", "the second text"]))
    assert len(embeddings.vectors) == 2 and len(embeddings.vectors[0]) == 8
    assert embeddings.vectors[0] != embeddings.vectors[1]
    assert embeddings.prompt_tokens == 5
    [request] = fake_llm.requests
    assert request.path == "/v1/embeddings" and request.body["model"] == "embed-model"
    assert request.token == "sk-provider-test"


def test_a_completion_reports_the_servers_token_counts(fake_llm):
    fake_llm.answer = "four words answer here"
    request = ModelRequest(messages=[{"role": "user", "content": "one two three"}])
    completion = run(_client(fake_llm).complete(request))
    assert (completion.text, completion.prompt_tokens, completion.completion_tokens) == (
        "four words answer here",
        3,
        4,
    )
    assert fake_llm.requests[0].body["model"] == "chat-model"


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        (("status", 401), "refused"),
        (("status", 503), "server_error"),
        (("malformed",), "malformed"),
    ],
)
def test_errors_are_typed(fake_llm, behaviour, kind):
    fake_llm.script(behaviour)
    with pytest.raises(ProviderError) as raised:
        run(_client(fake_llm).complete(ModelRequest(messages=[{"role": "user", "content": "x"}])))
    assert raised.value.kind == kind
    assert "sk-provider-test" not in str(raised.value)


def test_retry_after_is_read_as_seconds_or_a_date():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= retry_after_seconds(later) <= 10


@pytest.mark.parametrize(
    "body",
    [b"[" * 5000, b'{"choices": [{"message": {"content": NaN}}]}'],
    ids=["nested-past-the-bound", "nan"],
)
def test_a_completion_no_json_parser_should_read_is_malformed(fake_llm, body):
    """An answer nested past the JSON bound is refused as malformed, not a crash."""
    fake_llm.script(("raw", body))
    with pytest.raises(ProviderError) as raised:
        run(_client(fake_llm).complete(ModelRequest(messages=[{"role": "user", "content": "x"}])))
    assert raised.value.kind == "malformed"


def test_embeddings_past_a_float_are_malformed(fake_llm):
    huge = "1" + "0" * 400  # an integer no float holds
    fake_llm.embeddings_body = f'{{"data": [{{"index": 0, "embedding": [{huge}]}}]}}'.encode()
    with pytest.raises(ProviderError) as raised:
        run(_client(fake_llm).embed(["a text"]))
    assert raised.value.kind == "malformed"


@pytest.mark.parametrize(
    "rows",
    [
        [["NaN", 0.5]],
        [[0.5, "-Infinity"]],
        [["1e999", 0.5]],
        [[0.1, 0.2], [0.3]],
        [[], []],
    ],
    ids=["nan", "infinity", "past-a-float", "two-sizes", "empty"],
)
def test_embeddings_no_ranking_can_use_are_malformed(fake_llm, rows):
    """Numbers as strings passed ``float()`` as NaN or infinity, and vectors of two sizes in
    one answer (or of none) were stored: every score computed with them was NaN or 0."""
    data = [{"index": i, "embedding": row} for i, row in enumerate(rows)]
    fake_llm.embeddings_body = json.dumps({"data": data}).encode()
    with pytest.raises(ProviderError) as raised:
        run(_client(fake_llm).embed([f"text {i}" for i in range(len(rows))]))
    assert raised.value.kind == "malformed"
