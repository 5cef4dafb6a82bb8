"""The typing subscription notices a Redis connection that went silent, and comes back.

A half-open connection (a NAT that forgot the flow, a failover to a dead host) gives
no error: without a timeout of its own the subscription waited forever, and every
client of the stream process stopped seeing typing indicators until a restart.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

import pytest

from shared.config import get_settings
from tests.peers.tcp_proxy import TcpProxy
from tests.realtime.conftest import inbound, ready_event, serving


@pytest.fixture
def redis_proxy():
    """The run's Redis behind a proxy this test can black-hole; the proxy's URL."""
    real = urlsplit(get_settings().redis_url)
    proxy = TcpProxy(real.hostname or "127.0.0.1", real.port or 6379).start()
    credentials = real.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
    yield proxy, real._replace(netloc=netloc).geturl()
    proxy.stop()


def test_typing_flows_again_after_the_redis_connection_goes_half_open(
    database, broker, ws, streams, redis_proxy, monkeypatch, caplog
):
    from api import stream_app, stream_hub

    proxy, url = redis_proxy
    monkeypatch.setattr(stream_hub, "TYPING_PING_SECONDS", 0.5, raising=False)
    monkeypatch.setattr(stream_hub, "TYPING_SILENCE_SECONDS", 1.5, raising=False)
    monkeypatch.setattr(stream_hub, "TYPING_RETRY_SECONDS", 0.2, raising=False)
    monkeypatch.setattr(stream_hub, "TYPING_RETRY_MAX_SECONDS", 0.5, raising=False)
    caplog.set_level(logging.INFO, logger=stream_hub.__name__)
    _agent, agent_token = ws.create_agent("agent")
    conversation = inbound(ws, "cust-typing-outage", "hi")["conversation_id"]
    with serving(stream_app.create_stream_app(stream_hub.Hub(url))) as stream_url:
        watcher = streams(stream_url, ws.token)
        ready_event(watcher)
        _typing_reaches(watcher, ws, conversation, agent_token, within=5)

        proxy.black_hole()
        time.sleep(3)  # longer than the silence bound: the outage is noticed meanwhile
        proxy.restore()
        # Bound: the silence a dead connection may keep, plus a back-off, plus slack.
        _typing_reaches(watcher, ws, conversation, agent_token, within=5)
        watcher.close()

    warnings = [r for r in caplog.records if r.name == stream_hub.__name__
                and r.levelno == logging.WARNING and "typing" in r.getMessage()]  # fmt: skip
    # Once per outage, however many attempts failed during it.
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert any(r.getMessage() == "the typing subscription is back" for r in caplog.records)


def _typing_reaches(watcher, ws, conversation: str, token: str, within: float) -> None:
    """Typing indicators (fire and forget) are posted until ``watcher`` receives one."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sent = ws.call(
            "POST", f"/api/conversations/{conversation}/typing", json={"typing": True}, token=token
        )
        assert sent.status_code == 202, sent.text
        if any(e.event == "typing" for e in watcher.drain(0.3)):
            return
    raise AssertionError(f"no typing indicator within {within} s")
