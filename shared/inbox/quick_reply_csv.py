"""Shared quick replies as CSV: export, and an all-or-nothing import that names bad lines.

Header ``shortcut,title,content`` (any order on import), RFC 4180 quoting, UTF-8
(a BOM is fine). A file with any bad row is refused whole with every error's
line number; a good one is applied in one transaction, updating replies whose
shortcut already exists instead of duplicating them.
"""

from __future__ import annotations

import codecs
import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from shared import activity
from shared.context import Ctx
from shared.db import get_sessionmaker
from shared.errors import ValidationFailed
from shared.inbox import quick_replies
from shared.inbox.quick_replies import (
    EDITABLE_FIELDS,
    MANAGE,
    MAX_CONTENT,
    MAX_TITLE,
    check_shortcut,
    check_text,
    count_replies,
    lock_shared_shortcuts,
    shared_limit,
)
from shared.models import QuickReply

#: The CSV columns, in the order the export writes them.
CSV_COLUMNS = EDITABLE_FIELDS
#: Largest number of data rows one import accepts (also the workspace's cap on shared
#: replies: :data:`shared.inbox.quick_replies.MAX_SHARED`).
MAX_IMPORT_ROWS = 5000
#: Replies read (and sent) per chunk of an export.
EXPORT_BATCH = 1000
#: Row errors reported in one refusal; the message counts the rest.
MAX_REPORTED_ERRORS = 100

#: A spreadsheet runs a cell starting with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def guard_cell(value: str) -> str:
    """APPSEC: defuse CSV formula injection with a leading apostrophe (OWASP's advice).

    Cells that already start with apostrophes before a formula character get one
    more, so :func:`_unguard_cell` restores every value exactly on import.
    """
    if value.lstrip("'").startswith(_FORMULA_START):
        return "'" + value
    return value


def _unguard_cell(value: str) -> str:
    if value.startswith("'") and value.lstrip("'").startswith(_FORMULA_START):
        return value[1:]
    return value


def export_shared_csv(ctx: Ctx) -> Iterator[bytes]:
    """The tenant's shared replies as UTF-8 CSV (``shortcut,title,content``, CRLF rows),
    streamed: the header, then one chunk per :data:`EXPORT_BATCH` replies.

    WHY: a tenant may have 5,000 shared replies of up to 4 KB, and the file built whole
    was held in memory three times over. As the automation exports, each batch is read in
    its own short read-only session, so a slow client holds no connection between chunks.
    """
    ctx.require(MANAGE)
    return _stream_shared(ctx.tenant_id)


def _stream_shared(tenant_id: uuid.UUID) -> Iterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out)  # the excel dialect: RFC 4180 quoting and CRLF line ends
    writer.writerow(CSV_COLUMNS)
    yield out.getvalue().encode()
    # PERF: keyed on lower(shortcut), unique among the tenant's shared replies: each batch
    # is a range scan of uq_quick_replies_shared_shortcut, not a sort of them all.
    key = func.lower(QuickReply.shortcut)
    after: str | None = None
    while True:
        query = (
            select(key, QuickReply.shortcut, QuickReply.title, QuickReply.content)
            .where(QuickReply.tenant_id == tenant_id, QuickReply.scope == "shared")
            .order_by(key)
            .limit(EXPORT_BATCH)
        )
        if after is not None:
            query = query.where(key > after)
        with get_sessionmaker(read_only=True)() as session:
            rows = session.execute(query).all()
        if not rows:
            return
        out.seek(0)
        out.truncate()
        writer.writerows([guard_cell(cell) for cell in row[1:]] for row in rows)
        yield out.getvalue().encode()
        after = rows[-1][0]


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    shortcut: str
    title: str
    content: str


def _refuse(message: str, details: list[dict[str, Any]]) -> ValidationFailed:
    shown = details[:MAX_REPORTED_ERRORS]
    if len(details) > len(shown):
        message += f" ({len(details)} errors; the first {len(shown)} are listed)"
    return ValidationFailed(message, details=shown)


def _decode_utf8(raw: bytes) -> str:
    # NOTE: the BOM is skipped here, not by the utf-8-sig codec: its errors count offsets
    # after the BOM, so the byte, offset and line named were those of the wrong place.
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start + bom
        line = raw[:start].count(b"\n") + 1
        raise ValidationFailed(
            "The file is not UTF-8 text",
            details=[
                {
                    "line": line,
                    "field": "encoding",
                    "message": f"byte 0x{raw[start]:02x} at offset {start} is not UTF-8",
                }
            ],
        ) from exc


def _header(reader: Any) -> list[str]:
    """The column names of line 1; 422 naming what is missing, unknown or repeated."""
    names = [name.strip().lower() for name in next(reader, [])]
    details = [
        {"line": 1, "field": "header", "message": f"missing column '{name}'"}
        for name in CSV_COLUMNS
        if name not in names
    ]
    details += [
        {"line": 1, "field": "header", "message": f"unknown column '{name}'"}
        for name in dict.fromkeys(names)
        if name not in CSV_COLUMNS
    ]
    details += [
        {"line": 1, "field": "header", "message": f"column '{name}' appears twice"}
        for name in CSV_COLUMNS
        if names.count(name) > 1
    ]
    if details:
        raise ValidationFailed(f"The header must be {','.join(CSV_COLUMNS)}", details=details)
    return names


def parse_import(raw: bytes) -> list[_Row]:
    """Parse and check a whole CSV file; 422 with every ``{line, field, message}`` on error.

    Lines are the file's own (the header is line 1); a row whose quoted content
    spans lines is reported at the line where it starts. Blank lines are skipped.
    """
    text = _decode_utf8(raw)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[_Row] = []
    details: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}
    try:
        names = _header(reader)
        while True:
            line = reader.line_num + 1
            record = next(reader, None)
            if record is None:
                break
            if not record:
                continue
            if len(rows) + 1 > MAX_IMPORT_ROWS:
                raise ValidationFailed(
                    f"An import holds at most {MAX_IMPORT_ROWS} rows",
                    details=[{"line": line, "field": "file", "message": "too many rows"}],
                )
            if len(record) != len(names):
                details.append(
                    {
                        "line": line,
                        "field": "row",
                        "message": f"expected {len(names)} fields, got {len(record)}",
                    }
                )
                rows.append(_Row(line, "", "", ""))
                continue
            values = {name: _unguard_cell(value) for name, value in zip(names, record, strict=True)}
            row = _Row(
                line,
                values["shortcut"].strip().lower(),
                values["title"].strip(),
                values["content"].strip(),
            )
            problems = {
                "shortcut": check_shortcut(row.shortcut),
                "title": check_text(row.title, MAX_TITLE),
                "content": check_text(row.content, MAX_CONTENT),
            }
            if not problems["shortcut"] and row.shortcut in first_line:
                problems["shortcut"] = f"duplicate of line {first_line[row.shortcut]}"
            first_line.setdefault(row.shortcut, line)
            details += [
                {"line": line, "field": field, "message": message}
                for field, message in problems.items()
                if message
            ]
            rows.append(row)
    except csv.Error as exc:
        details.append({"line": reader.line_num, "field": "file", "message": f"not CSV: {exc}"})
    if details:
        raise _refuse("The file has invalid rows; nothing was imported", details)
    return rows


def _check_room(session: Session, ctx: Ctx, adding: int) -> None:
    """422 ``quick_reply_limit`` when ``adding`` new replies pass the workspace's cap.

    NOTE: checked before any write, under the shortcut lock the caller holds; the whole
    file is refused, its updates of existing replies too.
    """
    if not adding:
        return
    existing = count_replies(session, ctx, None)
    if existing + adding > quick_replies.MAX_SHARED:
        limit = quick_replies.MAX_SHARED
        message = f"{adding} new replies with {existing} existing pass the limit of {limit}"
        raise shared_limit({"field": "file", "message": message})


def import_shared_csv(session: Session, ctx: Ctx, raw: bytes) -> dict[str, int]:
    """Create or update the tenant's shared replies from CSV, all or nothing.

    A row whose shortcut (case-insensitive) names an existing shared reply updates
    it; identical rows are counted ``unchanged``. Any invalid row refuses the file.
    """
    ctx.require(MANAGE)
    rows = parse_import(raw)
    lock_shared_shortcuts(session, ctx)
    existing = {
        reply.shortcut.lower(): reply
        for reply in session.scalars(
            select(QuickReply)
            .where(
                QuickReply.tenant_id == ctx.tenant_id,
                QuickReply.scope == "shared",
                func.lower(QuickReply.shortcut).in_([row.shortcut for row in rows]),
            )
            .with_for_update()
        )
    }
    _check_room(session, ctx, sum(row.shortcut not in existing for row in rows))
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    new = []
    for row in rows:
        reply = existing.get(row.shortcut)
        if reply is None:
            new.append(
                {
                    "id": uuid.uuid4(),
                    "tenant_id": ctx.tenant_id,
                    "scope": "shared",
                    "shortcut": row.shortcut,
                    "title": row.title,
                    "content": row.content,
                }
            )
        elif (reply.shortcut, reply.title, reply.content) == (row.shortcut, row.title, row.content):
            counts["unchanged"] += 1
        else:
            reply.shortcut, reply.title, reply.content = row.shortcut, row.title, row.content
            counts["updated"] += 1
    if new:
        # PERF: one executemany for up to 5,000 rows rather than 5,000 ORM objects.
        session.execute(insert(QuickReply), new)
    counts["created"] = len(new)
    session.flush()
    activity.record(session, ctx, "quick_reply.imported", "quick_reply", None, after=counts)
    return counts
