"""Billing payment fixtures: Stripe's fake on a real port, the settings that point at it,
invoices inserted directly (creating them is the subscriptions' job), and a super admin.
"""

from __future__ import annotations

import pytest

from shared.config import get_settings
from tests.admin.conftest import root  # noqa: F401
from tests.billing_payments.invoices import Billing
from tests.peers.stripe_fake import start_fake_stripe


@pytest.fixture(scope="session")
def fake_stripe_server():
    stripe, server = start_fake_stripe()
    yield stripe
    stripe.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_stripe(fake_stripe_server, monkeypatch):
    """The fake, reset, and this process (and workers it starts) configured to use it."""
    fake_stripe_server.reset()
    monkeypatch.setenv("BILLING_PROVIDER", "stripe")
    monkeypatch.setenv("STRIPE_API_BASE", fake_stripe_server.url)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_billpay")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", fake_stripe_server.webhook_secret)
    monkeypatch.setenv("BILLING_PROVIDER_TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("BILLING_CHARGE_RETRY_HOURS", "24,72,168")
    get_settings.cache_clear()
    yield fake_stripe_server
    fake_stripe_server.release.set()
    fake_stripe_server.reset()
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def billing(workspace, fake_stripe) -> Billing:
    return Billing(workspace, fake_stripe)
