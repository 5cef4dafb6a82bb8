"""Fixtures shared by the whole suite: a database and a Redis namespace of this run's own.

The environment is set before any project module is imported, because settings,
the engine and the Dramatiq broker are built from it on first use. Every run
creates ``omnistream_test_<random>``, migrates it with Alembic and drops it at the
end; every Redis key it writes lives under ``omnistream-test-<random>``. With
``BROKER_URL=amqp://...`` the broker's queues live in a RabbitMQ vhost of that name,
deleted when the process exits.
"""

from __future__ import annotations

import os
import uuid

_RUN_ID = uuid.uuid4().hex[:10]
_BASE_DB = os.environ.get("TEST_DATABASE_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")
os.environ.update(
    ENV="test",
    DATABASE_URL=f"{_BASE_DB}/omnistream_test_{_RUN_ID}",
    REDIS_NAMESPACE=f"omnistream-test-{_RUN_ID}",
    SECRET_KEY="test-secret-key-" + _RUN_ID * 4,
    OUTBOX_SWEEP_AFTER_SECONDS="1",
    SCHEDULER_HEARTBEAT_SECONDS="0.5",
    SCHEDULER_STANDBY_POLL_SECONDS="0.25",
    METRICS_TOKEN="operator-token-" + _RUN_ID,
    # Processes write their worker-metric counts every 0.1 s, so assertions wait little.
    METRICS_FLUSH_SECONDS="0.1",
    # Thousands of throwaway users: argon2id at its cheapest (production keeps RFC 9106's).
    PASSWORD_HASH_TIME_COST="1",
    PASSWORD_HASH_MEMORY_KIB="64",
    PASSWORD_HASH_PARALLELISM="1",
    VALIDATE_RESPONSES="true",
    # The webhook receivers of the tests listen on loopback over plain http.
    WEBHOOK_ALLOW_HTTP="true",
    WEBHOOK_SSRF_ALLOWLIST="127.0.0.1/32",
    # The download proxy's tests make the first fetch of a file themselves (with their own
    # MEDIA_ROOT); tests/channels_inbound/test_media_prefetch.py turns the prefetch on.
    MEDIA_PREFETCH="false",
)
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
# PERF: on Redis the consumers poll at the production default (enqueues wake them; see
# workers/wake.py): at 20 ms each test process's idle worker burnt a quarter of a core
# polling its 22 queues (5.8 % at 200 ms), a tax on the whole suite. On RabbitMQ the poll
# is the tick that hands held delayed messages (retries) over, so it stays short there.
os.environ.pop("WORKER_TIMEOUT_MS", None)
if os.environ.get("BROKER_URL", "").startswith(("amqp://", "amqps://")):
    os.environ["WORKER_TIMEOUT_MS"] = "20"
    # The RabbitMQ pass (make test runs the tests marked "broker" again on RabbitMQ):
    # a vhost of this process's own plays the part of the Redis namespace.
    import atexit

    from tests.peers.rabbitmq_vhost import create_vhost, delete_vhost

    os.environ["BROKER_URL"] = create_vhost(os.environ["BROKER_URL"], f"omnistream-test-{_RUN_ID}")
    atexit.register(delete_vhost, f"omnistream-test-{_RUN_ID}")

import pytest  # noqa: E402
import redis  # noqa: E402

# NOTE: declare the configured broker before any test module declares an actor;
# otherwise Dramatiq would bind those actors to its own default broker.
import workers.broker  # noqa: E402, F401
from shared import migrate  # noqa: E402
from shared.config import get_settings  # noqa: E402
from shared.db import reset_engine  # noqa: E402
from tests.peers.fixtures import private_redis  # noqa: E402, F401
from tests.peers.throwaway_database import commit_without_flush_wait  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def database():
    """Create and migrate this run's database; drop it when the run ends."""
    url = get_settings().database_url
    migrate.drop_database(url)
    migrate.create_database(url)
    commit_without_flush_wait(url)
    migrate.upgrade(url)
    yield url
    reset_engine()
    migrate.drop_database(url)


@pytest.fixture(scope="session", autouse=True)
def redis_namespace():
    """Yield this run's Redis key prefix and delete every key under it at the end."""
    settings = get_settings()
    yield settings.redis_namespace
    from workers.metrics import flush_all

    flush_all()  # counts still pending would otherwise be written at exit, after the cleanup
    client = redis.Redis.from_url(settings.redis_url)
    keys = list(client.scan_iter(f"{settings.redis_namespace}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def broker(database):
    """The global Dramatiq broker, built from this run's settings."""
    from workers.main import broker

    yield broker
    broker.flush_all()


@pytest.fixture(scope="session")
def worker(broker):
    """A real Dramatiq worker consuming every queue in this process, for the whole run."""
    import dramatiq

    worker = dramatiq.Worker(broker, worker_timeout=20, worker_threads=4)
    worker.start()
    yield worker
    worker.stop(timeout=10_000)


@pytest.fixture(scope="session")
def app(database, broker):
    from api.app import create_app
    from tests.documented_statuses import DocumentedStatuses

    return DocumentedStatuses(create_app())


@pytest.fixture
def client(app):
    import falcon.testing

    return falcon.testing.TestClient(app)


@pytest.fixture
def workspace(client):
    """A freshly registered tenant, called as its admin."""
    from tests.workspaces import register

    return register(client)


@pytest.fixture
def other_workspace(client):
    """A second tenant: its ids must be invisible to ``workspace``."""
    from tests.workspaces import register

    return register(client)
