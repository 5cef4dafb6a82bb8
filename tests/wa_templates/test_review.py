"""Review results on the Meta webhook (``message_template_status_update``) update the template
and emit ``template.status_changed``, once."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update

from shared.channels.templates import sync, sync_queue
from shared.db import session_scope
from shared.models import InboundEvent, WaTemplateSync
from tests.peers.environment import environment
from tests.wa_templates.conftest import meta_template


def _created(workspace, account) -> dict:
    resp = workspace.call(
        "POST",
        "/api/wa-templates",
        json={
            "integration_account_id": str(account["id"]),
            "name": "order_update",
            "language": "en_US",
            "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Order {{1}} ships today."}],
        },
    )
    assert resp.status_code == 201, resp.text
    return resp.json


def _review(template: dict, event: str, reason: str = "NONE") -> dict:
    return {
        "event": event,
        "message_template_id": int(template["meta_template_id"]),
        "message_template_name": template["name"],
        "message_template_language": template["language"],
        "reason": reason,
    }


def test_approval_updates_the_template_and_is_announced_once(workspace, templates):
    account = templates.account()
    template = _created(workspace, account)

    templates.review(account, _review(template, "APPROVED"))

    got = workspace.call("GET", f"/api/wa-templates/{template['id']}").json
    assert got["status"] == "APPROVED" and got["status_updated_at"] > template["status_updated_at"]
    [event] = templates.status_events()
    assert event == {
        "id": template["id"],
        "integration_account_id": str(account["id"]),
        "meta_template_id": template["meta_template_id"],
        "name": "order_update",
        "language": "en_US",
        "status": "APPROVED",
        "previous_status": "PENDING",
        "reason": None,
        "source": "webhook",
    }
    # Meta's retry of the same callback, and the same event in a new callback: no change.
    templates.review(account, _review(template, "APPROVED"))
    payload = _review(template, "APPROVED") | {"other_info": {"title": "again"}}
    templates.review(account, payload)
    assert len(templates.status_events()) == 1
    with session_scope() as session:
        rows = session.scalars(
            select(InboundEvent).where(InboundEvent.tenant_id == templates.tenant_id)
        ).all()
    assert {row.status for row in rows} == {"processed"}


def test_rejection_keeps_the_reason_and_reinstatement_approves_again(workspace, templates):
    account = templates.account()
    template = _created(workspace, account)

    templates.review(account, _review(template, "REJECTED", "INCORRECT_CATEGORY"))
    got = workspace.call("GET", f"/api/wa-templates/{template['id']}").json
    assert got["status"] == "REJECTED" and got["rejected_reason"] == "INCORRECT_CATEGORY"

    templates.review(account, _review(template, "FLAGGED"))  # a warning, not a status
    assert workspace.call("GET", f"/api/wa-templates/{template['id']}").json["status"] == (
        "REJECTED"
    )
    templates.review(account, _review(template, "REINSTATED"))
    got = workspace.call("GET", f"/api/wa-templates/{template['id']}").json
    assert got["status"] == "APPROVED" and got["rejected_reason"] is None
    assert [e["status"] for e in templates.status_events()] == ["REJECTED", "APPROVED"]


def test_a_review_of_a_template_we_do_not_hold_imports_it_by_a_sync(workspace, templates):
    account = templates.account()
    elsewhere = meta_template("made_in_business_manager", status="APPROVED")
    templates.at_meta(account, elsewhere)

    templates.review(
        account,
        {
            "event": "APPROVED",
            "message_template_id": int(elsewhere["id"]),
            "message_template_name": elsewhere["name"],
            "message_template_language": "en_US",
            "reason": "NONE",
        },
    )
    templates.settle()

    assert list(templates.templates(account)) == [("made_in_business_manager", "en_US")]


def test_the_sync_a_review_asked_for_is_sent_again_when_its_message_was_lost(templates):
    """The review's transaction records the sync it owes: lost on its way to the broker,
    it is sent again by the scheduler's claim, not only at the account's 6-hourly sync."""
    from scheduler.jobs import sync_wa_templates as claim

    account = templates.account()
    with session_scope() as session:
        claim(session)  # the account's first sync: next due in 6 h
    templates.settle()
    elsewhere = meta_template("made_elsewhere", status="APPROVED")
    templates.at_meta(account, elsewhere)
    review = {
        "event": "APPROVED",
        "message_template_id": int(elsewhere["id"]),
        "message_template_name": elsewhere["name"],
        "message_template_language": "en_US",
        "reason": "NONE",
    }
    saved = sync_queue.QUEUE.enqueuer
    sync_queue.set_enqueuer(None)  # the process dies between its commit and the broker
    try:
        templates.review(account, review)
    finally:
        sync_queue.set_enqueuer(saved)
    templates.settle()
    assert templates.templates(account) == {}

    with session_scope() as session:
        session.execute(
            update(WaTemplateSync)
            .where(WaTemplateSync.integration_account_id == account["id"])
            .values(enqueued_at=func.now() - sync.STUCK_AFTER - dt.timedelta(seconds=1))
        )
    with session_scope() as session:
        assert claim(session) >= 1
    templates.settle()
    assert list(templates.templates(account)) == [("made_elsewhere", "en_US")]
    assert templates.sync_row(account).status == "succeeded"


def test_a_status_the_webhook_set_is_not_undone_by_an_older_listing(workspace, templates):
    from shared.channels.templates import sync

    account = templates.account()
    template = _created(workspace, account)
    assert sync.run(account["id"], None) == "succeeded"
    with session_scope() as session:
        listed_at = session.scalar(select(func.clock_timestamp()))
    templates.review(account, _review(template, "APPROVED"))
    listing = [dict(templates.graph.wa_templates[account["waba_id"]][0], status="PENDING")]
    with session_scope() as session:
        sync.apply_listing(session, account["id"], listing, listed_at)
    assert workspace.call("GET", f"/api/wa-templates/{template['id']}").json["status"] == (
        "APPROVED"
    )


def test_a_review_without_a_template_id_fails_its_payload_visibly(templates):
    account = templates.account()
    templates.review(account, {"event": "APPROVED"})
    with session_scope() as session:
        [row] = session.scalars(
            select(InboundEvent).where(InboundEvent.tenant_id == templates.tenant_id)
        ).all()
    assert row.status == "failed" and "template id" in row.result["errors"][0]


@pytest.mark.parametrize("signed_by", ["account", "platform"])
def test_another_tenant_naming_the_same_waba_does_not_take_its_reviews(
    workspace, templates, other_templates, signed_by
):
    """A WABA id is an account setting a tenant writes: another tenant's account naming it
    (connected earlier) took the reviews (platform secret) or had them refused (401)."""
    squatter = other_templates.account()
    account = templates.account(waba_id=squatter["waba_id"])
    template = _created(workspace, account)
    signer = account if signed_by == "account" else account | {"app_secret": "platform-secret"}

    with environment(META_APP_SECRET="platform-secret" if signed_by == "platform" else None):
        templates.review(signer, _review(template, "APPROVED"))

    got = workspace.call("GET", f"/api/wa-templates/{template['id']}").json
    assert got["status"] == "APPROVED"
    assert len(templates.status_events()) == 1
    assert other_templates.status_events() == []


def test_a_review_committed_while_a_listing_is_applied_is_not_overwritten(workspace, templates):
    """The sync read the account's templates, then updated them: a review committing in
    between (its status newer than the listing) was overwritten by the listing's older
    status whenever another column changed too (here the quality score)."""
    import threading
    import time

    from shared.channels.templates import review, sync
    from shared.models import IntegrationAccount

    account = templates.account()
    template = _created(workspace, account)
    assert sync.run(account["id"], None) == "succeeded"
    with session_scope() as session:
        listed_at = session.scalar(select(func.clock_timestamp()))
    listing = [
        dict(templates.graph.wa_templates[account["waba_id"]][0], quality_score={"score": "GREEN"})
    ]
    done = []
    with session_scope() as webhook:
        row = webhook.get(IntegrationAccount, account["id"])
        assert review.apply(webhook, row, review.parse(_review(template, "APPROVED"))) == "changed"

        def apply():
            with session_scope() as session:
                done.append(sync.apply_listing(session, account["id"], listing, listed_at))

        syncing = threading.Thread(target=apply)
        syncing.start()
        time.sleep(0.5)  # the sync is waiting on the review's row lock
    syncing.join(timeout=20)

    assert done and done[0]["updated"] == 1
    got = workspace.call("GET", f"/api/wa-templates/{template['id']}").json
    assert got["status"] == "APPROVED" and got["quality_score"] == "GREEN"
    assert [e["status"] for e in templates.status_events()] == ["APPROVED"]


def test_a_review_naming_its_template_in_odd_types_still_applies_by_meta_id(workspace, templates):
    """A review's name or language of another type than a string (a number, an object)
    was compared with the text columns as is: the database refused the query and the
    review was lost. They are ignored instead, and Meta's id finds the template."""
    account = templates.account()
    template = _created(workspace, account)
    review = _review(template, "APPROVED")
    review["message_template_name"] = 12345
    review["message_template_language"] = {"code": "en_US"}

    templates.review(account, review)

    got = workspace.call("GET", f"/api/wa-templates/{template['id']}").json
    assert got["status"] == "APPROVED"
    assert [e["status"] for e in templates.status_events()] == ["APPROVED"]
