"""Template calls to Meta's Graph API, through the one Graph client, and their errors.

- list: ``GET /{waba-id}/message_templates?fields=...&limit=100[&after=<cursor>]``, page
  after page while Meta's answer has ``paging.next`` (a cursor asked for before fails
  the listing). The next page is asked for with ``paging.cursors.after`` on our own
  base URL, never by following ``paging.next`` (an absolute URL from the answer: the
  token would go wherever it points).
- create: ``POST /{waba-id}/message_templates`` with ``name``, ``language``,
  ``category``, ``components`` (and ``parameter_format``); Meta answers
  ``{"id", "status", "category"}``.

Errors, for a request (create): Meta refusing the template itself (a 4xx other than
authentication, throttling or one Meta marks transient: ``100`` invalid parameter, an
existing name...) answers
422 with Meta's message; an existing name and language answers 409; anything else is
answered like every Graph call in a request (:mod:`shared.channels.meta_calls`): a
refused token 409 ``meta_token_invalid`` with the account marked ``error``, throttling
429, Meta down 502 ``meta_api_error``, each naming Meta's code. A sync that meets a
refused token marks the account too. The token is never part of an error or a log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from shared.channels import meta_calls
from shared.channels.graph import graph_client, next_cursor
from shared.channels.graph_errors import MetaUnavailable, is_token_invalid
from shared.channels.send_errors import SendFailed
from shared.context import Ctx
from shared.errors import Conflict, DomainError, ValidationFailed
from shared.models import IntegrationAccount

#: Templates asked for per page.
PAGE_SIZE = 100
#: A bound on pages per sync (100,000 templates): a cursor that never ends stops here.
MAX_PAGES = 1000
FIELDS = (
    "id,name,language,status,category,components,parameter_format,rejected_reason,quality_score"
)
#: Our columns' bounds on Meta's template id, status and category.
MAX_ID = 64
MAX_WORD = 32
#: Meta's subcode for "a template with this name and language already exists".
EXISTS_SUBCODES = frozenset({"2388023", "2388024"})
#: Meta codes that are about the credential or throttling, never the template.
_NOT_THE_TEMPLATE = frozenset({"190", "102", "10", "200", "4", "17", "32", "613", "80008"})


@dataclass
class Listing:
    templates: list[dict[str, Any]]
    graph_calls: int


def list_templates(waba_id: str, token: str) -> Listing:
    """Every template of the WABA, following Meta's paging; raises :class:`SendFailed`."""
    client = graph_client()
    templates: list[dict[str, Any]] = []
    after: str | None = None
    asked: set[str] = set()
    calls = 0
    while True:
        params = {"fields": FIELDS, "limit": PAGE_SIZE}
        if after:
            params["after"] = after
        page = client.get(f"{waba_id}/message_templates?{urlencode(params)}", token)
        calls += 1
        data = page.get("data")
        if not isinstance(data, list):
            raise SendFailed("bad_response", "message_templates without 'data'", transient=True)
        templates += [t for t in data if isinstance(t, dict)]
        after = next_cursor(page, asked)
        if after is None:
            return Listing(templates, calls)
        if calls >= MAX_PAGES:
            raise SendFailed(
                "too_many_pages", f"more than {MAX_PAGES} pages of templates", transient=False
            )


def create_template(
    ctx: Ctx, account: IntegrationAccount, waba_id: str, token: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """Submit a template for review; Meta's answer, or the API error to answer."""
    try:
        return graph_client().post(f"{waba_id}/message_templates", token, payload)
    except SendFailed as exc:
        refused = template_refusal(exc, payload)
        if refused is not None:
            raise refused from exc
        # Not about the template: answered like every Graph call in a request (a
        # rejected token marks the account ``error``; throttling is 429; an outage 502).
        with meta_calls.calling("submitting the template", ctx=ctx, account=account):
            raise


@dataclass(frozen=True)
class Created:
    """Meta's answer to a create, checked to fit our columns."""

    id: str
    status: str
    category: str


def created(answer: dict[str, Any], category: str) -> Created:
    """Meta's ``{"id", "status", "category"}``; 502 for any other shape.

    Meta took the template, but an answer we cannot store must not be a 500 (the next
    sync imports the template as Meta lists it).
    """
    template_id = answer.get("id")
    if isinstance(template_id, int) and not isinstance(template_id, bool):
        template_id = str(template_id)
    status, kind = answer.get("status") or "PENDING", answer.get("category") or category
    if (
        not isinstance(template_id, str)
        or not 0 < len(template_id) <= MAX_ID
        or not isinstance(status, str)
        or not isinstance(kind, str)
        or len(status) > MAX_WORD
        or len(kind) > MAX_WORD
    ):
        raise MetaUnavailable(
            "Meta accepted the template but answered in an undocumented shape; the next"
            " sync imports it"
        )
    return Created(template_id, status.upper(), kind.upper())


def template_refusal(exc: SendFailed, payload: dict[str, Any]) -> DomainError | None:
    """What a create refused for the template itself answers (see the module doc)."""
    subcode = _subcode(exc)
    if subcode in EXISTS_SUBCODES:
        return Conflict(
            f"Meta already has a template '{payload.get('name')}' in"
            f" '{payload.get('language')}' for this WhatsApp Business Account",
            details=[{"field": "name", "message": exc.message}],
        )
    status = exc.http_status or 0
    if (
        400 <= status < 500
        and status not in (401, 403, 429)
        and exc.code not in _NOT_THE_TEMPLATE
        and not exc.transient  # Meta failing, answered as a 400: a 502 like any outage
    ):
        return ValidationFailed(
            f"Meta refused the template ({exc.code}): {exc.message}",
            details=[{"field": "template", "message": exc.message, "meta_code": exc.code}],
        )
    return None


def failure_reason(exc: SendFailed) -> str:
    """A sync's recorded reason for Meta's failure (never the token)."""
    if is_token_invalid(exc):
        return (
            f"Meta refused the WhatsApp account's access token ({exc.code}): reconnect the account"
        )
    return f"Meta's Graph API failed ({exc.code}): {exc.message}"


def _subcode(exc: SendFailed) -> str | None:
    """Meta's ``error_subcode``, which the Graph client keeps on the failure."""
    return getattr(exc, "subcode", None)
