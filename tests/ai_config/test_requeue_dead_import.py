"""An operator's requeue of an ``import_products`` dead letter: its upload was discarded when
its retries ran out, so the requeue says to import the file again instead of doing nothing."""

from __future__ import annotations

from shared.ai import product_import
from tests.ai_config.conftest import create_agent
from tests.ai_config.test_product_import import CSV, finished_job, products_of, start
from tests.waiting import wait_until
from workers.actors.ai_products import import_products


def _dead_letter_of(ws, job_id: str) -> str:
    def found():
        for item in ws.call("GET", "/api/ops/dead-letters").json["items"]:
            full = ws.call("GET", f"/api/ops/dead-letters/{item['id']}").json
            if full["actor"] == "import_products" and full["args"] == [job_id]:
                return item["id"]
        return None

    return wait_until(found, "the import's dead letter")


def test_a_dead_import_is_not_requeued_and_says_to_import_again(workspace, worker, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("the database is down")

    monkeypatch.setattr(product_import, "_apply_batch", broken)
    monkeypatch.setitem(import_products.options, "max_retries", 0)
    agent = create_agent(workspace)
    resp = start(workspace, agent["id"], CSV, "text/csv")
    assert resp.status_code == 202, resp.text
    job_id = resp.json["job_id"]
    assert finished_job(workspace, job_id)["status"] == "failed"
    letter = _dead_letter_of(workspace, job_id)
    monkeypatch.undo()

    resp = workspace.call("POST", f"/api/ops/dead-letters/{letter}/requeue")

    assert resp.status_code == 409, resp.text
    error = resp.json["error"]
    assert error["code"] == "not_requeueable" and "import the file again" in error["message"]
    assert workspace.call("GET", f"/api/ops/dead-letters/{letter}").json["requeued_at"] is None
    assert products_of(agent["id"]) == {}
