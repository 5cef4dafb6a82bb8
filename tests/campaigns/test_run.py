"""run_campaign end to end: batches through send_outbound to the fake Graph API, live counts,
opt-outs, pause/resume/cancel at the next batch, the scheduler's start, Meta's throttling."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select, text, update

from scheduler.jobs import start_due_campaigns
from shared.channels import outbound_engine
from shared.channels.send_errors import Outcome
from shared.db import session_scope
from shared.models import Campaign, Contact, Conversation, DeadLetter, Message, WaTemplate
from tests.campaigns.conftest import TEMPLATE, Shop, sent_to, settled
from tests.waiting import wait_until


def _opt_out(shop: Shop, contact_id: uuid.UUID) -> None:
    resp = shop.ws.call("PATCH", f"/api/contacts/{contact_id}", json={"opted_out": True})
    assert resp.status_code == 200, resp.text
    assert resp.json["opted_out_at"] is not None


def test_send_now_reaches_every_recipient_once_in_batches_and_completes(
    shop: Shop, fake_graph, campaign_settings
):
    contacts = shop.contacts(5)
    _opt_out(shop, contacts[4])
    campaign = shop.create()
    resp = shop.ws.call(
        "POST",
        f"/api/campaigns/{campaign['id']}/recipients",
        json={
            "recipients": [
                {"contact_id": str(c), "variables": {"order": f"A-{n}"}}
                for n, c in enumerate(contacts)
            ]
        },
    )
    assert resp.status_code == 200, resp.text
    started = shop.send(campaign)
    assert started["status"] == "running"

    settled(shop, campaign)
    wait_until(lambda: shop.get(campaign)["status"] == "completed", "the campaign completes")
    counts = shop.get(campaign)["counts"]
    assert (counts["total"], counts["sent"], counts["skipped"], counts["failed"]) == (5, 4, 1, 0)
    with session_scope() as session:
        numbers = dict(session.execute(select(Contact.id, Contact.external_id)).all())
    assert sorted(sent_to(fake_graph, shop)) == sorted(numbers[c] for c in contacts[:4])
    bodies = {
        r.json["to"]: r.json["template"]["components"][0]["parameters"]
        for r in fake_graph.sent()
        if r.json.get("type") == "template"
    }
    assert bodies[numbers[contacts[1]]] == [
        {"type": "text", "text": "Customer 1"},
        {"type": "text", "text": "A-1"},
    ]
    rows = shop.recipients(campaign)
    assert [r.status for r in rows] == ["sent"] * 4 + ["skipped"]
    assert rows[4].error_code == "opted_out" and rows[4].message_id is None
    # Batches of two: three batches made messages (the third held one and the opt-out).
    assert [r.batch for r in rows] == [rows[0].batch] * 2 + [rows[2].batch] * 2 + [rows[4].batch]
    assert len({r.batch for r in rows}) == 3
    assert [e["id"] for e in shop.event_data("campaign.started")] == [campaign["id"]]
    [completed] = shop.event_data("campaign.completed")
    assert completed["counts"]["skipped"] == 1 and completed["status"] == "completed"


def test_status_callbacks_and_replies_move_the_live_counts(
    shop: Shop, fake_graph, campaign_settings
):
    contacts = shop.contacts(3)
    fake_graph.next_wamids.extend(["wamid.C1", "wamid.C2", "wamid.C3"])
    campaign = shop.create()
    shop.add(campaign, contacts)
    shop.send(campaign)
    settled(shop, campaign)
    shop.status(shop.wa, "wamid.C1", "delivered")
    shop.status(shop.wa, "wamid.C2", "read")
    shop.status(
        shop.wa,
        "wamid.C3",
        "failed",
        errors=[{"code": 131026, "title": "Message undeliverable"}],
    )
    # NOTE: a contact whose message was not refused: which contact got which wamid follows
    # the send order, and a reply to a failed message is not counted.
    wait_until(lambda: shop.get(campaign)["counts"]["failed"] == 1, "the failure recorded")
    answering = next(r.contact_id for r in shop.recipients(campaign) if r.status != "failed")
    with session_scope() as session:
        number = session.scalar(select(Contact.external_id).where(Contact.id == answering))
    shop.inbound_text(shop.wa, "wamid.IN1", number, "Thanks!")

    # Each callback is its own process_inbound job, applied in any order: wait for all.
    expected = {"sent": 2, "delivered": 2, "read": 1, "failed": 1, "replied": 1}

    def moved():
        counts = shop.get(campaign)["counts"]
        shown = {k: counts[k] for k in expected}
        return shown if shown == expected else None

    wait_until(moved, f"the statuses and the reply counted as {expected}")
    failed = [r for r in shop.recipients(campaign) if r.status == "failed"]
    assert failed[0].error_code == "131026"


def test_pause_cancel_and_resume_take_effect_at_the_next_batch(
    shop: Shop, fake_graph, campaign_settings, batches
):
    campaign_settings(batch_interval_ms=3_600_000)  # an hour between batches: time is moved
    campaign = shop.create()
    shop.add(campaign, shop.contacts(5))
    shop.send(campaign)
    assert batches.run_next() == ["sent_batch"]
    pause = shop.ws.call("POST", f"/api/campaigns/{campaign['id']}/pause")
    assert pause.status_code == 200 and pause.json["status"] == "paused"
    assert shop.ws.call("POST", f"/api/campaigns/{campaign['id']}/pause").status_code == 409
    assert batches.run_next() == ["stopped"]  # the hour passed: the paused campaign waits
    assert shop.get(campaign)["counts"]["pending"] == 3

    resumed = shop.ws.call("POST", f"/api/campaigns/{campaign['id']}/resume")
    assert resumed.status_code == 200 and resumed.json["status"] == "running"
    assert batches.run_next() == ["sent_batch"]
    # The batch's messages are sent before the cancel (see the test below for those not).
    wait_until(lambda: shop.get(campaign)["counts"]["queued"] == 0, "the batch sent")
    cancelled = shop.ws.call("POST", f"/api/campaigns/{campaign['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert batches.run_next() == ["stopped"]
    view = settled(shop, campaign)
    counts = view["counts"]
    assert (view["status"], counts["sent"], counts["cancelled"]) == ("cancelled", 4, 1)
    assert len(sent_to(fake_graph, shop)) == 4
    assert [e["id"] for e in shop.event_data("campaign.cancelled")] == [campaign["id"]]
    assert shop.event_data("campaign.completed") == []
    assert shop.ws.call("POST", f"/api/campaigns/{campaign['id']}/cancel").status_code == 409


def test_cancel_stops_the_messages_still_waiting_for_their_send(
    shop: Shop, fake_graph, campaign_settings, batches, held_sends
):
    """A batch's messages wait for their send (a backlog, a throttled account): a cancel
    stops them too, not only the recipients no batch reached yet (API.md: unsent
    recipients are set to ``cancelled``)."""
    waiting = held_sends
    campaign_settings(batch_interval_ms=3_600_000)
    campaign = shop.create()
    shop.add(campaign, shop.contacts(3))
    shop.send(campaign)
    assert batches.run_next() == ["sent_batch"]
    assert len(waiting) == 2 and shop.get(campaign)["counts"]["queued"] == 2

    cancelled = shop.ws.call("POST", f"/api/campaigns/{campaign['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    results = outbound_engine.send_batch(waiting)

    assert sent_to(fake_graph, shop) == []
    assert {r.outcome for r in results.values()} == {Outcome.FAILED}
    view = shop.get(campaign)
    assert (view["status"], view["counts"]["cancelled"], view["counts"]["queued"]) == (
        "cancelled",
        3,
        0,
    )
    with session_scope() as session:
        stopped = session.execute(
            select(Message.status, Message.error_code).where(Message.id.in_(waiting))
        ).all()
    assert stopped == [("failed", "campaign_cancelled")] * 2


def test_a_contact_who_opts_out_while_their_message_waits_is_not_sent_it(
    shop: Shop, fake_graph, campaign_settings, batches, held_sends
):
    """The batch checked the opt-out when it made the message; the send (after a backlog,
    a throttled account, retries) checks it again, as it checks a cancel."""
    waiting = held_sends
    campaign_settings(batch_interval_ms=3_600_000)
    campaign = shop.create()
    first, second = shop.contacts(2)
    shop.add(campaign, [first, second])
    shop.send(campaign)
    assert batches.run_next() == ["completed"]
    assert len(waiting) == 2 and shop.get(campaign)["counts"]["queued"] == 2

    _opt_out(shop, second)
    outbound_engine.send_batch(waiting)

    with session_scope() as session:
        phone = session.get(Contact, first).phone.lstrip("+")
    assert sent_to(fake_graph, shop) == [phone]
    counts = shop.get(campaign)["counts"]
    assert (counts["sent"], counts["skipped"], counts["queued"]) == (1, 1, 0), counts
    by_contact = {r.contact_id: r for r in shop.recipients(campaign)}
    assert (by_contact[second].status, by_contact[second].error_code) == ("skipped", "opted_out")


def _template_status(shop: Shop, status: str) -> None:
    """Meta's review changed the template's status (as its webhook or a sync records it)."""
    with session_scope() as session:
        session.execute(
            update(WaTemplate).where(WaTemplate.tenant_id == shop.tenant_id).values(status=status)
        )


def _after_one_batch(shop: Shop, campaign_settings, batches) -> dict:
    """A campaign of 4 recipients whose first batch of 2 is made; the next waits an hour."""
    campaign_settings(batch_interval_ms=3_600_000)
    campaign = shop.create()
    shop.add(campaign, shop.contacts(4))
    shop.send(campaign)
    assert batches.run_next() == ["sent_batch"]
    return campaign


def test_a_template_meta_paused_holds_the_campaign_until_approved_again(
    shop: Shop, fake_graph, campaign_settings, batches
):
    """Meta pauses a low-quality template for hours, then approves it again on its own:
    the campaign waits for it and goes on, rather than failing for good."""
    campaign = _after_one_batch(shop, campaign_settings, batches)
    _template_status(shop, "PAUSED")

    assert batches.run_next() == ["waiting"]
    held = shop.get(campaign)
    assert (held["status"], held["error_code"]) == ("running", "template_paused")
    assert held["counts"]["pending"] == 2

    _template_status(shop, "APPROVED")
    assert batches.run_next() == ["completed"]
    view = settled(shop, campaign)
    assert (view["status"], view["error_code"], view["counts"]["sent"]) == ("completed", None, 4)


def _assert_failed_event(shop: Shop, campaign: dict, code: str) -> None:
    """A campaign that fails for good says so: webhooks and automation waiting for its end
    hear ``campaign.failed`` (its GET, with the reason), never ``campaign.completed``."""
    [failed] = shop.event_data("campaign.failed")
    assert (failed["id"], failed["status"], failed["error_code"]) == (
        campaign["id"],
        "failed",
        code,
    )
    assert failed["error_message"] == shop.get(campaign)["error_message"]
    assert failed["counts"] == shop.get(campaign)["counts"]
    assert shop.event_data("campaign.completed") == []
    logged = shop.ws.call(
        "GET", f"/api/activity-logs?action=campaign.failed&entity_id={campaign['id']}"
    )
    assert logged.status_code == 200, logged.text
    assert [row["after"]["error_code"] for row in logged.json["items"]] == [code]
    types = shop.ws.call("GET", "/api/outgoing-webhooks/event-types").json
    assert "campaign.failed" in {t["type"] for t in types}


def test_a_template_meta_disabled_fails_the_campaign(
    shop: Shop, fake_graph, campaign_settings, batches
):
    campaign = _after_one_batch(shop, campaign_settings, batches)
    _template_status(shop, "DISABLED")
    assert batches.run_next() == ["failed"]
    view = shop.get(campaign)
    assert (view["status"], view["error_code"]) == ("failed", "template_refused")
    # The two no batch reached will never be sent: not left pending for ever.
    assert (view["counts"]["pending"], view["counts"]["failed"]) == (0, 2), view["counts"]
    unsent = [r for r in shop.recipients(campaign) if r.message_id is None]
    assert [(r.status, r.error_code) for r in unsent] == [("failed", "template_refused")] * 2
    _assert_failed_event(shop, campaign, "template_refused")


def test_a_scheduled_campaign_starts_when_the_scheduler_finds_it_due(
    shop: Shop, fake_graph, campaign_settings, batches
):
    campaign = shop.create()
    shop.add(campaign, shop.contacts(1))
    # NOTE: relative to now: a fixed date turns into "must be in the future" once it passes.
    in_a_day = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    shop.send(campaign, scheduled_at=in_a_day.isoformat())
    with session_scope() as session:
        assert start_due_campaigns(session) == {"started": 0, "redriven": 0}
    with session_scope() as session:  # move time: its hour came
        session.execute(
            update(Campaign)
            .where(Campaign.id == uuid.UUID(campaign["id"]))
            .values(scheduled_at=text("now() - interval '1 second'"))
        )
    with session_scope() as session:
        assert start_due_campaigns(session) == {"started": 1, "redriven": 0}
    assert shop.get(campaign)["status"] == "running"
    assert [e["id"] for e in shop.event_data("campaign.started")] == [campaign["id"]]
    assert len(batches.items) == 1
    assert batches.run_next() == ["completed"]
    settled(shop, campaign)
    assert len(sent_to(fake_graph, shop)) == 1

    # A batch job that is lost: the scheduler sends it again once it is a minute late.
    again = shop.create()
    shop.add(again, shop.contacts(1))
    shop.send(again)
    lost = batches.items.pop()
    with session_scope() as session:
        session.execute(
            update(Campaign)
            .where(Campaign.id == uuid.UUID(again["id"]))
            .values(next_batch_at=text("now() - interval '2 minutes'"))
        )
    with session_scope() as session:
        assert start_due_campaigns(session) == {"started": 0, "redriven": 1}
    assert batches.run_next() == ["completed"]
    from workers.actors.campaigns import run_campaign

    assert run_campaign(str(lost[0]), lost[1]) == "stopped"  # the lost job, late: a no-op
    settled(shop, again)
    assert len(sent_to(fake_graph, shop)) == 2


def test_a_queue_running_late_delays_the_campaign_but_never_stalls_it(
    shop: Shop, fake_graph, campaign_settings, batches
):
    """The jobs are late, not lost (a backlog on the queue keeps every job 90 s behind):
    the scheduler re-drives each batch, and the late job it re-drove must still send it.
    A re-drive that made the late job stale left every batch to its copy, itself 90 s
    late and made stale in its turn: the campaign never sent anything."""
    from workers.actors.campaigns import run_campaign

    campaign = shop.create()
    shop.add(campaign, shop.contacts(3))
    shop.send(campaign)
    outcomes = []
    for _ in range(4):
        with session_scope() as session:  # move time: the oldest job is 90 s late
            session.execute(
                update(Campaign)
                .where(Campaign.id == uuid.UUID(campaign["id"]))
                .values(next_batch_at=text("next_batch_at - interval '90 seconds'"))
            )
            start_due_campaigns(session)
        if batches.items:
            campaign_id, step, _ = batches.items.pop(0)  # the queue is first in, first out
            outcomes.append(run_campaign(str(campaign_id), step))
    assert "completed" in outcomes, outcomes
    settled(shop, campaign)
    assert len(sent_to(fake_graph, shop)) == 3


def test_metas_throttling_puts_the_next_batch_off_then_it_goes_on(
    shop: Shop, fake_graph, campaign_settings, batches
):
    fake_graph.script("130429")  # every send throttled (retried, then failed)
    campaign = shop.create()
    contacts = shop.contacts(4)
    shop.add(campaign, contacts)
    shop.send(campaign)
    assert batches.run_next() == ["sent_batch"]
    wait_until(  # the first two failed after their retries
        lambda: shop.get(campaign)["counts"]["failed"] == 2, "the throttled sends given up"
    )

    assert batches.run_next() == ["throttled"]
    row = shop.campaign_row(campaign)
    assert row.backoff_seconds == 30
    [(_, _, delay)] = batches.items
    assert delay == 30
    assert shop.get(campaign)["counts"]["pending"] == 2  # nothing new was sent

    fake_graph.script("ok")  # Meta lets us through again
    assert batches.run_next() == ["completed"]
    view = settled(shop, campaign)
    assert (view["counts"]["sent"], view["counts"]["failed"]) == (2, 2)
    assert shop.campaign_row(campaign).backoff_seconds == 0
    answered = sent_to(fake_graph, shop)
    assert len(set(answered)) == 4


def test_a_messenger_campaign_sends_its_body_with_each_contacts_values(
    shop: Shop, fake_graph, campaign_settings
):
    page = shop.meta_account("messenger")
    contacts = shop.contacts(3, channel="messenger", custom_attributes={"plan": "gold"})
    campaign = shop.create(
        channel="messenger",
        integration_account_id=str(page["id"]),
        template=None,
        body="Hi {{name}}, your {{attr.plan}} perks are here",
    )
    assert campaign["template"] is None
    patched = shop.ws.call(
        "PATCH",
        f"/api/campaigns/{campaign['id']}",
        json={"body": "Hello {{name}}, your {{attr.plan}} perks are here"},
    )
    assert patched.status_code == 200, patched.text
    shop.add(campaign, contacts)
    shop.send(campaign)
    view = settled(shop, campaign)
    assert view["counts"]["sent"] == 3
    texts = sorted(r.json["message"]["text"] for r in fake_graph.sent("/me/messages"))
    assert texts == [f"Hello Customer {n}, your gold perks are here" for n in range(3)]


def test_the_sending_accounts_own_rate_sets_the_batch_size_and_pacing(
    shop: Shop, fake_graph, campaign_settings, batches
):
    from shared.models import IntegrationAccount

    with session_scope() as session:
        session.execute(
            update(IntegrationAccount)
            .where(IntegrationAccount.id == shop.wa["id"])
            .values(settings={"campaign_batch_size": 1, "campaign_batch_interval_ms": 250})
        )
    campaign = shop.create()
    shop.add(campaign, shop.contacts(2))
    shop.send(campaign)
    assert batches.run_next() == ["sent_batch"]
    [(_, _, delay)] = batches.items
    assert delay == 0.25
    assert shop.get(campaign)["counts"]["pending"] == 1  # one recipient per batch
    assert batches.run_next() == ["completed"]


def test_an_accounts_absurd_pacing_is_bounded_rather_than_stopping_its_campaigns(
    shop: Shop, fake_graph, campaign_settings, batches
):
    """An admin's typo in the account's settings (a pacing of millennia) must not make
    every batch raise, leaving the campaign ``running`` and retried forever."""
    from shared.models import IntegrationAccount

    with session_scope() as session:
        session.execute(
            update(IntegrationAccount)
            .where(IntegrationAccount.id == shop.wa["id"])
            .values(settings={"campaign_batch_size": 1, "campaign_batch_interval_ms": 10**15})
        )
    campaign = shop.create()
    shop.add(campaign, shop.contacts(2))
    shop.send(campaign)
    assert batches.run_next() == ["sent_batch"]
    [(_, _, delay)] = batches.items
    assert 0 < delay <= 24 * 3600
    assert batches.run_next() == ["completed"]


def test_a_draft_sends_the_header_media_its_template_has_when_it_runs(
    shop: Shop, fake_graph, campaign_settings
):
    """A campaign that gives its media header no parameter sends the template's header
    media URL: the one set when it runs, not a copy taken when the draft was written."""
    import secrets

    from shared.models import WaTemplate

    with session_scope() as session:
        template = WaTemplate(
            tenant_id=shop.tenant_id,
            integration_account_id=shop.wa["id"],
            meta_template_id=str(secrets.randbelow(10**15)),
            name="spring_banner",
            language="en_US",
            category="MARKETING",
            status="APPROVED",
            components=[
                {"type": "HEADER", "format": "IMAGE"},
                {"type": "BODY", "text": "Hi {{1}}"},
            ],
            header_media_url="https://cdn.example/old.png",
        )
        session.add(template)
        session.flush()
        template_id = template.id
    campaign = shop.create(template=shop.template("{{name}}", name="spring_banner"))
    fixed = shop.ws.call(
        "PATCH",
        f"/api/wa-templates/{template_id}/header-media",
        json={"header_media_url": "https://cdn.example/new.png"},
    )
    assert fixed.status_code == 200, fixed.text
    shop.add(campaign, shop.contacts(1))
    shop.send(campaign)
    settled(shop, campaign)
    own = f"/{shop.wa['external_id']}/messages"  # not a previous test's late send
    [sent] = [
        r.json
        for r in fake_graph.sent()
        if r.json.get("type") == "template" and r.path.endswith(own)
    ]
    [header] = [c for c in sent["template"]["components"] if c["type"] == "header"]
    assert header["parameters"] == [
        {"type": "image", "image": {"link": "https://cdn.example/new.png"}}
    ]


def _sent_from(graph, account: dict) -> list[str]:
    own = f"/{account['external_id']}/messages"
    return [r.json["to"] for r in graph.sent() if r.path.endswith(own)]


def test_an_account_deleted_mid_campaign_fails_the_rest_rather_than_sending_from_another(
    shop: Shop, fake_graph, campaign_settings, batches
):
    """The campaign named its number: the tenant's next default must not send the rest."""
    successor = shop.meta_account("whatsapp")
    shop.approve(TEMPLATE, account=successor)  # it could send the template: only the rule stops it
    campaign = _after_one_batch(shop, campaign_settings, batches)
    wait_until(lambda: shop.get(campaign)["counts"]["queued"] == 0, "the first batch sent")
    deleted = shop.ws.call("DELETE", f"/api/integration-accounts/{shop.wa['id']}")
    assert deleted.status_code == 204, deleted.text

    assert batches.run_next() == ["failed"]
    view = shop.get(campaign)
    assert (view["status"], view["error_code"]) == ("failed", "account_deleted")
    assert view["error_message"]
    assert (view["counts"]["pending"], view["counts"]["failed"]) == (0, 2), view["counts"]
    unsent = [r for r in shop.recipients(campaign) if r.message_id is None]
    assert [(r.status, r.error_code) for r in unsent] == [("failed", "account_deleted")] * 2
    assert all(r.error_message for r in unsent)
    assert batches.items == []  # no next batch
    assert _sent_from(fake_graph, successor) == []
    _assert_failed_event(shop, campaign, "account_deleted")


def test_a_draft_whose_account_was_deleted_is_not_sent_from_the_default(
    shop: Shop, fake_graph, campaign_settings, batches
):
    second = shop.meta_account("whatsapp")
    shop.approve(TEMPLATE, account=second)
    campaign = shop.create(integration_account_id=str(second["id"]))
    shop.add(campaign, shop.contacts(2))
    deleted = shop.ws.call("DELETE", f"/api/integration-accounts/{second['id']}")
    assert deleted.status_code == 204, deleted.text

    refused = shop.send(campaign, status=422)
    assert refused["error"]["code"] == "validation_error"
    assert refused["error"]["details"][0]["field"] == "integration_account_id"
    assert shop.get(campaign)["status"] == "draft"
    assert batches.items == [] and sent_to(fake_graph, shop) == []
    # Naming another account (or none: the default) makes it sendable again.
    renamed = shop.ws.call(
        "PATCH", f"/api/campaigns/{campaign['id']}", json={"integration_account_id": None}
    )
    assert renamed.status_code == 200, renamed.text
    shop.send(campaign)
    assert batches.run_next() == ["completed"]


def test_a_revived_campaign_send_moves_its_recipient_from_failed_to_sent(
    shop: Shop, fake_graph, campaign_settings
):
    """An operator requeues the dead letter of a campaign message that ran out of retries:
    once it goes out, the campaign counts it sent and no longer failed."""
    fake_graph.script("503")  # transient every time: retried, then failed and dead-lettered
    campaign = shop.create()
    shop.add(campaign, shop.contacts(1))
    shop.send(campaign)
    view = settled(shop, campaign, timeout=30)
    assert (view["counts"]["sent"], view["counts"]["failed"]) == (0, 1)
    [recipient] = shop.recipients(campaign)
    with session_scope() as session:
        letter = session.scalars(
            select(DeadLetter.id).where(DeadLetter.args.contains([str(recipient.message_id)]))
        ).one()
    fake_graph.script("ok")

    resp = shop.ws.call("POST", f"/api/ops/dead-letters/{letter}/requeue")

    assert resp.status_code == 200, resp.text
    wait_until(lambda: shop.get(campaign)["counts"]["sent"] == 1, "the revived send counted")
    counts = shop.get(campaign)["counts"]
    assert (counts["total"], counts["sent"], counts["failed"], counts["queued"]) == (1, 1, 0, 0)
    [recipient] = shop.recipients(campaign)
    assert (recipient.status, recipient.error_code, recipient.error_message) == ("sent", None, None)


def test_a_reply_is_counted_only_for_a_message_the_contact_was_sent(
    shop: Shop, fake_graph, campaign_settings
):
    """A contact who writes in after their campaign message failed (Meta refused it) did
    not answer it: the campaign's ``replied`` must not count them. It did: every
    recipient with a message got ``replied_at``, whatever became of the message."""
    contacts = shop.contacts(2)
    fake_graph.next_wamids.extend(["wamid.R1", "wamid.R2"])
    campaign = shop.create()
    shop.add(campaign, contacts)
    shop.send(campaign)
    settled(shop, campaign)
    shop.status(
        shop.wa, "wamid.R2", "failed", errors=[{"code": 131026, "title": "Message undeliverable"}]
    )
    wait_until(lambda: shop.get(campaign)["counts"]["failed"] == 1, "the failure recorded")
    by_status = {r.status: r.contact_id for r in shop.recipients(campaign)}
    with session_scope() as session:
        numbers = dict(session.execute(select(Contact.id, Contact.external_id)).all())
    shop.inbound_text(shop.wa, "wamid.IN-F", numbers[by_status["failed"]], "What was that?")
    shop.inbound_text(shop.wa, "wamid.IN-S", numbers[by_status["sent"]], "Thanks!")

    def replied():
        with session_scope() as session:  # both inbound messages dispatched
            pending = session.scalar(
                text(
                    "SELECT count(*) FROM outbox_events WHERE tenant_id = :t"
                    " AND type = 'message.created' AND status = 'pending'"
                ),
                {"t": shop.tenant_id},
            )
        rows = {r.status: r for r in shop.recipients(campaign)}
        return rows if pending == 0 and rows["sent"].replied_at is not None else None

    rows = wait_until(replied, "both inbound messages dispatched")
    assert rows["failed"].replied_at is None
    assert shop.get(campaign)["counts"]["replied"] == 1


def test_an_api_campaign_never_sends_a_contact_of_another_api_account(
    shop: Shop, campaign_settings, batches, held_sends
):
    """An api contact is a customer of one account's system (its ``source_id`` names
    someone else on another's): a campaign sending from account A must not message B's
    customer "42" through A, which would reach A's customer "42". It opened a conversation
    for them on A and queued the message there."""
    accounts = []
    for name in ("System A", "System B"):
        resp = shop.ws.call(
            "POST", "/api/integration-accounts", json={"channel": "api", "name": name}
        )
        assert resp.status_code == 201, resp.text
        accounts.append(resp.json["id"])
    with session_scope() as session:  # customer "42" of each system: two people
        people = [
            Contact(
                tenant_id=shop.tenant_id,
                channel="api",
                external_id="42",
                integration_account_id=uuid.UUID(account),
                name=f"Customer of {account}",
            )
            for account in accounts
        ]
        session.add_all(people)
        session.flush()
        of_a, of_b = (person.id for person in people)
    resp = shop.ws.call(
        "POST",
        "/api/campaigns",
        json={
            "name": "News",
            "channel": "api",
            "integration_account_id": accounts[0],
            "body": "Hi {{name}}",
        },
    )
    assert resp.status_code == 201, resp.text
    campaign = resp.json
    shop.add(campaign, [of_a, of_b])
    shop.send(campaign)
    assert batches.run_next() == ["completed"]

    rows = {r.contact_id: r for r in shop.recipients(campaign)}
    assert rows[of_a].status == "queued"
    assert rows[of_b].status == "failed" and rows[of_b].message_id is None
    assert rows[of_b].error_code == "contact_of_another_account"
    with session_scope() as session:
        on_a = session.scalars(
            select(Message.id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Conversation.contact_id == of_b)
        ).all()
    assert on_a == [] and len(held_sends) == 1


def test_an_accounts_pacing_given_as_true_is_ignored_rather_than_breaking_each_batch(
    shop: Shop, fake_graph, campaign_settings, batches
):
    """The account's settings are free JSON: ``true`` is not a number (Python counts a bool
    as the int 1, so the campaign went out one recipient per batch, 1 ms apart, paced by
    neither the account nor the defaults). It is ignored, as a string would be."""
    settings = {"settings": {"campaign_batch_size": True, "campaign_batch_interval_ms": True}}
    resp = shop.ws.call("PATCH", f"/api/integration-accounts/{shop.wa['id']}", json=settings)
    assert resp.status_code == 200, resp.text
    campaign = shop.create()
    shop.add(campaign, shop.contacts(3))
    shop.send(campaign)
    assert batches.run_next() == ["sent_batch"]  # the default size: two
    assert shop.get(campaign)["counts"]["pending"] == 1
    assert batches.run_next() == ["completed"]
    # NOTE: its three sends answered before the test ends: the fake Graph API serves the
    # whole process, and a late send took the next test's scripted answer.
    settled(shop, campaign)
