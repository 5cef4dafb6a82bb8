"""``Idempotency-Key``: what a key is bound to, and the replay of a POST's first response.

A key reused with different parameters is another request and is refused (Stripe's
rule): replaying the first answer would report as done something that was never done.

:func:`claim_or_replay` and :func:`remember` serve the POSTs whose repeat must return
the first response (API.md: those that send messages or charge money). The key is
claimed in Redis (``SET NX``, a short lease) before the request does anything; the
response is stored over the claim after the request's transaction commits, and the
claim is dropped if it rolls back (the request failed: a retry runs again). A repeat
while the first request is still running answers 409. Claim and response carry the
request's fingerprint: the key with another body is another request and answers 422.
Keys are per caller (API key or user), per area and per route. (A message send keeps
its own claim, which names the message: ``shared.inbox.messages``.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from shared import db
from shared.context import Ctx
from shared.errors import Conflict, ValidationFailed
from shared.redis_client import get_redis, key

#: How long a claimed key may stay in flight (claimed, not yet committed).
LEASE_SECONDS = 60
#: How long a committed response is replayed.
KEEP_SECONDS = 24 * 3600
_PENDING = "pending"


def fingerprint(params: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a request's parameters (equal requests, equal prints)."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def caller_scope(ctx: Ctx) -> tuple[str, ...]:
    """Whose keys these are: the API key, else the user; system callers share the tenant's.

    Two integrations of one workspace that both number their requests 1, 2, 3... must not
    replay each other's answers.
    """
    if ctx.api_key_id is not None:
        return ("api_key", str(ctx.api_key_id))
    if ctx.user_id is not None:
        return ("user", str(ctx.user_id))
    return ()


@dataclass(frozen=True, slots=True)
class Claim:
    name: str
    request: str


def _name(ctx: Ctx, area: str, route: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    return key(area, "idempotency", str(ctx.tenant_id), *caller_scope(ctx), route, digest)


def claim_or_replay(
    session: Session,
    ctx: Ctx,
    area: str,
    route: str,
    idempotency_key: str | None,
    params: Mapping[str, Any],
) -> tuple[Claim | None, Any]:
    """``(claim, None)`` to go on (claim None without a key), or ``(None, first response)``.

    ``params`` are the request's parameters (its parsed body, and the resource it acts
    on); a repeat with others is refused (422).
    """
    if idempotency_key is None:
        return None, None
    name = _name(ctx, area, route, idempotency_key)
    request = fingerprint(params)
    client = get_redis()
    pending = json.dumps({"request": request, "response": _PENDING})
    for _ in range(2):  # the first request's claim may expire between SET and GET
        if client.set(name, pending, nx=True, ex=LEASE_SECONDS):
            db.after_rollback(session, lambda: client.delete(name))
            return Claim(name, request), None
        found = client.get(name)
        if found is None:
            continue
        first = json.loads(found)
        if first["request"] != request:
            raise ValidationFailed.field("Idempotency-Key", "already used for a different request")
        if first["response"] == _PENDING:
            break
        return None, first["response"]
    raise Conflict("A request with this Idempotency-Key is still in progress; retry shortly")


def remember(session: Session, claim: Claim | None, body: Any) -> Any:
    """Store ``body`` as the key's response once the transaction commits; return ``body``."""
    if claim is not None:
        stored = json.dumps({"request": claim.request, "response": body}, default=str)
        db.after_commit(session, lambda: get_redis().set(claim.name, stored, ex=KEEP_SECONDS))
    return body
