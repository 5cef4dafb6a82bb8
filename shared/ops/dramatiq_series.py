"""The series Dramatiq's own Prometheus middleware exposes, from our counters.

So that a Grafana dashboard built for ``dramatiq.middleware.Prometheus`` works
unchanged, ``/metrics`` repeats its series with the same names, types, help texts,
labels (``queue_name``, ``actor_name``) and histogram buckets (checked against
dramatiq/middleware/prometheus.py of Dramatiq 2.x):

``dramatiq_messages_total``
    Every attempt, processed or failed, and every skipped message.
``dramatiq_message_errors_total`` / ``dramatiq_message_rejects_total``
    Attempts that raised / messages dead-lettered.
``dramatiq_message_retries_total``
    Retries scheduled. Dramatiq counts them when the retry is enqueued with its
    backoff, onto the delay queue, so its ``queue_name`` label is ``{queue}.DQ``;
    so is it here.
``dramatiq_messages_inprogress``
    Messages running now (from the workers' beats, :mod:`shared.ops.processes`).
``dramatiq_delayed_messages_inprogress``
    Delayed messages workers hold in memory until their eta, labelled with the delay
    queue as Dramatiq's ``before_delay_message`` sees it. (The issue called it
    ``dramatiq_message_delayed_messages_inprogress``; Dramatiq's source says
    ``dramatiq_delayed_messages_inprogress``, and the source wins.)
``dramatiq_message_duration_milliseconds``
    Histogram, Dramatiq's buckets (:data:`shared.worker_metrics.DRAMATIQ_BUCKETS_MS`).

Unlike Dramatiq's multiprocess files, these add up over every machine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from dramatiq.common import dq_name
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from shared import worker_metrics as wm

LABELS = ["queue_name", "actor_name"]


class DramatiqCollector:
    """Render Dramatiq's series from values already read (collecting does no I/O)."""

    def __init__(
        self,
        totals: Mapping[tuple[str, str], Mapping[str, int]],
        in_progress: Mapping[tuple[str, str], int],
        delayed: Mapping[tuple[str, str], int],
    ):
        self.totals = totals
        self.in_progress = in_progress
        self.delayed = delayed

    def collect(self) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "dramatiq_messages", "The total number of messages processed.", labels=LABELS
        )
        errors = CounterMetricFamily(
            "dramatiq_message_errors", "The total number of errored messages.", labels=LABELS
        )
        retries = CounterMetricFamily(
            "dramatiq_message_retries", "The total number of retried messages.", labels=LABELS
        )
        rejects = CounterMetricFamily(
            "dramatiq_message_rejects",
            "The total number of dead-lettered messages.",
            labels=LABELS,
        )
        durations = HistogramMetricFamily(
            "dramatiq_message_duration_milliseconds",
            "The time spent processing messages.",
            labels=LABELS,
        )
        for (queue, actor), counts in sorted(self.totals.items()):
            labels = [queue, actor]
            attempts = counts.get("processed", 0) + counts.get("failed", 0)
            messages.add_metric(labels, attempts + counts.get("skipped", 0))
            errors.add_metric(labels, counts.get("failed", 0))
            rejects.add_metric(labels, counts.get("dead_lettered", 0))
            retries.add_metric([dq_name(queue), actor], counts.get("retried", 0))
            observed = [counts.get(name, 0) for name in wm.DRAMATIQ_BUCKET_FIELDS]
            if any(observed):
                cumulative, buckets = 0, []
                for bound, count in zip(
                    (*wm.DRAMATIQ_BUCKETS_MS, float("inf")), observed, strict=True
                ):
                    cumulative += count
                    buckets.append((floatToGoString(bound), cumulative))
                durations.add_metric(
                    labels, buckets, sum_value=counts.get(wm.DRAMATIQ_SUM_FIELD, 0)
                )
        yield messages
        yield errors
        yield retries
        yield rejects

        running = GaugeMetricFamily(
            "dramatiq_messages_inprogress", "The number of messages in progress.", labels=LABELS
        )
        for (queue, actor), count in sorted(self.in_progress.items()):
            running.add_metric([queue, actor], count)
        yield running
        held = GaugeMetricFamily(
            "dramatiq_delayed_messages_inprogress",
            "The number of delayed messages in memory.",
            labels=LABELS,
        )
        for (queue, actor), count in sorted(self.delayed.items()):
            held.add_metric([dq_name(queue), actor], count)
        yield held
        yield durations
