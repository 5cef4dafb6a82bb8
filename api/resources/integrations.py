"""Integrations and integration accounts: per-channel settings and connected senders.

Credentials are write-only: requests may set (a string) or remove (null) each one;
responses only say which are set (``credential_keys``).
"""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.schemas.common import Page
from api.schemas.integrations import (
    AccountCreate,
    AccountListQuery,
    AccountUpdate,
    IntegrationUpsert,
)
from shared.channels import accounts
from shared.channels.views import IntegrationAccountView, IntegrationView

TAGS = ("Integrations",)
MANAGE = accounts.PERMISSION


class IntegrationsResource:
    @endpoint("List all channel integrations", response=list[IntegrationView], tags=TAGS)
    def on_get(self, req, resp, *, ctx):
        rows = accounts.list_integrations(req.context.db, ctx)
        return Plain([accounts.integration_view(row) for row in rows])


class IntegrationResource:
    @endpoint("Get a single integration by channel", response=IntegrationView, tags=TAGS)
    def on_get(self, req, resp, *, ctx, channel):
        return Plain(
            accounts.integration_view(accounts.get_integration(req.context.db, ctx, channel))
        )

    @endpoint(
        "Create or update an integration (upsert)",
        permission=MANAGE,
        also=(201,),
        errors=(409,),
        body=IntegrationUpsert,
        response=IntegrationView,
        description=(
            "Answers 201 when it created the integration, 200 when it updated it."
            " `enabled: false` switches the channel off: its accounts work as disabled ones"
            " (sends fail `channel_disabled`, inbound is dropped, api-channel posts answer"
            " 409 `channel_disabled`) until it is enabled again."
        ),
        tags=TAGS,
    )
    def on_put(self, req, resp, *, ctx, channel, body: IntegrationUpsert):
        integration, created = accounts.upsert_integration(
            req.context.db, ctx, channel, **body.model_dump(exclude_unset=True)
        )
        if created:
            resp.status = 201
        return Plain(accounts.integration_view(integration))

    @endpoint(
        "Delete an integration",
        permission=MANAGE,
        status=204,
        description="Deletes the channel's accounts; each emits integration_account.disconnected.",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, channel):
        accounts.delete_integration(req.context.db, ctx, channel)


class AccountsResource:
    @endpoint(
        "List integration accounts",
        query=AccountListQuery,
        response=Page[IntegrationAccountView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: AccountListQuery):
        page = accounts.list_accounts(req.context.db, ctx, **query.model_dump())
        items = [accounts.account_view(row) for row in page.items]
        return Plain({"items": items, "next_cursor": page.next_cursor})

    @endpoint(
        "Create an integration account",
        errors=(409,),
        permission=MANAGE,
        body=AccountCreate,
        response=IntegrationAccountView,
        status=201,
        description=(
            "Emits integration_account.connected; the first account is the default. An api"
            " account's answer carries its signing_secret, shown only here."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: AccountCreate):
        account = accounts.create_account(req.context.db, ctx, **body.model_dump())
        return Plain(accounts.account_view(account, reveal_secret=True))


class AccountResource:
    @endpoint("Get an integration account by ID", response=IntegrationAccountView, tags=TAGS)
    def on_get(self, req, resp, *, ctx, id):
        return Plain(accounts.account_view(accounts.get_account(req.context.db, ctx, id)))

    @endpoint(
        "Update an integration account",
        permission=MANAGE,
        body=AccountUpdate,
        response=IntegrationAccountView,
        description="settings replace the stored object; credentials merge (null removes one).",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: AccountUpdate):
        changes = body.model_dump(exclude_unset=True)
        return Plain(
            accounts.account_view(accounts.update_account(req.context.db, ctx, id, changes))
        )

    @endpoint(
        "Delete an integration account",
        permission=MANAGE,
        status=204,
        description="Emits integration_account.disconnected.",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id):
        accounts.delete_account(req.context.db, ctx, id)


class SetDefaultResource:
    @endpoint(
        "Set an integration account as the default for its channel",
        permission=MANAGE,
        response=IntegrationAccountView,
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id):
        return Plain(accounts.account_view(accounts.set_default(req.context.db, ctx, id)))


ROUTES = [
    ("/api/integrations", IntegrationsResource()),
    ("/api/integrations/{channel}", IntegrationResource()),
    ("/api/integration-accounts", AccountsResource()),
    ("/api/integration-accounts/{id:uuid}", AccountResource()),
    ("/api/integration-accounts/{id:uuid}/set-default", SetDefaultResource()),
]
