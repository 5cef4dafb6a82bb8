"""The subscription routes: trial at registration, subscribe, change plan, cancel, add-ons."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select, update

from shared.billing import analytics, subscriptions
from shared.context import Ctx
from shared.db import session_scope
from shared.models.billing import BillingInvoice, BillingPlan, BillingSubscription
from tests.billing_subscriptions.conftest import (
    add_payment_method,
    invoices_of,
    lines_of,
    make_add_on,
    make_coupon,
    make_plan,
    subscription_of,
)
from tests.workspaces import register


def test_registration_starts_a_trial_on_the_default_trial_plan(workspace, trial_plan):
    resp = workspace.call("GET", "/api/billing/subscription")
    assert resp.status_code == 200, resp.text
    body = resp.json
    assert body["status"] == "trialing"
    assert body["plan_id"] == str(trial_plan)
    assert body["plan"]["price_amount"] == 4900
    assert body["trial_ends_at"] == body["current_period_end"]
    start = body["current_period_start"]
    sub = subscription_of(workspace.tenant["id"])
    assert (sub.trial_ends_at - sub.current_period_start).days == 14, start
    assert invoices_of(workspace.tenant["id"]) == []  # a trial owes nothing


def _registered_without_a_trial(client, trial_plan):
    """A workspace registered while no plan is the default trial: it has no subscription."""
    with session_scope() as session:
        session.execute(
            update(BillingPlan).where(BillingPlan.id == trial_plan).values(is_default_trial=False)
        )
    try:
        return register(client)
    finally:
        with session_scope() as session:
            session.execute(
                update(BillingPlan)
                .where(BillingPlan.id == trial_plan)
                .values(is_default_trial=True)
            )


def test_without_a_trial_plan_a_workspace_has_no_subscription_and_no_limits(client, trial_plan):
    workspace = _registered_without_a_trial(client, trial_plan)
    assert subscription_of(workspace.tenant["id"]) is None
    resp = workspace.call("GET", "/api/billing/subscription")
    assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"
    usage = workspace.call("GET", "/api/billing/usage").json
    assert usage["billing_enabled"] is False
    assert usage["limits"] == {
        "seats": None,
        "messages": None,
        "ai_replies": None,
        "storage_bytes": None,
    }


def test_a_paid_plan_needs_a_payment_method_and_nothing_is_written(workspace, charges):
    plan = make_plan(2000)
    resp = workspace.call("POST", "/api/billing/subscription", json={"plan_id": str(plan)})
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "payment_method"
    assert subscription_of(workspace.tenant["id"]).status == "trialing"
    assert invoices_of(workspace.tenant["id"]) == [] and charges.sent == []


def test_subscribe_ends_the_trial_with_a_first_invoice_charged_after_commit(workspace, charges):
    plan = make_plan(2000)
    add_payment_method(workspace.tenant["id"])
    resp = workspace.call("POST", "/api/billing/subscription", json={"plan_id": str(plan)})
    assert resp.status_code == 201, resp.text
    sub, invoice = resp.json["subscription"], resp.json["invoice"]
    assert sub["status"] == "active" and sub["plan_id"] == str(plan)
    assert invoice["reason"] == "subscription_create" and invoice["status"] == "open"
    assert (invoice["subtotal"], invoice["total"]) == (2000, 2000)
    assert invoice["number"].startswith("INV-")
    assert [line["kind"] for line in invoice["lines"]] == ["plan"]
    assert charges.sent == [uuid.UUID(invoice["id"])]
    # A paid subscription is live: subscribing again is a conflict, and writes nothing.
    again = workspace.call("POST", "/api/billing/subscription", json={"plan_id": str(plan)})
    assert again.status_code == 409
    assert len(invoices_of(workspace.tenant["id"])) == 1


def test_subscribing_during_the_trial_ends_it_and_churn_counts_the_paid_months(workspace, charges):
    tenant = uuid.UUID(workspace.tenant["id"])
    month = analytics.month_start(dt.datetime.now(dt.UTC) - dt.timedelta(days=120))
    registered, paid = month - dt.timedelta(days=5), month - dt.timedelta(days=4)
    with session_scope() as session:  # the trial registration started then, in CHF
        session.execute(
            update(BillingSubscription)
            .where(BillingSubscription.tenant_id == tenant)
            .values(
                currency="CHF",  # no other test bills in it: its churn is this test's alone
                created_at=registered,
                current_period_start=registered,
                current_period_end=registered + dt.timedelta(days=14),
                trial_ends_at=registered + dt.timedelta(days=14),
            )
        )
    plan = make_plan(1000, currency="CHF")
    add_payment_method(tenant)
    with session_scope() as session:  # pays before the month starts, mid-trial
        subscriptions.subscribe(session, Ctx.system(tenant), plan_id=plan, now=paid)
    sub = subscription_of(tenant)
    assert (sub.status, sub.trial_ends_at) == ("active", paid)

    def churn() -> tuple[int, int]:
        with session_scope() as session:
            figures = analytics.churn(session, month + dt.timedelta(days=10))
        chf = [r for r in figures["revenue"] if r["currency"] == "CHF"]
        return (chf[0]["mrr_at_start"], chf[0]["mrr_lost"]) if chf else (0, 0)

    at_start, lost = churn()
    with session_scope() as session:  # dunning gives up two days into the month
        session.execute(
            update(BillingSubscription)
            .where(BillingSubscription.id == sub.id)
            .values(status="cancelled", ended_at=month + dt.timedelta(days=2))
        )
    # paying since before the month: in its base, and its cancellation is churn
    assert churn() == (at_start, lost + 1000)


def test_a_coupon_discounts_the_first_invoice_and_bad_coupons_are_422(workspace, charges):
    plan = make_plan(2000)
    other_plan = make_plan(3000)
    add_payment_method(workspace.tenant["id"])
    expired = make_coupon(expires_at=func.now() - func.make_interval(0, 0, 0, 1))
    for code in ("NOPE", expired, make_coupon(eligible_plan_ids=[other_plan])):
        resp = workspace.call(
            "POST", "/api/billing/subscription", json={"plan_id": str(plan), "coupon_code": code}
        )
        assert resp.status_code == 422, (code, resp.text)
        assert resp.json["error"]["details"][0]["field"] == "coupon_code"
    assert invoices_of(workspace.tenant["id"]) == []
    code = make_coupon(percent_off=25, duration="repeating", duration_periods=3)
    resp = workspace.call(
        "POST", "/api/billing/subscription", json={"plan_id": str(plan), "coupon_code": code}
    )
    assert resp.status_code == 201, resp.text
    invoice = resp.json["invoice"]
    assert (invoice["subtotal"], invoice["discount_amount"], invoice["total"]) == (2000, 500, 1500)
    assert resp.json["subscription"]["coupon_periods_left"] == 2


def _subscribed(workspace, price=3000, **plan_fields):
    plan = make_plan(price, **plan_fields)
    add_payment_method(workspace.tenant["id"])
    resp = workspace.call("POST", "/api/billing/subscription", json={"plan_id": str(plan)})
    assert resp.status_code == 201, resp.text
    return plan, resp.json


def test_upgrade_now_with_a_prorated_invoice_and_downgrade_at_period_end(workspace, charges):
    plan, _ = _subscribed(workspace, 3000)
    tenant = workspace.tenant["id"]
    # Half the period gone (time moved: the period is shifted back by its half).
    with session_scope() as session:
        sub = session.scalar(
            select(BillingSubscription).where(BillingSubscription.tenant_id == uuid.UUID(tenant))
        )
        half = (sub.current_period_end - sub.current_period_start) / 2
        sub.current_period_start -= half
        sub.current_period_end -= half
    bigger = make_plan(5000)
    resp = workspace.call(
        "POST", "/api/billing/subscription/change-plan", json={"plan_id": str(bigger)}
    )
    assert resp.status_code == 200, resp.text
    invoice = resp.json["invoice"]
    assert invoice["reason"] == "plan_change"
    kinds = {line["kind"]: line["amount"] for line in invoice["lines"]}
    # About half of each price (the request took a moment; exact figures: test_proration).
    assert -1500 <= kinds["proration_credit"] <= -1499
    assert 2499 <= kinds["proration_charge"] <= 2500
    assert invoice["total"] == kinds["proration_credit"] + kinds["proration_charge"]
    assert resp.json["subscription"]["plan_id"] == str(bigger)
    # A downgrade waits for the period end.
    resp = workspace.call(
        "POST", "/api/billing/subscription/change-plan", json={"plan_id": str(plan)}
    )
    assert resp.status_code == 200 and resp.json["invoice"] is None
    assert resp.json["subscription"]["plan_id"] == str(bigger)
    assert resp.json["subscription"]["pending_plan_id"] == str(plan)
    # Choosing the current plan again drops the pending downgrade.
    resp = workspace.call(
        "POST", "/api/billing/subscription/change-plan", json={"plan_id": str(bigger)}
    )
    assert resp.status_code == 200 and resp.json["subscription"]["pending_plan_id"] is None
    again = workspace.call(
        "POST", "/api/billing/subscription/change-plan", json={"plan_id": str(bigger)}
    )
    assert again.status_code == 422


def test_change_plan_bad_input(workspace):
    _subscribed(workspace)
    for body in (
        {"plan_id": str(uuid.uuid4())},
        {"plan_id": "nope"},
        {},
        {"plan_id": str(make_plan(1, currency="EUR"))},
    ):
        resp = workspace.call("POST", "/api/billing/subscription/change-plan", json=body)
        assert resp.status_code == 422, (body, resp.text)


def test_cancel_sets_cancel_at_period_end_once(workspace):
    _subscribed(workspace)
    first = workspace.call("POST", "/api/billing/subscription/cancel")
    assert first.status_code == 200, first.text
    assert first.json["cancel_at_period_end"] is True and first.json["status"] == "active"
    second = workspace.call("POST", "/api/billing/subscription/cancel")
    assert second.json["cancelled_at"] == first.json["cancelled_at"]


def test_add_ons_attach_prorated_list_and_detach_at_period_end(workspace, charges):
    _subscribed(workspace)
    add_on = make_add_on(800, extra_seats=2)
    resp = workspace.call(
        "POST", "/api/billing/subscription/add-ons", json={"add_on_id": str(add_on), "quantity": 2}
    )
    assert resp.status_code == 201, resp.text
    invoice = resp.json["invoice"]
    assert invoice["reason"] == "add_on"
    assert 1599 <= invoice["total"] <= 1600  # nearly the whole period is left
    again = workspace.call(
        "POST", "/api/billing/subscription/add-ons", json={"add_on_id": str(add_on)}
    )
    assert again.status_code == 409
    listed = workspace.call("GET", "/api/billing/subscription/add-ons").json
    assert [(a["add_on_id"], a["quantity"], a["detach_at_period_end"]) for a in listed] == [
        (str(add_on), 2, False)
    ]
    usage = workspace.call("GET", "/api/billing/usage").json
    assert usage["limits"]["seats"] is None  # the test plan has no seat limit
    resp = workspace.call("DELETE", f"/api/billing/subscription/add-ons/{add_on}")
    assert resp.status_code == 204
    listed = workspace.call("GET", "/api/billing/subscription/add-ons").json
    assert listed[0]["detach_at_period_end"] is True  # usable until the period end
    missing = workspace.call("DELETE", f"/api/billing/subscription/add-ons/{uuid.uuid4()}")
    assert missing.status_code == 404


def test_add_ons_are_refused_on_a_trial(workspace):
    add_on = make_add_on(800)
    resp = workspace.call(
        "POST", "/api/billing/subscription/add-ons", json={"add_on_id": str(add_on)}
    )
    assert resp.status_code == 409


def test_invoices_are_the_tenants_own_and_paginated(workspace, other_workspace):
    _subscribed(workspace, 1000)
    bigger = make_plan(2000)
    workspace.call("POST", "/api/billing/subscription/change-plan", json={"plan_id": str(bigger)})
    first = workspace.call("GET", "/api/billing/invoices", params={"limit": 1})
    assert first.status_code == 200, first.text
    assert len(first.json["items"]) == 1 and first.json["next_cursor"]
    second = workspace.call(
        "GET", "/api/billing/invoices", params={"limit": 1, "cursor": first.json["next_cursor"]}
    )
    assert second.json["next_cursor"] is None
    numbers = {first.json["items"][0]["number"], second.json["items"][0]["number"]}
    assert len(numbers) == 2
    assert other_workspace.call("GET", "/api/billing/invoices").json["items"] == []
    bad = workspace.call("GET", "/api/billing/invoices", params={"status": "weird"})
    assert bad.status_code == 400


def test_billing_routes_need_billing_manage(workspace):
    _agent, token = workspace.create_agent("agent")
    for method, path in (
        ("GET", "/api/billing/subscription"),
        ("GET", "/api/billing/invoices"),
        ("GET", "/api/billing/usage"),
        ("POST", "/api/billing/subscription/cancel"),
    ):
        resp = workspace.call(method, path, token=token)
        assert resp.status_code == 403, (path, resp.text)
    assert subscription_of(workspace.tenant["id"]).cancel_at_period_end is False


def test_no_invoice_lines_are_orphans():
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(BillingInvoice)) >= 0
    assert lines_of(uuid.uuid4()) == []


def test_idempotency_key_replays_the_first_answer_and_charges_once(workspace, charges):
    plan = make_plan(2000)
    key = {"Idempotency-Key": f"sub-{uuid.uuid4()}"}
    body = {"plan_id": str(plan)}
    # A failed first try (no payment method) releases the key: the retry runs.
    failed = workspace.call("POST", "/api/billing/subscription", json=body, headers=key)
    assert failed.status_code == 422
    add_payment_method(workspace.tenant["id"])
    first = workspace.call("POST", "/api/billing/subscription", json=body, headers=key)
    again = workspace.call("POST", "/api/billing/subscription", json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json
    assert len(invoices_of(workspace.tenant["id"])) == 1
    assert charges.sent == [uuid.UUID(first.json["invoice"]["id"])]
    # Another key is another request: a paid subscription is live.
    other = {"Idempotency-Key": f"sub-{uuid.uuid4()}"}
    assert (
        workspace.call("POST", "/api/billing/subscription", json=body, headers=other).status_code
        == 409
    )
    # Upgrades and add-ons likewise.
    bigger = {"plan_id": str(make_plan(5000))}
    key = {"Idempotency-Key": "upgrade-1"}
    first = workspace.call(
        "POST", "/api/billing/subscription/change-plan", json=bigger, headers=key
    )
    again = workspace.call(
        "POST", "/api/billing/subscription/change-plan", json=bigger, headers=key
    )
    assert first.status_code == again.status_code == 200
    assert again.json["invoice"]["id"] == first.json["invoice"]["id"]
    add_on = {"add_on_id": str(make_add_on(300))}
    key = {"Idempotency-Key": "add-on-1"}
    first = workspace.call("POST", "/api/billing/subscription/add-ons", json=add_on, headers=key)
    again = workspace.call("POST", "/api/billing/subscription/add-ons", json=add_on, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert len(invoices_of(workspace.tenant["id"])) == 3
    bad = workspace.call(
        "POST", "/api/billing/subscription/cancel", headers={"Idempotency-Key": ""}
    )
    assert bad.status_code == 200  # cancel moves no money: the header is not read there
    too_long = {"Idempotency-Key": "k" * 300}
    resp = workspace.call(
        "POST", "/api/billing/subscription/add-ons", json=add_on, headers=too_long
    )
    assert resp.status_code == 422


def test_idempotency_key_with_another_body_is_refused(workspace, charges):
    _subscribed(workspace)
    key = {"Idempotency-Key": f"add-on-{uuid.uuid4()}"}
    path = "/api/billing/subscription/add-ons"
    first = workspace.call("POST", path, json={"add_on_id": str(make_add_on(300))}, headers=key)
    assert first.status_code == 201, first.text
    # Another add-on is another request: the first add-on's answer would pass it off as done.
    other = workspace.call("POST", path, json={"add_on_id": str(make_add_on(900))}, headers=key)
    assert other.status_code == 422, other.text
    assert other.json["error"]["details"] == [
        {"field": "Idempotency-Key", "message": "already used for a different request"}
    ]
    assert len(invoices_of(workspace.tenant["id"])) == 2  # the subscription's and the first's


def test_idempotency_key_is_scoped_to_its_caller(workspace, charges):
    _subscribed(workspace)
    _admin, token = workspace.create_agent("admin")
    key = {"Idempotency-Key": "1"}
    path = "/api/billing/subscription/add-ons"
    mine = workspace.call("POST", path, json={"add_on_id": str(make_add_on(300))}, headers=key)
    theirs = workspace.call(
        "POST", path, json={"add_on_id": str(make_add_on(900))}, headers=key, token=token
    )
    assert (mine.status_code, theirs.status_code) == (201, 201), theirs.text
    assert len(invoices_of(workspace.tenant["id"])) == 3


def test_guessing_coupon_codes_through_subscribe_is_bounded_as_validate_is(workspace, charges):
    """Subscribe answers ``unknown`` for a made-up code like validate does: the same oracle,
    so the same bound (20 unknown codes in 10 minutes, then 429) covers both routes."""
    from shared.billing.coupon_guesses import MAX_UNKNOWN_CODES

    plan, real = make_plan(0), make_coupon()
    for n in range(MAX_UNKNOWN_CODES):
        body = {"plan_id": str(plan), "coupon_code": f"GUESS{n}{uuid.uuid4().hex[:6]}"}
        resp = workspace.call("POST", "/api/billing/subscription", json=body)
        assert resp.status_code == 422, resp.text
        assert resp.json["error"]["details"][0]["reason"] == "unknown"
    body = {"plan_id": str(plan), "coupon_code": real}
    resp = workspace.call("POST", "/api/billing/subscription", json=body)
    assert resp.status_code == 429, resp.text
    assert subscription_of(workspace.tenant["id"]).status == "trialing"
    resp = workspace.call("POST", "/api/billing/coupons/validate", json={"code": real})
    assert resp.status_code == 429, resp.text


def test_a_subscription_dunned_to_cancellation_ends_its_add_ons(workspace, charges):
    """Dunning that gives up cancels the subscription now; its add-ons end with it, as at a
    period-end cancellation: their extras stop raising the limits, and they no longer
    count as attached (which would block deleting the add-on or changing its currency)."""
    from shared.billing import payments
    from shared.models.billing import BillingSubscriptionAddOn

    tenant = uuid.UUID(workspace.tenant["id"])
    add_payment_method(tenant)  # no customer at the provider: each charge is a declined attempt
    plan, add_on = make_plan(1000, seat_limit=3), make_add_on(0, extra_seats=5)
    ctx = Ctx.system(tenant)
    with session_scope() as session:
        invoice_id = subscriptions.subscribe(session, ctx, plan_id=plan).invoice.id
        subscriptions.attach_add_on(session, ctx, add_on_id=add_on)
    assert workspace.call("GET", "/api/billing/usage").json["limits"]["seats"] == 8
    for _ in range(10):
        with session_scope() as session:
            invoice = session.get(BillingInvoice, invoice_id)
            status, due = invoice.status, invoice.next_charge_at
        if status != "open":
            break
        payments.charge_invoice(invoice_id, now=due)
    assert status == "uncollectible" and subscription_of(tenant).status == "cancelled"
    with session_scope() as session:
        ended = session.scalars(
            select(BillingSubscriptionAddOn.detached_at).where(
                BillingSubscriptionAddOn.tenant_id == tenant
            )
        ).all()
    assert ended and None not in ended
    assert workspace.call("GET", "/api/billing/usage").json["limits"]["seats"] == 3


def test_attaching_a_detaching_add_on_in_another_quantity_is_refused(workspace, charges):
    """Attaching an add-on that is leaving at the period end keeps it, as paid for; in
    another quantity that would answer 201 and silently keep the old one: 409 instead."""
    _subscribed(workspace)
    add_on = make_add_on(800, extra_seats=2)
    path = "/api/billing/subscription/add-ons"
    body = {"add_on_id": str(add_on)}
    assert workspace.call("POST", path, json=body | {"quantity": 2}).status_code == 201
    assert workspace.call("DELETE", f"{path}/{add_on}").status_code == 204
    resp = workspace.call("POST", path, json=body | {"quantity": 5})
    assert resp.status_code == 409, resp.text
    listed = workspace.call("GET", path).json
    assert [(a["quantity"], a["detach_at_period_end"]) for a in listed] == [(2, True)]
    resp = workspace.call("POST", path, json=body | {"quantity": 2})  # the same: kept
    assert resp.status_code == 201, resp.text
    listed = workspace.call("GET", path).json
    assert [(a["quantity"], a["detach_at_period_end"]) for a in listed] == [(2, False)]


def test_a_free_plan_takes_no_coupon_and_spends_none_of_its_redemptions(workspace, charges):
    """A free plan has nothing to discount: a coupon there is 422 (reason ``free_plan``),
    not a redemption of a limited coupon spent on nothing."""
    from shared.models.billing import BillingCoupon

    free, code = make_plan(0), make_coupon(max_redemptions=1)
    body = {"plan_id": str(free), "coupon_code": code}
    resp = workspace.call("POST", "/api/billing/subscription", json=body)
    assert resp.status_code == 422, resp.text
    [detail] = resp.json["error"]["details"]
    assert (detail["field"], detail["reason"]) == ("coupon_code", "free_plan")
    with session_scope() as session:
        coupon = session.scalars(select(BillingCoupon).where(BillingCoupon.code == code)).one()
        assert coupon.times_redeemed == 0
    assert invoices_of(workspace.tenant["id"]) == []
    resp = workspace.call("POST", "/api/billing/subscription", json={"plan_id": str(free)})
    assert resp.status_code == 201, resp.text


def test_a_plan_changing_currency_meanwhile_is_subscribed_to_as_it_is_now(workspace):
    """An admin moves an unused plan to EUR while a workspace (USD) subscribes to it: the
    subscribe waits for the plan's change and refuses the foreign currency; it never
    makes a USD subscription on a plan that now renews in EUR."""
    import threading

    from shared.billing import catalogue

    plan = make_plan(0)
    answers = []

    def subscribe():
        answers.append(
            workspace.call("POST", "/api/billing/subscription", json={"plan_id": str(plan)})
        )

    with session_scope() as session:
        catalogue.update_plan(session, plan, {"currency": "EUR"})
        session.flush()
        thread = threading.Thread(target=subscribe)
        thread.start()
        thread.join(timeout=1.0)
    thread.join(timeout=10)
    [resp] = answers
    sub = subscription_of(workspace.tenant["id"])
    with session_scope() as session:
        assert session.get(BillingPlan, plan).currency == "EUR"
    assert resp.status_code == 422, (resp.text, sub.currency)
    assert resp.json["error"]["details"][0]["field"] == "plan_id"
    assert (sub.status, sub.currency) == ("trialing", "USD")


def test_a_coupon_changed_meanwhile_is_redeemed_as_it_is_now(workspace, charges):
    """An admin limits an unredeemed coupon to another plan while a workspace subscribes
    with it: the subscribe waits for the change (the redemption's row lock) and then
    refuses the coupon; it never discounts a plan the coupon no longer applies to, nor
    spends a redemption on it, from the terms it read before the change."""
    from shared.billing import catalogue
    from shared.db import get_sessionmaker
    from shared.models.billing import BillingCoupon
    from tests.lock_races import race

    plan, other_plan = make_plan(2000), make_plan(3000)
    add_payment_method(workspace.tenant["id"])
    code = make_coupon(percent_off=50, max_redemptions=5)
    with session_scope() as session:
        coupon_id = session.scalar(select(BillingCoupon.id).where(BillingCoupon.code == code))
    holder = get_sessionmaker()()
    catalogue.update_coupon(
        holder, coupon_id, {"eligible_plan_ids": [other_plan]}, dt.datetime.now(dt.UTC)
    )
    holder.flush()
    resp = race(
        holder,
        lambda: workspace.call(
            "POST", "/api/billing/subscription", json={"plan_id": str(plan), "coupon_code": code}
        ),
    )
    with session_scope() as session:
        coupon = session.get(BillingCoupon, coupon_id)
        assert (coupon.eligible_plan_ids, coupon.times_redeemed) == ([other_plan], 0)
    assert resp.status_code == 422, (resp.text, invoices_of(workspace.tenant["id"]))
    assert resp.json["error"]["details"][0]["reason"] == "ineligible_plan"
    assert invoices_of(workspace.tenant["id"]) == []
    assert subscription_of(workspace.tenant["id"]).status == "trialing"


def test_two_first_subscribes_at_once_make_one_and_a_409_naming_it(
    client, trial_plan, charges, caplog
):
    """A workspace without any subscription subscribes twice at once (a double click, two
    tabs): one subscribes, the other is told the workspace has that subscription now,
    never the safety net's anonymous 409 (logged as our bug)."""
    from shared.db import get_sessionmaker
    from tests.lock_races import race

    workspace = _registered_without_a_trial(client, trial_plan)
    tenant = uuid.UUID(workspace.tenant["id"])
    assert subscription_of(tenant) is None
    # Two plans: a subscribe waits for another's on the same plan's row (``_shared``).
    plan, other_plan = make_plan(0), make_plan(0)
    holder = get_sessionmaker()()
    first = subscriptions.subscribe(holder, Ctx.system(tenant), plan_id=plan).subscription.id
    body = {"plan_id": str(other_plan)}
    resp = race(holder, lambda: workspace.call("POST", "/api/billing/subscription", json=body))
    assert resp is not None, "the second subscribe never answered"
    assert resp.status_code == 409, resp.text
    assert resp.json["error"]["code"] == "conflict"
    assert str(first) in resp.json["error"]["message"]
    assert resp.json["error"]["details"][0]["subscription_id"] == str(first)
    assert not [r for r in caplog.records if "database refused" in r.getMessage()]
    with session_scope() as session:
        live = session.scalars(
            select(BillingSubscription.id).where(
                BillingSubscription.tenant_id == tenant, BillingSubscription.status != "cancelled"
            )
        ).all()
    assert live == [first]
    assert len(invoices_of(tenant, "subscription_create")) == 1
