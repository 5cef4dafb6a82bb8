"""Meta onboarding: WhatsApp Embedded Signup and health, Instagram and Messenger OAuth,
Page subscriptions, the Messenger persistent menu (all admin · integrations.manage).

Every call to Meta is made inline; its failures answer 409 (token invalid, permission
missing), 422 (Meta refused the input), 429 (Meta throttling) or 502 (Meta failed),
each naming Meta's code. Config answers never carry the app secret.
"""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.schemas.integrations_meta import (
    AccountQuery,
    EmbeddedSignup,
    InstagramConnect,
    MessengerConnect,
    MessengerDisconnect,
    PersistentMenuSet,
    SubscribePages,
)
from shared.channels import accounts, graph_errors
from shared.channels.onboarding import (
    instagram,
    messenger,
    meta_app,
    persistent_menu,
    whatsapp,
)
from shared.channels.onboarding.views import (
    EmbeddedSignupConfigView,
    MessengerLoginView,
    OAuthConfigView,
    PersistentMenuView,
    SubscribedPagesView,
    WhatsAppHealthView,
)
from shared.channels.views import IntegrationAccountView

TAGS = ("Integrations",)
MANAGE = accounts.PERMISSION
#: What every inline Meta call may answer beyond the declaration's own statuses.
META_ERRORS = graph_errors.STATUSES


class WhatsAppHealthResource:
    @endpoint(
        "Fetch WhatsApp account health from Meta Graph API",
        permission=MANAGE,
        query=AccountQuery,
        response=WhatsAppHealthView,
        errors=(404, *META_ERRORS),
        description=(
            "Reads the number's quality rating, messaging limit, status and Meta's"
            " can-send verdict with the account's token (`integration_account_id`, else the"
            " default WhatsApp account). A token Meta rejects marks the account `error`"
            " (409 `meta_token_invalid`)."
        ),
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: AccountQuery):
        return Plain(
            WhatsAppHealthView.data(
                whatsapp.health(req.context.db, ctx, query.integration_account_id)
            )
        )


class EmbeddedSignupConfigResource:
    @endpoint(
        "Get WhatsApp Embedded Signup config",
        permission=MANAGE,
        response=EmbeddedSignupConfigView,
        description="The Meta app id, Embedded Signup configuration id and Graph version.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx):
        return Plain(meta_app.embedded_signup_config())


class EmbeddedSignupResource:
    @endpoint(
        "Complete WhatsApp Embedded Signup",
        permission=MANAGE,
        body=EmbeddedSignup,
        response=IntegrationAccountView,
        status=201,
        also=(200,),
        errors=META_ERRORS,
        description=(
            "Exchanges the signup's `code` for a business token, checks the WABA was shared,"
            " subscribes the app to its webhooks, registers the number with `pin`, and"
            " creates the account (emits integration_account.connected) with the WABA's first"
            " template sync queued. A number this tenant connected before is reconnected"
            " instead (200: new token, status `active`, templates synced again). 409 when another"
            " workspace connected the number or the Meta app is not configured."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: EmbeddedSignup):
        account, created = whatsapp.complete_signup(req.context.db, ctx, **body.model_dump())
        if not created:
            resp.status = 200
        return Plain(accounts.account_view(account))


class InstagramOAuthConfigResource:
    @endpoint(
        "Get Instagram OAuth app config",
        permission=MANAGE,
        response=OAuthConfigView,
        description=(
            "The app id, login configuration, Graph version, dialog URL and scopes of the"
            " Instagram login, and a fresh `state` (valid 15 minutes, for you in this workspace"
            " and this channel only). Pass it to Meta's dialog as `state` and send it back in"
            " POST /api/integrations/instagram/connect; get a new config for each login."
        ),
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx):
        return Plain(meta_app.oauth_config(ctx, "instagram"))


class InstagramConnectResource:
    @endpoint(
        "Connect Instagram account via OAuth",
        permission=MANAGE,
        body=InstagramConnect,
        response=IntegrationAccountView,
        status=201,
        also=(200,),
        errors=META_ERRORS,
        description=(
            "Exchanges the `code` for a long-lived token, finds the Instagram professional"
            " account linked to a granted Page (`instagram_account_id` when several),"
            " subscribes that Page to webhooks and creates the account with the Page token;"
            " emits integration_account.connected. An account this tenant connected before"
            " is reconnected instead (200: new token, status `active`)."
            " `state` (from GET /api/integrations/instagram/oauth-config) binds the code to the"
            " admin, workspace and channel that started the login: required with"
            " `redirect_uri` (the code travelled through a URL), checked whenever sent; one"
            " missing, expired, altered or issued to someone else answers 422"
            " `invalid_oauth_state` before the code is used at Meta."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: InstagramConnect):
        account, created = instagram.connect(req.context.db, ctx, **body.model_dump())
        if not created:
            resp.status = 200
        return Plain(accounts.account_view(account))


class MessengerOAuthConfigResource:
    @endpoint(
        "Get Messenger OAuth app config",
        permission=MANAGE,
        response=OAuthConfigView,
        description=(
            "The app id, login configuration, Graph version, dialog URL and scopes of the"
            " Messenger login, and a fresh `state` (valid 15 minutes, for you in this workspace"
            " and this channel only). Pass it to Meta's dialog as `state` and send it back in"
            " POST /api/integrations/messenger/connect; get a new config for each login."
        ),
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx):
        return Plain(meta_app.oauth_config(ctx, "messenger"))


class MessengerConnectResource:
    @endpoint(
        "Connect Messenger via Facebook Login OAuth",
        permission=MANAGE,
        body=MessengerConnect,
        response=MessengerLoginView,
        errors=META_ERRORS,
        description=(
            "Exchanges the `code` for a long-lived user token, keeps it (encrypted) on the"
            " messenger integration, and answers the Pages the user manages; subscribe some"
            " with POST /api/integrations/messenger/subscribe-pages."
            " `state` (from GET /api/integrations/messenger/oauth-config) binds the code to the"
            " admin, workspace and channel that started the login: required with"
            " `redirect_uri` (the code travelled through a URL), checked whenever sent; one"
            " missing, expired, altered or issued to someone else answers 422"
            " `invalid_oauth_state` before the code is used at Meta."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: MessengerConnect):
        answer = messenger.connect(req.context.db, ctx, **body.model_dump())
        return Plain(MessengerLoginView.data(answer))


class SubscribePagesResource:
    @endpoint(
        "Subscribe selected Facebook Pages to Messenger webhooks",
        permission=MANAGE,
        body=SubscribePages,
        response=SubscribedPagesView,
        errors=META_ERRORS,
        description=(
            "Subscribes each Page (one the connected user manages) to webhooks, then creates"
            " one account per Page with its Page token (emits integration_account.connected"
            " for each); a Page already connected here gets its token refreshed. 409"
            " `messenger_not_connected` before POST /api/integrations/messenger/connect."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: SubscribePages):
        rows = messenger.subscribe_pages(req.context.db, ctx, body.page_ids)
        return Plain({"accounts": [accounts.account_view(row) for row in rows]})


class MessengerDisconnectResource:
    @endpoint(
        "Disconnect a Messenger page",
        permission=MANAGE,
        body=MessengerDisconnect,
        status=204,
        errors=(404, *META_ERRORS),
        description=(
            "Unsubscribes the Page from the app's webhooks at Meta, then deletes the account"
            " (emits integration_account.disconnected). If Meta refuses, nothing changes here."
            " The Page stays subscribed while a connected Instagram account (of any"
            " workspace) receives its messages through it; only the account is deleted."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: MessengerDisconnect):
        messenger.disconnect(req.context.db, ctx, body.integration_account_id)


class PersistentMenuResource:
    @endpoint(
        "Get Messenger persistent menu",
        permission=MANAGE,
        query=AccountQuery,
        response=PersistentMenuView,
        errors=(404, *META_ERRORS),
        description=(
            "Read from Meta with the Page token (`integration_account_id`, else the default"
            " Messenger account); `menu` is null when the Page has none."
        ),
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: AccountQuery):
        answer = persistent_menu.get_menu(req.context.db, ctx, query.integration_account_id)
        return Plain(PersistentMenuView.data(answer))

    @endpoint(
        "Set or delete Messenger persistent menu",
        permission=MANAGE,
        body=PersistentMenuSet,
        response=PersistentMenuView,
        errors=(404, *META_ERRORS),
        description="`menu` replaces the Page's menu at Meta; `menu: null` deletes it.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: PersistentMenuSet):
        answer = persistent_menu.set_menu(
            req.context.db, ctx, body.integration_account_id, body.meta_menu()
        )
        return Plain(PersistentMenuView.data(answer))


ROUTES = [
    ("/api/integrations/whatsapp/health", WhatsAppHealthResource()),
    ("/api/integrations/whatsapp/embedded-signup-config", EmbeddedSignupConfigResource()),
    ("/api/integrations/whatsapp/embedded-signup", EmbeddedSignupResource()),
    ("/api/integrations/instagram/oauth-config", InstagramOAuthConfigResource()),
    ("/api/integrations/instagram/connect", InstagramConnectResource()),
    ("/api/integrations/messenger/oauth-config", MessengerOAuthConfigResource()),
    ("/api/integrations/messenger/connect", MessengerConnectResource()),
    ("/api/integrations/messenger/subscribe-pages", SubscribePagesResource()),
    ("/api/integrations/messenger/disconnect", MessengerDisconnectResource()),
    ("/api/integrations/messenger/persistent-menu", PersistentMenuResource()),
]
