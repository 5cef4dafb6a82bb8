"""WhatsApp: complete Embedded Signup, and read a number's health from Meta.

Embedded Signup, after the browser's dialog (Meta's documented order):

1. the ``code`` for a business token (``POST /oauth/access_token``);
2. which WhatsApp Business Accounts (WABAs) the customer shared with the app
   (``GET /debug_token``, scope ``whatsapp_business_management``), and the chosen
   WABA's numbers (``GET /{waba}/phone_numbers``);
3. our app subscribed to the WABA's webhooks (``POST /{waba}/subscribed_apps``);
4. the number registered for the Cloud API with its two-step PIN
   (``POST /{phone-number-id}/register``);
5. the account created (``external_id`` the phone number id, ``settings.waba_id``,
   the token encrypted), which emits ``integration_account.connected``, and its
   templates' first sync queued in the same transaction. A number this
   tenant connected before is reconnected instead: new token, settings refreshed,
   status ``active`` (how an account marked ``error`` recovers); another tenant's
   number is a 409 before anything is asked of Meta.

Any failure before step 5 leaves nothing behind here; steps 3 and 4 are idempotent at
Meta, so the admin simply runs the signup again.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.orm import Session

from shared.channels import accounts, meta_calls
from shared.channels.graph import graph_client
from shared.channels.onboarding import oauth
from shared.channels.onboarding.channel_accounts import (
    already_connected,
    is_connected,
    meta_account,
    own_account,
    reconnect,
)
from shared.channels.onboarding.meta_app import require_app
from shared.channels.templates import sync as templates_sync
from shared.context import Ctx
from shared.errors import ValidationFailed
from shared.models import IntegrationAccount

WABA_SCOPE = "whatsapp_business_management"
NUMBER_FIELDS = "id,display_phone_number,verified_name,quality_rating,code_verification_status"
HEALTH_FIELDS = (
    "id,display_phone_number,verified_name,quality_rating,messaging_limit_tier,status,"
    "name_status,code_verification_status,platform_type,throughput,health_status"
)
#: ``settings.connected_via`` of an account made by Embedded Signup.
CONNECTED_VIA = "embedded_signup"


def complete_signup(
    session: Session,
    ctx: Ctx,
    *,
    code: str,
    pin: str,
    waba_id: str | None = None,
    phone_number_id: str | None = None,
    name: str | None = None,
    is_default: bool = False,
) -> tuple[IntegrationAccount, bool]:
    """Run steps 1-5 of the module docstring; the account, and whether it is new."""
    ctx.require(accounts.PERMISSION)
    app = require_app()
    token = oauth.exchange_code(ctx, app, code).token
    shared = oauth.granted_targets(ctx, app, token, WABA_SCOPE)
    waba_id = _chosen_waba(shared, waba_id)
    number = _chosen_number(ctx, token, waba_id, phone_number_id)
    phone_id = str(number["id"])
    existing = own_account(session, ctx, "whatsapp", phone_id)
    if existing is None and is_connected(session, "whatsapp", phone_id):
        raise already_connected("whatsapp", "phone_number_id")
    client = graph_client()
    with meta_calls.calling("subscribing the app to the WABA's webhooks", ctx=ctx):
        client.request("POST", f"{waba_id}/subscribed_apps", token)
    with meta_calls.calling("registering the phone number", ctx=ctx, field="pin"):
        client.request(
            "POST",
            f"{phone_id}/register",
            token,
            json_body={"messaging_product": "whatsapp", "pin": pin},
        )
    settings = {
        "waba_id": waba_id,
        "phone_number_id": phone_id,
        "display_phone_number": number.get("display_phone_number"),
        "verified_name": number.get("verified_name"),
        "quality_rating": number.get("quality_rating"),
        "connected_via": CONNECTED_VIA,
    }
    settings = {k: v for k, v in settings.items() if v is not None}
    if existing is not None:
        account = reconnect(session, ctx, existing, settings, token, name, is_default=is_default)
        templates_sync.sync_connected_account(session, ctx, account.id)
        return account, False
    label = name or number.get("verified_name") or number.get("display_phone_number") or phone_id
    account = accounts.create_account(
        session,
        ctx,
        channel="whatsapp",
        name=str(label)[:200],
        external_id=phone_id,
        settings=settings,
        credentials={"access_token": token},
        is_default=is_default,
    )
    templates_sync.sync_connected_account(session, ctx, account.id)
    return account, True


def _chosen_waba(shared: list[str], waba_id: str | None) -> str:
    if waba_id is not None:
        if waba_id not in shared:
            raise ValidationFailed.field(
                "waba_id", "this WhatsApp Business Account was not shared in this signup"
            )
        return waba_id
    if len(shared) == 1:
        return shared[0]
    if not shared:
        raise ValidationFailed.field(
            "code", "the signup shared no WhatsApp Business Account with the app"
        )
    raise ValidationFailed.field(
        "waba_id", f"the signup shared several WhatsApp Business Accounts: {', '.join(shared)}"
    )


def _chosen_number(
    ctx: Ctx, token: str, waba_id: str, phone_number_id: str | None
) -> dict[str, Any]:
    with meta_calls.calling("listing the WABA's phone numbers", ctx=ctx):
        answer = graph_client().request(
            "GET", f"{waba_id}/phone_numbers", token, params={"fields": NUMBER_FIELDS}
        )
        numbers = [
            n | {"id": meta_calls.graph_id(n["id"], "a phone number id")}
            for n in meta_calls.typed(answer.get("data"), list, "data") or []
            if n.get("id")
        ]
    if phone_number_id is not None:
        for number in numbers:
            if str(number["id"]) == phone_number_id:
                return number
        raise ValidationFailed.field(
            "phone_number_id", f"not a phone number of WhatsApp Business Account {waba_id}"
        )
    if len(numbers) == 1:
        return numbers[0]
    if not numbers:
        raise ValidationFailed.field(
            "waba_id", f"WhatsApp Business Account {waba_id} has no phone number yet"
        )
    listed = ", ".join(f"{n['id']} ({n.get('display_phone_number') or '?'})" for n in numbers)
    raise ValidationFailed.field("phone_number_id", f"choose one of the WABA's numbers: {listed}")


def health(session: Session, ctx: Ctx, account_id: uuid.UUID | None) -> dict[str, Any]:
    """What Meta says about the number: quality, limits, status and whether it can send.

    Also of a disabled account or a switched-off channel: it is how an admin sees why a
    number broke (and whether it can send) before enabling it again."""
    ctx.require(accounts.PERMISSION)
    account, token = meta_account(session, ctx, "whatsapp", account_id, switched_off_too=True)
    with meta_calls.calling("reading the number's health", ctx=ctx, account=account):
        answer = graph_client().request(
            "GET", account.external_id, token, params={"fields": HEALTH_FIELDS}
        )
        return _health_view(account, answer)


def _health_view(account: IntegrationAccount, answer: dict[str, Any]) -> dict[str, Any]:
    # The verdicts are what the endpoint is for: one of another type than documented
    # is a 502, since null would read as "Meta did not say". The descriptive fields
    # around them are dropped to null instead, so the verdicts still get through.
    def verdict(source: dict[str, Any], key: str) -> str | None:
        return meta_calls.typed(source.get(key), str, key)

    text = meta_calls.text_or_none
    status = meta_calls.typed(answer.get("health_status"), dict, "health_status") or {}
    throughput = answer.get("throughput")
    entities = meta_calls.typed(status.get("entities"), list, "health_status.entities") or []
    return {
        "integration_account_id": account.id,
        "phone_number_id": account.external_id,
        "waba_id": (account.settings or {}).get("waba_id"),
        "display_phone_number": text(answer.get("display_phone_number")),
        "verified_name": text(answer.get("verified_name")),
        "quality_rating": verdict(answer, "quality_rating"),
        "messaging_limit_tier": verdict(answer, "messaging_limit_tier"),
        "status": verdict(answer, "status"),
        "name_status": text(answer.get("name_status")),
        "code_verification_status": text(answer.get("code_verification_status")),
        "platform_type": text(answer.get("platform_type")),
        "throughput_level": text(throughput.get("level")) if isinstance(throughput, dict) else None,
        "can_send_message": verdict(status, "can_send_message"),
        "entities": [e for e in entities if isinstance(e, dict)],
        "checked_at": dt.datetime.now(dt.UTC),
    }
