"""BILLING_PROVIDER=fake: a development stand-in where no money moves.

Every charge and refund succeeds, except that a payment-method token containing
``decline`` declines its charges (so dunning can be tried by hand). Idempotency keys are
honoured within the process, as at a real provider. Webhooks are Stripe's format, so the
webhook route is verified by :func:`stripe_provider.parse_event` whichever provider runs.
"""

from __future__ import annotations

import hashlib
import threading

from shared.billing.providers import Outcome, PaymentMethodInfo, WebhookEvent


def _ref(prefix: str, key: str) -> str:
    return f"{prefix}_fake_{hashlib.sha256(key.encode()).hexdigest()[:20]}"


class FakeProvider:
    """The fake implementation of :class:`~shared.billing.providers.PaymentProvider`."""

    name = "fake"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[str, Outcome] = {}

    def create_customer(self, *, tenant_id: str, email: str | None, idempotency_key: str) -> str:
        return _ref("cus", idempotency_key)

    def attach_payment_method(self, *, customer_id: str, token: str) -> PaymentMethodInfo:
        return self.retrieve_payment_method(token)

    def retrieve_payment_method(self, payment_method_id: str) -> PaymentMethodInfo:
        digits = str(int(hashlib.sha256(payment_method_id.encode()).hexdigest(), 16))[-4:]
        return PaymentMethodInfo(payment_method_id, "visa", digits, 12, 2099)

    def detach_payment_method(self, payment_method_id: str) -> None:
        return None

    def _once(self, key: str, make) -> Outcome:
        with self._lock:
            if key not in self._done:
                self._done[key] = make()
            return self._done[key]

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
        def make() -> Outcome:
            reference = _ref("pi", idempotency_key)
            if "decline" in payment_method_id:
                return Outcome("failed", reference, "card_declined", "Your card was declined.")
            return Outcome("succeeded", reference)

        return self._once(idempotency_key, make)

    def refund(
        self,
        *,
        charge_reference: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> Outcome:
        return self._once(
            idempotency_key, lambda: Outcome("succeeded", _ref("re", idempotency_key))
        )

    def parse_webhook(self, payload: bytes, signature: str | None) -> WebhookEvent:
        from shared.billing.providers.stripe_provider import parse_event
        from shared.config import get_settings

        return parse_event(payload, signature, get_settings().stripe_webhook_secret)
