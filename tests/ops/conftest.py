"""Fixtures for the operators' console tests: the operator's header, settings changes."""

from __future__ import annotations

import os

import pytest

from shared.config import get_settings
from tests.peers.fixtures import private_redis  # noqa: F401

OPERATOR = {"Authorization": f"Bearer {os.environ['METRICS_TOKEN']}"}


@pytest.fixture
def settings_env(monkeypatch):
    """Set environment variables and rebuild the settings; both restored afterwards."""

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield set_env
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def operator(client):
    """Call the API as the platform operator: ``operator("GET", "/api/ops/overview")``."""

    def call(method: str, path: str, **kwargs):
        return client.simulate_request(method, path, headers=OPERATOR, **kwargs)

    return call
