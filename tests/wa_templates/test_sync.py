"""sync_wa_templates: Meta's listing (paged) upserted, idempotent, gone ones marked, failures
visible; the 202 request, its job, and the scheduler's 6-hourly claim."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pytest
from sqlalchemy import update

from shared.channels.templates import sync
from shared.db import session_scope
from shared.models import IntegrationAccount, WaTemplateSync
from tests.wa_templates.conftest import meta_template
from tests.waiting import wait_until


def _sync(workspace, **body):
    return workspace.call("POST", "/api/wa-templates/sync", json=body)


def test_sync_reads_every_page_and_upserts_each_template_once(workspace, templates):
    account = templates.account()
    listed = [meta_template(f"t_{n:03d}") for n in range(250)]
    listed[7]["status"] = "REJECTED"
    listed[7]["rejected_reason"] = "INVALID_FORMAT"
    templates.at_meta(account, *listed)

    resp = _sync(workspace, integration_account_id=str(account["id"]))
    assert resp.status_code == 202, resp.text
    assert resp.json["integration_account_ids"] == [str(account["id"])]
    templates.settle()

    calls = templates.graph.gets(f"/v21.0/{account['waba_id']}/message_templates")
    assert len(calls) == 3  # 100 + 100 + 50, following paging.cursors.after
    assert all(call.token == account["token"] for call in calls)
    assert "after=" not in calls[0].path and "after=c100" in calls[1].path
    stored = templates.templates(account)
    assert len(stored) == 250
    assert stored[("t_007", "en_US")].status == "REJECTED"
    assert stored[("t_007", "en_US")].rejected_reason == "INVALID_FORMAT"
    assert stored[("t_001", "en_US")].components == listed[1]["components"]
    job = templates.job(resp.json["job_id"])
    assert job.status == "succeeded" and job.kind == "wa_templates.sync"
    outcome = job.result["accounts"][str(account["id"])]
    assert outcome["created"] == 250 and outcome["graph_calls"] == 3
    row = templates.sync_row(account)
    assert row.status == "succeeded" and row.result["templates"] == 250
    # Synced on request: the scheduler's next sync is 6 h away.
    assert row.due_at > dt.datetime.now(dt.UTC) + dt.timedelta(hours=5, minutes=59)

    # The same listing again changes nothing and announces nothing.
    ids = {key: t.id for key, t in stored.items()}
    templates.synced(account)
    again = templates.templates(account)
    assert {key: t.id for key, t in again.items()} == ids
    assert templates.sync_row(account).result | {"graph_calls": 0} == {
        "templates": 250,
        "created": 0,
        "updated": 0,
        "removed": 0,
        "stale": False,
        "graph_calls": 0,
    }
    assert templates.status_events() == []


def test_changes_at_meta_update_and_announce_and_gone_templates_are_marked_deleted(
    workspace, templates
):
    account = templates.account()
    pending = meta_template("order_update", status="PENDING")
    gone = meta_template("old_promo", category="MARKETING")
    templates.at_meta(account, pending, gone, meta_template("steady"))
    templates.synced(account)

    pending["status"] = "APPROVED"
    pending["components"][0]["text"] = "Your order {{1}} is on its way."
    templates.graph.wa_templates[account["waba_id"]].remove(gone)
    templates.synced(account)

    stored = templates.templates(account)
    assert stored[("order_update", "en_US")].status == "APPROVED"
    assert "on its way" in stored[("order_update", "en_US")].components[0]["text"]
    assert stored[("old_promo", "en_US")].status == "DELETED"
    assert stored[("steady", "en_US")].status == "APPROVED"
    events = {e["name"]: e for e in templates.status_events()}
    assert set(events) == {"order_update", "old_promo"}
    assert events["order_update"]["previous_status"] == "PENDING"
    assert events["order_update"]["status"] == "APPROVED"
    assert events["order_update"]["source"] == "sync"
    assert events["old_promo"]["status"] == "DELETED"
    assert templates.sync_row(account).result["removed"] == 1

    # Listed again at Meta: back to life.
    templates.at_meta(account, gone)
    templates.synced(account)
    assert templates.templates(account)[("old_promo", "en_US")].status == "APPROVED"


def test_sync_without_an_account_syncs_every_whatsapp_account_of_the_tenant(
    workspace, templates, other_templates
):
    first, second = templates.account(), templates.account()
    theirs = other_templates.account()
    templates.at_meta(first, meta_template("a"))
    templates.at_meta(second, meta_template("b"), meta_template("c"))
    other_templates.at_meta(theirs, meta_template("theirs"))

    resp = _sync(workspace)
    assert resp.status_code == 202, resp.text
    assert sorted(resp.json["integration_account_ids"]) == sorted(
        [str(first["id"]), str(second["id"])]
    )
    templates.settle()
    assert sorted(n for n, _ in templates.templates()) == ["a", "b", "c"]
    assert other_templates.templates() == {}
    job = workspace.call("GET", f"/api/jobs/{resp.json['job_id']}").json
    assert job["status"] == "succeeded" and len(job["result"]["accounts"]) == 2


def test_sync_refuses_other_tenants_accounts_and_tenants_without_whatsapp(
    workspace, other_workspace, templates, other_templates
):
    theirs = other_templates.account()
    resp = _sync(workspace, integration_account_id=str(theirs["id"]))
    assert resp.status_code == 404
    none = _sync(workspace)
    assert none.status_code == 404 and none.json["error"]["code"] == "integration_not_found"
    bad = _sync(workspace, integration_account_id="nope")
    assert bad.status_code == 422
    assert templates.graph.requests == []


def test_a_refused_token_fails_the_sync_at_once_and_says_why(workspace, templates):
    account = templates.account()
    templates.graph.script_templates("190")

    resp = _sync(workspace, integration_account_id=str(account["id"]))
    templates.settle()

    job = templates.job(resp.json["job_id"])
    assert job.status == "failed" and job.error == "1 of 1 account(s) failed"
    outcome = job.result["accounts"][str(account["id"])]
    assert outcome["status"] == "failed" and "access token" in outcome["error"]
    row = templates.sync_row(account)
    assert row.status == "failed" and "190" in row.error and account["token"] not in row.error
    assert len(templates.graph.gets("/v21.0/")) == 1  # not retried: it cannot help
    with session_scope() as session:  # and the account says so until it is reconnected
        assert session.get(IntegrationAccount, account["id"]).status == "error"


def test_meta_failing_is_retried_and_after_the_last_retry_the_sync_is_failed(templates):
    account = templates.account()
    templates.at_meta(account, meta_template("a"))
    with session_scope() as session:
        session.add(
            WaTemplateSync(integration_account_id=account["id"], tenant_id=templates.tenant_id)
        )
    templates.graph.script_templates("503")

    with pytest.raises(sync.SyncRetry):
        sync.run(account["id"], None)  # what the actor runs; Dramatiq retries what it raises
    row = templates.sync_row(account)
    assert row.status == "running" and "Service temporarily unavailable" in row.error

    from workers.actors.wa_templates import mark_wa_template_sync_failed

    mark_wa_template_sync_failed(
        {"args": [str(account["id"]), None], "options": {"traceback": "SyncRetry: 503"}},
        {"retries": 5},
    )
    row = templates.sync_row(account)
    assert row.status == "failed" and row.error.startswith("gave up after 5 retries")

    templates.graph.script_templates("ok")
    assert sync.run(account["id"], None) == "succeeded"
    assert templates.sync_row(account).status == "succeeded"
    assert list(templates.templates(account)) == [("a", "en_US")]


def _gave_up(account, job_id=None, **options):
    """What Dramatiq sends ``mark_wa_template_sync_failed`` when a sync ran out of retries."""
    from workers.actors.wa_templates import mark_wa_template_sync_failed

    mark_wa_template_sync_failed(
        {
            "args": [str(account["id"]), str(job_id) if job_id else None],
            "options": {"traceback": "SyncRetry: 503", **options},
        },
        {"retries": 5},
    )


def _sync_job(templates, account):
    from shared.models import Job

    with session_scope() as session:
        job = Job(
            tenant_id=templates.tenant_id,
            kind=sync.JOB_KIND,
            params={"integration_account_ids": [str(account["id"])]},
        )
        session.add(job)
        session.flush()
        return job.id


def test_a_sync_giving_up_leaves_a_newer_sync_of_the_account_as_it_ended(templates):
    """While a failing sync waited out its retries, a newer sync of the account (the
    scheduler's) succeeded: the old one giving up must not fail the account's sync. Its
    job is still told the account failed, once."""
    account = templates.account()
    templates.at_meta(account, meta_template("a"))
    job_id = _sync_job(templates, account)
    templates.graph.script_templates("503")
    with pytest.raises(sync.SyncRetry):
        sync.run(account["id"], job_id)
    its_attempt = templates.sync_row(account).attempts
    templates.graph.script_templates("ok")
    assert sync.run(account["id"], None) == "succeeded"

    _gave_up(account, job_id, wa_template_sync_attempt=its_attempt)
    _gave_up(account, job_id)  # a message from before attempts were recorded

    row = templates.sync_row(account)
    assert (row.status, row.error) == ("succeeded", None)
    job = templates.job(job_id)
    assert job.status == "failed"
    assert job.result["accounts"][str(account["id"])]["error"].startswith("gave up after 5")


def test_a_sync_giving_up_leaves_a_later_attempt_of_its_job_running(templates):
    """The job's sync was sent again (its message looked lost) and that one is running when
    the first gives up: the running sync, not the first, tells the job how it ended."""
    account = templates.account()
    job_id = _sync_job(templates, account)
    templates.graph.script_templates("503", "503")
    with pytest.raises(sync.SyncRetry):
        sync.run(account["id"], job_id)
    its_attempt = templates.sync_row(account).attempts
    with pytest.raises(sync.SyncRetry):
        sync.run(account["id"], job_id)  # the re-sent message, between two of its retries

    _gave_up(account, job_id, wa_template_sync_attempt=its_attempt)

    row = templates.sync_row(account)
    assert (row.status, row.attempts) == ("running", its_attempt + 1)
    assert templates.job(job_id).status == "running"


def test_the_sync_that_gave_up_is_failed_through_the_worker(workspace, templates, monkeypatch):
    """The attempt a message last started travels with it to the retries-exhausted handler."""
    from workers.actors.wa_templates import sync_wa_templates

    monkeypatch.setitem(sync_wa_templates.options, "max_retries", 1)
    monkeypatch.setitem(sync_wa_templates.options, "min_backoff", 10)
    account = templates.account()
    templates.graph.script_templates("503", "503")
    resp = _sync(workspace, integration_account_id=str(account["id"]))
    job_id = resp.json["job_id"]
    wait_until(lambda: templates.job(job_id).status == "failed", "the job failed")
    row = templates.sync_row(account)
    assert row.status == "failed" and row.error.startswith("gave up after 1 retries")
    assert row.attempts == 2


def test_an_older_listing_is_not_applied_over_a_newer_one(templates):
    account = templates.account()
    templates.at_meta(account, meta_template("a"))
    assert sync.run(account["id"], None) == "succeeded"
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    with session_scope() as session:
        counts = sync.apply_listing(session, account["id"], [], old)
    assert counts["stale"] is True
    assert templates.templates(account)[("a", "en_US")].status == "APPROVED"


def test_the_scheduler_syncs_each_account_every_six_hours_and_resends_lost_syncs(templates):
    from scheduler.jobs import JOBS
    from scheduler.jobs import sync_wa_templates as job

    assert "sync_wa_templates" in {j.name for j in JOBS}
    account = templates.account()
    disabled = templates.account()
    with session_scope() as session:
        session.execute(
            update(IntegrationAccount)
            .where(IntegrationAccount.id == disabled["id"])
            .values(status="disabled")
        )
    templates.at_meta(account, meta_template("a"))

    with session_scope() as session:
        claimed = job(session)
    templates.settle()
    assert claimed >= 1
    row = templates.sync_row(account)
    assert row.status == "succeeded"
    assert row.due_at > dt.datetime.now(dt.UTC) + dt.timedelta(hours=5, minutes=59)
    assert list(templates.templates(account)) == [("a", "en_US")]
    assert templates.sync_row(disabled).status == "succeeded"  # a row, never claimed
    assert templates.templates(disabled) == {}

    # Not due again for 6 h: the next run leaves the account alone.
    before = len(templates.graph.gets())
    with session_scope() as session:
        job(session)
    templates.settle()
    assert len(templates.graph.gets()) == before

    # A sync whose message was lost (queued long ago) is sent again, keeping its schedule.
    due_at = templates.sync_row(account).due_at
    with session_scope() as session:
        session.execute(
            update(WaTemplateSync)
            .where(WaTemplateSync.integration_account_id == account["id"])
            .values(status="queued", enqueued_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        )
    with session_scope() as session:
        job(session)
    templates.settle()
    row = templates.sync_row(account)
    assert row.status == "succeeded" and row.due_at == due_at
    assert len(templates.graph.gets()) == before + 1


def test_a_job_whose_messages_were_lost_is_redriven(workspace, templates):
    from scheduler.jobs import redrive_queued_jobs
    from shared.models import Job

    account = templates.account()
    templates.at_meta(account, meta_template("a"))
    with session_scope() as session:
        job = Job(
            tenant_id=templates.tenant_id,
            kind=sync.JOB_KIND,
            params={"integration_account_ids": [str(account["id"])]},
            enqueued_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10),
        )
        session.add(job)
        session.flush()
        job_id = job.id
    with session_scope() as session:
        assert redrive_queued_jobs(session) >= 1
    templates.settle()
    assert templates.job(job_id).status == "succeeded"
    assert list(templates.templates(account)) == [("a", "en_US")]
    assert uuid.UUID(str(job_id))


def test_a_listing_whose_paging_is_of_another_shape_fails_the_sync(templates):
    """Meta's paging of another shape (cursors that are not an object) fails the sync's
    attempt (retried, as Meta's other bad answers are), as the Pages listing's 502 does:
    ended there instead, the listing would be cut short and the templates on its unread
    pages taken for ones Meta no longer lists."""
    account = templates.account()
    with session_scope() as session:
        session.add(
            WaTemplateSync(integration_account_id=account["id"], tenant_id=templates.tenant_id)
        )
    listed = {"data": [meta_template("a")], "paging": {"next": "more", "cursors": "after-b"}}
    templates.graph.script_templates(("raw", 200, listed))

    with pytest.raises(sync.SyncRetry, match="paging is not an object"):
        sync.run(account["id"], None)
    assert list(templates.templates(account)) == []


def test_a_template_created_while_a_listing_is_read_is_not_marked_deleted_by_it(
    workspace, templates
):
    """The create holds the account's lock while Meta reviews its submission; a sync whose
    listing was read meanwhile (without the new template) waits for that lock, and must not
    then take the template it never saw for one Meta no longer lists."""
    account = templates.account()
    templates.graph.script_templates(("sleep", 1.5), "ok")  # the create's POST is slow
    answers = []
    creating = threading.Thread(
        target=lambda: answers.append(
            workspace.call(
                "POST",
                "/api/wa-templates",
                json={
                    "integration_account_id": str(account["id"]),
                    "name": "order_update",
                    "language": "en_US",
                    "category": "UTILITY",
                    "components": [{"type": "BODY", "text": "Hi {{1}}"}],
                },
            )
        )
    )
    creating.start()
    wait_until(
        lambda: templates.graph.sent("/message_templates"), "the create reached Meta", timeout=10
    )
    time.sleep(0.2)  # the create took its sleep from the script
    # The listing is read while Meta still works on the create; its apply waits for the lock.
    assert sync.run(account["id"], None) == "succeeded"
    creating.join(timeout=20)
    [created] = answers
    assert created.status_code == 201, created.text
    assert templates.templates(account)[("order_update", "en_US")].status == "PENDING"
    assert [e["status"] for e in templates.status_events()] == []


def test_the_syncs_of_one_job_finishing_together_never_deadlock(workspace, templates):
    """Each account's sync reports to the job as it finishes. Its second update of its own
    sync row makes PostgreSQL check the row's job reference (a share lock on the job)
    before the report locks the job to write: two syncs finishing together each held the
    share lock and waited for the other's, and one was retried after a deadlock."""
    accounts = [templates.account() for _ in range(6)]
    for account in accounts:
        templates.at_meta(account, meta_template("order_update"))

    def attempts() -> dict:
        return {a["id"]: getattr(templates.sync_row(a), "attempts", 0) for a in accounts}

    for _round in range(3):
        before = attempts()
        resp = _sync(workspace)
        assert resp.status_code == 202, resp.text
        templates.settle()
        assert templates.job(resp.json["job_id"]).status == "succeeded"
        assert attempts() == {a: n + 1 for a, n in before.items()}, "a sync was retried"


def test_a_listed_template_of_another_shape_is_skipped_and_the_rest_sync(templates):
    """One template Meta lists oddly (an id longer than any Meta id, a non-scalar id)
    must not fail the whole account's sync, retry after retry."""
    account = templates.account()
    with session_scope() as session:
        session.add(
            WaTemplateSync(integration_account_id=account["id"], tenant_id=templates.tenant_id)
        )
    long_id = meta_template("long_id", template_id="9" * 65)
    nested_id = meta_template("nested_id") | {"id": {"x": 1}}
    templates.at_meta(account, long_id, nested_id, meta_template("fine"))

    assert sync.run(account["id"], None) == "succeeded"
    assert list(templates.templates(account)) == [("fine", "en_US")]


def test_a_cursor_meta_repeats_fails_the_sync_at_once_rather_than_looping(templates):
    """A page whose ``after`` is the cursor just asked for would be read again and again
    (up to the 1000-page bound, the same templates each time): it ends the sync, failed."""
    account = templates.account()
    with session_scope() as session:
        session.add(
            WaTemplateSync(integration_account_id=account["id"], tenant_id=templates.tenant_id)
        )
    same = {
        "data": [meta_template("a")],
        "paging": {"next": "https://graph.facebook.com/more", "cursors": {"after": "c1"}},
    }
    templates.graph.script_templates(("raw", 200, same))

    assert sync.run(account["id"], None) == "failed"
    assert len(templates.graph.gets(f"/v21.0/{account['waba_id']}/message_templates")) == 2
    row = templates.sync_row(account)
    assert row.status == "failed" and "cursor" in row.error
    assert templates.templates(account) == {}


def test_components_meta_lists_in_an_odd_shape_never_make_the_template_unreadable(
    workspace, templates
):
    """Meta's listing is the peer's to get wrong: a components list holding other things
    than objects is stored without them, so the template (and the list page holding it)
    still reads, instead of a row that answers 500 for as long as it lives."""
    account = templates.account()
    odd = meta_template("odd_shape")
    odd["components"] = [1, "BODY", None, {"type": "BODY", "text": "Hi"}, ["x"]]
    templates.at_meta(account, odd, meta_template("fine"))
    templates.synced(account)

    listed = workspace.call("GET", "/api/wa-templates")
    assert listed.status_code == 200, listed.text
    by_name = {t["name"]: t for t in listed.json["items"]}
    assert by_name["odd_shape"]["components"] == [{"type": "BODY", "text": "Hi"}]
    one = workspace.call("GET", f"/api/wa-templates/{by_name['odd_shape']['id']}")
    assert one.status_code == 200, one.text


def test_a_listed_template_we_cannot_store_is_not_marked_deleted(workspace, templates):
    """A template Meta still lists, in a shape we cannot store (no usable id), is skipped:
    it must not count as gone from Meta either, or its copy here turned DELETED (sends of
    it refused, ``template.status_changed`` announced) while it still sends at Meta."""
    account = templates.account()
    kept = meta_template("order_update")
    templates.at_meta(account, kept, meta_template("steady"))
    templates.synced(account)

    kept["id"] = None
    templates.synced(account)

    stored = templates.templates(account)
    assert stored[("order_update", "en_US")].status == "APPROVED"
    assert templates.status_events() == []
    assert templates.sync_row(account).result["removed"] == 0
