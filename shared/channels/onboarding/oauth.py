"""OAuth with Meta: a login dialog's ``code`` for tokens, what a token may reach, its Pages.

Secrets (the app secret, codes, tokens) travel in form bodies or the
``Authorization`` header, never in a URL of ours; ``debug_token`` is the one read
that needs one in its query, and the client's log filter blanks it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from shared.channels import meta_calls
from shared.channels.graph import graph_client, next_cursor
from shared.channels.graph_errors import MetaUnavailable, domain_error
from shared.channels.onboarding.meta_app import MetaApp
from shared.channels.send_errors import SendFailed
from shared.context import Ctx
from shared.errors import Conflict, ValidationFailed

#: Pages read per ``me/accounts`` call, and the most calls made for one listing.
PAGE_BATCH = 100
MAX_PAGE_BATCHES = 10
#: The most Pages one listing reads; a user with more gets :class:`TooManyPages`.
MAX_PAGES = PAGE_BATCH * MAX_PAGE_BATCHES
#: Longer than any token Meta issues (long-lived ones last about 60 days).
MAX_TOKEN_LIFETIME = dt.timedelta(days=3650)
#: Fields of a Page we read; ``access_token`` is the Page token (long-lived when the
#: user token is).
PAGE_FIELDS = "id,name,category,tasks,access_token,instagram_business_account{id,username,name}"


@dataclass(frozen=True, slots=True)
class UserToken:
    token: str = field(repr=False)
    expires_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class FacebookPage:
    id: str
    name: str
    category: str | None
    token: str = field(repr=False)
    instagram: dict[str, Any] | None


class TooManyPages(Conflict):
    """More Pages than :data:`MAX_PAGES`: refused rather than cut without a word (WHY: the
    Pages past the cut were missing, and subscribing one answered 'not one of theirs')."""

    code = "too_many_pages"


class InvalidOAuthCode(ValidationFailed):
    code = "invalid_oauth_code"


def exchange_code(ctx: Ctx, app: MetaApp, code: str, redirect_uri: str | None = None) -> UserToken:
    """The login dialog's ``code`` for a user (or business) token; 422 on a bad code."""
    form = {"client_id": app.app_id, "client_secret": app.app_secret, "code": code}
    if redirect_uri:
        form["redirect_uri"] = redirect_uri
    try:
        answer = graph_client().request("POST", "oauth/access_token", None, form=form)
    except SendFailed as failure:
        if failure.code in ("100", "190") and failure.http_status == 400:
            raise InvalidOAuthCode(
                f"Meta refused the authorization code ({failure.code}): {failure.message}."
                " Codes are single-use and expire within minutes: run the login again.",
                details=[{"field": "code", "message": failure.message}],
            ) from failure
        raise domain_error(failure, what="exchanging the authorization code") from failure
    return _user_token(answer)


def long_lived(ctx: Ctx, app: MetaApp, short: UserToken) -> UserToken:
    """A short-lived user token for a long-lived one (about 60 days)."""
    form = {
        "grant_type": "fb_exchange_token",
        "client_id": app.app_id,
        "client_secret": app.app_secret,
        "fb_exchange_token": short.token,
    }
    with meta_calls.calling(
        "exchanging for a long-lived token", ctx=ctx, remedy="run the login again"
    ):
        answer = graph_client().request("POST", "oauth/access_token", None, form=form)
    return _user_token(answer)


def _user_token(answer: dict[str, Any]) -> UserToken:
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise MetaUnavailable("Meta's answer to the token exchange held no access_token")
    expires_in = answer.get("expires_in")
    expires_at = None
    # A lifetime is only shown: one of another type, or beyond any real token's (a
    # timedelta overflow, a 500), reads as unknown rather than failing the login.
    if (
        isinstance(expires_in, int | float)
        and not isinstance(expires_in, bool)
        and 0 < expires_in <= MAX_TOKEN_LIFETIME.total_seconds()
    ):
        expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=int(expires_in))
    return UserToken(token, expires_at)


def granted_targets(ctx: Ctx, app: MetaApp, token: str, scope: str) -> list[str]:
    """The object ids (WABA ids...) ``token`` was granted ``scope`` on (``debug_token``)."""
    with meta_calls.calling("inspecting the granted token", ctx=ctx):
        answer = graph_client().request(
            "GET", "debug_token", app.app_token, params={"input_token": token}
        )
        data = answer.get("data") or {}
        targets: list[str] = []
        for grant in meta_calls.typed(data.get("granular_scopes"), list, "granular_scopes") or []:
            if grant.get("scope") == scope:
                ids = meta_calls.typed(grant.get("target_ids"), list, "target_ids") or []
                targets.extend(meta_calls.graph_id(t, "a target id") for t in ids)
    return list(dict.fromkeys(targets))


def list_pages(ctx: Ctx, user_token: str, *, remedy: str) -> list[FacebookPage]:
    """The Pages the user manages, with their Page tokens and linked Instagram accounts.

    Graph's paging (``paging.next`` / ``cursors.after``) is followed for up to
    :data:`MAX_PAGES` Pages; more is a 409 :class:`TooManyPages`, before anything is kept.
    """
    pages: list[FacebookPage] = []
    params: dict[str, Any] = {"fields": PAGE_FIELDS, "limit": PAGE_BATCH}
    asked: set[str] = set()
    for _ in range(MAX_PAGE_BATCHES):
        with meta_calls.calling("listing the Pages you manage", ctx=ctx, remedy=remedy):
            answer = graph_client().request("GET", "me/accounts", user_token, params=params)
            for item in answer.get("data") or []:
                # NOTE: a token of another type is refused, not ``str()``-ed: that stored
                # a token Meta refuses on every send.
                token = meta_calls.typed(item.get("access_token"), str, "a Page's access_token")
                if not item.get("id") or not token:
                    continue
                instagram = item.get("instagram_business_account")
                if isinstance(instagram, dict) and instagram.get("id"):
                    instagram |= {"id": meta_calls.graph_id(instagram["id"], "an Instagram id")}
                pages.append(
                    FacebookPage(
                        id=meta_calls.graph_id(item["id"], "a Page id"),
                        name=str(item.get("name") or item["id"]),
                        category=meta_calls.text_or_none(item.get("category")),
                        token=token,
                        instagram=instagram if isinstance(instagram, dict) else None,
                    )
                )
            after = next_cursor(answer, asked)
        if after is None:
            return pages
        params = params | {"after": after}
    raise TooManyPages(
        f"The Facebook user manages more than {MAX_PAGES:,} Pages, the most one login is read"
        f" for. Run the login again granting only the Pages to connect (Meta's dialog lets"
        f" you choose them), at most {MAX_PAGES:,}."
    )
