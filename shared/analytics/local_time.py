"""Tenant-local days and hours: the buckets every rollup and report uses."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.db import fetch_rows


@functools.lru_cache(maxsize=512)
def zone(name: str | None) -> dt.tzinfo:
    """The IANA zone ``name``; UTC for a missing or unknown name (never an error in a report)."""
    try:
        return ZoneInfo(name) if name else dt.UTC
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


_TIMEZONE = text("SELECT timezone FROM tenants WHERE id = :tenant_id")


def tenant_zone(session: Session, tenant_id: uuid.UUID) -> dt.tzinfo:
    # PERF: on the driver's cursor (db.fetch_rows): every rollup drain and report asks.
    rows = fetch_rows(session.connection(), _TIMEZONE, {"tenant_id": tenant_id})
    return zone(rows[0][0] if rows else None)


def local_day_hour(at: dt.datetime, tz: dt.tzinfo) -> tuple[dt.date, int]:
    local = at.astimezone(tz)
    return local.date(), local.hour


def today(tz: dt.tzinfo, now: dt.datetime | None = None) -> dt.date:
    return (now or dt.datetime.now(dt.UTC)).astimezone(tz).date()


def parse_instant(value: object, fallback: dt.datetime) -> dt.datetime:
    """An event payload's timestamp (ISO 8601 text), else ``fallback`` (the event's time)."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return fallback
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return fallback
