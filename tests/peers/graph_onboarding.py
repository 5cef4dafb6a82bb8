"""The fake Graph API's onboarding side: OAuth, Embedded Signup, Pages, Messenger profile.

State lives in :class:`MetaOnboarding` (``FakeGraph.meta``); a test builds the world
Meta would show a customer, then hands the API a login ``code``::

    waba, numbers = graph.meta.add_waba(numbers=1)
    code = graph.meta.grant(wabas=[waba])          # what Embedded Signup's dialog returns
    page = graph.meta.add_page("Acme", instagram_username="acme")
    code = graph.meta.grant(pages=[page.id])       # what Facebook Login returns

Routes (after the version segment): ``POST oauth/access_token`` (a code, or
``grant_type=fb_exchange_token``), ``GET debug_token`` (app token ``id|secret``),
``GET me``, ``GET me/accounts`` (``limit``/``after`` paging), ``GET|POST|DELETE
me/messenger_profile`` (Page token), ``GET {waba}/phone_numbers``, ``POST|DELETE
{waba-or-page}/subscribed_apps``, ``POST {phone-number-id}/register`` and ``GET
{phone-number-id}`` (fields for the health read).

Failures are scripted per route with :meth:`MetaOnboarding.script` (route names in
:data:`ROUTES`): ``"ok"``, a code of :func:`tests.peers.meta_errors.meta_error`,
``("raw", status, body)`` or ``("retry_after", seconds, code)``; each request takes
the next behaviour and the last one repeats. :meth:`MetaOnboarding.expire` makes a
token answer Meta's 190.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.peers.meta_errors import meta_error

#: The names :meth:`MetaOnboarding.script` takes.
ROUTES = (
    "oauth",
    "debug_token",
    "me",
    "accounts",
    "messenger_profile",
    "phone_numbers",
    "subscribed_apps",
    "register",
    "number",
)

#: Ids are unique within a test run (the database is the run's own); other tests draw
#: random 15-digit ids, so these start at a random place of their own.
_ids = itertools.count(7 * 10**14 + secrets.randbelow(10**13))

#: status, JSON body, extra headers
Answer = tuple[int, Any, dict[str, str]]


def _id() -> str:
    return str(next(_ids))


def _token(prefix: str = "EAAG") -> str:
    return prefix + secrets.token_urlsafe(24)


@dataclass
class FakePage:
    id: str
    name: str
    category: str
    token: str
    instagram: dict[str, str] | None = None


@dataclass
class FakeNumber:
    id: str
    waba_id: str
    display_phone_number: str
    verified_name: str
    quality_rating: str = "GREEN"
    messaging_limit_tier: str = "TIER_1K"
    status: str = "CONNECTED"
    #: A two-step PIN already set on the number (registration must repeat it).
    pin: str | None = None
    can_send_message: str = "AVAILABLE"


@dataclass
class Grant:
    """What one login granted: a user, Pages, WABAs (Embedded Signup)."""

    user_id: str
    user_name: str
    pages: list[str]
    wabas: list[str]
    redirect_uri: str | None = None


@dataclass
class MetaOnboarding:
    app_id: str = "1096371234567890"
    app_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    pages: dict[str, FakePage] = field(default_factory=dict)
    numbers: dict[str, FakeNumber] = field(default_factory=dict)
    wabas: dict[str, list[str]] = field(default_factory=dict)
    codes: dict[str, Grant] = field(default_factory=dict)
    used_codes: set[str] = field(default_factory=set)
    #: user / business tokens (short and long-lived) -> their grant
    tokens: dict[str, Grant] = field(default_factory=dict)
    #: object id (WABA, Page) -> subscribed fields ("" for a WABA)
    subscriptions: dict[str, str] = field(default_factory=dict)
    #: phone number id -> the PIN it was registered with
    registered: dict[str, str] = field(default_factory=dict)
    #: Page id -> its Messenger profile
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)
    plans: dict[str, list[Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- building the world ---------------------------------------------------
    def add_page(self, name: str = "Acme Store", *, instagram_username: str | None = None):
        page = FakePage(_id(), name, "Shopping & retail", _token("EAAPage"))
        if instagram_username:
            page.instagram = {"id": "178" + _id()[3:], "username": instagram_username}
        with self.lock:
            self.pages[page.id] = page
        return page

    def add_waba(self, *, numbers: int = 1, pin: str | None = None):
        waba_id = _id()
        made = []
        for n in range(numbers):
            number = FakeNumber(_id(), waba_id, f"+1 555-010-{n:04d}", f"Acme {n}", pin=pin)
            made.append(number)
        with self.lock:
            self.wabas[waba_id] = [n.id for n in made]
            self.numbers.update({n.id: n for n in made})
        return waba_id, made

    def grant(
        self,
        *,
        pages: list[str] = (),
        wabas: list[str] = (),
        redirect_uri: str | None = None,
    ) -> str:
        """A fresh single-use login code granting ``pages`` and ``wabas``."""
        code = "AQ" + secrets.token_urlsafe(32)
        with self.lock:
            self.codes[code] = Grant(_id(), "Grace Admin", list(pages), list(wabas), redirect_uri)
        return code

    def expire(self, token: str) -> None:
        with self.lock:
            self.expired.add(token)

    def script(self, route: str, *behaviours: Any) -> None:
        assert route in ROUTES, route
        with self.lock:
            self.plans[route] = list(behaviours)

    def page_token_of(self, page_id: str) -> str:
        return self.pages[page_id].token

    # -- serving ---------------------------------------------------------------
    def _next(self, route: str) -> Any:
        with self.lock:
            plan = self.plans.get(route)
            if not plan:
                return "ok"
            return plan.pop(0) if len(plan) > 1 else plan[0]

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer | None:
        """Meta's answer to an onboarding request, or None when the route is not one of these."""
        split = urlsplit(path)
        parts = split.path.strip("/").split("/")[1:]  # drop the version
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        route = self._route(method, parts)
        if route is None:
            return None
        behaviour = self._next(route)
        if behaviour != "ok":
            return _failure(behaviour)
        auth = headers.get("Authorization") or headers.get("authorization") or ""
        token = auth[7:] if auth.startswith("Bearer ") else None
        if token is not None and token in self.expired:
            return _error("190")
        fields = _body(headers, body)
        with self.lock:
            return getattr(self, f"_{route}")(method, parts, query, fields, token)

    def _route(self, method: str, parts: list[str]) -> str | None:
        if parts == ["oauth", "access_token"] and method == "POST":
            return "oauth"
        if parts == ["debug_token"] and method == "GET":
            return "debug_token"
        if parts == ["me"] and method == "GET":
            return "me"
        if parts == ["me", "accounts"] and method == "GET":
            return "accounts"
        if parts == ["me", "messenger_profile"]:
            return "messenger_profile"
        if len(parts) == 2 and parts[1] == "phone_numbers" and method == "GET":
            return "phone_numbers"
        if len(parts) == 2 and parts[1] == "subscribed_apps" and method in ("POST", "DELETE"):
            return "subscribed_apps"
        if len(parts) == 2 and parts[1] == "register" and method == "POST":
            return "register"
        if len(parts) == 1 and parts[0] in self.numbers and method == "GET":
            return "number"
        return None

    # -- routes (called with the lock held) -------------------------------------
    def _oauth(self, method, parts, query, fields, token) -> Answer:
        if fields.get("client_id") != self.app_id or fields.get("client_secret") != self.app_secret:
            return (
                400,
                {
                    "error": {
                        "message": "Error validating client secret.",
                        "type": "OAuthException",
                        "code": 1,
                    }
                },
                {},
            )
        if fields.get("grant_type") == "fb_exchange_token":
            grant = self.tokens.get(fields.get("fb_exchange_token", ""))
            if grant is None or fields.get("fb_exchange_token") in self.expired:
                return _error("190")
            long_token = _token("EAALong")
            self.tokens[long_token] = grant
            return (
                200,
                {"access_token": long_token, "token_type": "bearer", "expires_in": 5_183_944},
                {},
            )
        code = fields.get("code", "")
        if code in self.used_codes:
            return _error("oauth_code_used")
        grant = self.codes.pop(code, None)
        if grant is None:
            return _error("oauth_code_invalid")
        if grant.redirect_uri is not None and fields.get("redirect_uri") != grant.redirect_uri:
            self.codes[code] = grant
            return _error("oauth_redirect_mismatch")
        self.used_codes.add(code)
        short = _token("EAAShort")
        self.tokens[short] = grant
        return 200, {"access_token": short, "token_type": "bearer", "expires_in": 5400}, {}

    def _debug_token(self, method, parts, query, fields, token) -> Answer:
        if token != f"{self.app_id}|{self.app_secret}":
            return _error("190")
        grant = self.tokens.get(query.get("input_token", ""))
        if grant is None:
            return 200, {"data": {"is_valid": False, "error": {"code": 190}}}, {}
        scopes = [
            {"scope": "whatsapp_business_management", "target_ids": grant.wabas},
            {"scope": "whatsapp_business_messaging", "target_ids": grant.wabas},
        ]
        return (
            200,
            {
                "data": {
                    "app_id": self.app_id,
                    "type": "USER",
                    "is_valid": True,
                    "user_id": grant.user_id,
                    "granular_scopes": scopes,
                }
            },
            {},
        )

    def _me(self, method, parts, query, fields, token) -> Answer:
        grant = self.tokens.get(token or "")
        if grant is None:
            return _error("190")
        return 200, {"id": grant.user_id, "name": grant.user_name}, {}

    def _accounts(self, method, parts, query, fields, token) -> Answer:
        grant = self.tokens.get(token or "")
        if grant is None:
            return _error("190")
        limit = int(query.get("limit", 25))
        start = int(query.get("after", 0))
        chosen = grant.pages[start : start + limit]
        data = []
        for page_id in chosen:
            page = self.pages[page_id]
            item = {
                "id": page.id,
                "name": page.name,
                "category": page.category,
                "tasks": ["MANAGE", "MESSAGING"],
                "access_token": page.token,
            }
            if page.instagram:
                item["instagram_business_account"] = dict(page.instagram)
            data.append(item)
        paging: dict[str, Any] = {"cursors": {"before": str(start), "after": str(start + limit)}}
        if start + limit < len(grant.pages):
            paging["next"] = f"https://graph.example/me/accounts?after={start + limit}"
        return 200, {"data": data, "paging": paging}, {}

    def _page_of(self, token: str | None) -> FakePage | None:
        return next((p for p in self.pages.values() if p.token == token), None)

    def _messenger_profile(self, method, parts, query, fields, token) -> Answer:
        page = self._page_of(token)
        if page is None:
            return _error("190")
        profile = self.profiles.setdefault(page.id, {})
        if method == "GET":
            wanted = (query.get("fields") or "").split(",")
            item = {k: v for k, v in profile.items() if k in wanted}
            return 200, {"data": [item] if item else []}, {}
        if method == "POST":
            if not isinstance(fields.get("persistent_menu"), list):
                return _error("100")
            profile["persistent_menu"] = fields["persistent_menu"]
            return 200, {"result": "success"}, {}
        if method == "DELETE":
            for name in fields.get("fields") or []:
                profile.pop(name, None)
            return 200, {"result": "success"}, {}
        return _error("100")

    def _granted_waba(self, token: str | None, waba_id: str) -> bool:
        grant = self.tokens.get(token or "")
        return grant is not None and waba_id in grant.wabas

    def _phone_numbers(self, method, parts, query, fields, token) -> Answer:
        waba_id = parts[0]
        if not self._granted_waba(token, waba_id):
            return _error("200")
        data = [
            {
                "id": n.id,
                "display_phone_number": n.display_phone_number,
                "verified_name": n.verified_name,
                "quality_rating": n.quality_rating,
                "code_verification_status": "VERIFIED",
            }
            for n in (self.numbers[i] for i in self.wabas.get(waba_id, []))
        ]
        return 200, {"data": data, "paging": {"cursors": {}}}, {}

    def _subscribed_apps(self, method, parts, query, fields, token) -> Answer:
        object_id = parts[0]
        page = self.pages.get(object_id)
        allowed = (page is not None and page.token == token) or self._granted_waba(token, object_id)
        if not allowed:
            return _error("200")
        if method == "DELETE":
            self.subscriptions.pop(object_id, None)
        else:
            self.subscriptions[object_id] = str(fields.get("subscribed_fields") or "")
        return 200, {"success": True}, {}

    def _register(self, method, parts, query, fields, token) -> Answer:
        number = self.numbers.get(parts[0])
        if number is None or not self._granted_waba(token, number.waba_id):
            return _error("100") if number is None else _error("200")
        pin = str(fields.get("pin") or "")
        if fields.get("messaging_product") != "whatsapp" or len(pin) != 6:
            return _error("100")
        if number.pin is not None and number.pin != pin:
            return _error("133005")
        number.pin = pin
        self.registered[number.id] = pin
        return 200, {"success": True}, {}

    def _number(self, method, parts, query, fields, token) -> Answer:
        number = self.numbers[parts[0]]
        if not (self._granted_waba(token, number.waba_id)):
            return _error("190")
        entities = [
            {
                "entity_type": "PHONE_NUMBER",
                "id": number.id,
                "can_send_message": number.can_send_message,
            },
            {"entity_type": "WABA", "id": number.waba_id, "can_send_message": "AVAILABLE"},
        ]
        if number.can_send_message != "AVAILABLE":
            entities[0]["errors"] = [
                {
                    "error_code": 141006,
                    "error_description": "The phone number is restricted",
                    "possible_solution": "Verify the business",
                }
            ]
        return (
            200,
            {
                "id": number.id,
                "display_phone_number": number.display_phone_number,
                "verified_name": number.verified_name,
                "quality_rating": number.quality_rating,
                "messaging_limit_tier": number.messaging_limit_tier,
                "status": number.status,
                "name_status": "APPROVED",
                "code_verification_status": "VERIFIED",
                "platform_type": "CLOUD_API",
                "throughput": {"level": "STANDARD"},
                "health_status": {
                    "can_send_message": number.can_send_message,
                    "entities": entities,
                },
            },
            {},
        )


def _error(name: str) -> Answer:
    status, body = meta_error(name)
    return status, body, {}


def _failure(behaviour: Any) -> Answer:
    if isinstance(behaviour, tuple) and behaviour[0] == "raw":
        return behaviour[1], behaviour[2], {}
    if isinstance(behaviour, tuple) and behaviour[0] == "retry_after":
        status, body = meta_error(behaviour[2])
        return status, body, {"Retry-After": str(behaviour[1])}
    return _error(behaviour)


def _body(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """A JSON or form body as a dict (form values: their first occurrence)."""
    if not body:
        return {}
    content_type = (headers.get("Content-Type") or headers.get("content-type") or "").lower()
    if "json" in content_type:
        data = json.loads(body)
        return data if isinstance(data, dict) else {}
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}
