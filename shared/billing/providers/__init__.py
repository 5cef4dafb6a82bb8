"""The payment provider interface: what billing asks of Stripe (or of the fake stand-in).

Every call that moves money carries an idempotency key chosen by us and committed to
``billing_payments`` before the call, so a retry after a crash is the same operation at
the provider. A provider that cannot be reached (connection refused, timeout, 5xx) raises
:class:`ProviderUnavailable`; a card the provider refuses is a *result*, not an error.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from shared.config import get_settings

Status = Literal["succeeded", "failed", "pending"]


class ProviderUnavailable(Exception):
    """The provider could not be reached or answered 5xx; the same call may be retried."""


class PaymentMethodRejected(Exception):
    """The provider refused a payment-method token (unknown, expired, declined on setup)."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class InvalidSignature(Exception):
    """A webhook whose signature (or timestamp) does not verify."""


@dataclass(frozen=True)
class PaymentMethodInfo:
    """A payment method as the provider keeps it: its id and display facts, never card data."""

    id: str
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What the provider did with a charge or a refund."""

    status: Status
    reference: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    #: A refund's own facts, for one made outside OmniStream (the provider's dashboard):
    #: its amount in ISO minor units, its currency and the charge it returns.
    amount: int | None = None
    currency: str | None = None
    charge_reference: str | None = None


@dataclass(frozen=True)
class WebhookEvent:
    """A verified provider event, reduced to what billing applies.

    ``kind`` is ``charge`` or ``refund`` (or ``None`` for an event billing ignores);
    ``payment_id`` is ours, from the metadata we attached; ``reference`` the provider's id.
    """

    id: str
    type: str
    payload: dict[str, Any]
    kind: Literal["charge", "refund"] | None = None
    outcomes: list[tuple[str | None, Outcome]] = field(default_factory=list)


class PaymentProvider(Protocol):
    """The calls billing makes; implementations map their errors onto the exceptions above."""

    name: str

    def create_customer(self, *, tenant_id: str, email: str | None, idempotency_key: str) -> str:
        """Create the tenant's customer; the same key answers the same customer id."""

    def attach_payment_method(self, *, customer_id: str, token: str) -> PaymentMethodInfo:
        """Attach the payment method a client-side token names to the customer."""

    def retrieve_payment_method(self, payment_method_id: str) -> PaymentMethodInfo:
        """The display facts of a payment method."""

    def detach_payment_method(self, payment_method_id: str) -> None:
        """Remove a payment method from its customer (a missing one is not an error)."""

    def charge(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> Outcome:
        """Charge off-session; a decline is ``Outcome(status="failed", failure_code=...)``."""

    def refund(
        self,
        *,
        charge_reference: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> Outcome:
        """Refund ``amount`` of a succeeded charge."""

    def parse_webhook(self, payload: bytes, signature: str | None) -> WebhookEvent:
        """Verify the signature over the raw body and read the event (InvalidSignature)."""


@functools.cache
def _provider(name: str, api_key: str | None, api_base: str, timeout: float) -> PaymentProvider:
    if name == "stripe":
        from shared.billing.providers.stripe_provider import StripeProvider

        return StripeProvider(api_key=api_key or "", api_base=api_base, timeout=timeout)
    from shared.billing.providers.fake_provider import FakeProvider

    return FakeProvider()


def get_provider() -> PaymentProvider:
    """The configured provider (BILLING_PROVIDER), one client per configuration."""
    s = get_settings()
    return _provider(
        s.billing_provider, s.stripe_api_key, s.stripe_api_base, s.billing_provider_timeout_seconds
    )
