"""Meta's real error bodies, by code, as the Graph API sends them (status, JSON body)."""

from __future__ import annotations

import secrets
from typing import Any


def _error(
    status: int,
    code: int,
    message: str,
    *,
    type_: str = "OAuthException",
    subcode: int | None = None,
    details: str | None = None,
    **extra: Any,
) -> tuple[int, dict[str, Any]]:
    error: dict[str, Any] = {
        "message": message,
        "type": type_,
        "code": code,
        "fbtrace_id": "A" + secrets.token_hex(10),
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error.update(extra)
    return status, {"error": error}


def meta_error(name: str) -> tuple[int, dict[str, Any]]:
    """``"131047"``, ``"131026"``, ``"100"``, ``"190"``, ``"130429"``, ``"131056"`` (the
    pair rate limit), ``"80007"``,
    ``"132001"``, ``"500"`` or ``"503"``; for onboarding ``"oauth_code_used"``,
    ``"oauth_code_invalid"``, ``"oauth_redirect_mismatch"``, ``"133005"`` (PIN mismatch),
    ``"200"`` and ``"10"`` (permissions), ``"4"`` (app rate limit)."""
    makers = {
        "131047": lambda: _error(
            400,
            131047,
            "(#131047) Re-engagement message",
            details=(
                "Message failed to send because more than 24 hours have passed since the"
                " customer last replied to this number."
            ),
        ),
        "131026": lambda: _error(
            400,
            131026,
            "(#131026) Message Undeliverable",
            details="Unable to deliver message. Reasons can include: the recipient phone"
            " number is not a WhatsApp phone number.",
        ),
        "100": lambda: _error(
            400,
            100,
            "(#100) Invalid parameter",
            details="Parameter value is not valid",
        ),
        "132001": lambda: _error(
            404,
            132001,
            "(#132001) Template name does not exist in the translation",
            details="template name (hello_wrld) does not exist in en_US",
        ),
        "190": lambda: _error(
            401,
            190,
            "Error validating access token: Session has expired on Friday, 01-Nov-24 10:00:00 PDT.",
            subcode=463,
        ),
        "130429": lambda: _error(
            429,
            130429,
            "(#130429) Rate limit hit",
            details="Cloud API message throughput has been reached.",
        ),
        "131056": lambda: _error(
            400,
            131056,
            "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            details=(
                "Message failed to send because there were too many messages sent from this"
                " phone number to the same phone number in a short period of time."
            ),
        ),
        "80007": lambda: _error(
            429,
            80007,
            "(#80007) There have been too many calls to this Messenger account."
            " Wait a bit and try again.",
            type_="OAuthException",
        ),
        # --- onboarding (OAuth, Embedded Signup, Pages) ---------------------------------
        "oauth_code_used": lambda: _error(
            400, 100, "This authorization code has been used.", subcode=36009
        ),
        "oauth_code_invalid": lambda: _error(
            400, 100, "Invalid verification code format.", subcode=36007
        ),
        "oauth_redirect_mismatch": lambda: _error(
            400,
            100,
            "Error validating verification code. Please make sure your redirect_uri is"
            " identical to the one you used in the OAuth dialog request",
            subcode=36008,
        ),
        "133005": lambda: _error(
            400,
            133005,
            "Two step verification PIN Mismatch",
            details="The two-step verification PIN does not match the one set on this number.",
        ),
        "200": lambda: _error(
            403,
            200,
            "(#200) Requires pages_messaging permission to manage the object",
            type_="OAuthException",
        ),
        "10": lambda: _error(403, 10, "(#10) Application does not have permission for this action"),
        "4": lambda: _error(400, 4, "(#4) Application request limit reached", is_transient=True),
        "500": lambda: _error(
            500, 1, "An unknown error occurred", is_transient=True, type_="OAuthException"
        ),
        "503": lambda: _error(
            503,
            2,
            "Service temporarily unavailable",
            is_transient=True,
            type_="OAuthException",
        ),
    }
    return makers[name]()
