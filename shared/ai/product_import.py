"""Bulk product import: a CSV or a JSON array, upserted by SKU in batches by a job.

The request checks what can be checked at once (UTF-8, the CSV header, that JSON is an
array: 422), stores the body in ``ai_product_imports`` next to a ``jobs`` row and
answers 202. ``import_products`` then streams the rows: each batch is validated row by
row (:class:`~shared.ai.products.ProductFields`, the same rules as ``POST``), upserted
in one statement (a row whose SKU the agent has updates that product; a row without
SKU adds one) and committed together with the job's progress, so a retried or
re-delivered job resumes after the last committed row and never applies a row twice.

Bad rows do not stop the import: each problem is kept in the job's result as
``{"row", "field", "message"}`` (``row`` counts data rows from 1; the first
:data:`MAX_REPORTED_ERRORS` are kept, ``errors_truncated`` says when there were more).
JSON that stops parsing part way, or CSV that csv cannot read on (a field past its
limit), fails the job with the rows before it imported.

CSV: UTF-8 (a BOM is fine), RFC 4180 quoting, a header naming columns among
:data:`~shared.ai.products.FIELDS` (``name`` required); empty cells are left out;
``attributes`` holds a JSON object; ``in_stock`` is true/false/1/0/yes/no.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, literal_column, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from shared import activity, db, dead_letters, jobs
from shared.ai import agents, products
from shared.config import get_settings
from shared.context import Ctx
from shared.db import session_scope
from shared.errors import ValidationFailed
from shared.models import AiProduct, AiProductImport, Job

KIND = "ai_products.import"
FORMATS = ("csv", "json")
#: Row problems kept in a job's result; the counts include the rest.
MAX_REPORTED_ERRORS = 1000
#: The whitespace JSON allows between tokens (``str.strip`` takes more: NBSP, vertical tab...).
JSON_SPACE = " \t\n\r"

Enqueue = Callable[[uuid.UUID, uuid.UUID], None]


@dataclass(frozen=True, slots=True)
class RawRow:
    """One data row as read: its number and fields, or why it could not be read."""

    number: int
    fields: dict[str, Any] | None
    problem: dict[str, str] | None = None


class MalformedPayload(Exception):
    """The body stopped parsing at ``row``: rows after it cannot be read."""

    def __init__(self, row: int, message: str):
        super().__init__(message)
        self.row = row


# ---------------------------------------------------------------- the request


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed.field("body", f"not UTF-8 text (byte {exc.start})") from exc


def check_csv_header(header: list[str]) -> list[str]:
    """The header's column names, or a 422 naming what is wrong with it."""
    names = [name.strip() for name in header]
    unknown = [name for name in names if name not in products.FIELDS]
    if unknown:
        raise ValidationFailed(
            f"Unknown CSV columns: {', '.join(unknown)[:200]}",
            details=[
                {"field": f"header.{name}"[:200], "message": "unknown column"}
                for name in unknown[:20]
            ]
            + [{"field": "header", "message": f"columns are {', '.join(products.FIELDS)}"}],
        )
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValidationFailed.field("header", f"columns named twice: {', '.join(duplicated)}")
    if "name" not in names:
        raise ValidationFailed.field("header", "a 'name' column is required")
    return names


def _check_payload(raw: bytes, fmt: str) -> None:
    """422 for a body that cannot be an import at all (checked before any job exists)."""
    content = _text(raw)
    if fmt == "csv":
        try:
            header = next(csv.reader(_csv_lines(content)), None)
        except csv.Error as exc:
            raise ValidationFailed.field("body", f"unreadable CSV: {exc}") from exc
        if not header:
            raise ValidationFailed.field("body", "the CSV is empty: send a header row")
        check_csv_header(header)
    elif not content.lstrip(JSON_SPACE).startswith("["):
        # NOTE: the job reads the array after JSON's whitespace only; a body it cannot
        # start on must be refused here, not accepted and then failed.
        raise ValidationFailed.field("body", "send a JSON array of products")


def start_import(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, raw: bytes, fmt: str, *, enqueue: Enqueue
) -> Job:
    """Store the body and a queued job; ``enqueue(job_id, tenant_id)`` runs after commit."""
    ctx.require(agents.MANAGE)
    agents.share_agent(session, ctx.tenant_id, agent_id)
    _check_payload(raw, fmt)
    job = jobs.create(
        session,
        ctx,
        KIND,
        {"ai_agent_id": str(agent_id), "format": fmt, "bytes": len(raw)},
    )
    session.add(
        AiProductImport(
            job_id=job.id, tenant_id=ctx.tenant_id, ai_agent_id=agent_id, format=fmt, payload=raw
        )
    )
    session.flush()
    activity.record(
        session,
        ctx,
        "ai_product.import_queued",
        "job",
        job.id,
        after={"kind": KIND, "ai_agent_id": str(agent_id), "format": fmt, "bytes": len(raw)},
    )
    job_id, tenant_id = job.id, ctx.tenant_id
    db.after_commit(session, lambda: enqueue(job_id, tenant_id))
    return job


# ---------------------------------------------------------------- reading rows


def _csv_lines(content: str) -> io.StringIO:
    """``content`` for :func:`csv.reader`, which reads CR, LF and CRLF line endings itself."""
    return io.StringIO(content, newline="")


def _csv_rows(content: str) -> Iterator[RawRow]:
    reader = csv.reader(_csv_lines(content))
    try:
        header = next(reader, [])
    except csv.Error as exc:
        raise MalformedPayload(0, f"unreadable CSV header: {exc}") from exc
    names = check_csv_header(header)
    number = 0
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # NOTE: past a field over csv's limit, csv reads the rest out of step (quotes
            # pair up wrongly): the rows after it cannot be trusted.
            raise MalformedPayload(number, f"unreadable CSV at row {number}: {exc}") from exc
        if not any(cell.strip() for cell in cells):
            number -= 1  # NOTE: blank lines are not rows
            continue
        if len(cells) > len(names):
            yield RawRow(number, None, {"field": "row", "message": "more cells than columns"})
            continue
        fields: dict[str, Any] = {
            name: cell for name, cell in zip(names, cells, strict=False) if cell.strip()
        }
        if "attributes" in fields:
            try:
                fields["attributes"] = json.loads(fields["attributes"])
            except (ValueError, RecursionError):
                yield RawRow(number, None, {"field": "attributes", "message": "not a JSON object"})
                continue
        yield RawRow(number, fields)


def _json_rows(content: str) -> Iterator[RawRow]:
    """The array's elements one at a time: the whole array is never built in memory."""
    decoder = json.JSONDecoder()
    ws = JSON_SPACE
    position = len(content) - len(content.lstrip(ws))
    if content[position : position + 1] != "[":
        raise MalformedPayload(0, "the body is not a JSON array")
    position += 1
    number = 0
    while True:
        while position < len(content) and content[position] in ws:
            position += 1
        if content[position : position + 1] == "]" and number == 0:
            return
        number += 1
        try:
            element, position = decoder.raw_decode(content, position)
        except (ValueError, RecursionError) as exc:  # NOTE: [[[[... nests past the stack
            raise MalformedPayload(number, f"malformed JSON at row {number}: {exc}") from exc
        if isinstance(element, dict):
            yield RawRow(number, element)
        else:
            yield RawRow(number, None, {"field": "row", "message": "not a JSON object"})
        while position < len(content) and content[position] in ws:
            position += 1
        separator = content[position : position + 1]
        if separator == "]":
            return
        if separator != ",":
            raise MalformedPayload(
                number + 1, f"malformed JSON after row {number}: expected , or ]"
            )
        # NOTE: a comma promises a row: ``[{...},]`` is not JSON, and is read as JSON
        # that breaks off (the next decode fails on the "]").
        position += 1


def read_rows(payload: bytes, fmt: str) -> Iterator[RawRow]:
    content = _text(payload)
    return _csv_rows(content) if fmt == "csv" else _json_rows(content)


def _problems(number: int, exc: ValidationError) -> list[dict[str, Any]]:
    found = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"]) or "row"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "required"
        elif error["type"] == "extra_forbidden":
            message = "unknown field"
        found.append({"row": number, "field": field, "message": message})
    return found


# ---------------------------------------------------------------- the job


def _fresh_result() -> dict[str, Any]:
    return {
        "processed": 0,
        "created": 0,
        "updated": 0,
        "failed": 0,
        "errors": [],
        "errors_truncated": False,
    }


def _record_errors(result: dict[str, Any], problems: list[dict[str, Any]]) -> None:
    room = MAX_REPORTED_ERRORS - len(result["errors"])
    if len(problems) > room:
        result["errors_truncated"] = True
    result["errors"].extend(problems[: max(room, 0)])


def _upsert_statement(rows: list[dict[str, Any]]):
    """One multi-row INSERT ... ON CONFLICT (agent, sku) DO UPDATE for ``rows``.

    PERF: one statement per run of rows; executemany of a RETURNING upsert runs one
    statement per row (ten times slower on 100,000 rows).
    """
    stmt = pg_insert(AiProduct).values(rows)
    return stmt.on_conflict_do_update(
        index_elements=[AiProduct.ai_agent_id, AiProduct.sku],
        index_where=text("sku IS NOT NULL"),
        set_={
            **{name: getattr(stmt.excluded, name) for name in products.FIELDS if name != "sku"},
            # NOTE: the text may have changed: the old embedding no longer describes it.
            "embedding": None,
            # ...and the sweep's re-drives of the old text (given up or not) say nothing of
            # it, as for a replace (``products.replace_product``).
            "embed_attempts": 0,
            "embed_swept_at": None,
            "embed_gave_up_at": None,
            "updated_at": func.now(),
        },
    ).returning(AiProduct.id, literal_column("(xmax = 0)").label("inserted"))


def _upsert(session: Session, rows: list[dict[str, Any]]) -> tuple[list[uuid.UUID], int]:
    """Upsert ``rows`` in order; return their ids and how many were new.

    A SKU seen twice in one statement would be "affected twice" to Postgres, so the rows
    are cut into runs of distinct SKUs: the later row wins, as if imported one by one.
    """
    ids, created, run, skus = [], 0, [], set()
    for row in [*rows, None]:
        if row is None or (row["sku"] is not None and row["sku"] in skus) or len(run) >= 2000:
            if run:
                for result in session.connection().execute(_upsert_statement(run)):
                    ids.append(result.id)
                    created += bool(result.inserted)
            run, skus = [], set()
        if row is not None:
            run.append(row)
            if row["sku"] is not None:
                skus.add(row["sku"])
    return ids, created


def _apply_batch(
    session: Session, upload: AiProductImport, batch: list[RawRow], result: dict[str, Any]
) -> None:
    good, problems, failed = [], [], 0
    for raw in batch:
        if raw.problem is not None:
            problems.append({"row": raw.number, **raw.problem})
            failed += 1
            continue
        try:
            fields = products.ProductFields.model_validate(raw.fields)
        except ValidationError as exc:
            problems += _problems(raw.number, exc)
            failed += 1
            continue
        good.append(
            {
                "id": uuid.uuid4(),
                "tenant_id": upload.tenant_id,
                "ai_agent_id": upload.ai_agent_id,
                **fields.model_dump(include=set(products.FIELDS)),
            }
        )
    ids, created = _upsert(session, good) if good else ([], 0)
    products.request_embedding(session, ids)
    result["processed"] += len(batch)
    result["created"] += created
    result["updated"] += len(good) - created
    result["failed"] += failed
    _record_errors(result, problems)


def _finish(session: Session, job: Job, result: dict[str, Any], error: str | None) -> str:
    job.result = result
    job.status = "failed" if error else "succeeded"
    job.error = error
    job.finished_at = func.now()
    discard(session, job.id)
    return job.status


def discard(session: Session, job_id: uuid.UUID) -> None:
    """Drop a finished import's body (a job that gave up keeps its result, not megabytes)."""
    session.execute(delete(AiProductImport).where(AiProductImport.job_id == job_id))


def _batches(rows: Iterator[RawRow], size: int) -> Iterator[list[RawRow]]:
    """Batches of ``size`` rows; the rows read before a :class:`MalformedPayload` still come."""
    batch: list[RawRow] = []
    try:
        for row in rows:
            batch.append(row)
            if len(batch) >= size:
                yield batch
                batch = []
    except MalformedPayload:
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def process_import(job_id: uuid.UUID, *, batch_size: int | None = None) -> str:
    """Run or resume the import job ``job_id``; return its status. Safe to call again.

    Each batch commits with the job's progress, under the job row's lock; a batch that
    finds the progress moved (a duplicate delivery ran it) stops this run. Each also
    stamps the job as progressing: a job idle while ``running`` lost its worker and its
    message, and the scheduler's ``redrive_queued_jobs`` sends it again.
    """
    size = batch_size or get_settings().ai_product_import_batch
    with session_scope() as session:
        job = jobs.lock(session, job_id)
        if job is None:
            return "unknown"
        if job.status in ("succeeded", "failed"):
            return job.status
        upload = session.get(AiProductImport, job_id)
        if upload is None:
            return _finish(session, job, job.result or _fresh_result(), "the AI agent was deleted")
        if job.status == "queued":
            job.status, job.started_at = "running", func.now()
        jobs.progressed(job)
        payload, fmt = upload.payload, upload.format
        done = (job.result or _fresh_result())["processed"]
    rows = read_rows(payload, fmt)
    error = None
    try:
        for _ in range(done):
            next(rows, None)
        for batch in _batches(rows, size):
            with session_scope() as session:
                job = jobs.lock(session, job_id)
                upload = session.get(AiProductImport, job_id)
                result = copy.deepcopy(job.result) if job and job.result else _fresh_result()
                if job is None or job.status != "running" or result["processed"] != done:
                    return job.status if job else "unknown"
                if upload is None:
                    return _finish(session, job, result, "the AI agent was deleted")
                _apply_batch(session, upload, batch, result)
                job.result, done = result, result["processed"]
                jobs.progressed(job)
    except MalformedPayload as exc:
        error = str(exc)
        problem = {"row": exc.row, "field": "body", "message": str(exc)}
    with session_scope() as session:
        job = jobs.lock(session, job_id)
        if job is None or job.status != "running":
            return job.status if job else "unknown"
        result = copy.deepcopy(job.result) if job.result else _fresh_result()
        if error:
            _record_errors(result, [problem])
        result["total"] = result["processed"]
        return _finish(session, job, result, error)


def revive(session: Session, tenant_id: uuid.UUID | None, args: list[Any], **_options: Any) -> None:
    """Reopen the job of an ``import_products`` dead letter, or 409 saying what to do.

    WHY: ``mark_product_import_failed`` failed the job and discarded its upload when its
    retries ran out, so the requeued job found it finished and imported nothing, while
    the console said requeued. Without its upload it cannot run again: the operator is
    told to import the file again (the rows imported before it failed stay).
    """
    job = jobs.locked_for_requeue(session, tenant_id, dead_letters.row_id(args), KIND)
    if job.status != "failed":
        return
    if session.get(AiProductImport, job.id) is None:
        raise dead_letters.NotRequeueable(
            "upload_discarded",
            "The import gave up and its upload was discarded: import the file again"
            " (POST /api/ai-agents/{id}/products/import); the rows imported before stay",
        )
    jobs.reopen(session, job)
