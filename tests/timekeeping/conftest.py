"""Fixtures for the time-driven tests: workspaces, conversations and divisions as rows."""

from __future__ import annotations

import pytest

from tests.workspaces import Workspace, register


@pytest.fixture
def workspace(client) -> Workspace:
    return register(client)


@pytest.fixture
def other_workspace(client) -> Workspace:
    return register(client)
