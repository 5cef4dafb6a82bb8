"""Billing: plans, subscriptions, invoices, payments and usage limits.

Modules: ``catalogue`` (plans, coupons, add-ons; super admins), ``subscriptions`` and
``cycle`` (a tenant's plan over time, renewals), ``invoices`` (lines, discounts, tax),
``payments`` and ``providers`` (charges and refunds at the payment provider), ``usage``
(counters and plan limits), ``analytics`` (revenue figures). ``charge_queue`` and
``refund_queue`` are the after-commit hand-offs to the ``charge_invoice`` and
``refund_invoice`` actors.
"""
