"""An operator's requeue of a ``sync_wa_templates`` dead letter: the sync runs again and its
job, failed by the retries-exhausted handler, reports the new outcome."""

from __future__ import annotations

from tests.wa_templates.conftest import meta_template
from tests.waiting import wait_until
from workers.actors.wa_templates import sync_wa_templates


def _dead_letter_of(ws, account_id: str) -> str:
    def found():
        for item in ws.call("GET", "/api/ops/dead-letters").json["items"]:
            full = ws.call("GET", f"/api/ops/dead-letters/{item['id']}").json
            if full["actor"] == "sync_wa_templates" and full["args"][0] == account_id:
                return item["id"]
        return None

    return wait_until(found, "the sync's dead letter")


def test_requeuing_a_dead_sync_syncs_and_its_job_succeeds(workspace, templates, monkeypatch):
    monkeypatch.setitem(sync_wa_templates.options, "max_retries", 0)
    account = templates.account()
    templates.at_meta(account, meta_template("welcome"))
    templates.graph.script_templates("503")  # Meta down: the sync runs out of retries
    resp = workspace.call(
        "POST", "/api/wa-templates/sync", json={"integration_account_id": str(account["id"])}
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json["job_id"]
    wait_until(lambda: templates.job(job_id).status == "failed", "the job failed")
    letter = _dead_letter_of(workspace, str(account["id"]))
    templates.graph.script_templates("ok")

    resp = workspace.call("POST", f"/api/ops/dead-letters/{letter}/requeue")

    assert resp.status_code == 200, resp.text
    job = wait_until(
        lambda: (j := templates.job(job_id)).status != "running" and j, "the job finished"
    )
    assert (job.status, job.error) == ("succeeded", None)
    assert job.result["accounts"][str(account["id"])]["status"] == "succeeded"
    assert list(templates.templates(account)) == [("welcome", "en_US")]
    assert templates.sync_row(account).status == "succeeded"
