"""Stripe through its official client (``stripe`` 16.x), pointed at STRIPE_API_BASE.

One :class:`stripe.StripeClient` per configuration: ``base_addresses={"api": ...}`` selects
the endpoint (tests point it at ``tests/peers/stripe_fake.py``), a
:class:`stripe.RequestsClient` carries the timeout (BILLING_PROVIDER_TIMEOUT_SECONDS) and
``max_network_retries=0`` leaves retrying to our workers (Dramatiq's backoff), whose
idempotency keys make a retry the same charge. Errors are mapped: a card error (402) is a
failed :class:`Outcome` with its decline code; connection errors, timeouts, 429 and 5xx are
:class:`ProviderUnavailable`, and so is an answer the client cannot read or that names no
usable id (see *reading answers* below).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import stripe

from shared.billing import currency as money
from shared.billing.providers import (
    InvalidSignature,
    Outcome,
    PaymentMethodInfo,
    PaymentMethodRejected,
    ProviderUnavailable,
    WebhookEvent,
)
from shared.json_encoding import as_object

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


# --- amounts ----------------------------------------------------------------------------
# WHY: our amounts are in ISO 4217 minor units (shared.billing.currency); Stripe's API takes
# its own unit per currency, which differs for a few: MGA is zero-decimal at Stripe (ISO: 2
# decimals), so 5,000 ariary sent as 500000 charged 100 times too much; ISK is two-decimal
# at Stripe (ISO: none), so 4,900 kronur sent as 4900 charged 49. Three-decimal currencies
# must end in 0. https://docs.stripe.com/currencies

#: Stripe's zero-decimal currencies.
STRIPE_ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"}
    | {"PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
#: Stripe's three-decimal currencies (the last digit must be 0).
STRIPE_THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])


class AmountNotChargeable(ValueError):
    """An amount Stripe's unit for its currency cannot express (a fraction it refuses)."""


def stripe_exponent(currency: str) -> int:
    code = currency.upper()
    return 0 if code in STRIPE_ZERO_DECIMAL else 3 if code in STRIPE_THREE_DECIMAL else 2


def to_stripe_amount(amount: int, currency: str) -> int:
    """``amount`` (ISO minor units) in Stripe's unit for ``currency``; exact or refused."""
    shift = stripe_exponent(currency) - money.exponent(currency.upper())
    if shift >= 0:
        converted = amount * 10**shift
    elif amount % 10**-shift:
        raise AmountNotChargeable(
            f"{money.format_amount(amount, currency.upper())} has a fraction Stripe cannot charge"
        )
    else:
        converted = amount // 10**-shift
    if currency.upper() in STRIPE_THREE_DECIMAL and converted % 10:
        raise AmountNotChargeable(
            f"{money.format_amount(amount, currency.upper())}: Stripe charges this currency"
            " in steps of 0.010"
        )
    return converted


def from_stripe_amount(amount: int, currency: str) -> int:
    """Stripe's ``amount`` of ``currency`` in ISO minor units (rounded down when Stripe's
    unit is finer: ISK is two-decimal at Stripe, zero-decimal in ISO 4217)."""
    shift = stripe_exponent(currency) - money.exponent(currency.upper())
    return amount // 10**shift if shift >= 0 else amount * 10**-shift


# --- reading answers --------------------------------------------------------------------
# WHY: a 2xx answer, a decline or a signed event can carry a field of another type or size
# (a proxy's page, a changed API version, an error that is a string). Each is read here
# into the types our rows hold: an id we cannot use is ProviderUnavailable (the idempotent
# call is retried, then a visible dead letter), a display fact or a code of another shape
# is left out. Before, such an answer was a 500 at the API or a crashed billing job.

#: The longest provider id our columns hold (``provider_*_id``, ``provider_reference``).
ID_MAX = 255
#: The longest failure code kept (``billing_payments.failure_code``).
CODE_MAX = 64
#: The longest failure message kept.
MESSAGE_MAX = 1000


def _object(value: Any) -> dict[str, Any]:
    """``value`` as a plain dict when it is a JSON object (a StripeObject too), else ``{}``."""
    to_dict = getattr(value, "to_dict", None)  # 16.x objects are not dicts
    return as_object(to_dict() if callable(to_dict) else value)


def _string(value: Any, limit: int) -> str | None:
    """``value`` if it is a non-empty string of at most ``limit`` characters."""
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _cut(value: Any, limit: int) -> str | None:
    """A non-empty string ``value`` cut to ``limit`` characters (codes, messages)."""
    return value[:limit] if isinstance(value, str) and value else None


def _int_between(value: Any, low: int, high: int) -> int | None:
    return value if type(value) is int and low <= value <= high else None


def _required_id(obj: dict[str, Any], what: str) -> str:
    found = _string(obj.get("id"), ID_MAX)
    if found is None:
        raise ProviderUnavailable(f"Stripe answered a {what} without a usable id")
    return found


def _card_info(pm: Any) -> PaymentMethodInfo:
    pm = _object(pm)
    card = _object(pm.get("card"))
    last4 = _string(card.get("last4"), 4)
    return PaymentMethodInfo(
        id=_required_id(pm, "payment method"),
        brand=_string(card.get("brand"), 32),
        last4=last4 if last4 and len(last4) == 4 and last4.isdigit() else None,
        exp_month=_int_between(card.get("exp_month"), 1, 12),
        exp_year=_int_between(card.get("exp_year"), 1000, 9999),
    )


def _intent_outcome(intent: dict[str, Any]) -> Outcome:
    reference = _required_id(intent, "payment intent")
    status = _cut(intent.get("status"), CODE_MAX)
    if status == "succeeded":
        return Outcome("succeeded", reference)
    if status == "processing":
        return Outcome("pending", reference)  # the webhook brings the result
    error = _object(intent.get("last_payment_error"))
    code = _cut(error.get("decline_code"), CODE_MAX) or _cut(error.get("code"), CODE_MAX)
    if status == "requires_action":
        code = code or "authentication_required"
    message = _cut(error.get("message"), MESSAGE_MAX)
    return Outcome("failed", reference, code or status or "payment_failed", message)


def _refund_outcome(refund: dict[str, Any]) -> Outcome:
    reference = _required_id(refund, "refund")
    facts = _refund_facts(refund)
    status = refund.get("status")
    if status == "succeeded":
        return Outcome("succeeded", reference, **facts)
    if status in ("failed", "canceled"):
        code = _cut(refund.get("failure_reason"), CODE_MAX) or status
        return Outcome("failed", reference, code, **facts)
    return Outcome("pending", reference, **facts)


def _refund_facts(refund: dict[str, Any]) -> dict[str, Any]:
    """Amount (ISO minor units), currency and payment intent; None for what cannot be read."""
    intent = refund.get("payment_intent")
    currency = _string(refund.get("currency"), 3)
    amount = refund.get("amount")
    iso_amount = None
    if currency and money.is_known(currency.upper()) and type(amount) is int and amount > 0:
        iso_amount = from_stripe_amount(amount, currency)
    return {
        "amount": iso_amount,
        "currency": currency.upper() if currency else None,
        "charge_reference": _string(intent, ID_MAX) or _string(_object(intent).get("id"), ID_MAX),
    }


def _rejected(exc: stripe.StripeError) -> PaymentMethodRejected:
    message = _cut(exc.user_message, MESSAGE_MAX) or _cut(str(exc), MESSAGE_MAX) or "refused"
    return PaymentMethodRejected(message, _cut(exc.code, CODE_MAX))


def _declined(exc: stripe.StripeError, fallback: str, *, charge: bool) -> Outcome:
    """A card or request error as a failed Outcome; a charge's names its intent if it can."""
    error = _object(_object(exc.json_body).get("error"))
    intent = error.get("payment_intent")
    reference = None
    if charge:
        reference = _string(intent, ID_MAX) or _string(_object(intent).get("id"), ID_MAX)
    code = (
        _cut(error.get("decline_code"), CODE_MAX)
        or _cut(exc.code, CODE_MAX)
        or _cut(error.get("code"), CODE_MAX)
        or fallback
    )
    message = _cut(exc.user_message, MESSAGE_MAX) or _cut(str(exc), MESSAGE_MAX)
    return Outcome("failed", reference, code, message)


def _call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``method`` of the client, with what it raises for a provider that is down, or for
    an answer it cannot read, as :class:`ProviderUnavailable`: every call is idempotent
    or harmless to repeat, so the worker's retries (then a dead letter) or the client's
    next try follow. Card and request errors are the caller's to map.
    """
    try:
        return method(*args, **kwargs)
    except _UNAVAILABLE as exc:
        raise _unavailable(exc) from exc
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # NOTE: raised by the client itself: stripe 16 crashes mapping an error that is a
        # string. Only the client's call is inside this try.
        raise ProviderUnavailable(
            f"Stripe's answer could not be read ({type(exc).__name__})"
        ) from exc


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
        customer = _call(
            self.client.v1.customers.create,
            params=params,
            options={"idempotency_key": idempotency_key},
        )
        return _required_id(_object(customer), "customer")

    def attach_payment_method(self, *, customer_id: str, token: str) -> PaymentMethodInfo:
        try:
            pm = _call(
                self.client.v1.payment_methods.attach, token, params={"customer": customer_id}
            )
        except (stripe.CardError, stripe.InvalidRequestError) as exc:
            raise _rejected(exc) from exc
        return _card_info(pm)

    def retrieve_payment_method(self, payment_method_id: str) -> PaymentMethodInfo:
        try:
            pm = _call(self.client.v1.payment_methods.retrieve, payment_method_id)
        except stripe.InvalidRequestError as exc:
            raise _rejected(exc) from exc
        return _card_info(pm)

    def detach_payment_method(self, payment_method_id: str) -> None:
        # An unknown or already detached method: nothing is left to remove.
        with contextlib.suppress(stripe.InvalidRequestError):
            _call(self.client.v1.payment_methods.detach, payment_method_id)

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
        try:
            stripe_amount = to_stripe_amount(amount, currency)
        except AmountNotChargeable as exc:
            return Outcome("failed", None, "amount_not_chargeable", str(exc))
        params: dict[str, Any] = {
            "amount": stripe_amount,
            "currency": currency.lower(),
            "customer": customer_id,
            "payment_method": payment_method_id,
            "off_session": True,
            "confirm": True,
            "metadata": metadata,
        }
        try:
            intent = _call(
                self.client.v1.payment_intents.create,
                params=params,
                options={"idempotency_key": idempotency_key},
            )
        except (stripe.CardError, stripe.InvalidRequestError) as exc:
            return _declined(exc, "card_error", charge=True)
        return _intent_outcome(_object(intent))

    def refund(
        self,
        *,
        charge_reference: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> Outcome:
        try:
            stripe_amount = to_stripe_amount(amount, currency)
        except AmountNotChargeable as exc:
            return Outcome("failed", None, "amount_not_chargeable", str(exc))
        params = {"payment_intent": charge_reference, "amount": stripe_amount, "metadata": metadata}
        try:
            refund = _call(
                self.client.v1.refunds.create,
                params=params,
                options={"idempotency_key": idempotency_key},
            )
        except (stripe.CardError, stripe.InvalidRequestError) as exc:
            return _declined(exc, "refund_refused", charge=False)
        return _refund_outcome(_object(refund))

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
    return _string(_object(obj.get("metadata")).get("payment_id"), ID_MAX)


def _read_event(event: dict[str, Any]) -> WebhookEvent:
    kind = str(event.get("type") or "")[:64]
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    base = {"id": event["id"][:255], "type": kind, "payload": event}
    if not isinstance(obj, dict) or _string(obj.get("id"), ID_MAX) is None:
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
            if isinstance(r, dict) and _string(r.get("id"), ID_MAX) is not None
        ]
        return WebhookEvent(**base, kind="refund", outcomes=outcomes)
    return WebhookEvent(**base)
