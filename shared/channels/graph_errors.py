"""Meta's Graph API failures as the API's answers: clear 4xx when the caller can act, else 502.

:class:`~shared.channels.send_errors.SendFailed` (what :mod:`.graph` raises) keeps
Meta's code for the outbound worker; a request that called Meta inline answers
with :func:`domain_error` instead:

- ``190`` / ``102`` (a token expired, was revoked or never valid): 409
  ``meta_token_invalid``; the caller reconnects (an account's token also marks the
  account ``error``: :mod:`shared.channels.token_rejections`);
- ``3``, ``10``, ``200``-``299`` (the app or token lacks a permission): 409
  ``meta_permission_denied``, naming what Meta said is missing;
- throttling (429, ``4``, ``17``, ``32``, ``613``, ``80007``, ``130429``...) still failing
  after the client's retries: 429 ``meta_rate_limited`` with ``Retry-After``;
- any other 4xx (``100`` invalid parameter, a PIN mismatch...): 422 ``meta_rejected``;
- 5xx, timeouts, connection errors, malformed answers: 502 ``meta_api_error``.

Every answer carries Meta's code (and subcode, ``fbtrace_id`` when given) in
``details``, never a token.
"""

from __future__ import annotations

import math

from shared.channels.send_errors import SendFailed
from shared.channels.token_rejections import TOKEN_INVALID_CODES
from shared.digits import ascii_digits
from shared.errors import DomainError, RateLimited

#: Meta throttling codes (a subset of :data:`shared.channels.graph.TRANSIENT_CODES`).
THROTTLING_CODES = frozenset({"4", "17", "32", "613", "80007", "130429", "131048", "131056"})
#: Throttling of one business number towards one recipient only (131056, the "pair rate
#: limit": too many messages to this same person lately): the number may send to others.
PAIR_THROTTLING_CODES = frozenset({"131056"})
#: Seconds a throttled caller is told to wait when Meta named no ``Retry-After``.
DEFAULT_RETRY_AFTER = 60


class MetaTokenInvalid(DomainError):
    status, code = 409, "meta_token_invalid"


class MetaPermissionDenied(DomainError):
    status, code = 409, "meta_permission_denied"


class MetaRejected(DomainError):
    status, code = 422, "meta_rejected"


class MetaRateLimited(RateLimited):
    code = "meta_rate_limited"


class IntegrationNotFound(DomainError):
    """The tenant has no (such) Meta account to ask: nothing was sent to Meta."""

    status, code = 404, "integration_not_found"


class MetaUnavailable(DomainError):
    """Meta's Graph API failed or could not be reached (after the client's retries)."""

    status, code = 502, "meta_api_error"


#: Every status :func:`domain_error` answers: an endpoint that calls Meta inline declares
#: them (``@endpoint(errors=...)``), so its document lists what it can answer.
STATUSES = tuple(
    sorted(
        {
            error.status
            for error in (
                MetaTokenInvalid,
                MetaPermissionDenied,
                MetaRejected,
                MetaRateLimited,
                MetaUnavailable,
            )
        }
    )
)


def is_token_invalid(failure: SendFailed) -> bool:
    return failure.code in TOKEN_INVALID_CODES


def is_permission_denied(failure: SendFailed) -> bool:
    return ascii_digits(failure.code) and (
        failure.code in ("3", "10") or 200 <= int(failure.code) <= 299
    )


def is_throttled(failure: SendFailed) -> bool:
    return failure.http_status == 429 or failure.code in THROTTLING_CODES


def is_pair_throttled(failure: SendFailed) -> bool:
    """Throttled for this recipient only (:data:`PAIR_THROTTLING_CODES`), not the account."""
    return failure.code in PAIR_THROTTLING_CODES


def _details(failure: SendFailed, field: str | None) -> list[dict[str, str]]:
    detail = {"meta_code": failure.code, "message": failure.message}
    if field:
        detail["field"] = field
    return [detail]


def domain_error(
    failure: SendFailed,
    *,
    what: str,
    field: str | None = None,
    remedy: str = "reconnect the account",
) -> DomainError:
    """The API error for ``failure`` of the call described by ``what`` ("subscribing the Page").

    ``field`` names the request field Meta refused (a 422's detail); ``remedy``
    says what to do about an invalid token.
    """
    meta = f"Meta ({failure.code}): {failure.message}"
    if is_token_invalid(failure):
        return MetaTokenInvalid(
            f"Meta rejected the access token while {what}; {remedy}. {meta}",
            details=_details(failure, field),
        )
    if is_permission_denied(failure):
        return MetaPermissionDenied(
            f"The Meta app or token lacks a permission needed for {what}. {meta}",
            details=_details(failure, field),
        )
    if is_throttled(failure):
        wait = failure.retry_after or DEFAULT_RETRY_AFTER
        error = MetaRateLimited(
            f"Meta is rate limiting {what}; try again in {math.ceil(wait)} s. {meta}",
            retry_after=math.ceil(wait),
        )
        error.details = _details(failure, field)
        return error
    status = failure.http_status
    if status is not None and 400 <= status < 500 and not failure.transient:
        return MetaRejected(
            f"Meta refused {what}. {meta}",
            details=_details(failure, field),
        )
    tries = f" after {failure.attempts} tries" if failure.attempts > 1 else ""
    return MetaUnavailable(
        f"Meta's Graph API failed while {what}{tries}. {meta}",
        details=_details(failure, None),
    )
