"""The peers' settings are put back as they were, so no folder changes another's world."""

from __future__ import annotations

import os

import pytest

from shared.config import get_settings
from tests.peers.environment import environment


@pytest.fixture
def known_environment(monkeypatch):
    """No Graph API origin set, a version set; the process's own values again afterwards."""
    monkeypatch.delenv("META_GRAPH_BASE_URL", raising=False)
    monkeypatch.setenv("META_GRAPH_VERSION", "v20.0")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_settings_follow_the_block_and_are_put_back(known_environment):
    with environment(META_GRAPH_BASE_URL="http://127.0.0.1:9", META_GRAPH_VERSION=None):
        assert get_settings().meta_graph_base_url == "http://127.0.0.1:9"
        assert "META_GRAPH_VERSION" not in os.environ
    assert "META_GRAPH_BASE_URL" not in os.environ
    assert get_settings().meta_graph_base_url == "https://graph.facebook.com"
    assert get_settings().meta_graph_version == "v20.0"


def test_a_failing_block_still_puts_them_back(known_environment):
    with pytest.raises(RuntimeError), environment(META_GRAPH_BASE_URL="http://127.0.0.1:9"):
        raise RuntimeError("the test failed")
    assert "META_GRAPH_BASE_URL" not in os.environ
    assert get_settings().meta_graph_base_url == "https://graph.facebook.com"
