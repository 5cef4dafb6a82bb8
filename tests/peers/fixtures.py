"""pytest fixtures for the peers; import the ones a folder needs into its ``conftest.py``.

Servers live for the whole run (session scope); the function-scoped wrappers
reset their recordings and scripts so tests do not see each other's traffic.
"""

from __future__ import annotations

import pytest

from tests.peers.graph import start_fake_graph
from tests.peers.llm import start_fake_llm
from tests.peers.smtp import start_smtp
from tests.peers.tls import make_self_signed, server_context

SMTP_USER = "mailer@example.test"
SMTP_PASSWORD = "smtp-secret-pass"


@pytest.fixture(scope="session")
def fake_graph_server():
    graph, server = start_fake_graph()
    yield graph
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_graph(fake_graph_server):
    fake_graph_server.reset()
    yield fake_graph_server
    fake_graph_server.reset()


@pytest.fixture(scope="session")
def fake_llm_server():
    llm, server = start_fake_llm()
    yield llm
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_llm(fake_llm_server):
    fake_llm_server.reset()
    yield fake_llm_server
    fake_llm_server.reset()


@pytest.fixture(scope="session")
def smtp_tls_files(tmp_path_factory):
    """(cert.pem, key.pem) of a self-signed certificate for 127.0.0.1; cert.pem is the CA."""
    return make_self_signed(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture(scope="session")
def smtp_servers(smtp_tls_files):
    """Three relays: plain without auth, STARTTLS + AUTH, implicit TLS + AUTH."""
    context = server_context(*smtp_tls_files)
    peers = {
        "none": start_smtp(),
        "starttls": start_smtp(
            security="starttls", username=SMTP_USER, password=SMTP_PASSWORD, tls=context
        ),
        "ssl": start_smtp(security="ssl", username=SMTP_USER, password=SMTP_PASSWORD, tls=context),
    }
    yield peers
    for peer in peers.values():
        peer.controller.stop()


@pytest.fixture
def smtp_peers(smtp_servers):
    for peer in smtp_servers.values():
        peer.reset()
    yield smtp_servers


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 in server mode on an ephemeral port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def private_redis():
    """A Redis server of this test's own (see ``tests.peers.redis_server``)."""
    from tests.peers.redis_server import PrivateRedis

    server = PrivateRedis()
    server.start()
    yield server
    server.stop()
