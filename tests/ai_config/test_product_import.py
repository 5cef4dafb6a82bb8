"""Product imports end to end: HTTP 202, the real worker, per-row errors, resumption, limits."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from shared.ai import product_import
from shared.config import get_settings
from shared.context import Ctx
from shared.db import session_scope
from shared.models import AiProduct, AiProductImport, Job
from tests.ai_config.conftest import AGENTS, create_agent, fields
from tests.multipart import form
from tests.waiting import wait_until

CSV = (
    "sku,name,price,currency,in_stock,attributes\r\n"
    'A-1,Apple,1.20,EUR,yes,"{""colour"": ""red""}"\r\n'
    "B-2,Banana,-3,EUR,,\r\n"
    "C-3,Cherry,2.999,XXX,maybe,\r\n"
    ",Loose item,,,,\r\n"
    "\r\n"
    "A-1,Apple (green),1.30,EUR,no,\r\n"
)


def start(ws, agent_id: str, body: bytes | str, content_type: str):
    return ws.call(
        "POST",
        f"{AGENTS}/{agent_id}/products/import",
        body=body,
        headers={"Content-Type": content_type},
    )


def queued_import(ws, agent_id: str, body: str) -> uuid.UUID:
    """A queued import job whose actor is never sent (so no worker runs it meanwhile)."""
    ctx = Ctx.system(uuid.UUID(ws.tenant["id"]))
    with session_scope() as session:
        job = product_import.start_import(
            session, ctx, uuid.UUID(agent_id), body.encode(), "csv", enqueue=lambda *_: None
        )
        return job.id


def finished_job(ws, job_id: str, timeout: float = 30.0) -> dict:
    def done():
        job = ws.call("GET", f"/api/jobs/{job_id}").json
        return job if job["status"] in ("succeeded", "failed") else None

    return wait_until(done, f"job {job_id} finished", timeout=timeout)


def products_of(agent_id: str) -> dict[str | None, AiProduct]:
    with session_scope() as session:
        rows = session.scalars(
            select(AiProduct).where(AiProduct.ai_agent_id == uuid.UUID(agent_id))
        )
        return {p.sku or p.name: p for p in rows}


def test_a_csv_import_upserts_by_sku_and_reports_bad_rows(workspace, worker):
    agent = create_agent(workspace)
    existing = workspace.call(
        "POST", f"{AGENTS}/{agent['id']}/products", json={"sku": "A-1", "name": "Old apple"}
    ).json
    resp = start(workspace, agent["id"], CSV, "text/csv")
    assert resp.status_code == 202, resp.text
    job = finished_job(workspace, resp.json["job_id"])
    assert job["status"] == "succeeded" and job["kind"] == "ai_products.import"
    result = job["result"]
    assert result["processed"] == 5 and result["failed"] == 2
    assert result["created"] == 1 and result["updated"] == 2
    assert {(e["row"], e["field"]) for e in result["errors"]} == {
        (2, "price"),
        (3, "price"),
        (3, "currency"),
        (3, "in_stock"),
    }
    rows = products_of(agent["id"])
    assert set(rows) == {"A-1", "Loose item"}
    apple = rows["A-1"]
    # The later row of the same SKU wins, on the product that was already there.
    assert str(apple.id) == existing["id"] and apple.name == "Apple (green)"
    assert str(apple.price) == "1.30" and apple.in_stock is False
    with session_scope() as session:
        assert session.get(AiProductImport, uuid.UUID(job["id"])) is None


def test_a_csv_with_classic_mac_line_endings_imports(workspace, worker):
    """CR alone ends lines too: csv reads them when given the text untranslated."""
    agent = create_agent(workspace)
    resp = start(workspace, agent["id"], "sku,name\rA-1,Apple\rB-2,Banana\r", "text/csv")
    assert resp.status_code == 202, resp.text
    job = finished_job(workspace, resp.json["job_id"])
    assert job["status"] == "succeeded" and job["result"]["created"] == 2, job
    assert set(products_of(agent["id"])) == {"A-1", "B-2"}


def test_a_json_import_and_a_multipart_file(workspace, worker):
    agent = create_agent(workspace)
    items = [
        {"sku": "J-1", "name": "Jam", "price": 4.5, "currency": "GBP"},
        {"sku": "J-2", "name": "Juice", "colour": "orange"},
        "not an object",
        {"name": "Jelly", "attributes": {"vegan": True}},
    ]
    resp = start(workspace, agent["id"], json.dumps(items), "application/json")
    assert resp.status_code == 202, resp.text
    result = finished_job(workspace, resp.json["job_id"])["result"]
    assert result["created"] == 2 and result["failed"] == 2
    assert [(e["row"], e["field"]) for e in result["errors"]] == [(2, "colour"), (3, "row")]
    assert str(products_of(agent["id"])["J-1"].price) == "4.50"

    body, headers = form(
        b"sku,name\nJ-1,Jam jar\n",
        filename="catalogue.csv",
        content_type="application/octet-stream",
    )
    from_form = start(workspace, agent["id"], body, headers["Content-Type"])
    assert from_form.status_code == 202, from_form.text
    assert finished_job(workspace, from_form.json["job_id"])["result"]["updated"] == 1
    assert products_of(agent["id"])["J-1"].name == "Jam jar"
    body, headers = form(
        b"sku,name\nJ-1,Jam jar\n",
        filename="catalogue-été.csv",
        content_type="text/csv",
        header_encoding="latin-1",
    )
    latin1_name = start(workspace, agent["id"], body, headers["Content-Type"])
    assert latin1_name.status_code == 400, latin1_name.text


def test_json_that_breaks_off_fails_the_job_keeping_the_rows_before(workspace, worker):
    agent = create_agent(workspace)
    body = '[{"name": "One"}, {"name": "Two"}, {"name": "Thr'
    job = finished_job(
        workspace, start(workspace, agent["id"], body, "application/json").json["job_id"]
    )
    assert job["status"] == "failed" and "row 3" in job["error"]
    assert job["result"]["created"] == 2 and job["result"]["errors"][-1]["row"] == 3
    assert set(products_of(agent["id"])) == {"One", "Two"}


@pytest.mark.parametrize(
    "body", ['[{"name": "One"}, {"name": "Two"},]', '[{"name": "One"}, {"name": "Two"}, ]']
)
def test_json_with_a_comma_before_its_end_fails_the_job_keeping_the_rows_before(
    workspace, worker, body
):
    """Not JSON (``[,]`` is refused as such): a comma promises a row, as any writer of the
    array meant one; the rows before it are imported, as for JSON that breaks off."""
    agent = create_agent(workspace)
    job = finished_job(
        workspace, start(workspace, agent["id"], body, "application/json").json["job_id"]
    )
    assert job["status"] == "failed" and "row 3" in job["error"]
    assert job["result"]["created"] == 2 and job["result"]["errors"][-1]["row"] == 3
    assert set(products_of(agent["id"])) == {"One", "Two"}


def test_a_csv_row_past_the_field_limit_fails_the_job_keeping_the_rows_before(workspace, worker):
    """csv reads the rest out of step after such a row: nothing after it is imported."""
    agent = create_agent(workspace)
    body = f'sku,name\nA-1,Apple\nB-2,"{"x" * 140_000}"\nC-3,Cherry\n'
    job = finished_job(workspace, start(workspace, agent["id"], body, "text/csv").json["job_id"])
    assert job["status"] == "failed" and "row 2" in job["error"], job
    assert job["result"]["created"] == 1 and job["result"]["errors"][-1]["row"] == 2
    assert set(products_of(agent["id"])) == {"A-1"}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        ("colour,name\nred,x\n", "text/csv", 422, "header.colour"),
        ("sku,price\nA,1\n", "text/csv", 422, "header"),
        ("name,name\nx,y\n", "text/csv", 422, "header"),
        ("", "text/csv", 422, "body"),
        (f'"{"x" * 140_000}",name\n', "text/csv", 422, "body"),  # past csv's field limit
        (b"name\n\xff\xfe\n", "text/csv", 422, "body"),
        ('{"name": "x"}', "application/json", 422, "body"),
        # Space JSON does not allow before the array: the job could never read it.
        ('\u00a0[{"name": "x"}]', "application/json", 422, "body"),
        ('\v[{"name": "x"}]', "application/json", 422, "body"),
        ("name\nx\n", "application/xml", 415, None),
    ],
)
def test_bodies_that_cannot_be_imports_are_refused_before_a_job(
    workspace, body, content_type, status, field
):
    agent = create_agent(workspace)
    resp = start(workspace, agent["id"], body, content_type)
    assert resp.status_code == status, resp.text
    if field:
        assert field in fields(resp)
    with session_scope() as session:
        count = session.scalar(
            select(func.count()).where(Job.tenant_id == uuid.UUID(workspace.tenant["id"]))
        )
    assert count == 0


def test_an_oversized_import_is_413(workspace, monkeypatch):
    monkeypatch.setenv("AI_PRODUCT_IMPORT_MAX_BYTES", "2048")
    get_settings.cache_clear()
    try:
        agent = create_agent(workspace)
        body = "name\n" + "x" * 3000 + "\n"
        assert start(workspace, agent["id"], body, "text/csv").status_code == 413
    finally:
        monkeypatch.delenv("AI_PRODUCT_IMPORT_MAX_BYTES")
        get_settings.cache_clear()


def test_imports_are_for_admins_of_the_agents_tenant(workspace, other_workspace):
    agent = create_agent(workspace)
    _sup, supervisor = workspace.create_agent("supervisor")
    path = f"{AGENTS}/{agent['id']}/products/import"
    headers = {"Content-Type": "text/csv"}
    assert (
        workspace.call(
            "POST", path, body="name\nx\n", headers=headers, token=supervisor
        ).status_code
        == 403
    )
    assert other_workspace.call("POST", path, body="name\nx\n", headers=headers).status_code == 404


def test_a_job_run_twice_or_resumed_applies_each_row_once(workspace):
    """Without the worker: the job is driven by hand, batch by batch, as retries would."""
    agent = create_agent(workspace)
    lines = "".join(f"S-{i},Item {i}\n" for i in range(25))
    job_id = queued_import(workspace, agent["id"], "sku,name\n" + lines)
    assert product_import.process_import(job_id, batch_size=10) == "succeeded"
    assert product_import.process_import(job_id, batch_size=10) == "succeeded"
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job.result["processed"] == 25 and job.result["created"] == 25
    assert len(products_of(agent["id"])) == 25


def test_a_crashed_import_resumes_after_its_last_batch(workspace):
    agent = create_agent(workspace)
    lines = "".join(f"S-{i},Item {i}\n" for i in range(25))
    job_id = queued_import(workspace, agent["id"], "sku,name\n" + lines)
    with session_scope() as session:
        # As a worker that died after committing two batches of ten leaves it.
        job = session.get(Job, job_id)
        job.status = "running"
        job.result = {
            "processed": 20,
            "created": 20,
            "updated": 0,
            "failed": 0,
            "errors": [],
            "errors_truncated": False,
        }
    assert product_import.process_import(job_id, batch_size=10) == "succeeded"
    with session_scope() as session:
        assert session.get(Job, job_id).result["processed"] == 25
    assert set(products_of(agent["id"])) == {f"S-{i}" for i in range(20, 25)}


def test_deleting_the_agent_fails_its_queued_import(workspace):
    agent = create_agent(workspace)
    job_id = queued_import(workspace, agent["id"], "name\nx\n")
    assert workspace.call("DELETE", f"{AGENTS}/{agent['id']}").status_code == 204
    assert product_import.process_import(job_id) == "failed"
    job = workspace.call("GET", f"/api/jobs/{job_id}").json
    assert job["status"] == "failed" and "deleted" in job["error"]


def test_a_large_import_crosses_many_batches(workspace, worker, monkeypatch):
    """2,500 rows in 10 batches (bench/ai_products_import.py runs 100,000 and prints rows/s).

    PERF: batches of 250, not the default 1,000: the batches are what this test is about, and
    10,000 rows (and their embeddings, run after the job) cost ~14 s of the suite's CPU.
    """
    monkeypatch.setenv("AI_PRODUCT_IMPORT_BATCH", "250")
    get_settings.cache_clear()
    try:
        agent = create_agent(workspace)
        rows = "".join(
            f"SKU-{i},Product {i},{i % 1000}.99,USD,Good product number {i}\n" for i in range(2_500)
        )
        body = "sku,name,price,currency,description\n" + rows + "SKU-bad,Broken,-1,USD,\n"
        resp = start(workspace, agent["id"], body, "text/csv")
        assert resp.status_code == 202, resp.text
        job = finished_job(workspace, resp.json["job_id"], timeout=240)
        assert job["status"] == "succeeded", job
        assert job["result"]["created"] == 2_500 and job["result"]["failed"] == 1
        assert job["result"]["errors"] == [
            {"row": 2_501, "field": "price", "message": job["result"]["errors"][0]["message"]}
        ]
        with session_scope() as session:
            count = session.scalar(
                select(func.count()).where(AiProduct.ai_agent_id == uuid.UUID(agent["id"]))
            )
        assert count == 2_500
    finally:
        monkeypatch.delenv("AI_PRODUCT_IMPORT_BATCH")
        get_settings.cache_clear()


def test_an_import_whose_message_was_lost_is_redriven_by_the_scheduler(workspace, worker):
    from scheduler import jobs as scheduler_jobs

    agent = create_agent(workspace)
    job_id = queued_import(workspace, agent["id"], "sku,name\nR-1,Redriven\n")
    with session_scope() as session:
        job = session.get(Job, job_id)
        job.enqueued_at = job.created_at - 2 * scheduler_jobs.api_jobs.REDRIVE_AFTER
    redrive = next(j.func for j in scheduler_jobs.JOBS if j.name == "redrive_queued_jobs")
    with session_scope() as session:
        assert redrive(session) >= 1
    assert finished_job(workspace, str(job_id))["status"] == "succeeded"
    assert set(products_of(agent["id"])) == {"R-1"}


def test_a_nul_in_a_rows_attributes_fails_that_row_not_the_import(workspace):
    """JSON escapes NUL as \\u0000, which jsonb refuses: the row must be refused, not the batch."""
    agent = create_agent(workspace)
    body = 'sku,name,attributes\nA-1,Apple,"{""k"": ""a\\u0000b""}"\nB-2,Banana,\n'
    job_id = queued_import(workspace, agent["id"], body)
    assert product_import.process_import(job_id) == "succeeded"
    with session_scope() as session:
        result = session.get(Job, job_id).result
    assert result["created"] == 1 and result["failed"] == 1, result
    assert [(e["row"], e["field"]) for e in result["errors"]] == [(1, "attributes")]
    assert set(products_of(agent["id"])) == {"B-2"}


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_nan_or_infinity_in_a_rows_attributes_fails_that_row_not_the_import(workspace, fmt):
    """Python's json reads NaN and Infinity, which jsonb refuses: the row must be refused."""
    agent = create_agent(workspace)
    if fmt == "csv":
        body = 'sku,name,attributes\nA-1,Apple,"{""weight"": NaN}"\nB-2,Banana,\n'
    else:
        body = (
            '[{"sku": "A-1", "name": "Apple", "attributes": {"w": [Infinity]}},'
            ' {"sku": "B-2", "name": "Banana"}]'
        )
    ctx = Ctx.system(uuid.UUID(workspace.tenant["id"]))
    with session_scope() as session:
        job_id = product_import.start_import(
            session, ctx, uuid.UUID(agent["id"]), body.encode(), fmt, enqueue=lambda *_: None
        ).id
    assert product_import.process_import(job_id) == "succeeded"
    with session_scope() as session:
        result = session.get(Job, job_id).result
    assert result["created"] == 1 and result["failed"] == 1, result
    assert [(e["row"], e["field"]) for e in result["errors"]] == [(1, "attributes")]
    assert set(products_of(agent["id"])) == {"B-2"}


def test_a_running_import_whose_worker_and_message_were_lost_is_resumed(workspace, worker):
    """A worker died mid-import and a Redis restart lost its message: the job sat
    ``running`` for good. Idle past the re-drive delay, it is sent again and finishes."""
    from scheduler import jobs as scheduler_jobs

    agent = create_agent(workspace)
    lines = "".join(f"L-{i},Item {i}\n" for i in range(3))
    job_id = queued_import(workspace, agent["id"], "sku,name\n" + lines)
    idle = func.now() - 2 * scheduler_jobs.api_jobs.REDRIVE_AFTER
    with session_scope() as session:
        # As a worker that died after committing its first batch (one row) leaves it.
        job = session.get(Job, job_id)
        job.status, job.started_at, job.enqueued_at = "running", idle, func.now()
        job.result = {**product_import._fresh_result(), "processed": 1, "created": 1}
    redrive = next(j.func for j in scheduler_jobs.JOBS if j.name == "redrive_queued_jobs")
    with session_scope() as session:
        assert redrive(session) == 0  # progress a moment ago: its worker is alive
    with session_scope() as session:
        session.get(Job, job_id).enqueued_at = idle
    with session_scope() as session:
        assert redrive(session) >= 1

    job = finished_job(workspace, str(job_id))
    assert job["status"] == "succeeded" and job["result"]["processed"] == 3
    assert set(products_of(agent["id"])) == {"L-1", "L-2"}


def test_a_running_import_stamps_its_progress_batch_by_batch(workspace):
    """A live import is not re-driven as lost: each batch stamps the job."""
    agent = create_agent(workspace)
    lines = "".join(f"P-{i},Item {i}\n" for i in range(3))
    job_id = queued_import(workspace, agent["id"], "sku,name\n" + lines)
    with session_scope() as session:
        job = session.get(Job, job_id)
        job.enqueued_at = job.created_at - 2 * product_import.jobs.REDRIVE_AFTER
    assert product_import.process_import(job_id, batch_size=1) == "succeeded"
    with session_scope() as session:
        idle = session.scalar(select(func.now() - Job.enqueued_at).where(Job.id == job_id))
    assert idle < product_import.jobs.REDRIVE_AFTER
