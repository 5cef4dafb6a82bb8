"""Request shapes of Meta onboarding (responses are shared.channels.onboarding.views)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from api.schemas.common import Input, Name, Query

#: What Meta's login dialog handed the browser (single use, minutes long).
OAuthCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]
#: A Meta object id (WABA, phone number, Page, Instagram account): digits.
MetaId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\d{1,32}$")]
HttpsUrl = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https://[^\s]+$")]
#: Kept exactly as sent: Meta compares it with the dialog's character for character.
RedirectUri = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s]+$")]
#: The oauth-config's ``state``, as Meta's redirect handed it back. NOTE: only bounded
#: here: whatever else is wrong with one answers ``invalid_oauth_state``.
OAuthState = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class EmbeddedSignup(Input):
    code: OAuthCode
    #: The number's two-step verification PIN (six digits): set by this registration, or
    #: the one already set on the number.
    pin: Annotated[str, StringConstraints(pattern=r"^\d{6}$")]
    #: From the signup's session info; needed when the customer shared several WABAs.
    waba_id: MetaId | None = None
    #: From the signup's session info; needed when the WABA has several numbers.
    phone_number_id: MetaId | None = None
    name: Name | None = None
    is_default: bool = False


class InstagramConnect(Input):
    code: OAuthCode
    #: The redirect_uri the dialog used (leave out for the JavaScript SDK's popup).
    redirect_uri: RedirectUri | None = None
    state: OAuthState | None = Field(
        None,
        description=(
            "The `state` of GET /api/integrations/instagram/oauth-config that started this login."
            " Required with `redirect_uri`, checked whenever sent: one missing, expired,"
            " altered or issued to another admin, workspace or channel answers 422"
            " `invalid_oauth_state` and the code stays unused."
        ),
    )
    #: Needed when the granted Pages link several Instagram accounts.
    instagram_account_id: MetaId | None = None
    name: Name | None = None
    is_default: bool = False


class MessengerConnect(Input):
    code: OAuthCode
    #: The redirect_uri the dialog used (leave out for the JavaScript SDK's popup).
    redirect_uri: RedirectUri | None = None
    state: OAuthState | None = Field(
        None,
        description=(
            "The `state` of GET /api/integrations/messenger/oauth-config that started this login."
            " Required with `redirect_uri`, checked whenever sent: one missing, expired,"
            " altered or issued to another admin, workspace or channel answers 422"
            " `invalid_oauth_state` and the code stays unused."
        ),
    )


class SubscribePages(Input):
    page_ids: list[MetaId] = Field(min_length=1, max_length=50)

    @field_validator("page_ids")
    @classmethod
    def _distinct(cls, page_ids: list[str]) -> list[str]:
        if len(set(page_ids)) != len(page_ids):
            raise ValueError("must not repeat a Page")
        return page_ids


class MessengerDisconnect(Input):
    integration_account_id: uuid.UUID


class AccountQuery(Query):
    #: The account; the channel's default account when left out.
    integration_account_id: uuid.UUID | None = None


class MenuItem(Input):
    type: Literal["postback", "web_url"]
    title: Annotated[str, StringConstraints(min_length=1, max_length=30)]
    #: postback: what the Page receives when tapped.
    payload: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = None
    #: web_url: the page opened.
    url: HttpsUrl | None = None
    webview_height_ratio: Literal["compact", "tall", "full"] | None = None

    @model_validator(mode="after")
    def _target(self) -> MenuItem:
        if self.type == "postback" and (self.payload is None or self.url is not None):
            raise ValueError("a postback item has a payload and no url")
        if self.type == "web_url" and (self.url is None or self.payload is not None):
            raise ValueError("a web_url item has a url and no payload")
        return self


class MenuLocale(Input):
    #: ``default`` or a Meta locale such as ``en_US``.
    locale: Annotated[str, StringConstraints(pattern=r"^(default|[a-z]{2}_[A-Z]{2})$")]
    composer_input_disabled: bool = False
    call_to_actions: list[MenuItem] = Field(min_length=1, max_length=20)


class PersistentMenuSet(Input):
    integration_account_id: uuid.UUID | None = None
    #: The menu, one entry per locale (one of them ``default``); ``null`` deletes it.
    menu: Annotated[list[MenuLocale], Field(min_length=1, max_length=50)] | None

    @field_validator("menu")
    @classmethod
    def _locales(cls, menu: list[MenuLocale] | None) -> list[MenuLocale] | None:
        if menu is None:
            return menu
        locales = [entry.locale for entry in menu]
        if "default" not in locales:
            raise ValueError("needs an entry for locale 'default'")
        if len(set(locales)) != len(locales):
            raise ValueError("must not repeat a locale")
        return menu

    def meta_menu(self) -> list[dict] | None:
        """The menu as Meta's ``persistent_menu`` (unset fields left out)."""
        if self.menu is None:
            return None
        return [entry.model_dump(mode="json", exclude_none=True) for entry in self.menu]
