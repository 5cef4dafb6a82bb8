"""Read the ``data-figure`` values of a console page, to compare them with the API's."""

from __future__ import annotations

from html.parser import HTMLParser


class _Figures(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if "data-figure" in found:
            self.figures[found["data-figure"]] = found.get("data-value") or ""


def figures(page: str) -> dict[str, str]:
    """``{"summary.processed": "12", "queue.events.ready": "0", ...}`` (raw values)."""
    parser = _Figures()
    parser.feed(page)
    return parser.figures


def expected_figures(view: dict) -> dict[str, str]:
    """The figures a page rendered from ``view`` (the API's overview) must show, as text.

    Only figures that stay still while nothing runs: counts, queue depths, outcomes.
    """

    def raw(value) -> str:
        return "" if value is None else str(value)

    out = {
        f"summary.{name}": raw(view["summary"][name])
        for name in ("processed", "failed", "ready", "delayed", "dead_letters", "outbox_pending")
    }
    out["dead_letters.count"] = raw(view["dead_letters"]["count"])
    out["outbox.pending"] = raw(view["outbox"]["pending"])
    for queue in view["queues"]:
        for name in ("ready", "delayed", "dead", "paused"):
            out[f"queue.{queue['queue']}.{name}"] = raw(queue[name])
    for actor in view["actors"]:
        for name in ("processed", "failed", "retried", "dead_lettered", "p50_ms", "p99_ms"):
            out[f"actor.{actor['actor']}.{name}"] = raw(actor[name])
    for job in view["scheduler"].get("jobs", []):
        out[f"scheduler.job.{job['job']}.outcome"] = raw((job["last_run"] or {}).get("outcome"))
    return out
