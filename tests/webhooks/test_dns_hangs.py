"""A host name whose lookup hangs holds none of the threads every other delivery needs.

The lookup (``getaddrinfo``, the OS's) runs on a thread; an attempt's timeout stops
waiting for it, but the thread stays held until the OS gives up (tens of seconds for a
name whose DNS never answers). On the loop's shared executor, a tenant's endpoint with
such a name filled every thread, and every delivery of the process (and every other
lookup made on that loop) waited for its own lookup until it timed out.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid

import pytest

from shared.webhooks import aio_transport, sender, signing
from shared.webhooks.delivery import Claimed
from tests.waiting import wait_until

TIMEOUT = 2.0
#: Well under TIMEOUT: the attempt was refused a lookup, not left waiting for one.
FAST_MS = 1000


@pytest.fixture
def hanging(monkeypatch, receiver):
    """The lookup of any host named ``hang...`` hangs until the test ends; any other host
    resolves to the receiver."""
    released = threading.Event()

    def resolve(host: str, port: int, policy) -> list:
        if host.startswith("hang"):
            released.wait(30)
            raise OSError(f"cannot resolve {host}")
        return [(socket.AF_INET, ("127.0.0.1", receiver.port))]

    monkeypatch.setattr(aio_transport, "resolve", resolve)
    yield
    released.set()
    # The lookups that hung return: a fresh name resolves again, for the next test.
    wait_until(
        lambda: (
            sender.send_all([claim(f"http://back.example:{receiver.port}/back")])[0].error_kind
            is None
        ),
        "lookups answered again",
    )


def fresh() -> str:
    """A host name never used before: no kept-alive connection to it (it is looked up)."""
    return f"good-{uuid.uuid4().hex[:12]}.example"


def claim(url: str) -> Claimed:
    return Claimed(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        endpoint_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        event_type="campaign.completed",
        payload={"n": 1},
        attempt=1,
        url=url,
        enabled=True,
        secrets=(signing.generate_secret(),),
        timeout=TIMEOUT,
        max_concurrency=100,
    )


def test_a_host_whose_lookup_hangs_does_not_delay_other_hosts(hanging, receiver, path):
    hung = [claim("http://hang.example/hook") for _ in range(40)]
    good = claim(f"http://{fresh()}:{receiver.port}{path}")
    *stuck, sent = sender.send_all([*hung, good])
    assert sent.error_kind is None and sent.status_code == 200, sent
    assert len(receiver.at(path)) == 1
    # The name that hangs holds a few threads; its other attempts fail at once, retried
    # later as any connection failure.
    refused = [r for r in stuck if r.duration_ms < FAST_MS]
    assert len(refused) >= len(hung) - aio_transport.LOOKUPS_PER_HOST, stuck
    assert {r.error_kind for r in stuck} <= {"connection", "timeout"}
    assert all("lookups" in r.error for r in refused), refused[0].error


def test_lookups_that_hang_fill_only_the_resolver_threads_and_fail_fast(
    hanging, receiver, path, monkeypatch
):
    monkeypatch.setattr(aio_transport, "RESOLVER_THREADS", 4, raising=False)
    runner = sender.loop_thread()
    hung = [claim(f"http://hang-{n}.example/hook") for n in range(4)]
    good = claim(f"http://{fresh()}:{receiver.port}{path}")
    *stuck, refused = sender.send_all([*hung, good])
    assert {r.error_kind for r in stuck} == {"timeout"}
    # Every resolver thread is held: the attempt fails now (retried later), not at its
    # timeout (which would also throttle its endpoint's retries).
    assert refused.error_kind == "connection" and refused.duration_ms < FAST_MS, refused
    assert "lookups" in refused.error
    # The loop's shared executor is not held by them: its own lookups answer at once.
    started = time.monotonic()
    assert runner.run(runner.loop.getaddrinfo("127.0.0.1", 80))
    assert time.monotonic() - started < 1.0
