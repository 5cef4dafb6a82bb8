"""How much of a queue one worker process may hold: a share of Dramatiq's prefetch.

Both brokers apply it (:class:`workers.wake.WakingRedisBroker`,
:class:`workers.broker.SharingRabbitmqBroker`): on Redis it bounds the messages a consumer
moves to its own ack set, on RabbitMQ the channel's unacknowledged messages (QoS).
"""

from __future__ import annotations

from workers import queues

#: Queue -> the part of Dramatiq's prefetch (twice the worker's threads) one process may
#: hold of it. PERF: a send job holds its thread while its sends wait for the account's
#: slots in this process (``OUTBOUND_ACCOUNT_CONCURRENCY``), and every enqueue wakes every
#: process at once: the first to fetch took a whole campaign batch's jobs (10 of 50), so
#: one process sent at its 16 slots while the other's sat idle, and its threads were all
#: held, the campaign's next batch and the events' dispatch waiting behind them. A
#: quarter (half the threads) spreads the jobs over the processes; the others wait in
#: the broker, where any process with room takes them.
PREFETCH_SHARE = {queues.OUTBOUND: 4}


def shared_prefetch(queue_name: str, prefetch: int) -> int:
    """The prefetch one process's consumer of ``queue_name`` takes (at least 1)."""
    share = PREFETCH_SHARE.get(queue_name)
    return max(1, prefetch // share) if share else prefetch
