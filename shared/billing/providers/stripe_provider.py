"""Stripe through its official client (``stripe`` 16.x), pointed at STRIPE_API_BASE.

One :class:`stripe.StripeClient` per configuration: ``base_addresses={"api": ...}`` selects
the endpoint (tests point it at ``tests/peers/stripe_fake.py``), a
:class:`stripe.RequestsClient` carries the timeout (BILLING_PROVIDER_TIMEOUT_SECONDS) and
``max_network_retries=0`` leaves retrying to our workers (Dramatiq's backoff), whose
idempotency keys make a retry the same charge. Errors are mapped: a card error (402) is a
failed :class:`Outcome` with its decline code; connection errors, timeouts, 429 and 5xx are
:class:`ProviderUnavailable`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import stripe

from shared.billing.providers import (
    InvalidSignature,
    Outcome,
    PaymentMethodInfo,
    PaymentMethodRejected,
    ProviderUnavailable,
    WebhookEvent,
)

# NOTE: the client logs every request and response at INFO; ours log the outcomes.
logging.getLogger("stripe").setLevel(logging.WARNING)

#: Stripe's default tolerance for a webhook's timestamp (replays older than this fail).
WEBHOOK_TOLERANCE_SECONDS = 300

_UNAVAILABLE = (
    stripe.APIConnectionError,
    stripe.APIError,
    stripe.RateLimitError,
    stripe.AuthenticationError,
    stripe.PermissionError,
)


def _unavailable(exc: stripe.StripeError) -> ProviderUnavailable:
    status = getattr(exc, "http_status", None)
    return ProviderUnavailable(f"Stripe unavailable ({type(exc).__name__} {status}): {exc}")


def _plain(obj: Any) -> dict[str, Any]:
    """A StripeObject as a plain dict (16.x objects are not dicts; webhooks are already)."""
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _card_info(pm: Any) -> PaymentMethodInfo:
    pm = _plain(pm)
    card = pm.get("card") or {}
    return PaymentMethodInfo(
        id=pm["id"],
        brand=card.get("brand"),
        last4=card.get("last4"),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
    )


def _intent_outcome(intent: Any) -> Outcome:
    status = intent.get("status")
    if status == "succeeded":
        return Outcome("succeeded", intent["id"])
    if status == "processing":
        return Outcome("pending", intent["id"])  # the webhook brings the result
    error = intent.get("last_payment_error") or {}
    code = error.get("decline_code") or error.get("code")
    if status == "requires_action":
        code = code or "authentication_required"
    return Outcome("failed", intent["id"], code or status, error.get("message"))


def _refund_outcome(refund: Any) -> Outcome:
    status = refund.get("status")
    if status == "succeeded":
        return Outcome("succeeded", refund["id"])
    if status in ("failed", "canceled"):
        return Outcome("failed", refund["id"], refund.get("failure_reason") or status)
    return Outcome("pending", refund["id"])


class StripeProvider:
    """The Stripe implementation of :class:`~shared.billing.providers.PaymentProvider`."""

    name = "stripe"

    def __init__(self, *, api_key: str, api_base: str, timeout: float):
        self.client = stripe.StripeClient(
            api_key or "sk_unset",
            base_addresses={"api": api_base.rstrip("/")},
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    def create_customer(self, *, tenant_id: str, email: str | None, idempotency_key: str) -> str:
        params: dict[str, Any] = {"metadata": {"tenant_id": tenant_id}}
        if email:
            params["email"] = email
        try:
            customer = self.client.v1.customers.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        return customer["id"]

    def attach_payment_method(self, *, customer_id: str, token: str) -> PaymentMethodInfo:
        try:
            pm = self.client.v1.payment_methods.attach(token, params={"customer": customer_id})
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        except (stripe.CardError, stripe.InvalidRequestError) as exc:
            raise PaymentMethodRejected(exc.user_message or str(exc), exc.code) from exc
        return _card_info(pm)

    def retrieve_payment_method(self, payment_method_id: str) -> PaymentMethodInfo:
        try:
            return _card_info(self.client.v1.payment_methods.retrieve(payment_method_id))
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        except stripe.InvalidRequestError as exc:
            raise PaymentMethodRejected(exc.user_message or str(exc), exc.code) from exc

    def detach_payment_method(self, payment_method_id: str) -> None:
        try:
            self.client.v1.payment_methods.detach(payment_method_id)
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        except stripe.InvalidRequestError:
            pass  # already detached or unknown: nothing left to remove

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
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": customer_id,
            "payment_method": payment_method_id,
            "off_session": True,
            "confirm": True,
            "metadata": metadata,
        }
        try:
            intent = self.client.v1.payment_intents.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        except (stripe.CardError, stripe.InvalidRequestError) as exc:
            error = (exc.json_body or {}).get("error") or {}
            intent = error.get("payment_intent") or {}
            code = error.get("decline_code") or exc.code or "card_error"
            return Outcome("failed", intent.get("id"), code, exc.user_message or str(exc))
        return _intent_outcome(_plain(intent))

    def refund(
        self, *, charge_reference: str, amount: int, idempotency_key: str, metadata: dict[str, str]
    ) -> Outcome:
        params = {"payment_intent": charge_reference, "amount": amount, "metadata": metadata}
        try:
            refund = self.client.v1.refunds.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        except (stripe.CardError, stripe.InvalidRequestError) as exc:
            return Outcome("failed", None, exc.code or "refund_refused", str(exc))
        return _refund_outcome(_plain(refund))

    def parse_webhook(self, payload: bytes, signature: str | None) -> WebhookEvent:
        from shared.config import get_settings

        return parse_event(payload, signature, get_settings().stripe_webhook_secret)


def parse_event(payload: bytes, signature: str | None, secret: str | None) -> WebhookEvent:
    """Verify ``Stripe-Signature`` (``t=..,v1=..``) with the library and read the event.

    Raises :class:`InvalidSignature` for a missing secret or header, a wrong signature, a
    timestamp outside the tolerance, or a body that is not a Stripe event.
    """
    if not secret or not signature:
        raise InvalidSignature("missing Stripe-Signature header or webhook secret")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature, secret, WEBHOOK_TOLERANCE_SECONDS)
        event = json.loads(text)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidSignature(str(exc)[:200]) from exc
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise InvalidSignature("not a Stripe event")
    return _read_event(event)


def _payment_id(obj: dict[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    return metadata.get("payment_id") if isinstance(metadata, dict) else None


def _read_event(event: dict[str, Any]) -> WebhookEvent:
    kind = str(event.get("type") or "")[:64]
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    base = {"id": event["id"][:255], "type": kind, "payload": event}
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return WebhookEvent(**base)
    if kind in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        outcome = _intent_outcome(obj)
        if kind == "payment_intent.payment_failed" and outcome.status != "failed":
            outcome = Outcome("failed", obj["id"], outcome.failure_code or "payment_failed")
        return WebhookEvent(**base, kind="charge", outcomes=[(_payment_id(obj), outcome)])
    if kind in ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated"):
        return WebhookEvent(
            **base, kind="refund", outcomes=[(_payment_id(obj), _refund_outcome(obj))]
        )
    if kind == "charge.refunded":
        refunds = obj.get("refunds")
        items = refunds.get("data") if isinstance(refunds, dict) else None
        outcomes = [
            (_payment_id(r), _refund_outcome(r))
            for r in items or []
            if isinstance(r, dict) and isinstance(r.get("id"), str)
        ]
        return WebhookEvent(**base, kind="refund", outcomes=outcomes)
    return WebhookEvent(**base)
