"""Concurrent requests: one survey per conversation, one rating per survey."""

from __future__ import annotations

import threading
from collections import Counter

from tests.csat.conftest import conversation, link_of, survey_messages


def _together(n: int, call) -> Counter:
    """Run ``call`` in ``n`` threads released at once; count the status codes."""
    barrier = threading.Barrier(n)
    statuses: list[int] = []

    def run() -> None:
        barrier.wait()
        statuses.append(call().status_code)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return Counter(statuses)


def test_concurrent_surveys_and_ratings_happen_once(ws, client):
    conv = conversation(ws)
    sent = _together(4, lambda: ws.call("POST", f"/api/conversations/{conv}/csat"))
    assert sent == Counter({201: 1, 409: 3})
    (message,) = survey_messages(ws, conv)

    survey_id, token = link_of(message)
    rated = _together(
        4,
        lambda: client.simulate_patch(
            f"/api/public/csat-surveys/{survey_id}", json={"token": token, "rating": 5}
        ),
    )
    assert rated == Counter({200: 1, 409: 3})
