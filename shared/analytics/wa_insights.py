"""WhatsApp insights: Meta's own figures for a WhatsApp Business Account, cached 5 minutes.

Each answer is one or a few Graph API reads with the account's access token (the
account named, else the tenant's default WhatsApp account), through the shared
:func:`~shared.channels.graph.graph_client`:

- ``messages``: ``GET /{waba}?fields=analytics.start(s).end(e).granularity(DAY)``
  (``data_points`` of sent and delivered; read and failed when Meta reports them);
- ``conversations``: ``GET /{waba}?fields=conversation_analytics...granularity(DAILY)
  .dimensions(["CONVERSATION_TYPE","CONVERSATION_DIRECTION"])``;
- ``templates``: ``GET /{waba}/message_templates`` (ids and names), page after page
  while Meta's answer has ``paging.next``, each next page asked with
  ``paging.cursors.after`` on our own base URL (never at ``paging.next``, an absolute
  URL the token would follow), at most :data:`MAX_TEMPLATE_PAGES` pages: past them the
  answer is 409 ``too_many_pages``, never a silently cut list; a cursor asked for
  before is Meta's failure (502). Then ``GET /{waba}/template_analytics`` per 10
  template ids (Meta's limit), summed.

Answers are cached in Redis per account, kind and range for :data:`CACHE_SECONDS`:
dashboards poll, and Meta rate-limits these reads. Redis down only skips the cache.
Transient failures are retried by the Graph client; what Meta still refuses answers as
every in-request Graph call does (:mod:`shared.channels.meta_calls`): 502 when Meta
fails or answers figures in a shape these readers do not know, 429 when it throttles,
409 when it rejects the token (the account is then marked ``error``), each naming
Meta's code and message. Ranges are checked first
(:func:`shared.analytics.periods.date_range`, then :func:`_within_metas_days`), so a bad
one never reaches Meta: ``start`` falls between :data:`EARLIEST_START` and tomorrow in the
tenant's timezone.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import redis
from sqlalchemy.orm import Session

from shared import redis_client
from shared.analytics.local_time import tenant_zone, today
from shared.analytics.periods import date_range
from shared.channels import meta_calls
from shared.channels.accounts import decrypt_credentials, named_or_default
from shared.channels.graph import graph_client, next_cursor
from shared.channels.graph_errors import IntegrationNotFound
from shared.context import Ctx
from shared.errors import Conflict, ValidationFailed
from shared.models import IntegrationAccount

log = logging.getLogger(__name__)

CACHE_SECONDS = 300
#: Template ids per ``template_analytics`` call (Meta refuses more).
TEMPLATE_IDS_PER_CALL = 10
#: Templates asked for per page of ``message_templates``.
TEMPLATE_PAGE_SIZE = 100
#: The earliest ``start`` asked of Meta. WhatsApp Business has no figures before then (and
#: Meta's own lookback is shorter: a year for messages and conversations, 90 days for
#: templates, which Meta enforces itself); a day before 1970 went to Meta as a negative
#: Unix timestamp.
EARLIEST_START = dt.date(2015, 1, 1)
#: Pages of templates one answer reads: 6,000 templates, the most Meta lets one WABA
#: hold. A listing longer than that (a cursor that never ends) answers 409.
MAX_TEMPLATE_PAGES = 60


class TooManyPages(Conflict):
    """Meta lists more templates than one answer reads: refused, not cut short."""

    code = "too_many_pages"


def _account(
    session: Session, ctx: Ctx, account_id: uuid.UUID | None
) -> tuple[IntegrationAccount, str, str]:
    """The WhatsApp account, its WABA id and access token; 404 without one."""
    account = named_or_default(session, ctx.tenant_id, "whatsapp", account_id)
    if account is None:
        raise IntegrationNotFound(
            "No WhatsApp integration account"
            + (" with this id" if account_id else "; connect one first")
        )
    waba_id = str((account.settings or {}).get("waba_id") or "")
    token = decrypt_credentials(account).get("access_token") or ""
    if not waba_id or not token:
        raise ValidationFailed.field(
            "integration_account_id", "the WhatsApp account needs a waba_id and an access_token"
        )
    return account, waba_id, token


def _within_metas_days(session: Session, ctx: Ctx, first: dt.date) -> None:
    """422 naming ``start`` for a range Meta cannot have figures for.

    Meta counts UTC days, and the UTC day may be the tenant's tomorrow (a zone behind
    UTC): a range may start as late as tomorrow in the tenant's timezone, not later (it
    would lie entirely in the future). Not before :data:`EARLIEST_START`.
    """
    if first < EARLIEST_START:
        raise ValidationFailed.field(
            "start",
            f"must not be before {EARLIEST_START}: WhatsApp Business has no figures before then",
        )
    latest = today(tenant_zone(session, ctx.tenant_id)) + dt.timedelta(days=1)
    if first > latest:
        raise ValidationFailed.field(
            "start",
            f"must not be after {latest} (tomorrow in the tenant's timezone):"
            " Meta has no figures for days to come",
        )


def _unix(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp())


def _date(unix: Any) -> str:
    """The UTC day of Meta's ``start``; one no date can hold is a shape error (a 502)."""
    try:
        return dt.datetime.fromtimestamp(int(unix), dt.UTC).date().isoformat()
    except OSError as exc:  # past the platform's time_t: not one of meta_calls.SHAPE_ERRORS
        raise ValueError(f"{unix!r} is no time") from exc


def _get(path: str, token: str) -> dict[str, Any]:
    """One Graph read, retried on Meta's transient failures; raises :class:`SendFailed`."""
    return graph_client().request("GET", path, token)


def messages(waba_id: str, token: str, first: dt.date, last: dt.date) -> list[dict[str, Any]]:
    field = f"analytics.start({_unix(first)}).end({_unix(last + dt.timedelta(days=1))})"
    answer = _get(f"{waba_id}?{urlencode({'fields': field + '.granularity(DAY)'})}", token)
    days: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for point in (answer.get("analytics") or {}).get("data_points") or []:
        day = days[_date(point.get("start", 0))]
        for metric in ("sent", "delivered", "read", "failed"):
            day[metric] += int(point.get(metric) or 0)
    return [
        {"date": date, **{m: days[date][m] for m in ("sent", "delivered", "read", "failed")}}
        for date in sorted(days)
    ]


def conversations(waba_id: str, token: str, first: dt.date, last: dt.date) -> list[dict[str, Any]]:
    field = (
        f"conversation_analytics.start({_unix(first)})"
        f".end({_unix(last + dt.timedelta(days=1))}).granularity(DAILY)"
        '.dimensions(["CONVERSATION_TYPE","CONVERSATION_DIRECTION"])'
    )
    answer = _get(f"{waba_id}?{urlencode({'fields': field})}", token)
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for block in (answer.get("conversation_analytics") or {}).get("data") or []:
        for point in block.get("data_points") or []:
            key = (
                _date(point.get("start", 0)),
                str(point.get("conversation_type") or "UNKNOWN"),
                str(point.get("conversation_direction") or "UNKNOWN"),
            )
            counts[key] += int(point.get("conversation") or 0)
    return [
        {"date": d, "conversation_type": t, "direction": direction, "count": n}
        for (d, t, direction), n in sorted(counts.items())
    ]


def template_names(waba_id: str, token: str) -> dict[str, str]:
    """Every template of the WABA (id -> name), following Meta's paging up to
    :data:`MAX_TEMPLATE_PAGES`; raises :class:`TooManyPages` past it."""
    names: dict[str, str] = {}
    after: str | None = None
    asked: set[str] = set()
    for _ in range(MAX_TEMPLATE_PAGES):
        query: dict[str, Any] = {"fields": "id,name", "limit": TEMPLATE_PAGE_SIZE}
        if after:
            query["after"] = after
        page = _get(f"{waba_id}/message_templates?{urlencode(query)}", token)
        for template in meta_calls.typed(page.get("data"), list, "data") or []:
            if "id" in template:
                names[str(template["id"])] = str(template.get("name") or "")
        after = next_cursor(page, asked)
        if after is None:
            return names
    limit = MAX_TEMPLATE_PAGES * TEMPLATE_PAGE_SIZE
    raise TooManyPages(
        f"The WhatsApp account lists more than {limit} templates ({MAX_TEMPLATE_PAGES} pages"
        f" of {TEMPLATE_PAGE_SIZE}); template insights read at most that many",
        details=[{"limit": limit, "pages": MAX_TEMPLATE_PAGES}],
    )


def templates(waba_id: str, token: str, first: dt.date, last: dt.date) -> list[dict[str, Any]]:
    names = template_names(waba_id, token)
    totals: dict[str, dict[str, int]] = {
        tid: {"sent": 0, "delivered": 0, "read": 0, "clicked": 0} for tid in names
    }
    ids = list(names)
    for start in range(0, len(ids), TEMPLATE_IDS_PER_CALL):
        query = {
            "start": _unix(first),
            "end": _unix(last + dt.timedelta(days=1)),
            "granularity": "DAILY",
            "metric_types": json.dumps(["SENT", "DELIVERED", "READ", "CLICKED"]),
            "template_ids": json.dumps(ids[start : start + TEMPLATE_IDS_PER_CALL]),
        }
        answer = _get(f"{waba_id}/template_analytics?{urlencode(query)}", token)
        for block in answer.get("data") or []:
            for point in block.get("data_points") or []:
                total = totals.get(str(point.get("template_id")))
                if total is None:
                    continue
                for metric in ("sent", "delivered", "read"):
                    total[metric] += int(point.get(metric) or 0)
                total["clicked"] += sum(
                    int(c.get("count") or 0) for c in point.get("clicked") or []
                )
    return [
        {"template_id": tid, "template_name": names[tid], **totals[tid]}
        for tid in sorted(totals, key=lambda t: (names[t], t))
    ]


KINDS: dict[str, Callable[[str, str, dt.date, dt.date], list[dict[str, Any]]]] = {
    "messages": messages,
    "conversations": conversations,
    "templates": templates,
}


def insights(
    session: Session,
    ctx: Ctx,
    kind: str,
    *,
    start: str | None,
    end: str | None,
    account_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """``{"data": [...]}`` of one kind for the range, from the cache or from Meta."""
    first, last = date_range(start, end)
    _within_metas_days(session, ctx, first)
    account, waba_id, token = _account(session, ctx, account_id)
    cache_key = redis_client.key("wa-insights", kind, str(account.id), str(first), str(last))
    cached = _cache_get(cache_key)
    if cached is not None:
        return cached
    with meta_calls.calling(f"reading the WhatsApp {kind} insights", ctx=ctx, account=account):
        answer = {"data": KINDS[kind](waba_id, token, first, last)}
    _cache_put(cache_key, answer)
    return answer


def _cache_get(cache_key: str) -> dict[str, Any] | None:
    try:
        raw = redis_client.get_redis().get(cache_key)
    except redis.RedisError:
        log.warning("insights cache unreachable; asking Meta")
        return None
    return json.loads(raw) if raw else None


def _cache_put(cache_key: str, answer: dict[str, Any]) -> None:
    try:
        redis_client.get_redis().set(cache_key, json.dumps(answer), ex=CACHE_SECONDS)
    except redis.RedisError:
        log.warning("insights cache unreachable; answer not cached")
