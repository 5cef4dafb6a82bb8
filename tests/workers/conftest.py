"""Fixtures for the worker tests: a Redis client, a tenant row, and polling with a deadline."""

from __future__ import annotations

import uuid

import pytest
import redis

from shared.config import get_settings


@pytest.fixture(scope="session")
def redis_client():
    client = redis.Redis.from_url(get_settings().redis_url)
    yield client
    client.close()


@pytest.fixture
def namespace():
    """This run's Redis namespace (the one the global broker and its Metrics use)."""
    return get_settings().redis_namespace


@pytest.fixture
def scratch_namespace(namespace):
    """A Redis namespace of this test's own, under the run's prefix (deleted at session end)."""
    return f"{namespace}-scratch-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def tenant(database) -> uuid.UUID:
    """Insert a tenant with a unique slug and return its id."""
    from shared.db import session_scope
    from shared.models import Tenant

    with session_scope() as session:
        row = Tenant(name="Worker tests", slug=f"workers-{uuid.uuid4().hex[:12]}")
        session.add(row)
        session.flush()
        return row.id
