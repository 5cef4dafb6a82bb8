"""Integrations and integration accounts: CRUD, encrypted credentials, inbound resolution.

Credentials are one JSON object per row, encrypted with :mod:`shared.crypto` into
``credentials_encrypted``; they are decrypted only where a channel needs them
(:func:`decrypt_credentials`) and never leave through a view, which names the keys set.

Credential keys by channel:

- whatsapp, instagram, messenger: ``access_token``, ``app_secret`` (optional: the tenant's
  own Meta app; the platform's ``META_APP_SECRET`` otherwise), ``verify_token`` (optional)
- email: ``smtp_password``, ``inbound_signing_key`` (signs inbound email webhooks)
- api: ``signing_secret`` (signs callbacks), generated at creation and rotated, never set
  by a request (see :mod:`.api_account`)
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import activity, crypto
from shared.channels import api_account, tombstones
from shared.channels.views import IntegrationAccountView, IntegrationView
from shared.context import Ctx
from shared.digits import ascii_digits
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.models import Integration, IntegrationAccount
from shared.models.inbox import CHANNELS
from shared.pagination import Page, paginate

PERMISSION = "integrations.manage"
META_CREDENTIALS = frozenset({"access_token", "app_secret", "verify_token"})
CREDENTIAL_KEYS: dict[str, frozenset[str]] = {
    "whatsapp": META_CREDENTIALS,
    "instagram": META_CREDENTIALS,
    "messenger": META_CREDENTIALS,
    "email": frozenset({"smtp_password", "inbound_signing_key"}),
    # NOTE: the api channel's secret is generated and rotated, never sent by a caller.
    "api": frozenset(),
}
SMTP_SECURITY = ("starttls", "ssl", "none")
ACCOUNT_STATUSES = ("active", "disabled", "error")
#: Why an account does nothing (a send's ``error_code``, an api-channel post's 409): the
#: account is ``disabled``, or its channel's integration is (``enabled: false``).
ACCOUNT_DISABLED = "account_disabled"
CHANNEL_DISABLED = "channel_disabled"


# ------------------------------------------------------------------ credentials


def decrypt_credentials(row: IntegrationAccount | Integration) -> dict[str, str]:
    """The row's credentials as a dict (empty when none are stored)."""
    if not row.credentials_encrypted:
        return {}
    return json.loads(crypto.decrypt(row.credentials_encrypted))


def encrypt_credentials(credentials: dict[str, str]) -> str | None:
    """What ``credentials_encrypted`` stores for ``credentials`` (None when empty)."""
    return crypto.encrypt(json.dumps(credentials, sort_keys=True)) if credentials else None


def token_digest(token: str) -> str:
    """What ``verify_token_digest`` stores: the handshake compares digests, not tokens."""
    return hashlib.sha256(token.encode()).hexdigest()


def _store_credentials(account: IntegrationAccount, credentials: dict[str, str]) -> None:
    account.credentials_encrypted = encrypt_credentials(credentials)
    verify_token = credentials.get("verify_token")
    account.verify_token_digest = token_digest(verify_token) if verify_token else None


def _merged_credentials(
    channel: str, current: dict[str, str], changes: dict[str, str | None], field: str
) -> dict[str, str]:
    """``current`` with ``changes`` applied: a string sets a key, ``None`` removes it."""
    allowed = CREDENTIAL_KEYS[channel]
    unknown = sorted(set(changes) - allowed)
    names = ", ".join(sorted(allowed)) or "none"
    if unknown:
        raise ValidationFailed(
            f"Unknown {channel} credentials: {', '.join(unknown)}",
            details=[{"field": f"{field}.{k}", "message": f"allowed: {names}"} for k in unknown],
        )
    merged = dict(current)
    for name, value in changes.items():
        if value is None or value == "":
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


# ------------------------------------------------------------------ views


def integration_view(integration: Integration) -> dict[str, Any]:
    keys = sorted(decrypt_credentials(integration))
    data = {c: getattr(integration, c) for c in ("id", "channel", "enabled", "settings")}
    data |= {
        "credential_keys": keys,
        "has_credentials": bool(keys),
        "created_at": integration.created_at,
        "updated_at": integration.updated_at,
    }
    return IntegrationView.model_validate(data).model_dump(mode="json")


def account_view(account: IntegrationAccount, *, reveal_secret: bool = False) -> dict[str, Any]:
    """The account as the API shows it; ``reveal_secret`` adds an api account's signing
    secret (the creation answer only)."""
    credentials = decrypt_credentials(account)
    keys = sorted(credentials)
    data = {
        c: getattr(account, c)
        for c in (
            "id",
            "integration_id",
            "channel",
            "name",
            "external_id",
            "settings",
            "is_default",
            "status",
            "created_at",
            "updated_at",
        )
    }
    data |= {"credential_keys": keys, "has_credentials": bool(keys)}
    secret = credentials.get(api_account.SECRET_KEY) if reveal_secret else None
    view = IntegrationAccountView.model_validate(data | {"signing_secret": secret})
    return view.model_dump(mode="json", exclude={"signing_secret"} if secret is None else None)


# ------------------------------------------------------------------ validation


def check_channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise NotFound(f"Unknown channel '{channel}'")
    return channel


def normalize_external_id(channel: str, external_id: str | None) -> str:
    """The form inbound payloads carry: email addresses lower-cased, ids trimmed.

    The api channel's is free-form, generated when left out.
    """
    if channel == api_account.CHANNEL:
        return api_account.external_id(external_id)
    if external_id is None:
        raise ValidationFailed.field("external_id", f"required for a {channel} account")
    value = external_id.strip()
    if channel == "email":
        value = value.lower()
        if value.count("@") != 1 or value.startswith("@") or value.endswith("@"):
            raise ValidationFailed.field("external_id", "an email account's id is its address")
    elif not ascii_digits(value):
        raise ValidationFailed.field(
            "external_id", f"a {channel} id is the numeric id Meta gives it"
        )
    return value


#: Email settings the SMTP sender reads as text.
_SMTP_TEXT_SETTINGS = ("smtp_host", "smtp_username", "from_name")


def _check_settings(
    channel: str, settings: dict[str, Any], *, of_account: bool = True
) -> dict[str, Any]:
    if channel == api_account.CHANNEL and of_account:
        return api_account.check_settings(settings)
    if channel == "email":
        security = settings.get("smtp_security")
        if security is not None and security not in SMTP_SECURITY:
            raise ValidationFailed.field(
                "settings.smtp_security", f"one of {', '.join(SMTP_SECURITY)}"
            )
        port = settings.get("smtp_port")
        # NOTE: bool is an int to Python, not a port.
        if port is not None and (type(port) is not int or not 0 < port < 65536):
            raise ValidationFailed.field("settings.smtp_port", "a port number (1-65535)")
        # WHY: the sender reads these as text; another shape was stored, then each send
        # failed as an internal error, retried until it was dead-lettered.
        for name in _SMTP_TEXT_SETTINGS:
            value = settings.get(name)
            if value is not None and not isinstance(value, str):
                raise ValidationFailed.field(f"settings.{name}", "a string, or null")
    return settings


# ------------------------------------------------------------------ integrations


def list_integrations(session: Session, ctx: Ctx) -> list[Integration]:
    query = (
        select(Integration)
        .where(Integration.tenant_id == ctx.tenant_id)
        .order_by(Integration.channel)
    )
    return list(session.scalars(query))


def find_integration(
    session: Session, tenant_id: uuid.UUID, channel: str, *, for_update: bool = False
) -> Integration | None:
    query = select(Integration).where(
        Integration.tenant_id == tenant_id, Integration.channel == channel
    )
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def get_integration(
    session: Session, ctx: Ctx, channel: str, *, for_update: bool = False
) -> Integration:
    integration = find_integration(
        session, ctx.tenant_id, check_channel(channel), for_update=for_update
    )
    if integration is None:
        raise NotFound(f"No {channel} integration")
    return integration


def upsert_integration(
    session: Session,
    ctx: Ctx,
    channel: str,
    *,
    enabled: bool | None = None,
    settings: dict[str, Any] | None = None,
    credentials: dict[str, str | None] | None = None,
) -> tuple[Integration, bool]:
    """Create or update the tenant's integration of ``channel``; return it and whether new."""
    ctx.require(PERMISSION)
    check_channel(channel)
    integration = find_integration(session, ctx.tenant_id, channel, for_update=True)
    created = False
    if integration is None:
        integration, created = _first_integration(session, ctx.tenant_id, channel)
    before = None if created else integration_view(integration)
    if enabled is not None:
        integration.enabled = enabled
    if settings is not None:
        integration.settings = _check_settings(channel, settings, of_account=False)
    if credentials is not None:
        current = decrypt_credentials(integration)
        merged = _merged_credentials(channel, current, credentials, "credentials")
        integration.credentials_encrypted = encrypt_credentials(merged)
    session.flush()
    session.refresh(integration)
    activity.record(
        session,
        ctx,
        "integration.created" if created else "integration.updated",
        "integration",
        integration.id,
        before=before,
        after=integration_view(integration),
    )
    return integration, created


def _first_integration(
    session: Session, tenant_id: uuid.UUID, channel: str
) -> tuple[Integration, bool]:
    """The channel's integration inserted unless a concurrent request's is there, then
    locked; and whether it is this one's.

    WHY: two first connections of a channel at once (two accounts, or a PUT twice) both
    found none; the later insert failed on ``uq_integrations_tenant_channel`` and the
    request answered 409 "retry". ``ON CONFLICT DO NOTHING`` waits for the other
    transaction's row instead, and this request goes on with it, as if it came second.
    """
    inserted = session.scalar(
        pg_insert(Integration)
        .values(tenant_id=tenant_id, channel=channel, settings={})
        .on_conflict_do_nothing(index_elements=["tenant_id", "channel"])
        .returning(Integration.id)
    )
    integration = find_integration(session, tenant_id, channel, for_update=True)
    if integration is None:  # the row ours gave way to was deleted since: insert again
        return _first_integration(session, tenant_id, channel)
    return integration, inserted is not None


def delete_integration(session: Session, ctx: Ctx, channel: str) -> None:
    """Delete the integration and its accounts; each account emits its disconnection and
    leaves its tombstone (connected again, it takes its id back).

    Locks the integration before its accounts, the order :func:`create_account` takes.
    """
    ctx.require(PERMISSION)
    integration = get_integration(session, ctx, channel, for_update=True)
    accounts = session.scalars(
        select(IntegrationAccount)
        .where(
            IntegrationAccount.tenant_id == ctx.tenant_id,
            IntegrationAccount.integration_id == integration.id,
        )
        .with_for_update()
    ).all()
    for account in accounts:
        _announce_disconnected(session, ctx, account)
    tombstones.bury(session, accounts)
    activity.record(
        session,
        ctx,
        "integration.deleted",
        "integration",
        integration.id,
        before=integration_view(integration),
    )
    session.execute(
        delete(Integration).where(
            Integration.id == integration.id, Integration.tenant_id == ctx.tenant_id
        )
    )


# ------------------------------------------------------------------ accounts


def list_accounts(
    session: Session,
    ctx: Ctx,
    *,
    channel: str | None = None,
    limit: int,
    cursor: str | None = None,
) -> Page[IntegrationAccount]:
    query = select(IntegrationAccount).where(IntegrationAccount.tenant_id == ctx.tenant_id)
    if channel:
        query = query.where(IntegrationAccount.channel == check_channel(channel))
    return paginate(
        session,
        query,
        created_at=IntegrationAccount.created_at,
        id_column=IntegrationAccount.id,
        limit=limit,
        cursor=cursor,
    )


def get_account(
    session: Session, ctx: Ctx, account_id: uuid.UUID, *, for_update: bool = False
) -> IntegrationAccount:
    """An account of the caller's tenant, or 404 (also for another tenant's)."""
    query = select(IntegrationAccount).where(
        IntegrationAccount.id == account_id, IntegrationAccount.tenant_id == ctx.tenant_id
    )
    if for_update:
        query = query.with_for_update()
    account = session.scalars(query).one_or_none()
    if account is None:
        raise NotFound("Integration account not found")
    return account


def _locked_account(session: Session, ctx: Ctx, account_id: uuid.UUID) -> IntegrationAccount:
    """:func:`get_account` locked, after its integration: the order every change of a
    channel's accounts takes (:func:`create_account` locks the integration, then clears
    the default; an onboarding updates one account, then creates another).

    WHY: :func:`create_account` holds the integration lock while it looks for a tombstone,
    so a connection racing a deletion waits for it and then takes the id back (instead of
    missing it and inserting a new id behind the deletion); taken in one order, the two
    locks cannot deadlock.
    """
    integration_id = session.scalar(
        select(IntegrationAccount.integration_id).where(
            IntegrationAccount.id == account_id, IntegrationAccount.tenant_id == ctx.tenant_id
        )
    )
    if integration_id is not None:
        session.execute(
            select(Integration.id).where(Integration.id == integration_id).with_for_update()
        )
    return get_account(session, ctx, account_id, for_update=True)


# ------------------------------------------------------------------ switched on or off


class SwitchedOff(NamedTuple):
    code: str
    message: str


def switched_on() -> ColumnElement[bool]:
    """SQL: the account works: it is not ``disabled`` and its channel's integration is
    enabled. The one rule (with :func:`switched_off`, its answer for a loaded account).

    WHY: ``PUT /api/integrations/{channel}`` stored ``enabled`` and nothing read it: an
    admin who switched WhatsApp off still had replies, campaigns and AI answers go out on
    it and its inbound processed. A switched-off channel's accounts now work as disabled
    ones everywhere (sends, inbound, the api channel's posts, template syncs).
    """
    return and_(IntegrationAccount.status != "disabled", IntegrationAccount.channel_enabled)


def switched_off(account: IntegrationAccount) -> SwitchedOff | None:
    """Why ``account`` does nothing (see :func:`switched_on`); None while it works."""
    if account.status == "disabled":
        return SwitchedOff(ACCOUNT_DISABLED, f"the {account.channel} account is disabled")
    if not account.channel_enabled:
        return SwitchedOff(
            CHANNEL_DISABLED,
            f"the {account.channel} channel is switched off (its integration is disabled)",
        )
    return None


def resolve_account(session: Session, channel: str, external_id: str) -> IntegrationAccount | None:
    """The account an inbound payload is addressed to, whichever tenant owns it.

    NOTE: the only cross-tenant lookup in the channels code; the tenant of everything
    processed afterwards is the returned account's. Switched-off accounts do not resolve.
    """
    if channel == "email":
        external_id = external_id.strip().lower()
    return session.scalars(
        select(IntegrationAccount).where(
            IntegrationAccount.channel == channel,
            IntegrationAccount.external_id == external_id,
            switched_on(),
        )
    ).one_or_none()


def default_account(
    session: Session, tenant_id: uuid.UUID, channel: str
) -> IntegrationAccount | None:
    return session.scalars(
        select(IntegrationAccount).where(
            IntegrationAccount.tenant_id == tenant_id,
            IntegrationAccount.channel == channel,
            IntegrationAccount.is_default,
        )
    ).one_or_none()


class SwitchedOffAccount(Conflict):
    """409 ``account_disabled`` / ``channel_disabled``: the account a request acts through
    is switched off (:func:`switched_off`); ``details`` name it."""

    def __init__(self, account: IntegrationAccount, off: SwitchedOff, *, named: bool):
        which = "" if named else "default "
        label = f"The {which}{account.channel} account '{account.name}' ({account.id})"
        if off.code == ACCOUNT_DISABLED:
            hint = f"is disabled; enable it with PATCH /api/integration-accounts/{account.id}"
        else:
            hint = (
                f"cannot be used: the {account.channel} channel is switched off; enable it"
                f" with PUT /api/integrations/{account.channel}"
            )
        super().__init__(f"{label} {hint}", details=[{"integration_account_id": str(account.id)}])
        self.code = off.code


def named_or_default(
    session: Session,
    tenant_id: uuid.UUID,
    channel: str,
    account_id: uuid.UUID | None,
    *,
    switched_off_too: bool = False,
) -> IntegrationAccount | None:
    """The tenant's ``channel`` account ``account_id``; without an id, its default (else its
    oldest): the account a request that may name one acts through. None when there is none
    (another tenant's or another channel's id included).

    Raises :class:`SwitchedOffAccount` (409) when that account is switched off: never
    another account instead, the caller asked for this one (or for the default).
    ``switched_off_too`` returns it anyway, for what exists to diagnose or remove it.

    WHY: WhatsApp insights and the persistent menu called Meta with a disabled account's
    token (or a switched-off channel's), as if the admin's switch meant nothing there.
    """
    query = select(IntegrationAccount).where(
        IntegrationAccount.tenant_id == tenant_id, IntegrationAccount.channel == channel
    )
    if account_id is not None:
        query = query.where(IntegrationAccount.id == account_id)
    else:
        query = query.order_by(
            IntegrationAccount.is_default.desc(), IntegrationAccount.created_at
        ).limit(1)
    account = session.scalars(query).first()
    off = switched_off(account) if account is not None and not switched_off_too else None
    if off is not None:
        raise SwitchedOffAccount(account, off, named=account_id is not None)
    return account


def create_account(
    session: Session,
    ctx: Ctx,
    *,
    channel: str,
    name: str,
    external_id: str | None,
    settings: dict[str, Any] | None = None,
    credentials: dict[str, str | None] | None = None,
    is_default: bool = False,
) -> IntegrationAccount:
    """Connect an account (creating the channel's integration if needed); emit connected.

    The first account of a channel becomes its default. A sender this tenant deleted
    before takes its old id back (:mod:`.tombstones`): its conversations and api contacts
    name that id and carry on through it.
    """
    ctx.require(PERMISSION)
    if channel not in CHANNELS:
        raise ValidationFailed.field("channel", f"one of {', '.join(CHANNELS)}")
    external_id = normalize_external_id(channel, external_id)
    integration = find_integration(session, ctx.tenant_id, channel, for_update=True)
    if integration is None:
        integration, _ = upsert_integration(session, ctx, channel)
    first = default_account(session, ctx.tenant_id, channel) is None
    if is_default and not first:
        _clear_default(session, ctx, channel)
    creds = _merged_credentials(channel, {}, credentials or {}, "credentials")
    if channel == api_account.CHANNEL:
        creds = api_account.new_credentials()
    account = IntegrationAccount(
        tenant_id=ctx.tenant_id,
        integration_id=integration.id,
        channel=channel,
        name=name,
        external_id=external_id,
        settings=_check_settings(channel, settings or {}),
        is_default=is_default or first,
        status="active",
    )
    _store_credentials(account, creds)
    try:
        with session.begin_nested():
            reused = tombstones.unearth(session, ctx.tenant_id, channel, external_id)
            if reused is not None:
                account.id = reused
            session.add(account)
            session.flush()
    except IntegrityError as exc:
        # NOTE: (channel, external_id) is global for Meta and email (inbound finds the
        # tenant through it): the id may be connected by another tenant; the message does
        # not say which, nor whether it is. An api account's is unique in its tenant.
        raise Conflict(
            f"This {channel} account is already connected",
            details=[{"field": "external_id", "message": "already connected"}],
        ) from exc
    session.refresh(account)
    data = account_view(account)
    activity.record_change(
        session,
        ctx,
        "integration_account.connected",
        "integration_account",
        account.id,
        data,
        after=data,
    )
    return account


def update_account(
    session: Session, ctx: Ctx, account_id: uuid.UUID, changes: dict[str, Any]
) -> IntegrationAccount:
    """Apply ``name``, ``settings`` (replaced), ``credentials`` (merged) and ``status``."""
    ctx.require(PERMISSION)
    account = _locked_account(session, ctx, account_id)
    before = account_view(account)
    if "name" in changes:
        account.name = changes["name"]
    if "settings" in changes:
        account.settings = _check_settings(account.channel, changes["settings"] or {})
    if "status" in changes:
        if changes["status"] not in ACCOUNT_STATUSES:
            raise ValidationFailed.field("status", f"one of {', '.join(ACCOUNT_STATUSES)}")
        account.status = changes["status"]
    if "credentials" in changes:
        merged = _merged_credentials(
            account.channel,
            decrypt_credentials(account),
            changes["credentials"] or {},
            "credentials",
        )
        _store_credentials(account, merged)
    session.flush()
    session.refresh(account)
    activity.record(
        session,
        ctx,
        "integration_account.updated",
        "integration_account",
        account.id,
        before=before,
        after=account_view(account),
    )
    return account


def delete_account(session: Session, ctx: Ctx, account_id: uuid.UUID) -> None:
    """Disconnect an account; the channel's oldest other account becomes default if needed.

    Its tombstone keeps its id for the day the tenant connects the same sender again.
    """
    ctx.require(PERMISSION)
    account = _locked_account(session, ctx, account_id)
    _announce_disconnected(session, ctx, account)
    tombstones.bury(session, [account])
    session.delete(account)
    session.flush()
    if account.is_default:
        successor = session.scalars(
            select(IntegrationAccount)
            .where(
                IntegrationAccount.tenant_id == ctx.tenant_id,
                IntegrationAccount.channel == account.channel,
            )
            .order_by(IntegrationAccount.created_at, IntegrationAccount.id)
            .limit(1)
        ).one_or_none()
        if successor is not None:
            successor.is_default = True
            session.flush()


def set_default(session: Session, ctx: Ctx, account_id: uuid.UUID) -> IntegrationAccount:
    """Make ``account_id`` its channel's default (clears the flag on the others)."""
    ctx.require(PERMISSION)
    account = _locked_account(session, ctx, account_id)
    if not account.is_default:
        _clear_default(session, ctx, account.channel)
        account.is_default = True
        account.updated_at = func.now()
        session.flush()
        session.refresh(account)
        activity.record(
            session,
            ctx,
            "integration_account.default_set",
            "integration_account",
            account.id,
            after={"channel": account.channel},
        )
    return account


def _clear_default(session: Session, ctx: Ctx, channel: str) -> None:
    session.execute(
        update(IntegrationAccount)
        .where(
            IntegrationAccount.tenant_id == ctx.tenant_id,
            IntegrationAccount.channel == channel,
            IntegrationAccount.is_default,
        )
        .values(is_default=False, updated_at=func.now())
    )
    # NOTE: the partial unique index checks each statement; flush the clear first.
    session.flush()


def _announce_disconnected(session: Session, ctx: Ctx, account: IntegrationAccount) -> None:
    data = account_view(account)
    activity.record_change(
        session,
        ctx,
        "integration_account.disconnected",
        "integration_account",
        account.id,
        data,
        before=data,
    )
